"""Menus, sessions, exports and settings of the main window (a mixin to keep files small)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

import patchlab
from patchlab.core.errors import PatchlabError
from patchlab.core.session import SUFFIX, Session, load_session
from patchlab.gui import export

MAX_RECENT = 8


class MenusMixin:
    """Needs the attributes the main window sets up (panels, controller, qsettings...)."""

    # -- menus ----------------------------------------------------------------------------
    def build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._act(file, "&Open session\u2026", self.open_session_dialog, QKeySequence.Open)
        self.recent_menu = file.addMenu("Open &recent")
        self.recent_menu.triggered.connect(self._on_recent)
        self._act(file, "&Save session", self.save_session_action, QKeySequence.Save)
        self._act(file, "Save session &as\u2026", self.save_session_as, QKeySequence.SaveAs)
        file.addSeparator()
        self._act(file, "Export figure (PNG/SVG)\u2026", self.export_figure_dialog, "Ctrl+E")
        self._act(file, "Export data (CSV + JSON run record)\u2026", self.export_data_dialog)
        self._act(file, "Export &all to a folder\u2026", self.export_all_dialog)
        self._act(file, "&Copy figure", self.copy_figure, "Ctrl+Shift+C")
        file.addSeparator()
        self._act(file, "&Quit", self.close, QKeySequence.Quit)
        model = bar.addMenu("&Model")
        self._act(model, "Open model (Hub id or folder)\u2026", self.model_panel.open_model_dialog)
        help_ = bar.addMenu("&Help")
        self._act(help_, "&About patchlab", self.about)
        self._refresh_recent()

    def _act(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def about(self) -> None:
        info = self.model_info()
        model = (f"Model: {info.name} ({info.source})<br>Device: {info.device}, {info.dtype}<br>"
                 f"Processing: {info.processing}" if info else "No model loaded")
        QMessageBox.about(self, "About patchlab", f"<b>patchlab {patchlab.__version__}</b><br>"
                          f"Activation patching for transformer language models.<br><br>{model}")

    def show_error(self, title: str, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        self.last_error = text
        if not getattr(self, "quiet", False):
            QMessageBox.warning(self, title, text)

    # -- settings -------------------------------------------------------------------------
    def restore_settings(self) -> None:
        s = self.qsettings
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.model_panel.set_recent(_list(s.value("models/recent")))
        exp = {k: s.value(f"experiment/{k}") for k in ("target", "direction", "metric", "method")}
        if all(exp.values()):
            self.experiment.set_settings(exp)
        self.heatmap.cbd.setChecked(str(s.value("view/colour_blind", "false")).lower() == "true")
        self.experiment.preview.setChecked(str(s.value("experiment/preview", "true")).lower() == "true")

    def save_settings(self) -> None:
        s = self.qsettings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("models/recent", self.model_panel.recent())
        for k, v in vars(self.experiment.settings()).items():
            s.setValue(f"experiment/{k}", v)
        s.setValue("view/colour_blind", self.heatmap.cbd.isChecked())
        s.setValue("experiment/preview", self.experiment.preview.isChecked())
        s.sync()

    # -- sessions -------------------------------------------------------------------------
    def current_session(self) -> Session:
        info = self.model_info()
        model = {"name": info.name, "device": info.device, "dtype": info.dtype,
                 "processing": info.processing} if info else {}
        settings = dict(vars(self.experiment.settings()))
        settings["colour_blind"] = self.heatmap.cbd.isChecked()
        return Session(model=model, pairs=self.pair_editor.pairs(),
                       current_pair=self.pair_editor.current_index(), settings=settings,
                       patch_result=self.result, decompose_result=self.decomposition,
                       estimate_result=self.estimate)

    def apply_session(self, session: Session) -> None:
        """Show a session; loads its model if another one is loaded."""
        self.experiment.set_settings(session.settings)
        self.heatmap.cbd.setChecked(bool(session.settings.get("colour_blind", False)))
        self.pair_editor.set_pairs(session.pairs, session.current_pair)
        self.result = session.patch_result
        self.estimate = session.estimate_result
        if self.result is not None:
            from patchlab.gui.experiment_panel import Settings

            s = Settings(**{k: self.result.meta[k] for k in ("target", "direction", "metric", "method")
                            if k in self.result.meta})
            tokens = self.result.meta.get("tokens") or [{}]
            self._run = {"settings": s, "pairs": session.pairs or [], "model": self.result.meta.get("model", ""),
                         "tokens": (tokens[0].get("clean"), tokens[0].get("corrupted")) if tokens[0] else None}
            self.heatmap.set_data(self.result.values, self.result.axes, self.result.labels,
                                  metric=self.result.metric, title=self.title_for(s, self._run["model"]))
            self.heatmap.flush()
            if self.estimate is not None and self.result.meta.get("method") == "exact":
                from patchlab.gui.preview import cell_labels

                self._run["labels"] = cell_labels(self.estimate)
                self._update_scatter(self.result.values)
                self.scatter.flush()
        self.decomposition = session.decompose_result
        if self.decomposition is not None:
            self.show_decomposition()
        name = session.model.get("name")
        info = self.model_info()
        if name and (info is None or info.name != name):
            self.load_model(name, "auto", session.model.get("dtype", "float32"),
                            session.model.get("processing", "compat"))

    def open_session(self, path: str | Path) -> bool:
        """Open a ``.patchlab`` file; a bad file shows a message and changes nothing."""
        try:
            session = load_session(path)
        except PatchlabError as exc:
            self.show_error("Cannot open session", str(exc))
            return False
        self.apply_session(session)
        self.session_path = Path(path)
        self._add_recent_session(str(path))
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def save_session(self, path: str | Path) -> bool:
        try:
            self.current_session().save(path)
        except PatchlabError as exc:
            self.show_error("Cannot save session", str(exc))
            return False
        self.session_path = Path(path)
        self._add_recent_session(str(path))
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def autosave(self) -> None:
        if self.autosave_path is None:
            return
        try:
            self.current_session().save(self.autosave_path)
        except PatchlabError:
            pass  # quitting must not be blocked by a full disk; nothing else to lose here

    def restore_autosave(self) -> bool:
        if self.autosave_path is None or not Path(self.autosave_path).is_file():
            return False
        try:
            session = load_session(self.autosave_path)
        except PatchlabError as exc:
            self.statusBar().showMessage(f"Previous session not restored: {exc}", 15000)
            return False
        self.apply_session(session)
        return bool(session.model.get("name"))

    @Slot()
    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", f"patchlab sessions (*{SUFFIX})")
        if path:
            self.open_session(path)

    @Slot()
    def save_session_action(self) -> None:
        if getattr(self, "session_path", None):
            self.save_session(self.session_path)
        else:
            self.save_session_as()

    @Slot()
    def save_session_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "experiment" + SUFFIX,
                                              f"patchlab sessions (*{SUFFIX})")
        if path:
            self.save_session(path if path.endswith(SUFFIX) else path + SUFFIX)

    def _add_recent_session(self, path: str) -> None:
        recent = [path] + [p for p in _list(self.qsettings.value("sessions/recent")) if p != path]
        self.qsettings.setValue("sessions/recent", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in _list(self.qsettings.value("sessions/recent")):
            self.recent_menu.addAction(p).setData(p)
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    @Slot(QAction)
    def _on_recent(self, action: QAction) -> None:
        self.open_session(action.data())

    # -- exports --------------------------------------------------------------------------
    def current_figure(self):
        """(graphics view, name) of the tab on screen."""
        if self.tabs.currentWidget() is self.decompose_view:
            return self.decompose_view.graphics, "decompose"
        if self.tabs.currentWidget() is self.scatter:
            return self.scatter.graphics, "scatter"
        return self.heatmap.graphics, "heatmap"

    def export_figure(self, path: str | Path, which: str | None = None) -> Path:
        views = {"heatmap": self.heatmap, "decompose": self.decompose_view, "scatter": self.scatter}
        which = which or self.current_figure()[1]
        if which != "decompose":
            views[which].flush()
        return export.save_figure(views[which].graphics, path, title=f"patchlab {which}")

    def comparison(self):
        """(estimate, exact) results behind the scatter view, or raise if there are none."""
        r = self.result
        if self.estimate is None or r is None or r.meta.get("method") != "exact":
            raise PatchlabError("No estimate/exact pair yet: run an exact sweep with the "
                                "attribution preview on.")
        return self.estimate, r

    def export_comparison(self, path: str | Path) -> list[Path]:
        """CSV with one row per cell (estimate and exact value) and both JSON run records."""
        from patchlab.core.io import atomic_write_text
        from patchlab.gui.preview import comparison_csv

        estimate, exact = self.comparison()
        path = Path(path)
        stem = path.with_suffix("")
        return [atomic_write_text(path, comparison_csv(estimate, exact)),
                estimate.save_json(f"{stem}.estimate.json"), exact.save_json(f"{stem}.exact.json")]

    def export_data(self, path: str | Path) -> list[Path]:
        """Tidy CSV at ``path`` and the JSON run record next to it (``.json``)."""
        if self.current_figure()[1] == "scatter":
            return self.export_comparison(path)
        result = self.decomposition if self.current_figure()[1] == "decompose" else self.result
        if result is None:
            raise PatchlabError("Nothing to export yet: run an experiment first.")
        path = Path(path)
        return [result.save_csv(path), result.save_json(path.with_suffix(".json"))]

    def export_all(self, folder: str | Path) -> list[Path]:
        """Every figure and data file into ``folder`` (atomic writes)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise PatchlabError(f"Cannot export to {folder}: the folder does not exist.")
        out = []
        if self.result is not None:
            out += [self.export_figure(folder / "heatmap.png", "heatmap"),
                    self.export_figure(folder / "heatmap.svg", "heatmap"),
                    self.result.save_csv(folder / "patching.csv"),
                    self.result.save_json(folder / "patching.json")]
        if self.estimate is not None and self.result is not None and self.result.meta.get("method") == "exact":
            out += [self.export_figure(folder / "scatter.png", "scatter"),
                    self.export_figure(folder / "scatter.svg", "scatter"),
                    *self.export_comparison(folder / "estimate_vs_exact.csv")]
        if self.decomposition is not None:
            out += [self.export_figure(folder / "decompose.png", "decompose"),
                    self.export_figure(folder / "decompose.svg", "decompose"),
                    self.decomposition.save_csv(folder / "decompose.csv"),
                    self.decomposition.save_json(folder / "decompose.json")]
        if not out:
            raise PatchlabError("Nothing to export yet: run an experiment first.")
        out.append(self.current_session().save(folder / f"session{SUFFIX}"))
        return out

    @Slot()
    def export_figure_dialog(self) -> None:
        name = self.current_figure()[1]
        path, _ = QFileDialog.getSaveFileName(self, "Export figure", f"{name}.png", "PNG (*.png);;SVG (*.svg)")
        if path:
            self._try(self.export_figure, path)

    @Slot()
    def export_data_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export data", "result.csv", "CSV (*.csv)")
        if path:
            self._try(self.export_data, path)

    @Slot()
    def export_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all to folder")
        if folder:
            self._try(self.export_all, folder)

    @Slot()
    def copy_figure(self) -> None:
        export.copy_figure(self.current_figure()[0])
        self.statusBar().showMessage("Figure copied to the clipboard.", 4000)

    def _try(self, fn, *args):
        try:
            out = fn(*args)
        except PatchlabError as exc:
            self.show_error("Export failed", str(exc))
            return None
        self.statusBar().showMessage(f"Exported {out}", 8000)
        return out


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]
