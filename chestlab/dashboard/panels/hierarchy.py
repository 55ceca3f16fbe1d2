"""Hierarchy — the tree the run's proxies encode, beside the dataset's true one.

The dendrogram is decoded (:func:`chestlab.hierarchy.decode`, average linkage on the Poincaré distance by
default, as the evaluator scores both spaces; HypHC's LCA decoding on request) from
the current class proxies in the ball, or from the class means of the training data when the loss
has no proxies (the pairwise losses, the unsupervised one); the true hierarchy of the training
classes is drawn beside it, leaves coloured by super-class. Live numbers: cophenetic correlation,
dendrogram purity and Dasgupta cost of the decoded tree against the true one (the evaluator's
``proxies/H/*``), and the mistake severity of top-1 retrieval on the unseen test classes (``test/H/
severity``, on the same fixed 600-sample subset as the disk). With HIER, its hierarchical proxies
are drawn in the Poincaré disk with their ancestor lines (HIER's Fig. 3).

Everything is computed once per training step (and decoder / curvature): a redraw at the same step
reuses it.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any, Optional

import numpy as np

TITLE = "Hierarchy — the tree the proxies encode vs the true one"
SLOT = "below"

#: samples per split for the class means, the severity and the disk (the disk panel's subset)
N_SAMPLES = 600
#: samples drawn behind HIER's disk
N_DRAWN = 300
DECODERS = ("average", "lca", "single")
DECODER_HELP = ("how the dendrogram is decoded from the points: average = average linkage on the Poincaré distance "
                "(what the evaluator logs as proxies/H/*, and scores the plane with on its own distance), lca = "
                "HypHC's decoding (leaves moved to one radius R = max d(0, x), merged by the deepest hyperbolic LCA, at "
                "height 2(R − d_o): proxies/H/lca_*), "
                "single = single linkage on the Poincaré distance")

#: trainer -> {"key": (step, decoder, c, loss), "data": dict, "prev": the data of the previous step}
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def hierarchy_of_run(tr: Any, split: str = "train") -> Any:
    """The known hierarchy of a split of the run's dataset (the evaluator's), or None."""
    try:
        return tr.evaluator.hierarchy(split)
    except Exception:
        return None


def available(ctx: Any) -> bool:
    """When the run's dataset has a class hierarchy with at least two super-classes."""
    tr = ctx.trainer
    if tr is None:
        return False
    h = hierarchy_of_run(tr, "train")
    return h is not None and h.num_classes >= 2 and len(h.group_names(1)) >= 2


def _embedding(ctx: Any, split: str) -> dict:
    """``x_h``, ``labels`` of the fixed ``N_SAMPLES`` subset of ``split``: the disk's when it drew this
    split in this redraw, else the trainer's (shared with later panels through ``ctx.cache``)."""
    d = ctx.cache.get(("disk", split))
    if d is not None:
        return {"x_h": d["x_h"], "labels": d["labels"]}
    key = ("embed", split)
    if key not in ctx.cache:
        emb = ctx.trainer.embed(split, N_SAMPLES)
        ctx.cache[key] = {"x_h": emb["x_h"], "labels": emb["labels"].numpy()}
    return ctx.cache[key]


