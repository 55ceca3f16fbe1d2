"""Colours, markers and font sizes shared by the plotly and matplotlib backends, so both draw the same
picture. Font sizes are chosen to stay readable on a projector."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

__all__ = ["COLORS", "PALETTE", "PLOTLY_SYMBOLS", "MPL_MARKERS", "FONT_SIZE", "MPL_FONT_SIZE", "class_color", "name_of",
           "LECTURE_RC", "LECTURE_TEMPLATE", "LECTURE_PLOTLY_SCALE", "use_lecture_style", "lecture_style",
           "lecture_active", "plotly_font_size", "plotly_scale", "fit_figsize"]

#: Fixed colours: hyperbolic (H) vs Euclidean (E), positive vs negative class (the paper's Fig. 3:
#: positive red, negatives blue), and the disk's layers.
COLORS = {"H": "#1f77b4", "E": "#ff7f0e", "pos": "#d62728", "neg": "#1f77b4", "proxy_edge": "#111111",
          "boundary": "#000000", "grid": "#d9d9d9", "circle": "#8c8c8c", "circle_label": "#4d4d4d"}
#: Class colours cycle through a long qualitative palette; the marker tells super-classes apart.
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#393b79 #637939 #8c6d31 #843c39 #7b4173 #3182bd #e6550d #31a354 #756bb1 #636363 "
    "#6baed6 #fd8d3c #74c476 #9e9ac8 #969696 #9c9ede #cedb9c #e7cb94 #e7969c #de9ed6"
).split()
#: Super-class markers, the same shapes in both backends.
PLOTLY_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "pentagon", "hexagon",
                  "star-triangle-up")
MPL_MARKERS = ("o", "s", "D", "^", "P", "X", "v", "p", "h", "*")
#: Base font size: plotly (px) and matplotlib (pt, on figures a few inches wide). The matplotlib
#: builders take their sizes from ``matplotlib.rcParams`` (so :func:`use_lecture_style` applies);
#: :data:`MPL_FONT_SIZE` is matplotlib's own default, kept for callers that name it.
FONT_SIZE = 14
MPL_FONT_SIZE = 10


def class_color(i: int) -> str:
    """Colour of class ``i`` (cycles through :data:`PALETTE`)."""
    return PALETTE[int(i) % len(PALETTE)]


def name_of(i: int, names: Optional[Sequence[str]], default: str) -> str:
    """``names[i]`` when there is one, else ``f"{default} {i}"``."""
    return names[i] if names is not None and 0 <= i < len(names) else f"{default} {i}"


#: The lessons' projector style (matplotlib): fonts >= 14 pt, figures >= 10 in wide, thick lines.
LECTURE_RC = {
    "font.size": 14, "axes.titlesize": 16, "axes.labelsize": 15, "xtick.labelsize": 13, "ytick.labelsize": 13,
    "legend.fontsize": 13, "figure.titlesize": 17, "figure.figsize": (10.0, 5.0), "figure.dpi": 100,
    "lines.linewidth": 2.0, "axes.grid": True, "grid.alpha": 0.3, "legend.framealpha": 0.85,
}


#: The lessons' projector style for plotly: a template (``plotly.io.templates[LECTURE_TEMPLATE]``)
#: with fonts >= 19 px (14 pt, the rule of :data:`LECTURE_RC`), titles larger. The figure builders
#: also scale the sizes they set themselves by :data:`LECTURE_PLOTLY_SCALE` (:func:`plotly_font_size`),
#: since a size a figure sets beats its template's.
LECTURE_TEMPLATE = "chestlab-lecture"
LECTURE_PLOTLY_FONT = 20
LECTURE_PLOTLY_MIN = 19
LECTURE_PLOTLY_SCALE = 1.6


def _lecture_template() -> str:
    """Register the plotly template :data:`LECTURE_TEMPLATE` (once) and return its name."""
    import plotly.graph_objects as go
    import plotly.io as pio

    if LECTURE_TEMPLATE not in pio.templates:
        small = LECTURE_PLOTLY_MIN
        axis = dict(title=dict(font=dict(size=LECTURE_PLOTLY_FONT)), tickfont=dict(size=small))
        pio.templates[LECTURE_TEMPLATE] = go.layout.Template(layout=dict(
            font=dict(size=LECTURE_PLOTLY_FONT),
            title=dict(font=dict(size=26)),
            legend=dict(font=dict(size=small), title=dict(font=dict(size=LECTURE_PLOTLY_FONT))),
            xaxis=axis, yaxis=axis,
            annotationdefaults=dict(font=dict(size=small)),
            hoverlabel=dict(font=dict(size=small)),
        ))
    return LECTURE_TEMPLATE


def _plotly_io():
    try:
        import plotly.io as pio
    except ImportError:  # matplotlib-only installs: the plotly half of the style does nothing
        return None
    return pio


def lecture_active() -> bool:
    """Whether plotly figures are being made under the lecture style (:func:`use_lecture_style` or
    inside :func:`lecture_style`): the default plotly template includes :data:`LECTURE_TEMPLATE`."""
    pio = _plotly_io()
    return pio is not None and LECTURE_TEMPLATE in str(pio.templates.default or "").split("+")


def plotly_scale() -> float:
    """1, or :data:`LECTURE_PLOTLY_SCALE` under the lecture style: the factor by which the plotly
    builders grow their fonts, margins and heights."""
    return LECTURE_PLOTLY_SCALE if lecture_active() else 1.0


def plotly_font_size(size: float = FONT_SIZE) -> int:
    """A plotly builder's font size ``size`` (px) as it should be drawn now: unchanged normally (the
    dashboard), under the lecture style scaled by :data:`LECTURE_PLOTLY_SCALE` and at least
    :data:`LECTURE_PLOTLY_MIN` px (14 pt)."""
    if not lecture_active():
        return int(round(size))
    return max(LECTURE_PLOTLY_MIN, int(round(size * LECTURE_PLOTLY_SCALE)))


def _with_lecture(default: Optional[str]) -> str:
    parts = [p for p in str(default or "plotly").split("+") if p and p != LECTURE_TEMPLATE]
    return "+".join(parts + [_lecture_template()])


def use_lecture_style() -> None:
    """The lessons' projector style for every later figure of this process (a lesson's first cell):
    :data:`LECTURE_RC` for matplotlib, and the plotly template :data:`LECTURE_TEMPLATE` added to
    plotly's default template (fonts >= 19 px; the :mod:`chestlab.figures` builders scale their own
    sizes to match, :func:`plotly_font_size`)."""
    import matplotlib

    matplotlib.rcParams.update(LECTURE_RC)
    pio = _plotly_io()
    if pio is not None:
        pio.templates.default = _with_lecture(pio.templates.default)


@contextmanager
def lecture_style() -> Iterator[None]:
    """Context manager: the lecture style (:data:`LECTURE_RC`, the plotly template) for the figures
    made inside it; both restored after."""
    import matplotlib

    pio = _plotly_io()
    old = pio.templates.default if pio is not None else None
    with matplotlib.rc_context(LECTURE_RC):
        if pio is not None:
            pio.templates.default = _with_lecture(old)
        try:
            yield
        finally:
            if pio is not None:
                pio.templates.default = old


def fit_figsize(default: tuple[float, float], *, keep_aspect: bool = True) -> tuple[float, float]:
    """A matplotlib builder's figure size: ``default`` (width, height in inches), grown to the width of
    ``rcParams["figure.figsize"]`` when that is wider -- so under :func:`use_lecture_style` every
    figure is at least 10 in wide. ``keep_aspect``: scale the height with the width; otherwise the
    height becomes the larger of ``default``'s and the settings' (for square views such as the disk,
    which would otherwise grow as tall as wide)."""
    import matplotlib

    w0, h0 = float(default[0]), float(default[1])
    rc_w, rc_h = (float(v) for v in matplotlib.rcParams["figure.figsize"])
    if rc_w <= w0:
        return (w0, h0)
    return (rc_w, h0 * rc_w / w0) if keep_aspect else (rc_w, max(h0, rc_h))
