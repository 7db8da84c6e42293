"""The Trace, Weights and Text tabs of the main window (issues 9 and 10).

Kept out of ``main_window.py`` so that the window only calls :func:`add_analysis_tabs`: each tab
is a passive view from ``views/`` and a presenter that registers its controller job kinds.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog


def add_analysis_tabs(w) -> None:
    """Create ``w.trace_view`` / ``w.trace_presenter`` (and the Weights and Text tabs) on window ``w``."""
    from patchlab.gui.presenters.trace import TracePresenter
    from patchlab.gui.views.trace_view import TraceView

    def ask_path(default: str) -> str | None:
        if w.quiet:
            return None
        path, _ = QFileDialog.getSaveFileName(w, "Export", default)
        return path or None

    w.trace_view = TraceView()
    w.tabs.addTab(w.trace_view, "Trace")
    w.trace_presenter = TracePresenter(w.state, w.controller, w.trace_view, w.notify, ask_path,
                                       heatmap=w.heatmap,
                                       reveal=lambda: w.tabs.setCurrentWidget(w.trace_view))

    from patchlab.gui.presenters.weights import WeightsPresenter
    from patchlab.gui.views.weights_tab import WeightsTab

    def reload_compat() -> None:
        info = w.model_info()
        if info is not None:
            w.load_model(info.name, "auto", info.dtype, "compat")

    w.weights_view = WeightsTab()
    w.tabs.addTab(w.weights_view, "Weights")
    w.weights_presenter = WeightsPresenter(w.state, w.controller, w.weights_view, reload_compat)
    w.tabs.currentChanged.connect(
        lambda _i: w.weights_presenter.on_shown() if w.tabs.currentWidget() is w.weights_view else None)

    from patchlab.engine.embedded import list_embedded
    from patchlab.gui.presenters.text import TextPresenter
    from patchlab.gui.views.text_tab import TextTab

    w.text_view = TextTab([card["name"] for card in list_embedded()])
    w.tabs.addTab(w.text_view, "Text")
    w.text_presenter = TextPresenter(w.controller, w.text_view, w.notify, ask_path)
