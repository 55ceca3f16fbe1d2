"""Plotly figures drawn with matplotlib: a static image of a plotly figure without kaleido (the book's
fallback PNG of every interactive figure, :mod:`chestlab.book`).

:func:`plotly_to_mpl` reads a figure's traces, shapes, annotations and axis layout and draws them on a
matplotlib ``Figure``; :func:`plotly_to_mpl_png` saves it as PNG bytes. Only what the kit's figures
use is drawn (scatter / scattergl, histogram, bar; circle, line and band shapes; annotations; titles
and legends), not every plotly styling.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["plotly_to_mpl", "plotly_to_mpl_png"]


def plotly_to_mpl_png(fig: Any) -> bytes:
    """A static PNG of a plotly figure drawn with matplotlib (:func:`plotly_to_mpl`) -- the
    fallback when kaleido is not installed."""
    from matplotlib import rc_context

    from .style import LECTURE_RC

    mfig = plotly_to_mpl(fig)
    buf = io.BytesIO()
    with rc_context({**LECTURE_RC, "axes.grid": False}):
        mfig.savefig(buf, format="png")
    return buf.getvalue()


def plotly_to_mpl(fig: Any) -> Any:
    """A plotly figure drawn with matplotlib from its traces, as a matplotlib ``Figure``. Draws scatter / scattergl (lines, markers with their symbol and size,
    per-point colours), histogram and bar traces on their subplots, circle and line shapes, text
    annotations in data coordinates, the subplot and axis titles; not every styling. Fonts are the
    lessons' projector sizes (:data:`chestlab.viz.style.LECTURE_RC`), the figure at least 10 in wide,
    and the legend inside the image: one entry per trace (a grey marker when the trace's points are
    coloured one by one) and, when points carry per-point colours and names (a class per colour, as
    in the disk figures), one entry per colour."""
    import numpy as np
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from .style import LECTURE_RC, MPL_MARKERS, PLOTLY_SYMBOLS

    def arr(v: Any) -> np.ndarray:
        # plotly >= 6 writes numeric arrays as base64 typed arrays: {"dtype": "f8", "bdata": "...", "shape": ...}
        if isinstance(v, Mapping) and "bdata" in v:
            out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v.get("dtype", "f8")))
            shape = v.get("shape")
            if shape:
                out = out.reshape([int(k) for k in str(shape).split(",")] if isinstance(shape, str) else shape)
            return out.astype(float)
        return np.array([np.nan if x is None else x for x in (v if v is not None else [])], dtype=float)

    def text(t: Any) -> str:  # plotly's HTML labels as matplotlib text: <sub>H</sub> -> $_{H}$, <br> -> newline
        t = re.sub(r"<br\s*/?>", "\n", str(t or ""))
        t = re.sub(r"<sub>(.*?)</sub>", lambda m: "$_{" + m.group(1) + "}$", t)
        t = re.sub(r"<sup>(.*?)</sup>", lambda m: "$^{" + m.group(1) + "}$", t)
        return html.unescape(re.sub(r"<[^>]+>", "", t))

    symbols = {**dict(zip(PLOTLY_SYMBOLS, MPL_MARKERS)), "star": "*", "circle-open": "o", "square-open": "s"}
    dashes = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--"}
    lay = fig.layout
    in_layout = {("x" + k[5:], (lay[k].anchor if isinstance(lay[k].anchor, str) and lay[k].anchor != "free"
                                else "y" + k[5:])) for k in lay if re.fullmatch(r"xaxis\d*", k) and lay[k] is not None
                 and lay[k].domain is not None}  # subplots, an empty one (a panel "not computed") included
    axes_ids = sorted({(t.xaxis or "x", t.yaxis or "y") for t in fig.data if hasattr(t, "xaxis")} | in_layout
                      or {("x", "y")}, key=lambda ids: (len(ids[0]), ids[0]))
    n = len(axes_ids)
    square = any(getattr(lay[k], "scaleanchor", None) for k in lay if k.startswith("yaxis") and lay[k] is not None)
    width = max(10.0, 5.5 * n)
    with rc_context({**LECTURE_RC, "axes.grid": False}):
        mfig = Figure(figsize=(width, 9.0 if square else max(5.0, width * 0.42)), dpi=100, layout="constrained")
        axs = mfig.subplots(1, n, squeeze=False)[0]
        where = {ids: ax for ids, ax in zip(axes_ids, axs)}

        def _ax_layout(name: str, axis: str) -> Any:
            key = axis + ("axis" + name[1:] if len(name) > 1 else "axis")
            return lay[key] if key in lay else None

        handles: dict = {}  # legend label -> handle (one per label)
        class_colors: dict = {}  # per-point colour -> its name (a class), for a second legend
        for tr in fig.data:
            ax = where.get((getattr(tr, "xaxis", None) or "x", getattr(tr, "yaxis", None) or "y"), axs[0])
            color = None
            marker = getattr(tr, "marker", None)
            if marker is not None and isinstance(marker.color, str):
                color = marker.color
            line = getattr(tr, "line", None)
            if line is not None and isinstance(line.color, str):
                color = line.color
            name = text(tr.name) if tr.name and getattr(tr, "showlegend", None) is not False else None
            if tr.type in ("scatter", "scattergl"):
                x, y = arr(tr.x), arr(tr.y)
                mode = tr.mode or "lines+markers"
                colors = marker.color if marker is not None and not isinstance(marker.color, (str, type(None), Mapping)) \
                    else None
                sym = symbols.get(marker.symbol if marker is not None and isinstance(marker.symbol, str) else "circle", "o")
                msize = float(marker.size) if marker is not None and isinstance(marker.size, (int, float)) else 6.0
                s = (0.9 * msize) ** 2
                edge = "k" if sym == "*" else "none"
                if not len(x) or np.all(np.isnan(x)):  # a legend-only entry (lessons.disk_legend: a class's colour)
                    if name:
                        handles.setdefault(name, Line2D([], [], ls="" if "markers" in mode else "-", color=color or "0.45",
                                                        marker=sym if "markers" in mode else None, markersize=0.9 * msize))
                    continue
                if "markers" in mode and colors is not None and len(colors) == len(x):
                    ax.scatter(x, y, c=list(colors), s=s, marker=sym, edgecolors=edge, linewidths=0.5, zorder=3)
                    labels = tr.text if isinstance(tr.text, (list, tuple)) and len(tr.text) == len(x) else None
                    if labels is not None:
                        for cc, lab in zip(colors, labels):
                            class_colors.setdefault(str(cc), text(lab))
                    if name:
                        handles.setdefault(name, Line2D([], [], ls="", marker=sym, color="0.45", markersize=0.9 * msize + 3,
                                                        markeredgecolor=edge))
                elif "lines" in mode:
                    ls = dashes.get(getattr(line, "dash", None) or "", "-")
                    steps = "steps-post" if getattr(line, "shape", None) == "hv" else "default"
                    lw = float(line.width) if line is not None and isinstance(line.width, (int, float)) else 1.5
                    (h,) = ax.plot(x, y, color=color, ls=ls, lw=lw, drawstyle=steps, marker=sym if "markers" in mode else None,
                                   ms=0.9 * msize)
                    if name:
                        handles.setdefault(name, h)
                else:
                    h = ax.scatter(x, y, color=color, s=s, marker=sym, edgecolors=edge, linewidths=0.5, zorder=3)
                    if name:
                        handles.setdefault(name, h)
            elif tr.type == "histogram" and tr.x is not None:
                xb, bins = getattr(tr, "xbins", None), 40
                if xb is not None and all(isinstance(v, (int, float)) for v in (xb.start, xb.end, xb.size)) and xb.size > 0:
                    bins = np.arange(xb.start, xb.end + xb.size / 2, xb.size)  # plotly's bins, shared by the traces
                *_, patches = ax.hist(arr(tr.x), bins=bins, color=color, alpha=0.6, density=bool(tr.histnorm))
                if name:
                    handles.setdefault(name, patches[0])
            elif tr.type == "bar" and tr.x is not None:
                h = ax.bar(arr(tr.x), arr(tr.y), color=color, alpha=0.7,
                           width=float(tr.width) if isinstance(tr.width, (int, float)) else 0.8)
                if name:
                    handles.setdefault(name, h)
        for sh in lay.shapes or ():
            ax = where.get(((sh.xref or "x").replace(" domain", ""), (sh.yref or "y").replace(" domain", "")), axs[0])
            col = sh.line.color if sh.line and isinstance(sh.line.color, str) else "k"
            ls = dashes.get(getattr(sh.line, "dash", None) or "", "-") if sh.line else "-"
            lw = float(sh.line.width) if sh.line and isinstance(sh.line.width, (int, float)) else 1.0
            if sh.type == "circle":
                from matplotlib.patches import Ellipse

                ax.add_patch(Ellipse(((sh.x0 + sh.x1) / 2, (sh.y0 + sh.y1) / 2), abs(sh.x1 - sh.x0), abs(sh.y1 - sh.y0),
                                     fill=False, color=col, lw=lw, ls=ls, zorder=0.5))
            elif sh.type == "rect" and (sh.yref or "").endswith("domain"):
                ax.axvspan(sh.x0, sh.x1, color=sh.fillcolor if isinstance(sh.fillcolor, str) else "0.8",
                           alpha=float(sh.opacity) if sh.opacity is not None else 0.3, lw=0, zorder=0)
        for a in lay.annotations or ():
            if a.text and not (a.xref or "x").startswith("paper") and a.x is not None and a.y is not None:
                ax = where.get((a.xref or "x", a.yref or "y"), axs[0])
                fc = a.bgcolor if isinstance(a.bgcolor, str) and a.bgcolor.startswith("#") else "white"
                ax.text(a.x, a.y, text(a.text), ha="center", va="center", fontsize="medium",
                        color=a.font.color if a.font and isinstance(a.font.color, str) else "0.3",
                        bbox=dict(boxstyle="round,pad=0.15", fc=fc, ec="none", alpha=0.85), zorder=4)
        used = {(getattr(t, "xaxis", None) or "x", getattr(t, "yaxis", None) or "y") for t in fig.data}
        for (xn, yn), ax in where.items():
            xa, ya = _ax_layout(xn, "x"), _ax_layout(yn, "y")
            if (xn, yn) not in used:  # an empty panel (its note says why): no ticks, no axis titles
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            if xa is not None and xa.title and xa.title.text:
                ax.set_xlabel(text(xa.title.text))
            if ya is not None and ya.title and ya.title.text:
                ax.set_ylabel(text(ya.title.text))
            if ya is not None and ya.type == "log":
                ax.set_yscale("log")
            if ya is not None and ya.scaleanchor:
                ax.set_aspect("equal")
                if xa is not None and xa.range is not None:
                    ax.set_xlim(*xa.range)
                    ax.set_ylim(*(ya.range if ya.range is not None else xa.range))
            ax.spines[["top", "right"]].set_visible(False)
            ax.autoscale_view()
        titles = [a for a in (lay.annotations or ()) if a.xref == "paper" and a.yref == "paper" and a.text]
        for ax, t in zip(axs, [a.text for a in titles if a.y is not None and a.y >= 0.99]):
            ax.set_title(text(t))
        for a in titles:  # a note inside a panel ("not computed"): in the panel whose domain holds it
            if a.y is not None and a.y < 0.99 and a.x is not None:
                ax = axs[0]
                for (xn, _), cand in where.items():
                    dom = getattr(_ax_layout(xn, "x"), "domain", None)
                    if dom is not None and dom[0] <= a.x <= dom[1]:
                        ax = cand
                ax.text(0.5, a.y, text(a.text), ha="center", va="center", color="gray", transform=ax.transAxes)
        if lay.title and lay.title.text:
            mfig.suptitle(text(lay.title.text))

        entries = dict(handles) if len(handles) <= 16 else {}
        if class_colors and len(class_colors) <= 30 and len(set(class_colors.values())) == len(class_colors):
            entries.update({lab: Line2D([], [], ls="", marker="s", color=cc, markersize=11)
                            for cc, lab in class_colors.items()})  # the colours of the points
        if entries and square:  # a disk: the legend in a column at its right
            mfig.legend(list(entries.values()), list(entries), loc="outside right upper", frameon=False)
        elif entries:
            longest = max(len(k) for k in entries)
            ncols = max(1, min(len(entries), int(width * 72 / (8 * longest + 45))))  # ~8 pt per character
            mfig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=ncols, frameon=False)
    return mfig
