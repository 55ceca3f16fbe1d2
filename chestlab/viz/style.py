"""Colours, markers and font sizes shared by the plotly and matplotlib backends, so both draw the same
picture. Font sizes are chosen to stay readable on a projector."""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["COLORS", "PALETTE", "PLOTLY_SYMBOLS", "MPL_MARKERS", "FONT_SIZE", "MPL_FONT_SIZE", "class_color", "name_of",
           "LECTURE_RC", "use_lecture_style", "lecture_style", "fit_figsize"]

#: Fixed colours: hyperbolic (H) vs Euclidean (E), positive vs negative class (the paper's Fig. 3:
#: positive red, negatives blue), and the disk's layers.
COLORS = {"H": "#1f77b4", "E": "#ff7f0e", "pos": "#d62728", "neg": "#1f77b4", "proxy_edge": "#111111",
          "boundary": "#000000", "grid": "#d9d9d9", "circle": "#8c8c8c"}
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


def use_lecture_style() -> None:
    """Set :data:`LECTURE_RC` for every later matplotlib figure of this process (a lesson's first cell)."""
    import matplotlib

    matplotlib.rcParams.update(LECTURE_RC)


def lecture_style():
    """Context manager: :data:`LECTURE_RC` for the figures made inside it."""
    import matplotlib

    return matplotlib.rc_context(LECTURE_RC)


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
