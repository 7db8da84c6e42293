"""Experiment settings (target, direction, metric, method), Run/Cancel and progress."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from patchlab.core.metrics import DIRECTIONS, METHODS, METRICS
from patchlab.core.targets import GROUPS, TARGETS


@dataclass(frozen=True)
class Settings:
    """Frozen experiment settings handed to the worker (it never reads widgets)."""

    target: str = "resid_pre"
    direction: str = "denoise"
    metric: str = "logit_diff_recovered"
    method: str = "exact"


def fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


class ExperimentPanel(QWidget):
    """Widgets only; the main window reads :meth:`settings` and drives the progress."""

    runRequested = Signal()
    cancelRequested = Signal()
    detailsRequested = Signal(str)  # the traceback of the last failure

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.target = QComboBox()
        model = QStandardItemModel(self.target)
        for group in GROUPS:
            header = QStandardItem(group)
            header.setFlags(Qt.NoItemFlags)
            font = header.font()
            font.setBold(True)
            header.setFont(font)
            model.appendRow(header)
            for t in TARGETS.values():
                if t.group == group:
                    item = QStandardItem("    " + t.label)
                    item.setData(t.name, Qt.UserRole)
                    item.setToolTip(f"{t.name}: axes {' x '.join(t.axes)}")
                    model.appendRow(item)
        self.target.setModel(model)
        self.direction = QComboBox()
        for name in DIRECTIONS:
            self.direction.addItem(f"{'Denoising' if name == 'denoise' else 'Noising'}", name)
        self.direction_text = QLabel()
        self.direction_text.setWordWrap(True)
        self.metric = QComboBox()
        for name, text in METRICS.items():
            self.metric.addItem(text, name)
        self.method = QComboBox()
        for name, text in METHODS.items():
            self.method.addItem(text, name)
        self.direction.currentIndexChanged.connect(self._on_direction)
        self.preview = QCheckBox("Preview with attribution patching")
        self.preview.setChecked(True)
        self.preview.setToolTip("Show the one-pass attribution estimate at once; exact rows "
                                "replace it as they arrive (exact runs only)")
        self.method.currentIndexChanged.connect(self._on_method)
        self.run_btn = QPushButton("Run  (Ctrl+Enter)")
        self.run_btn.clicked.connect(self.runRequested)
        self.cancel_btn = QPushButton("Cancel  (Esc)")
        self.cancel_btn.clicked.connect(self.cancelRequested)
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("no run yet")  # set_progress writes "%v / %m cells"
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_text = QLabel(" ")

        form = QFormLayout()
        # addRow(text, widget) makes each label the field's buddy: Alt+letter focuses it
        form.addRow("&Target", self.target)
        form.addRow("Di&rection", self.direction)
        form.addRow("", self.direction_text)
        form.addRow("Metr&ic", self.metric)
        form.addRow("Meth&od", self.method)
        for widget, name in ((self.target, "target"), (self.direction, "direction"),
                             (self.metric, "metric"), (self.method, "method"),
                             (self.run_btn, "run"), (self.cancel_btn, "cancel"),
                             (self.progress, "progress")):
            widget.setAccessibleName(name)
        form.addRow("", self.preview)
        # Run/Cancel/progress live in their own bar: the main window pins it under the
        # scrolling side panel so Run stays visible on small screens (issue 11 item 2)
        self.bar = QWidget()
        self.bar.setObjectName("run_bar")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn, 1)
        buttons.addWidget(self.cancel_btn)
        self.details_btn = QPushButton("Detai&ls\u2026")
        self.details_btn.setToolTip("The full error report of the last failure")
        self.details_btn.setVisible(False)
        self.details_btn.clicked.connect(lambda: self.detailsRequested.emit(self.error_details))
        self.error_details = ""
        buttons.addWidget(self.details_btn)
        bar_lay = QVBoxLayout(self.bar)
        bar_lay.setContentsMargins(0, 0, 0, 0)
        bar_lay.addLayout(buttons)
        bar_lay.addWidget(self.progress)
        bar_lay.addWidget(self.progress_text)
        self.progress_text.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(form)
        self.set_settings(Settings())

    def settings(self) -> Settings:
        return Settings(
            target=self.target.currentData(Qt.UserRole) or "resid_pre",
            direction=self.direction.currentData(),
            metric=self.metric.currentData(),
            method=self.method.currentData(),
        )

    def set_settings(self, s: Settings | dict) -> None:
        if isinstance(s, dict):
            s = Settings(**{k: v for k, v in s.items() if k in Settings.__dataclass_fields__})
        for box, value in ((self.direction, s.direction), (self.metric, s.metric),
                           (self.method, s.method)):
            i = box.findData(value)
            if i >= 0:
                box.setCurrentIndex(i)
        i = self.target.findData(s.target, Qt.UserRole)
        if i >= 0:
            self.target.setCurrentIndex(i)
        self._on_direction()
        self._on_method()

    def _on_method(self, _i: int = 0) -> None:
        self.preview.setEnabled(self.method.currentData() == "exact")

    def _on_direction(self, _i: int = 0) -> None:
        name = self.direction.currentData()
        self.direction_text.setText(f"Patches {DIRECTIONS.get(name, '')}")

    # -- run state ------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.cancel_btn.setEnabled(running)

    def set_progress(self, done: int, total: int, elapsed: float, eta: float | None = None,
                     unit: str = "cells", note: str = "") -> None:
        """Show progress; ``eta`` in seconds (None: from the average rate since the start)."""
        self.progress.setFormat(f"%v / %m {unit}")
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        if eta is None and done:
            eta = elapsed / done * (total - done)
        eta_text = fmt_seconds(eta) if eta is not None else "estimating"
        self.progress_text.setText(f"{note}{done}/{total} {unit} \u00b7 {fmt_seconds(elapsed)} elapsed"
                                   f" \u00b7 ETA {eta_text if done < total else '-'}")

    def set_status(self, text: str) -> None:
        self.progress_text.setText(text)

    def set_error(self, text: str, details: str = "") -> None:
        """Show a failure; ``details`` (a traceback) behind the Details button."""
        self.progress_text.setText(text)
        self.error_details = details
        self.details_btn.setVisible(bool(details))

    def clear_error(self) -> None:
        self.error_details = ""
        self.details_btn.setVisible(False)
