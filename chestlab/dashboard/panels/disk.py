"""The Poincaré disk: a run's embeddings (colour = super-class, shade = class) and its proxies (★), the
class hierarchy over them (◆ a node per super-class, ■ the root, geodesics to their children) and a
strip of the mean d_H(0, ·) per level over the steps drawn, projected to the disk live, or by UMAP on
request (with a progress bar: the first UMAP compiles numba).

Run A draws the view controls (split, geodesics, d_H circles, projection/UMAP); run B uses A's.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import Any, Optional

import numpy as np

TITLE = "The Poincaré disk"
SLOT = "right"

#: view options and their defaults (widget keys of the page)
DEFAULTS = {"disk_split": "train", "disk_grid": False, "disk_circles": True, "disk_view": "fast projection"}
SPLITS = ("train", "test")
VIEWS = ("fast projection", "UMAP")


#: trainer -> {split: [(step, {level: mean d_H(0, .)}), ...]}: the level strip's history, one entry per
#: drawn step (weak keys: a Reset's new trainer starts a new history)
_LEVELS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
#: entries kept per split; beyond it every other one is dropped (the whole run stays in view)
MAX_LEVEL_POINTS = 1000


def record_levels(tr: Any, split: str, step: int, depth: dict) -> list:
    """Add the mean d_H(0, ·) per level at ``step`` to the run's history of ``split`` (an entry at the
    same step is replaced) and return that history: ``[(step, {level: value}), ...]``."""
    hist = _LEVELS.setdefault(tr, {}).setdefault(split, [])
    if hist and hist[-1][0] == step:
        hist.pop()
    elif hist and hist[-1][0] > step:  # the run went back (a resumed or replaced run): start again
        hist.clear()
    hist.append((int(step), dict(depth)))
    if len(hist) > MAX_LEVEL_POINTS:
        hist[:] = hist[-1::-2][::-1]  # every other entry, the newest kept
    return hist


def data(tr: Any, split: str, n: int = 600) -> dict:
    """Up to ``n`` embeddings of ``split`` projected to the disk (exact for D_H = 2, else PCA in the
    tangent space at 0), the proxies of the training classes (when the loss has proxies), and the
    class hierarchy over them (:func:`chestlab.viz.hierarchy.disk_tree_geometry`: super-class nodes and
    the root, from the proxies or, without them, the class means), whose mean d_H(0, ·) per level
    goes to the run's level history (:func:`record_levels`)."""
    from chestlab.viz import geometry
    from chestlab.viz import hierarchy as vh

    emb = tr.embed(split, n)
    c = float(tr.config.c)
    xy = geometry.project_to_disk(emb["x_h"], c)
    prox = tr.proxies() if split == "train" else None
    pxy = None
    if prox is not None:
        ph = prox["h"]
        pxy = geometry.project_to_disk(ph.reshape(-1, ph.shape[-1]), c, fit_on=emb["x_h"]).reshape(ph.shape[0], ph.shape[1], 2)
    ds = tr.train_set if split == "train" else tr.test_set
    names = getattr(ds, "classes", None)
    sup_names = getattr(tr.train_set, "superclasses", None)
    class_super = getattr(ds, "class_to_super", None)
    class_super = None if class_super is None else np.asarray(class_super, dtype=np.int64).reshape(-1)
    tree = None
    if class_super is not None and len(class_super):
        tree = vh.disk_tree_geometry(emb["x_h"], emb["labels"], class_super, c,
                                     proxies_h=None if prox is None else prox["h"])
    levels = record_levels(tr, split, tr.step_count, tree["depth"]) if tree is not None else []
    return dict(xy=xy, labels=emb["labels"].numpy(), super=emb["super"].numpy(), pxy=pxy, c=c,
                x_h=emb["x_h"], dim_h=emb["x_h"].shape[1], names=list(names) if names is not None else None,
                super_names=list(sup_names) if sup_names is not None else None, step=tr.step_count,
                class_super=class_super, tree=tree, levels=list(levels), split=split)


