"""Find the runtime assets in ``resources/`` from a checkout or an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent  # the patchlab package


def resources_dir() -> Path:
    """Return the ``resources`` folder.

    Order: ``$PATCHLAB_RESOURCES``; ``patchlab/_resources`` (force-included into the wheel);
    ``<checkout>/resources`` next to the package.
    """
    env = os.environ.get("PATCHLAB_RESOURCES")
    if env:
        return Path(env)
    for candidate in (_HERE / "_resources", _HERE.parent / "resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "patchlab's resources folder is missing: reinstall patchlab or set PATCHLAB_RESOURCES."
    )


def resource_path(*parts: str) -> Path:
    """Path of a file or folder under ``resources/``."""
    return resources_dir().joinpath(*parts)
