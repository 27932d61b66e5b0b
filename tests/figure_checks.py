"""Checks of a figure's layout, for the tests of the functions that draw the package's figures:
every piece of text is inside the figure (nothing clipped at its edges) and no two texts overlap.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def _canvas(fig):
    """The figure's Agg canvas (a closed figure keeps a bare one that cannot render)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas


def _name(artist) -> str:
    """What a reader sees of an artist: its text, an axes' title or axis labels, ..."""
    from matplotlib.axes import Axes

    if isinstance(artist, Axes):
        parts = [artist.get_title(), artist.get_xlabel(), artist.get_ylabel()]
        return "axes " + " / ".join(p for p in parts if p) or "axes"
    text = getattr(artist, "get_text", lambda: "")()
    return f"{type(artist).__name__} {text!r}" if text else type(artist).__name__


def clipped(fig, tolerance: float = 1.0) -> list[str]:
    """The artists (axes with their titles, labels and tick labels as drawn, colour bars with
    their labels, legends, figure titles and texts) that reach outside the figure: they would be
    cut off in the saved file. Empty when ``fig.get_tightbbox()`` is inside the figure."""
    renderer = _canvas(fig).get_renderer()
    box = fig.bbox
    out = []
    for artist in fig.get_default_bbox_extra_artists():
        extent = artist.get_tightbbox(renderer)
        if extent is None or not (extent.width or extent.height):
            continue
        if extent.x0 < box.x0 - tolerance or extent.y0 < box.y0 - tolerance \
                or extent.x1 > box.x1 + tolerance or extent.y1 > box.y1 + tolerance:
            out.append(_name(artist))
    return out


def overlapping(fig) -> list[tuple[str, str]]:
    """Pairs of the figure's words that overlap, one hiding a part of the other: figure titles,
    captions and legends, and every panel's (and colour bar's) title, axis labels and legend."""
    renderer = _canvas(fig).get_renderer()
    texts = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel, *fig.texts) if t]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
    texts = list({id(t): t for t in texts}.values())
    parts = [(f"{type(t).__name__} {t.get_text()!r}", t.get_window_extent(renderer))
             for t in texts if t.get_visible() and t.get_text().strip()]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    parts += [(f"legend {[t.get_text() for t in leg.get_texts()][:2]}",
               leg.get_window_extent(renderer)) for leg in legends]
    return [(a, b) for i, (a, ea) in enumerate(parts) for b, eb in parts[i + 1:]
            if ea.overlaps(eb)]


@contextlib.contextmanager
def captured_figures(monkeypatch, *modules):
    """Figures handed to ``save_figure`` by the given modules, kept (and still saved)."""
    from reciprocity import runfolder

    figures = []

    def save(fig, path, **kwargs):
        figures.append(fig)
        return runfolder.save_figure(fig, path, **kwargs)

    for module in modules:
        monkeypatch.setattr(module, "save_figure", save)
    yield figures


def check_png(path: str | Path) -> None:
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