def figure(d: dict, umap: Optional[dict] = None, *, grid: bool = False, circles: bool = True,
           key: str = "disk", held: bool = False) -> tuple[Any, str]:
    """The disk figure of ``d`` (or of a UMAP view of it, without the tree: UMAP moves every point on
    its own) and what the projection was. ``held``: the page keeps this chart as drawn (it sends the
    figure drawn before, :func:`chestlab.dashboard.panels.chart.holds`): an empty figure, not built."""
    from chestlab.viz import disk, geometry

    if umap is not None:
        xy, pxy, label = umap["xy"], umap["pxy"], geometry.projection_label(d["dim_h"], "umap") + f" (step {umap['step']})"
        labels, sup = umap["labels"], umap["super"]
    else:
        xy, pxy, label = d["xy"], d["pxy"], geometry.projection_label(d["dim_h"])
        labels, sup = d["labels"], d["super"]
    if held:
        import plotly.graph_objects as go

        return go.Figure(), label
    fig = disk.poincare_disk(
        xy, labels, sup, pxy, c=d["c"] if d["c"] > 0 else 0.0, grid=grid,
        circles=(1.0, 2.0, 3.0) if circles else (), class_names=d["names"], super_names=d["super_names"],
        class_super=d.get("class_super"), tree=d.get("tree") if umap is None else None, uirevision=key, height=470,
    )
    return fig, label


def level_figure(d: dict, key: str = "levels", held: bool = False) -> Any:
    """The level strip of ``d``: the mean d_H(0, ·) of the root, the super-class nodes, the classes
    and the samples over the steps drawn so far (:func:`chestlab.viz.training.level_strip`);
    ``held``: an empty figure, as :func:`figure`."""
    from chestlab.viz import training

    if held:
        import plotly.graph_objects as go

        return go.Figure()

    tree = d.get("tree") or {}
    return training.level_strip(d.get("levels") or [], classes_are=tree.get("children_are", "proxies"),
                                uirevision=key)


def tree_caption(d: dict, umap: bool = False) -> str:
    """What the tree over the disk is: the nodes' definition and where they sit, in d_H from 0."""
    tree = d.get("tree")
    if tree is None:
        return ""
    if umap:
        return " · the super-class nodes are drawn in the projection view only (UMAP moves every point on its own)"
    dep = tree["depth"]
    return (f" · ◆ each super-class's node is the gyro-midpoint of its {tree['children_are']}, ■ the root that of "
            f"the nodes; mean d_H(0, ·): root {dep['root']:.2f}, super-classes {dep['super-classes']:.2f}, "
            f"{tree['children_are']} {dep['classes']:.2f}, samples {dep['samples']:.2f}")


def options(ctx: Any) -> dict:
    """The view options: as run A drew them in this redraw, else the session's."""
    if "disk" in ctx.shared:
        return ctx.shared["disk"]
    return {k: ctx.session.get(k, v) for k, v in DEFAULTS.items()}


def _request_umap(state: Any) -> None:
    state.umap_requested = True


def controls(ctx: Any, box: Any) -> dict:
    """Run A's view controls (drawn below the figure); returns the chosen options."""
    for k, v in DEFAULTS.items():
        ctx.session.setdefault(k, v)
    o1, o2 = box.columns([3, 2])
    split = o1.radio("points", SPLITS, key="disk_split", horizontal=True,
                     help="train classes (with their proxies) or the unseen test classes")
    grid = o2.toggle("geodesics", key="disk_grid", help="geodesics: diameters and the arcs orthogonal to them")
    circles = o2.toggle("d_H circles", key="disk_circles", help="points at Poincaré distance d_H = 1, 2, 3 from the origin")
    u1, u2 = box.columns([1, 1])
    view = u1.radio("view", VIEWS, key="disk_view", horizontal=True)
    u2.button("Compute UMAP", key="btn_umap", on_click=_request_umap, args=(ctx.state,),
              help="UMAP of the Poincaré distances with hyperboloid output, mapped to the disk "
                   "(seconds; the first time ~20 s to compile; training waits meanwhile)")
    return {"disk_split": split, "disk_grid": bool(grid), "disk_circles": bool(circles), "disk_view": view}


