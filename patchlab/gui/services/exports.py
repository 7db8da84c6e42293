"""Exports: figures (PNG/SVG), data (CSV + JSON run record), everything into a folder.

Functions of the application state and a view's figure (a ``QGraphicsView``); no dialogs here.
Data always comes from result objects, never from plots.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from patchlab.core.errors import PatchlabError
from patchlab.core.io import atomic_write_text
from patchlab.core.session import SUFFIX
from patchlab.gui.services import figures
from patchlab.gui.state import AppState

#: Figure names in the order "export all" writes them.
FIGURES = ("heatmap", "scatter", "decompose")


def export_figure(view, path: str | Path, name: str) -> Path:
    """PNG or SVG (by suffix) of one figure."""
    return figures.save_figure(view, path, title=f"patchlab {name}")


def comparison(state: AppState):
    """(estimate, exact) results behind the scatter view, or raise if there are none."""
    r = state.result
    if state.estimate is None or r is None or r.meta.get("method") != "exact":
        raise PatchlabError("No estimate/exact pair yet: run an exact sweep with the "
                            "attribution preview on.")
    return state.estimate, r


def export_comparison(state: AppState, path: str | Path) -> list[Path]:
    """CSV with one row per cell (estimate and exact value) and both JSON run records."""
    return data_writer(state, "scatter")(path)


def _write_comparison(estimate, exact, path: str | Path) -> list[Path]:
    from patchlab.gui.preview import comparison_csv

    path = Path(path)
    stem = path.with_suffix("")
    return [atomic_write_text(path, comparison_csv(estimate, exact)),
            estimate.save_json(f"{stem}.estimate.json"), exact.save_json(f"{stem}.exact.json")]


def _write_result(result, path: str | Path) -> list[Path]:
    path = Path(path)
    return [result.save_csv(path), result.save_json(path.with_suffix(".json"))]


def data_writer(state: AppState, which: str = "heatmap") -> Callable[[str | Path], list[Path]]:
    """``write(path)`` for figure ``which``'s data, bound to the results shown now.

    Call on the GUI thread (it reads the state, and raises ``PatchlabError`` when there is
    nothing to export); ``write`` touches no state or widget, so it may run on a writer
    thread while a new run replaces the results on screen.
    """
    from functools import partial

    if which == "scatter":
        return partial(_write_comparison, *comparison(state))
    if which == "difference":
        raise PatchlabError("The difference map has no data file of its own: export the two runs' "
                            "data from the Patching tab, or the figure from here.")
    result = state.decomposition if which == "decompose" else state.result
    if result is None:
        raise PatchlabError("Nothing to export yet: run an experiment first.")
    return partial(_write_result, result)


def export_data(state: AppState, path: str | Path, which: str = "heatmap") -> list[Path]:
    """Tidy CSV at ``path`` and the JSON run record next to it, for figure ``which``."""
    return data_writer(state, which)(path)


def available(state: AppState) -> list[str]:
    """The figures that have data to export."""
    out = []
    if state.result is not None:
        out.append("heatmap")
    if state.estimate is not None and state.result is not None and state.result.meta.get("method") == "exact":
        out.append("scatter")
    if state.decomposition is not None:
        out.append("decompose")
    return out


def export_all(state: AppState, folder: str | Path, figure: Callable[[str], object],
               session_settings: dict) -> list[Path]:
    """Every figure (PNG + SVG) and data file into ``folder``, and the session.

    ``figure(name)`` returns the graphics view of figure ``name``, ready to render.
    """
    figures_out, write_rest = export_all_parts(state, folder, figure, session_settings)
    return figures_out + write_rest()


def export_all_parts(state: AppState, folder: str | Path, figure: Callable[[str], object],
                     session_settings: dict) -> tuple[list[Path], Callable[[], list[Path]]]:
    """:func:`export_all` in two parts: the figures, rendered now (Qt needs the GUI thread),
    and ``write_rest()``, which writes the data files and the session from results and a
    session snapshot bound now, so it may run on a writer thread."""
    from patchlab.gui.services import sessions

    folder = Path(folder)
    if not folder.is_dir():
        raise PatchlabError(f"Cannot export to {folder}: the folder does not exist.")
    names = available(state)
    if not names:
        raise PatchlabError("Nothing to export yet: run an experiment first.")
    data_names = {"heatmap": "patching.csv", "scatter": "estimate_vs_exact.csv", "decompose": "decompose.csv"}
    writers = [(data_writer(state, name), folder / data_names[name]) for name in names]
    snapshot = sessions.snapshot(state, session_settings)
    out: list[Path] = []
    for name in names:
        view = figure(name)
        out += [export_figure(view, folder / f"{name}.png", name),
                export_figure(view, folder / f"{name}.svg", name)]

    def write_rest() -> list[Path]:
        done: list[Path] = []
        for write, path in writers:
            done += write(path)
        done.append(sessions.write_snapshot(snapshot, folder / f"session{SUFFIX}"))
        return done

    return out, write_rest


def export_top_cells(state: AppState, stats, path: str | Path, k: int = 20) -> Path:
    """The ranked table of top cells (value, CI, p, q) as CSV."""
    from patchlab.gui.cell_stats import top_cells_csv

    if state.result is None or stats is None:
        raise PatchlabError("No statistics yet: run a sweep over two or more pairs.")
    return atomic_write_text(path, top_cells_csv(state.result, stats, k))


def export_script(state: AppState, path: str | Path, style: str = "patchlab") -> Path:
    """A runnable script that reproduces the result on screen (``style``: "patchlab" or
    "transformerlens"), with the pairs inline."""
    from patchlab.core.script import write_script

    if state.result is None:
        raise PatchlabError("Nothing to reproduce yet: run an experiment first.")
    return write_script(state.result, path, style=style)
