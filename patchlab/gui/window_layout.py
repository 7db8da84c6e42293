"""The main window's widget tree: side panel (model, pairs, experiment) and the analysis tabs.

Kept out of ``main_window.py`` so the window only creates its views and wires them; this module
places them. The Trace, Weights and Text tabs are added later by
:func:`patchlab.gui.analysis_tabs.add_analysis_tabs` (they need the presenters).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget


def build_layout(w) -> None:
    """Place window ``w``'s views; sets ``w.side_scroll`` and ``w.tabs`` and the central widget."""
    side = QWidget()
    side_lay = QVBoxLayout(side)
    for title, view in (("Model", w.model_panel), ("Prompt pairs", w.pair_editor),
                        ("Experiment", w.experiment)):
        box = QGroupBox(title)
        QVBoxLayout(box).addWidget(view)
        side_lay.addWidget(box)
    side_lay.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidget(side)
    scroll.setWidgetResizable(True)
    # no sideways scrolling: the area is as wide as the panel's minimum plus the bar
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(side.minimumSizeHint().width()
                           + scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth())
    w.side_scroll = scroll
    left = QWidget()
    left_lay = QVBoxLayout(left)
    left_lay.setContentsMargins(0, 0, 0, 0)
    left_lay.addWidget(scroll, 1)
    left_lay.addWidget(w.experiment.bar)  # Run/Cancel pinned below the scroll area
    patch_tab = QSplitter(Qt.Vertical)
    patch_tab.addWidget(w.heatmap)
    patch_tab.addWidget(w.readouts)
    patch_tab.setStretchFactor(0, 3)
    patch_tab.setStretchFactor(1, 2)
    w.tabs = QTabWidget()
    w.tabs.addTab(patch_tab, "Patching")
    w.tabs.addTab(w.cell_pairs, "Pairs at cell")
    w.tabs.addTab(w.scatter, "Estimate vs exact")
    w.tabs.addTab(w.difference, "Difference")
    w.tabs.addTab(w.decompose_view, "Decompose")
    right = QWidget()
    right_lay = QVBoxLayout(right)
    right_lay.setContentsMargins(0, 0, 0, 0)
    right_lay.addWidget(w.scope_bar)
    right_lay.addWidget(w.tabs, 1)
    split = QSplitter(Qt.Horizontal)
    split.addWidget(left)
    split.addWidget(right)
    split.setCollapsible(0, False)
    split.setStretchFactor(1, 1)
    w.setCentralWidget(split)
