"""Sessions: the application state <-> a ``.patchlab`` file (no widgets here).

The window adds its view settings (experiment settings, colour map) as a plain dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patchlab.core.io import atomic_write_text, dump_json
from patchlab.core.session import Session, load_session
from patchlab.gui.state import AppState, RunSpec

SPEC_KEYS = ("target", "direction", "metric", "method")


def current_session(state: AppState, settings: dict[str, Any]) -> Session:
    """The session of ``state``, with the window's ``settings`` (experiment and view)."""
    info = state.model_info
    model = {"name": info.name, "device": info.device, "dtype": info.dtype,
             "processing": info.processing} if info else {}
    return Session(model=model, pairs=state.pairs, current_pair=state.pair_index,
                   settings=dict(settings, pair_mode=state.pair_mode),
                   patch_result=state.result, decompose_result=state.decomposition,
                   estimate_result=state.estimate)


def spec_from_result(result, pairs) -> RunSpec | None:
    """The frozen run spec a saved result was made with (its meta and the session's pairs)."""
    if result is None:
        return None
    meta = result.meta
    tokens = tuple((tuple(t.get("clean") or ()), tuple(t.get("corrupted") or ()))
                   for t in (meta.get("tokens") or []) if isinstance(t, dict))
    n = result.per_pair.shape[0] if getattr(result, "per_pair", None) is not None else len(pairs)
    run_pairs = tuple(pairs) if len(pairs) == n else tuple(pairs[:n])
    if len(tokens) != len(run_pairs):
        tokens = ()
    return RunSpec(model=str(meta.get("model", "")), pairs=run_pairs,
                   target=meta.get("target", "resid_pre"), metric=meta.get("metric", "logit_diff_recovered"),
                   direction=meta.get("direction", "denoise"), method=meta.get("method", "exact"),
                   preview=False, tokens=tokens)


def apply_session(state: AppState, session: Session) -> None:
    """Put a session's pairs, pair choice and results into ``state``."""
    if session.pairs:
        state.set_pairs(session.pairs)
        if 0 <= session.current_pair < len(session.pairs):
            state.set_pair_index(session.current_pair)
    mode = session.settings.get("pair_mode")
    if mode in ("all", "one"):
        state.set_pair_mode(mode)
    result = session.patch_result
    state.restore_run(spec_from_result(result, session.pairs), result, session.estimate_result)
    state.set_decomposition(session.decompose_result)


def save(state: AppState, settings: dict[str, Any], path: str | Path) -> Path:
    """Write the session atomically; raises ``PatchlabError`` with the reason."""
    return write_snapshot(snapshot(state, settings), path)


def _detach(obj: Any) -> Any:
    """A copy of the dicts and lists in ``obj``; arrays and scalars are shared.

    Result arrays are never written after a result reaches the state (each event brings fresh
    arrays), but dicts such as ``meta`` and ``labels`` may be replaced or extended later, and a
    writer thread must not iterate a dict the GUI thread is changing.
    """
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_detach(v) for v in obj]
    return obj


def snapshot(state: AppState, settings: dict[str, Any]) -> dict[str, Any]:
    """The session of ``state`` as plain containers (cheap: run on the GUI thread).

    The slow part, converting arrays to JSON text, is :func:`write_snapshot`'s (any thread).
    """
    return _detach(current_session(state, settings).to_dict())


def write_snapshot(data: dict[str, Any], path: str | Path) -> Path:
    """Serialise a :func:`snapshot` and write it atomically (off the GUI thread)."""
    return atomic_write_text(path, dump_json(data))


def load(path: str | Path) -> Session:
    """Read a session; raises ``SessionFileError`` (a ``PatchlabError``) when it is bad."""
    return load_session(path)