def data(ctx: Any, decoder: str = DECODERS[0]) -> dict:
    """Everything the panel draws for the run's current step (no plotly): the dendrogram geometry of
    the decoded and the true trees, the scores, and HIER's disk geometry when the loss is HIER."""
    from chestlab import hierarchy as H
    from chestlab.viz import hierarchy as vh

    t0 = time.perf_counter()
    tr = ctx.trainer
    c = float(tr.model.head.c)
    h_train, h_test = hierarchy_of_run(tr, "train"), hierarchy_of_run(tr, "test")
    groups = h_train.groups(1)
    group_names = h_train.group_names(1)
    prox = tr.proxies()
    if prox is not None:
        p = prox["h"].detach().double()
        C, K, D = p.shape
        points = p.reshape(-1, D)
        leaf_cls = np.repeat(np.arange(C), K)
        source = "proxies" if K == 1 else f"proxies ({K} per class)"
        text = [f"{h_train.classes[k]} · proxy {j}" for k in range(C) for j in range(K)]
    else:
        emb = _embedding(ctx, "train")
        points, ids = H.class_means(emb["x_h"], emb["labels"], c)
        leaf_cls = ids.numpy()
        source = "class means"
        text = [f"{h_train.classes[k]} · mean" for k in leaf_cls]
    out: dict[str, Any] = {"step": tr.step_count, "c": c, "decoder": decoder, "source": source,
                           "group_names": group_names, "points": points, "leaf_classes": leaf_cls}
    if len(leaf_cls) >= 2:
        Z = H.decode(points, c, decoder)
        out["Z"] = Z
        out["scores"] = H.tree_scores(Z, leaf_cls, h_train)
        out["decoded"] = vh.dendrogram_geometry(Z, groups[leaf_cls], leaf_text=text)
    else:
        out["scores"] = dict.fromkeys(("cophenet", "purity", "dasgupta"), math.nan)
        out["decoded"] = None
    out["true"] = vh.dendrogram_geometry(vh.true_linkage(h_train), groups, leaf_text=list(h_train.classes))
    out["depth"] = h_train.depth
    if h_test is not None:
        test = _embedding(ctx, "test")
        out["severity"] = H.hierarchical_retrieval(test["x_h"], test["labels"], h_test, "poincare", c)["severity"]
        out["n_test"] = len(test["labels"])
    else:
        out["severity"], out["n_test"] = math.nan, 0
    hier_points = getattr(tr.criterion, "hier_points", None)
    out["hier"] = None
    if callable(hier_points):
        emb = _embedding(ctx, "train")
        hp = hier_points()
        x = emb["x_h"][:N_DRAWN]
        # the class proxies (or class means) hang under their nearest hierarchical proxy
        out["hier"] = vh.hier_disk_geometry(hp["h"], hp["proxy_parent"], c, x_h=x,
                                            x_groups=groups[np.asarray(emb["labels"])[:N_DRAWN]],
                                            anchors_h=points, anchor_groups=groups[leaf_cls])
        out["hier_what"] = "class proxies" if prox is not None else "class means"
    out["seconds"] = time.perf_counter() - t0
    return out


def cached(ctx: Any, decoder: str = DECODERS[0]) -> tuple[dict, Optional[dict]]:
    """``(data, the data of the previously drawn step or None)``: recomputed only when the run's step,
    the decoder, the curvature or the loss changed since the last redraw."""
    tr = ctx.trainer
    key = (tr.step_count, decoder, float(tr.model.head.c), tr.config.loss)
    if "hierarchy" in ctx.cache and ctx.cache["hierarchy"][0] == key:
        return ctx.cache["hierarchy"][1], ctx.cache["hierarchy"][2]
    entry = _CACHE.get(tr)
    if entry is None or entry["key"] != key:
        prev = None  # the last step drawn with this decoder, for the metrics' deltas
        if entry is not None:
            old = entry["data"]
            prev = old if old["step"] != tr.step_count and old["decoder"] == decoder else entry["prev"]
            if prev is not None and prev["decoder"] != decoder:
                prev = None
        entry = {"key": key, "data": data(ctx, decoder), "prev": prev}
        _CACHE[tr] = entry
    ctx.cache["hierarchy"] = (key, entry["data"], entry["prev"])
    return entry["data"], entry["prev"]


def figures(d: dict, name: str = "", narrow: bool = False) -> dict:
    """The plotly figures of :func:`data`: ``"tree"`` (decoded beside true) and, with HIER, ``"disk"``.
    ``narrow`` (a compare column): the two subplot titles take two lines each, so that they stay
    inside their halves of the figure."""
    from chestlab.viz import hierarchy as vh

    out: dict[str, Any] = {}
    if d["decoded"] is not None:
        # (the lca decoder's full definition, R = max d(0, x) and leaves moved to radius R, is in its help)
        heights = {"lca": "merge height 2(R − d_o)", "average": "mean d_H at the merge", "single": "min d_H at the merge"}
        br = "<br>" if narrow else " "
        out["tree"] = vh.dendrogram_figure(
            d["decoded"], d["true"], d["group_names"],
            left_title=f"decoded from the {d['source']}{br}({d['decoder']}), step {d['step']}",
            right_title=f"the true hierarchy{br}(classes)",
            left_y=heights.get(d["decoder"], "merge height"),
            leaves_what="proxy" if d["source"].startswith("proxies") else "class mean",
            uirevision=f"hier{name}")
        if narrow:
            out["tree"].update_layout(margin_t=62)
    if d["hier"] is not None:
        out["disk"] = vh.hier_disk_figure(d["hier"], d["group_names"], anchor_what=d["hier_what"], uirevision=f"hierdisk{name}",
                                          title=f"HIER's hierarchical proxies, step {d['step']}")
    return out


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _delta(now: float, prev: Optional[dict], key: str, better: str = "up") -> dict:
    """``st.metric``'s ``delta`` / ``delta_color`` for the change since the previously drawn step, in
    words -- "better" or "worse" (``better`` = ``"up"`` or ``"down"``) -- and grey: red and blue mean
    the positive and the negative classes on this page, not worse and better."""
    if prev is None:
        return {"delta": None}
    before = prev["scores"][key] if key in prev["scores"] else prev.get(key)
    if before is None or not (math.isfinite(now) and math.isfinite(before)):
        return {"delta": None}
    change = now - before
    if abs(change) < 5e-4:
        return {"delta": f"±0.000 since step {prev['step']}", "delta_color": "off"}
    word = "better" if (change > 0) == (better == "up") else "worse"
    return {"delta": f"{change:+.3f} since step {prev['step']} · {word}", "delta_color": "off"}


