"""Window settings that persist between starts (QSettings): geometry, recent models, experiment."""

from __future__ import annotations

from PySide6.QtCore import QSettings

EXPERIMENT_KEYS = ("target", "direction", "metric", "method")


def as_list(value) -> list[str]:
    """A QSettings list value (None, one string or a list) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def _flag(value, default: bool) -> bool:
    return default if value is None else str(value).lower() == "true"


def restore(s: QSettings, window, model_panel, experiment, heatmap) -> None:
    geometry = s.value("window/geometry")
    if geometry is not None:
        window.restoreGeometry(geometry)
    model_panel.set_recent(as_list(s.value("models/recent")))
    exp = {k: s.value(f"experiment/{k}") for k in EXPERIMENT_KEYS}
    if all(exp.values()):
        experiment.set_settings(exp)
    heatmap.cbd.setChecked(_flag(s.value("view/colour_blind"), False))
    experiment.preview.setChecked(_flag(s.value("experiment/preview"), True))


def save(s: QSettings, window, model_panel, experiment, heatmap) -> None:
    s.setValue("window/geometry", window.saveGeometry())
    s.setValue("models/recent", model_panel.recent())
    for k, v in vars(experiment.settings()).items():
        s.setValue(f"experiment/{k}", v)
    s.setValue("view/colour_blind", heatmap.cbd.isChecked())
    s.setValue("experiment/preview", experiment.preview.isChecked())
    s.sync()


def add_recent_session(s: QSettings, path: str, limit: int = 8) -> list[str]:
    recent = [path] + [p for p in as_list(s.value("sessions/recent")) if p != path]
    s.setValue("sessions/recent", recent[:limit])
    return recent[:limit]


def recent_sessions(s: QSettings) -> list[str]:
    return as_list(s.value("sessions/recent"))