def run_umap(ctx: Any, d: dict, box: Any) -> None:
    """UMAP with hyperboloid output, in a thread so a progress bar can move (numba compiles at first).
    The result (or the failure, as a warning) goes to ``ctx.state.umap``."""
    from chestlab.viz import geometry

    tr, state = ctx.trainer, ctx.state
    result: dict = {}
    ph = d["pxy"]
    prox = tr.proxies()["h"] if d["pxy"] is not None else None

    def work() -> None:
        try:
            result["out"] = geometry.umap_disk(d["x_h"], d["c"] if d["c"] > 0 else 1.0, seed=tr.config.seed,
                                               fit_on_proxies=None if prox is None else prox.reshape(-1, prox.shape[-1]))
        except Exception as err:  # said, not raised; the exception goes to the server log
            from ..runner import LOG

            LOG.warning("UMAP failed", exc_info=err)
            result["err"] = err

    th = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    th.start()
    bar = box.progress(0.0, text="UMAP: building the neighbour graph …")
    while th.is_alive():
        el = time.perf_counter() - t0
        bar.progress(min(0.95, el / 30.0), text=f"UMAP with hyperboloid output: {el:.0f} s (the first run compiles numba, ~20-40 s)")
        time.sleep(0.25)
    bar.empty()
    if "err" in result:
        state.umap = None
        why = ("it needs the package umap-learn, which this server lacks" if isinstance(result["err"], ImportError)
               else "details in the server log")
        box.warning(f"UMAP failed ({why}); the live projection is shown.")
        return
    out = result["out"]
    xy, pxy = out if isinstance(out, tuple) else (out, None)
    if pxy is not None and ph is not None:
        pxy = pxy.reshape(ph.shape)
    state.umap = dict(xy=xy, pxy=pxy, labels=d["labels"], super=d["super"], step=tr.step_count, split=d.get("split", "train"))


#: rows of plotly's vertical legend (14 px text: 21 px a row, 10 px of padding) that fit beside a compare
#: column's disk at the page's smallest disk height (``page.FOCUS_HEIGHTS["disk"]`` = 290 px: a plot
#: area ~178 px high, which bounds a legend anchored at its top; one more row and plotly scrolls it)
RIGHT_LEGEND_ROWS = 7
#: the legend-only entries a crowded right-hand legend leaves out first, in this order (the panel's
#: heading names them: ★ = proxies, ◆ = super-class nodes, ■ = root; the geodesics are the grey lines
#: of the "geodesics" toggle); a super-class entry is never left out: the colours have no other key
SPARE_ENTRIES = ("root", "geodesics", "proxies (train classes)", "super-class nodes")


def legend_entries(fig: Any) -> list[str]:
    """The names of the entries plotly's legend shows for ``fig``: every named trace whose
    ``showlegend`` is not False (plotly's default for a scatter trace is to show it)."""
    return [str(t.name) for t in fig.data if t.showlegend is not False and t.name]


