"""Figure export: PNG, SVG (QSvgGenerator; pyqtgraph 0.14's SVGExporter is broken) and clipboard.

All writes go through :mod:`patchlab.core.io` (atomic; a failure raises PatchlabError with the
reason). Data exports come from result objects, never from plots.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsView

from patchlab.core.errors import PatchlabError
from patchlab.core.io import atomic_write_bytes


def _source(view: QGraphicsView) -> QRectF:
    return view.mapToScene(view.viewport().rect()).boundingRect()


def _background(view: QGraphicsView) -> QColor:
    return view.palette().color(view.backgroundRole())


def figure_image(view: QGraphicsView, scale: float = 2.0) -> QImage:
    """The whole figure (title, axes, colour bar) rendered at ``scale`` x screen size."""
    src = _source(view)
    size = QSize(max(1, int(src.width() * scale)), max(1, int(src.height() * scale)))
    image = QImage(size, QImage.Format_ARGB32)
    image.fill(_background(view))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setRenderHint(QPainter.TextAntialiasing)
    view.scene().render(painter, QRectF(0, 0, size.width(), size.height()), src)
    painter.end()
    return image


def png_bytes(view: QGraphicsView, scale: float = 2.0) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not figure_image(view, scale).save(buf, "PNG"):
        raise PatchlabError("Could not encode the figure as PNG.")
    buf.close()
    return bytes(data.data())


def svg_bytes(view: QGraphicsView, title: str = "patchlab figure") -> bytes:
    """Vector SVG of the figure; images (the heatmap) are embedded, text stays text."""
    src = _source(view)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    gen = QSvgGenerator()
    gen.setOutputDevice(buf)
    gen.setSize(QSize(int(src.width()), int(src.height())))
    gen.setViewBox(QRectF(0, 0, src.width(), src.height()))
    gen.setTitle(title)
    gen.setDescription("Made with patchlab")
    painter = QPainter(gen)
    painter.fillRect(QRectF(0, 0, src.width(), src.height()), _background(view))
    view.scene().render(painter, QRectF(0, 0, src.width(), src.height()), src)
    painter.end()
    buf.close()
    return bytes(data.data())


def save_png(view: QGraphicsView, path: str | Path) -> Path:
    return atomic_write_bytes(path, png_bytes(view))


def save_svg(view: QGraphicsView, path: str | Path, title: str = "patchlab figure") -> Path:
    return atomic_write_bytes(path, svg_bytes(view, title))


def save_figure(view: QGraphicsView, path: str | Path, title: str = "patchlab figure") -> Path:
    """PNG or SVG by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".svg":
        return save_svg(view, path, title)
    if suffix == ".png":
        return save_png(view, path)
    raise PatchlabError(f"Cannot export a figure as {suffix or 'a file without suffix'}: use .png or .svg.")


def copy_figure(view: QGraphicsView) -> None:
    QGuiApplication.clipboard().setImage(figure_image(view))
