"""Colours, markers and font sizes shared by the plotly and matplotlib backends, so both draw the same
picture. Font sizes are chosen to stay readable on a projector."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

__all__ = ["COLORS", "PALETTE", "SUPER_PALETTE", "PLOTLY_SYMBOLS", "MPL_MARKERS", "FONT_SIZE", "MPL_FONT_SIZE", "class_color",
           "super_color", "shade", "SHADES", "class_colors", "class_super_of", "COLOR_BY", "disk_palette", "crowd_size", "short_names", "name_of",
           "LECTURE_RC", "LECTURE_TEMPLATE", "LECTURE_PLOTLY_SCALE", "use_lecture_style", "lecture_style",
           "lecture_active", "plotly_font_size", "plotly_scale", "plotly_height", "fit_figsize", "lecture_axes",
           "PROJECTOR_MIN_PX", "PLOTLY_DEFAULT_FONT", "floor_fonts", "plotly_font_sizes", "legend_rows", "legend_below"]

#: Fixed colours: hyperbolic (H, green) vs Euclidean (E, orange), positive vs negative class (the
#: paper's Fig. 3: positive red, negatives blue), and the disk's layers. H has a colour of its own, so
#: that a curve of the ball is never read as a negative class.
COLORS = {"H": "#2ca02c", "E": "#ff7f0e", "pos": "#d62728", "neg": "#1f77b4", "proxy_edge": "#111111",
          "boundary": "#000000", "grid": "#d9d9d9", "circle": "#8c8c8c", "circle_label": "#4d4d4d", "mixed": "#9a9a9a",
          "root": "#111111"}
#: Class colours cycle through a long qualitative palette; the marker tells super-classes apart.
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#393b79 #637939 #8c6d31 #843c39 #7b4173 #3182bd #e6550d #31a354 #756bb1 #636363 "
    "#6baed6 #fd8d3c #74c476 #9e9ac8 #969696 #9c9ede #cedb9c #e7cb94 #e7969c #de9ed6"
).split()
#: Super-class colours: one set for every hierarchy figure (the disk's points, proxies and super-class
#: nodes, the dendrograms, HIER's disk). None is near the positive red or the negative blue of
#: :data:`COLORS` (Fig. 3), which keep their meaning: green, amber, purple, brown, then teal, pink,
#: olive, grey, dark olive, ochre.
SUPER_PALETTE = ("#009e73", "#e69f00", "#8e5bb5", "#8c564b", "#17becf", "#e377c2", "#bcbd22", "#7f7f7f", "#637939",
                 "#8c6d31")
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


def super_color(s: int) -> str:
    """Colour of super-class ``s`` (cycles through :data:`SUPER_PALETTE`)."""
    return SUPER_PALETTE[int(s) % len(SUPER_PALETTE)]


def shade(color: str, t: float) -> str:
    r"""``color`` (``#rrggbb``) mixed with white (``t > 0``) or black (``t < 0``), ``t`` in [-1, 1]:
    :math:`c' = c + t\,(255 - c)` for ``t > 0``, :math:`c' = (1 + t)\,c` for ``t < 0``, per channel."""
    t = max(-1.0, min(1.0, float(t)))
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [v + t * (255 - v) if t > 0 else (1 + t) * v for v in rgb]
    return "#" + "".join(f"{int(round(v)):02x}" for v in mixed)


#: the range of shades of a super-class's colour its classes get (darkest, lightest), see :func:`class_colors`
SHADES = (-0.3, 0.45)


def class_colors(class_super: Sequence[int]) -> list[str]:
    """Colour of every class when the colour says the super-class: ``class_super`` (C,) the super-class
    of each class -> C colours, class ``k`` a shade of :func:`super_color` ``(class_super[k])``, the
    classes of one super-class spread in index order from dark to light over :data:`SHADES` (one
    class: the super-class's colour itself); ``-1`` (unknown) is grey."""
    sup = [int(s) for s in class_super]
    out = [COLORS["mixed"]] * len(sup)  # a class of no super-class (s < 0): grey
    for s in sorted(set(sup) - {-1}):
        members = [k for k, v in enumerate(sup) if v == s]
        n = len(members)
        for j, k in enumerate(members):
            out[k] = super_color(s) if n == 1 else shade(super_color(s), SHADES[0] + (SHADES[1] - SHADES[0]) * j / (n - 1))
    return out


def class_super_of(labels: Sequence[int], super_labels: Sequence[int], n: int = 0) -> list[int]:
    """The super-class of each class ``0..C-1`` read off per-point ``labels`` and ``super_labels``
    (``C = max(n, max label + 1)``); ``-1`` for a class without points."""
    pairs = dict(zip((int(v) for v in labels), (int(v) for v in super_labels)))
    return [pairs.get(k, -1) for k in range(max(int(n), max(pairs, default=-1) + 1))]


COLOR_BY = ("super", "class")


def disk_palette(labels: Sequence[int], super_labels: Optional[Sequence[int]] = None, *,
                 class_super: Optional[Sequence[int]] = None, color_by: str = "super", n: int = 0) -> list[str]:
    """The colour of every class ``0..C-1`` of a disk figure (``C`` covers ``n`` and every label).

    ``color_by="super"`` (the default) when the super-classes are known (``class_super`` (C,), else
    read off the points' ``super_labels`` by :func:`class_super_of`): the colour says the
    super-class, each class a shade of it (:func:`class_colors`). ``color_by="class"``, or no
    super-classes: one colour per class (:func:`class_color`)."""
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by = {color_by!r}: choose one of {COLOR_BY}")
    labels = [int(v) for v in labels]
    C = max(int(n), max(labels, default=-1) + 1, len(class_super) if class_super is not None else 0)
    if color_by == "super" and (class_super is not None or super_labels is not None):
        cs = [int(v) for v in class_super] if class_super is not None else class_super_of(labels, super_labels)
        return class_colors(cs + [-1] * (C - len(cs)))
    return [class_color(i) for i in range(C)]


def crowd_size(n: int, size: float, *, full: int = 40, least: float = 5.0) -> float:
    """A marker size for ``n`` markers of one kind: ``size`` up to ``full`` of them, then shrinking as
    :math:`\\sqrt{\\text{full} / n}` (a crowd covers about the same area), never below ``least``."""
    return float(size) if n <= full else max(float(least), float(size) * math.sqrt(full / n))


def short_names(names: Optional[Sequence[str]], longest: int = 2) -> Optional[list[str]]:
    """Labels short enough to sit inside a marker: ``names`` without the words they all begin with
    (``"branch A"``, ``"branch B"`` -> ``"A"``, ``"B"``), or None when one would still be longer than
    ``longest`` characters."""
    if not names:
        return None
    words = [str(n).split(" ") for n in names]
    k = 0
    while all(len(w) > k + 1 for w in words) and len({w[k] for w in words}) == 1:
        k += 1
    out = [" ".join(w[k:]) for w in words]
    return out if all(0 < len(o) <= longest for o in out) else None


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


def plotly_height(height: int) -> int:
    """A plotly figure's height: as asked, or taller under the lecture style (larger fonts, the same
    room for the plot)."""
    return int(round(height * plotly_scale()))


def _with_lecture(default: Optional[str]) -> str:
    parts = [p for p in str(default or "plotly").split("+") if p and p != LECTURE_TEMPLATE]
    return "+".join(parts + [_lecture_template()])


def use_lecture_style() -> None:
    """The lessons' projector style for every later figure of this process (a lesson's first cell):
    :data:`LECTURE_RC` for matplotlib, and the plotly template :data:`LECTURE_TEMPLATE` added to
    plotly's default template (fonts >= 19 px; the :mod:`chestlab.viz` builders scale their own
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


def lecture_axes(ax: Any) -> Any:
    """Re-apply the current matplotlib font sizes -- the projector style of :func:`use_lecture_style`
    -- to an axis whose axis labels, tick labels and title were drawn with fixed sizes, or before the
    style was set. (The library's own helpers, such as :func:`chestlab.viz.mpl.disk_view`, take their
    sizes from matplotlib's settings and need no call.) Returns ``ax``."""
    import matplotlib

    rc = matplotlib.rcParams
    ax.xaxis.label.set_size(rc["axes.labelsize"])
    ax.yaxis.label.set_size(rc["axes.labelsize"])
    ax.title.set_size(rc["axes.titlesize"])
    ax.tick_params(axis="x", labelsize=rc["xtick.labelsize"])
    ax.tick_params(axis="y", labelsize=rc["ytick.labelsize"])
    return ax


#: The smallest chart text on a projector (px): the dashboard's plotly charts at 1280×720 (issue 19).
PROJECTOR_MIN_PX = 14
#: plotly's font size where a figure sets none (layout.font.size, inherited by every text that sets none)
PLOTLY_DEFAULT_FONT = 12


def _font_paths(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(path, size)`` of every ``font.size`` (tickfont, title.font, legend.font, annotation fonts …)
    under the plotly JSON ``node``, ``path`` in plotly's dotted form (``xaxis.tickfont.size``,
    ``annotations[2].font.size``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            if key.endswith("font") and isinstance(value, dict) and "size" in value:
                yield f"{sub}.size", value["size"]
            if isinstance(value, (dict, list, tuple)):
                yield from _font_paths(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            if isinstance(value, (dict, list, tuple)):
                yield from _font_paths(value, f"{path}[{i}]")


def plotly_font_sizes(fig: Any) -> dict[str, float]:
    """Every font size a plotly figure sets, by its dotted path (``layout.font.size`` as ``font.size``,
    plotly's default :data:`PLOTLY_DEFAULT_FONT` when unset; the traces' as ``data[i].textfont.size``)."""
    layout = fig.layout.to_plotly_json()
    out = {"font.size": float((layout.get("font") or {}).get("size") or PLOTLY_DEFAULT_FONT)}
    for path, size in _font_paths(layout, ""):
        if path != "font.size" and isinstance(size, (int, float)):
            out[path] = float(size)
    for i, trace in enumerate(fig.data):
        for path, size in _font_paths(trace.to_plotly_json(), ""):
            if isinstance(size, (int, float)):
                out[f"data[{i}].{path}"] = float(size)
    return out


def floor_fonts(fig: Any, least: float = PROJECTOR_MIN_PX) -> Any:
    """``fig`` (plotly) with every text at least ``least`` px: the figure's base font
    (``layout.font.size``) and each size it sets (ticks, legend, titles, annotations, the traces'
    text) raised to ``least`` where smaller, larger sizes kept. The tick labels of every axis, the
    legend (and its title) and every annotation get an explicit size (``least`` where they set none):
    a size left to inheritance is the page's to choose (Streamlit's plotly theme draws ticks and the
    legend title at 12 px). Returns ``fig`` (changed in place; idempotent)."""
    import re

    for path, size in plotly_font_sizes(fig).items():
        if size >= least:
            continue
        if path.startswith("data["):
            i, _, rest = path[5:].partition("].")
            fig.data[int(i)][rest] = least
        else:
            fig.layout[path] = least
    layout = fig.layout.to_plotly_json()
    axes = {k for k in layout if re.fullmatch(r"[xy]axis\d*", k)} | {"xaxis", "yaxis"}
    unset = [f"{a}.tickfont.size" for a in sorted(axes)] + ["legend.font.size"]
    if ((layout.get("legend") or {}).get("title") or {}).get("text"):
        unset.append("legend.title.font.size")
    unset += [f"annotations[{i}].font.size" for i in range(len(layout.get("annotations") or ()))]
    for path in unset:
        if fig.layout[path] is None:
            fig.layout[path] = least
    return fig


#: an estimate of the width of one character of the page's sans-serif font, per px of font size (a
#: little more than Source Sans's average, so that an estimate errs towards one legend row too many)
CHAR_WIDTH = 0.56
#: plotly's legend entry: the symbol and the gaps around it (px)
LEGEND_ITEM_PX = 46


def legend_rows(names: Sequence[str], width: float, font: float = PROJECTOR_MIN_PX) -> int:
    """How many rows plotly's horizontal legend of ``names`` takes in a figure ``width`` px wide at
    ``font`` px (an estimate: entries packed left to right, a new row where the next would not fit)."""
    rows, used = 0, width + 1
    for name in names:
        w = LEGEND_ITEM_PX + CHAR_WIDTH * font * len(str(name))
        if used + w > width:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def legend_below(fig: Any, width: float, *, font: float = PROJECTOR_MIN_PX, axis_px: int = 52, grow: bool = False) -> Any:
    """``fig`` (plotly) with its legend at the foot of the figure (container coordinates) and a bottom
    margin that holds the tick labels and x-axis title (``axis_px``) and the legend's rows as estimated
    for a figure ``width`` px wide (:func:`legend_rows`): a legend placed in plot fractions below
    the plot runs into the axis titles when its rows grow (a narrow column) or the figure is made
    lower. ``grow``: the figure's height grows by the margin added (the plot keeps its height).
    Returns ``fig``."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    rows = legend_rows(names, width, font)
    line = int(round(font * 1.5))
    bottom = axis_px + rows * line + 6
    old = fig.layout.margin.b if fig.layout.margin.b is not None else 80
    fig.update_layout(margin_b=bottom, legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom",
                                                   x=0.5, xanchor="center"))
    if grow and fig.layout.height:
        fig.update_layout(height=int(fig.layout.height + max(0, bottom - old)))
    return fig
