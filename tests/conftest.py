import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    import tiny_models

    folder = tmp_path_factory.mktemp("tiny_models")
    for arch in tiny_models.ARCHS:
        tiny_models.build(arch, folder)
    return folder