def fit_right_legend(fig: Any, rows: int = RIGHT_LEGEND_ROWS) -> Any:
    """``fig``'s legend at the disk's right without a scroll bar: the entries one below the other with no
    gap between legend groups (plotly's default 10 px after every super-class's own group made 7 entries
    31 px apart, and the 7th scrolled out of view: issue 19), and, while there are more than ``rows``,
    the :data:`SPARE_ENTRIES` left out (the root's entry first: the nodes' entry, in the same legend
    group, still hides and shows the whole tree, and says "nodes, ■ root"); with more super-classes than
    ``rows`` no legend at all (the hover names each point's super-class). Returns ``fig``."""
    fig.update_layout(legend=dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top", yref="paper",
                                  tracegroupgap=0))
    for name in SPARE_ENTRIES:
        if len(legend_entries(fig)) <= rows:
            break
        for t in fig.data:
            if t.name == name and t.showlegend is not False:
                t.showlegend = False
        if name == "root":
            for t in fig.data:
                if t.name == "super-class nodes" and t.showlegend is not False:
                    t.name = "nodes, ■ root"
    if len(legend_entries(fig)) > rows:
        fig.update_layout(showlegend=False)
    return fig


def render(ctx: Any, box: Any) -> None:
    from chestlab.viz.plotly import note_to_axis_title
    from chestlab.viz.style import legend_below

    from .chart import PLOTLY_CONFIG, holds, modebar_room, readable

    state = ctx.state
    box.markdown(f"**{TITLE}** — colour = super-class (shade = class), ★ = proxies, ◆ = super-class nodes, "
                 "■ = root")
    fig_box = box.container()
    if ctx.primary:
        if state.umap_requested:  # before the view radio is drawn: it may switch to UMAP
            state.umap_requested = False
            split = ctx.session.get("disk_split", DEFAULTS["disk_split"])
            d = dict(ctx.disk_data(split), split=split)
            run_umap(ctx, d, fig_box)
            if state.umap:
                ctx.session["disk_view"] = "UMAP"
        ctl_box = box.container()
        opts = controls(ctx, ctl_box)
        ctx.shared["disk"] = opts
    else:
        ctl_box, opts = None, options(ctx)
    split = opts["disk_split"]
    d = ctx.disk_data(split)
    umap = state.umap if (ctx.primary and opts["disk_view"] == "UMAP" and state.umap) else None
    if umap is not None and umap.get("split") != split:
        umap = None  # computed on the other split: show the live projection instead
    fig, label = figure(d, umap, grid=opts["disk_grid"], circles=opts["disk_circles"], key=f"disk{ctx.name}",
                        held=holds(fig_box, f"disk_{ctx.name}"))  # a chart the page holds is not built
    # the note naming the unlabelled circles under the disk, in the x₁ title: in the plot's corner it sat
    # on the y ticks and, on a compare column's small disk, on the points near the boundary
    note_to_axis_title(fig)
    # alone: the legend's rows counted for the column, below the x₁ title, not over it ("branch B" ran into it);
    # a compare column (a scenario's panel, at most 300 px high): the legend at the disk's right, so that
    # the disk keeps the height (below it, 3 rows of legend left a disk 130 px across), as many entries
    # as fit there without a scroll bar
    if ctx.wide:
        legend_below(fig, 370, axis_px=50, grow=True)
    else:
        fit_right_legend(fig)
        fig.update_layout(margin_b=10)
        modebar_room(fig)  # the mode bar sat on the legend's first entry
    fig_box.plotly_chart(readable(fig), key=f"disk_{ctx.name}", config=PLOTLY_CONFIG)
    fig_box.caption(label + (f" · c = {d['c']:g}: boundary radius 1/√c = {1 / math.sqrt(d['c']):.2f}" if d["c"] > 0
                             else " · c = 0: the Euclidean plane (no boundary)") + tree_caption(d, umap is not None))
    if d.get("tree") is not None:
        strip = level_figure(d, key=f"levels{ctx.name}", held=holds(fig_box, f"levels_{ctx.name}"))
        fig_box.plotly_chart(readable(legend_below(strip, 360 if ctx.wide else 450, axis_px=40, grow=True)),
                             key=f"levels_{ctx.name}",
                             config={**PLOTLY_CONFIG, "displayModeBar": False})  # a strip: no tools over its legend
    if ctl_box is not None and opts["disk_view"] == "UMAP" and not state.umap:
        ctl_box.caption("No UMAP yet: press Compute UMAP.")
