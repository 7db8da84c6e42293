"""``.patchlab`` session files: model reference, prompt pairs, settings and results (JSON).

Pure (de)serialisation, numpy and stdlib only; the GUI decides what goes in. A malformed file
or one written by a newer patchlab raises :class:`SessionFileError` with a readable message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchlab._version import __version__
from patchlab.core.decomposition import DecomposeResult
from patchlab.core.errors import PairError, PatchlabError, SessionFileError
from patchlab.core.io import atomic_write_text, dump_json, read_json
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult

SESSION_FORMAT = "patchlab.session"
SESSION_FORMAT_VERSION = 1
SUFFIX = ".patchlab"


@dataclass
class Session:
    """Everything needed to reopen an experiment.

    Attributes
    ----------
    model : dict
        Model reference: ``name`` (embedded name, folder or Hub id), ``device``, ``dtype``,
        ``processing``. Weights are never stored.
    pairs : list of PromptPair
    current_pair : int
        Index of the pair shown in the editor.
    settings : dict
        Experiment and view settings (target, direction, metric, method, colour map...).
    patch_result, decompose_result : optional
        The last results, if any.
    estimate_result : optional
        The attribution-patching estimate shown before the exact ``patch_result``.
    """

    model: dict[str, Any] = field(default_factory=dict)
    pairs: list[PromptPair] = field(default_factory=list)
    current_pair: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    patch_result: PatchResult | None = None
    decompose_result: DecomposeResult | None = None
    estimate_result: PatchResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SESSION_FORMAT,
            "format_version": SESSION_FORMAT_VERSION,
            "patchlab_version": __version__,
            "model": dict(self.model),
            "pairs": [p.to_dict() for p in self.pairs],
            "current_pair": int(self.current_pair),
            "settings": dict(self.settings),
            "results": {
                "patch": self.patch_result.to_dict() if self.patch_result is not None else None,
                "decompose": (
                    self.decompose_result.to_dict() if self.decompose_result is not None else None
                ),
                "estimate": self.estimate_result.to_dict() if self.estimate_result is not None else None,
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> Session:
        """Build a session from parsed JSON; raise :class:`SessionFileError` when malformed."""
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise SessionFileError(
                "This is not a patchlab session file (it lacks 'format': 'patchlab.session')."
            )
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise SessionFileError("This session file has no valid format version.")
        if version > SESSION_FORMAT_VERSION:
            written = data.get("patchlab_version", "a newer version")
            raise SessionFileError(
                f"This session was saved by patchlab {written} (session format {version}); this "
                f"patchlab ({__version__}) reads format {SESSION_FORMAT_VERSION}. Update patchlab "
                "to open it."
            )
        try:
            model = data.get("model") or {}
            settings = data.get("settings") or {}
            if not isinstance(model, dict) or not isinstance(settings, dict):
                raise TypeError("'model' and 'settings' must be objects")
            raw_pairs = data.get("pairs") or []
            if not isinstance(raw_pairs, list):
                raise TypeError("'pairs' must be a list")
            pairs = [PromptPair.from_dict(p) for p in raw_pairs]
            for p in pairs:
                if not all(isinstance(getattr(p, f), str) for f in ("clean", "corrupted", "answer", "wrong")):
                    raise TypeError("prompt pair fields must be text")
            current = int(data.get("current_pair", 0))
            results = data.get("results") or {}
            if not isinstance(results, dict):
                raise TypeError("'results' must be an object")
        except (PairError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The session file is malformed: {exc}") from exc
        patch = results.get("patch")
        decomposition = results.get("decompose")
        estimate = results.get("estimate")  # absent in files from before the preview
        return cls(
            model=dict(model),
            pairs=pairs,
            current_pair=max(0, min(current, len(pairs) - 1)) if pairs else 0,
            settings=dict(settings),
            patch_result=PatchResult.from_dict(patch) if patch is not None else None,
            decompose_result=(
                DecomposeResult.from_dict(decomposition) if decomposition is not None else None
            ),
            estimate_result=PatchResult.from_dict(estimate) if estimate is not None else None,
        )

    def to_json(self) -> str:
        return dump_json(self.to_dict())

    def save(self, path: str | Path) -> Path:
        """Write atomically (the previous file survives a failed write)."""
        return atomic_write_text(path, self.to_json())


def load_session(path: str | Path) -> Session:
    """Read a ``.patchlab`` file.

    Raises
    ------
    SessionFileError
        Missing, unreadable, not JSON, malformed, or from a newer patchlab; the message names
        the file.
    """
    try:
        data = read_json(path, "session file")
    except SessionFileError:
        raise
    except PatchlabError as exc:
        raise SessionFileError(str(exc)) from exc
    try:
        return Session.from_dict(data)
    except SessionFileError as exc:
        raise SessionFileError(f"Cannot open {path}: {exc}") from exc
    except Exception as exc:  # a hand-edited file must never crash the app
        raise SessionFileError(f"Cannot open {path}: the session file is malformed ({exc}).") from exc
