import sys

from patchlab.cli import main

sys.exit(main())