def render(ctx: Any, box: Any) -> None:
    from .chart import PLOTLY_CONFIG, chart, modebar_room, readable

    exp = box.expander(TITLE + (f" · run {ctx.name}" if ctx.name and not ctx.wide else ""), expanded=True)
    if ctx.primary:
        ctx.session.setdefault("hier_decoder", DECODERS[0])
        top = exp.columns([1, 3] if ctx.wide else [3, 2])  # a compare column: room for "average" in the box
        decoder = top[0].selectbox("decoder", DECODERS, key="hier_decoder", help=DECODER_HELP)
        ctx.shared["hier_decoder"] = decoder
    else:
        decoder = ctx.shared.get("hier_decoder", ctx.session.get("hier_decoder", DECODERS[0]))
    d, prev = cached(ctx, decoder)
    s = d["scores"]
    # four in a row alone, two by two in a compare column (four there cut the labels: "cophen…")
    cols = exp.columns(4) if ctx.wide else [c for _ in range(2) for c in exp.columns(2)]
    cols[0].metric("cophenetic correlation ↑", _fmt(s["cophenet"]), **_delta(s["cophenet"], prev, "cophenet"),
                   help="Pearson r between the decoded tree's merge heights and the true LCA heights (levels) of "
                        "every pair of leaves; 1 = the same tree shape")
    cols[1].metric("dendrogram purity ↑", _fmt(s["purity"]), **_delta(s["purity"], prev, "purity"),
                   help="for two leaves of one super-class, the share of their LCA's leaves of that super-class, "
                        "averaged; 1 = every super-class is a subtree")
    cols[2].metric("Dasgupta cost ↓", _fmt(s["dasgupta"]), **_delta(s["dasgupta"], prev, "dasgupta", "down"),
                   help="Σ over pairs of (levels shared in the true tree) × (leaves under their decoded LCA), "
                        "over its upper bound; lower = similar classes meet lower")
    cols[3].metric("mistake severity ↓", _fmt(d["severity"], 2), **_delta(d["severity"], prev, "severity", "down"),
                   help=f"test classes (unseen), {d['n_test']} samples: mean LCA height (levels, 1 = a sibling class, "
                        f"{d['depth']} = another super-class) between a query and its wrong top-1 neighbour in the ball")
    built = d.setdefault("figures", {})

    def figs_() -> dict:
        if built.get(ctx.name) is None:  # built once per step and run, and only when a chart is not held
            built[ctx.name] = figures(d, ctx.name, narrow=not ctx.wide)
        return built[ctx.name]

    if d["decoded"] is not None:  # (what gives figures() its "tree")
        chart(exp, lambda: readable(modebar_room(figs_()["tree"])), key=f"hier_{ctx.name}", config=PLOTLY_CONFIG)
    else:
        exp.info("Fewer than two leaves: no dendrogram to decode.")
    exp.caption(
        f"Left: the dendrogram decoded from the {d['source']} of the training classes at step {d['step']}; right: "
        f"the dataset's true hierarchy of those classes ({d['depth']} levels). Leaves, and links whose leaves share "
        f"one super-class, are coloured by super-class; grey links join several. Computed in {d['seconds'] * 1e3:.0f} ms, "
        "once per step.")
    if d["hier"] is not None:  # (what gives figures() its "disk")
        chart(exp, lambda: readable(figs_()["disk"]), key=f"hierdisk_{ctx.name}", config=PLOTLY_CONFIG)
        shown, n_hier = int(np.sum(d["hier"]["shown"])), len(d["hier"]["shown"])
        exp.caption(
            f"◆ HIER's hierarchical proxies (filled: the nearest one of some {d['hier_what'][:-1]}, i.e. its LCA"
            + (f"; the {shown} of {n_hier} with a {d['hier_what'][:-1]} below them" if shown < n_hier else "")
            + "), dark "
            f"lines: each to its parent (the nearest proxy nearer the origin; the root is larger); ★ {d['hier_what']}, "
            "thin lines to their nearest hierarchical proxy; dots: training data. Colour = super-class; projected "
            "to the disk with the disk panel's projection (tangent PCA, exact for D_H = 2).")
