"""The dashboard's hierarchy panel (``chestlab.dashboard.panels.hierarchy``) and its figure builders
(``chestlab.viz.hierarchy``): rendered into the recording fake container of ``test_dashboard``, the
figures' content checked (leaves, colours by super-class, HIER's proxies and ancestor lines) and the
live numbers checked against ``chestlab.hierarchy`` on the same points (scipy is the oracle there)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform

from chestlab import hierarchy as H
from chestlab import poincare
from chestlab.dashboard import runner
from chestlab.dashboard import panels as P
from chestlab.dashboard.panels import hierarchy as hp
from chestlab.dashboard.state import DashState, Run
from chestlab.viz import geometry
from chestlab.viz import hierarchy as vh
from chestlab.viz.style import COLORS, super_color

from test_dashboard import Box, ctx_of, small


def _trained(steps: int = 2, **kw: Any) -> Run:
    run = runner.build(small(**kw))
    state = DashState(runs=[run])
    runner.train_chunk(state, budget_s=0.0, max_steps=steps)
    assert state.diverged is None
    return run


@pytest.fixture(scope="module")
def chest_run() -> Run:
    return _trained()


@pytest.fixture(scope="module")
def hier_run() -> Run:
    return _trained(loss="chest_hier", hier_proxies=8, hier_topk=4, hier_triplets=4)


def _metrics(box: Box) -> dict[str, str]:
    return {args[0].split(" ")[0]: args[1] for args, _ in box.calls("metric")}


def _leaf_traces(fig: Any, axis: str) -> list[Any]:
    return [t for t in fig.data if t.mode == "markers" and t.xaxis == axis]


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(v) else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------------------------
# the panel
# ------------------------------------------------------------------------------------------------
def test_panel_has_the_interface_and_is_a_run_panel(chest_run: Run) -> None:
    assert hp in P.RUN_PANELS and hp.SLOT == "below" and hp.TITLE
    assert hp.available(ctx_of(chest_run))
    assert not hp.available(ctx_of(None))


def test_not_available_without_a_hierarchy(chest_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chest_run.trainer.evaluator, "hierarchy", lambda split: None)
    assert not hp.available(ctx_of(chest_run))


def test_dendrogram_of_the_proxies_beside_the_true_tree(chest_run: Run) -> None:
    tr = chest_run.trainer
    session: dict = {}
    box = Box(session)
    ctx = ctx_of(chest_run, session)
    hp.render(ctx, box)
    figs = box.figures()
    assert set(figs) == {"hier_A"}  # no HIER: no disk of hierarchical proxies
    fig = figs["hier_A"]
    h = H.hierarchy_of(tr.train_set)
    C, K = tr.proxies()["h"].shape[:2]
    groups = h.groups(1)
    # leaves: C*K proxies on the left, the C classes on the right, one marker trace per super-class
    left, right = _leaf_traces(fig, "x"), _leaf_traces(fig, "x2")
    assert sum(len(t.x) for t in left) == C * K and sum(len(t.x) for t in right) == C
    names = h.group_names(1)
    assert sorted(t.name for t in left) == sorted(names) and all(t.showlegend is False for t in right)
    for t in left + right:  # colour = super-class, and every leaf in it belongs to that super-class
        g = names.index(t.name)
        assert t.marker.color == super_color(g)
        cls = [h.classes.index(s.split(" · ")[0]) for s in t.text]
        assert set(groups[cls].tolist()) == {g}
    # the true tree's merge heights are the LCA levels 1..depth
    heights = {round(y, 9) for t in fig.data if t.mode == "lines" and t.xaxis == "x2" for y in t.y if y is not None}
    assert heights == set(range(0, h.depth + 1))
    # the live numbers are chestlab.hierarchy's on the same points
    p = tr.proxies()["h"].double().reshape(C * K, -1)
    c = float(tr.model.head.c)
    want = H.tree_scores(H.decode(p, c, "average"), np.repeat(np.arange(C), K), h)  # the default decoder
    test = tr.embed("test", hp.N_SAMPLES)
    sev = H.hierarchical_retrieval(test["x_h"], test["labels"], H.hierarchy_of(tr.test_set), "poincare", c)["severity"]
    got = _metrics(box)
    assert got == {"cophenetic": _fmt(want["cophenet"]), "dendrogram": _fmt(want["purity"]),
                   "Dasgupta": _fmt(want["dasgupta"]), "mistake": _fmt(sev, 2)}
    d = ctx.cache["hierarchy"][1]
    assert d["scores"] == pytest.approx(want, nan_ok=True) and d["severity"] == pytest.approx(sev, nan_ok=True)
    assert box.keys("selectbox") == ["hier_decoder"]


def test_computed_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _trained(1)
    box = Box()
    hp.render(ctx_of(run), box)
    first = hp._CACHE[run.trainer]["data"]
    assert all(kw.get("delta") is None for _, kw in box.calls("metric"))

    def boom(*a: Any, **kw: Any) -> None:
        raise AssertionError("recomputed at the same step")

    with monkeypatch.context() as m:
        m.setattr(hp, "data", boom)
        box2 = Box()
        hp.render(ctx_of(run), box2)  # a redraw at the same step reuses everything
        assert box2.figures()["hier_A"] is box.figures()["hier_A"]
    runner.train_chunk(DashState(runs=[run]), budget_s=0.0, max_steps=1)
    box3 = Box()
    hp.render(ctx_of(run), box3)
    now = hp._CACHE[run.trainer]["data"]
    assert now is not first and now["step"] == first["step"] + 1
    deltas = [kw["delta"] for _, kw in box3.calls("metric")]
    assert len(deltas) == 4 and all(f"since step {first['step']}" in d for d in deltas)
    # said in words, in grey (red and blue mean positive and negative on the page): Dasgupta cost and
    # severity are better when they fall
    for args, kw in box3.calls("metric"):
        assert kw.get("delta_color") == "off"
        change = float(kw["delta"].split(" ")[0].replace("±", ""))
        if change:
            down = args[0].split(" ")[0] in ("Dasgupta", "mistake")
            assert kw["delta"].endswith("better" if (change > 0) != down else "worse")


def test_decoder_choice_changes_the_numbers(chest_run: Run) -> None:
    tr = chest_run.trainer
    session = {"hier_decoder": "lca"}
    box = Box(session)
    hp.render(ctx_of(chest_run, session), box)
    C, K = tr.proxies()["h"].shape[:2]
    p = tr.proxies()["h"].double().reshape(C * K, -1)
    # HypHC's decoding with the leaves at one radius: the evaluator's proxies/H/lca_* numbers
    want = H.tree_scores(H.decode(p, float(tr.model.head.c), "lca", normalize=True), np.repeat(np.arange(C), K),
                         H.hierarchy_of(tr.train_set))
    assert _metrics(box)["cophenetic"] == _fmt(want["cophenet"])
    assert "(lca)" in box.figures()["hier_A"].layout.annotations[0].text


def test_class_means_when_the_loss_has_no_proxies() -> None:
    run = _trained(loss="pair_ce")
    tr = run.trainer
    assert tr.proxies() is None
    box = Box()
    ctx = ctx_of(run)
    hp.render(ctx, box)
    fig = box.figures()["hier_A"]
    emb = tr.embed("train", hp.N_SAMPLES)
    c = float(tr.model.head.c)
    means, ids = H.class_means(emb["x_h"], emb["labels"], c)
    want = H.tree_scores(H.decode(means, c, "average"), ids.numpy(), H.hierarchy_of(tr.train_set))
    assert sum(len(t.x) for t in _leaf_traces(fig, "x")) == len(ids)
    assert _metrics(box)["cophenetic"] == _fmt(want["cophenet"])
    assert "class means" in fig.layout.annotations[0].text


def test_hier_proxies_in_the_disk_with_ancestor_lines(hier_run: Run) -> None:
    tr = hier_run.trainer
    box = Box()
    hp.render(ctx_of(hier_run), box)
    figs = box.figures()
    assert set(figs) == {"hier_A", "hierdisk_A"}
    disk = figs["hierdisk_A"]
    pts = tr.criterion.hier_points()
    P_ = len(pts["h"])
    C, K = tr.proxies()["h"].shape[:2]
    d = hp._CACHE[tr]["data"]["hier"]
    flat = tr.proxies()["h"].double().reshape(C * K, -1)
    nearest = poincare.pairwise_dist(flat, pts["h"].double(), float(tr.model.head.c)).argmin(1).numpy()
    assert np.array_equal(d["anchor_parent"], nearest)
    # readable by default: only the hierarchical proxies with a class proxy below them are drawn -- the
    # nearest one of some class proxy, and its ancestors up to the root
    parent = pts["proxy_parent"].numpy()
    keep = np.zeros(P_, dtype=bool)
    for i in nearest:
        while i >= 0 and not keep[i]:
            keep[i], i = True, parent[i]
    assert np.array_equal(d["shown"], keep) and len(keep) == P_ == 8
    hier = next(t for t in disk.data if t.name == "hierarchical proxies")
    np.testing.assert_allclose(np.column_stack([hier.x, hier.y]), d["hier"][keep])
    stars = [t for t in disk.data if t.mode == "markers" and t.marker.symbol == "star"]
    assert sum(len(t.x) for t in stars) == C * K
    assert {t.marker.color for t in stars} <= {super_color(s) for s in range(4)}  # the disk panel's colours
    # one polyline (separated by None) per drawn non-root proxy -> its parent, thin and half transparent
    tree = next(t for t in disk.data if t.name == "hierarchical proxy → parent")
    n_lines = sum(1 for v in tree.x if v is None)
    assert n_lines == int(((parent >= 0) & keep).sum())
    assert tree.line.width < 2 and tree.opacity < 1
    # thinner, fainter lines: one per class proxy, in its super-class's colour
    thin = [t for t in disk.data if t.mode == "lines" and t.name is None and t.line.width and t.line.width < 1]
    assert sum(sum(1 for v in t.x if v is None) for t in thin) == C * K and all(t.opacity <= 0.5 for t in thin)
    assert disk.layout.yaxis.scaleanchor == "x"  # equal aspect
    # unpruned, every hierarchical proxy is drawn and linked
    g = vh.hier_disk_geometry(pts["h"], parent, float(tr.model.head.c), x_h=flat[:3], x_groups=[0, 0, 0],
                              anchors_h=flat, anchor_groups=np.zeros(C * K, int), prune=False)
    assert g["shown"].all() and len(g["tree_lines"]) == int((parent >= 0).sum())
    assert COLORS["pos"] not in {t.marker.color for t in stars}


def test_draw_run_includes_the_panel(chest_run: Run) -> None:
    session: dict = {}
    box = Box(session)
    P.draw_run(ctx_of(chest_run, session), box)
    assert "hier_A" in box.figures()


# ------------------------------------------------------------------------------------------------
# the figure builders
# ------------------------------------------------------------------------------------------------
def _toy_hierarchy() -> H.Hierarchy:
    return H.Hierarchy.from_paths({"a": ["x", "x1"], "b": ["x", "x1"], "c": ["x", "x2"], "d": ["y", "y1"],
                                   "e": ["y", "y1"], "f": ["y", "y2"]})


def test_true_linkage_reproduces_the_lca_heights() -> None:
    h = _toy_hierarchy()
    Z = vh.true_linkage(h)
    coph = squareform(sch.cophenet(Z))
    cls = np.arange(h.num_classes)
    want = h.lca_height(cls[:, None], cls[None, :]).astype(float)
    np.fill_diagonal(want, 0)
    np.testing.assert_allclose(coph, want)


def test_dendrogram_geometry_colours_pure_links_by_super_class() -> None:
    h = _toy_hierarchy()
    g = vh.dendrogram_geometry(vh.true_linkage(h), h.groups(1), leaf_text=list(h.classes))
    colours = dict(g["links"])
    assert set(colours) == {super_color(0), super_color(1), vh.MIXED}
    assert len(colours[vh.MIXED]) == 1  # only the root joins both super-classes
    assert len(colours[super_color(0)]) == len(colours[super_color(1)]) == 2
    assert g["leaf_color"] == [super_color(int(s)) for s in h.groups(1)[g["order"]]]
    assert sorted(g["leaf_text"]) == sorted(h.classes)


def test_batched_geodesics_match_the_single_ones() -> None:
    torch.manual_seed(0)
    c = 0.7
    x = poincare.expmap0(torch.randn(5, 3, dtype=torch.float64), c)
    y = poincare.expmap0(torch.randn(5, 3, dtype=torch.float64), c)
    many = geometry.geodesic_arcs(x, y, c, n=9)
    for i in range(5):
        np.testing.assert_allclose(many[i], geometry.geodesic_arc(x[i], y[i], c, n=9), atol=1e-10)


def test_hyphc_preset_changes_only_r_and_tau() -> None:
    from chestlab.paper import PRESETS
    from chestlab.settings import TrainConfig, check

    base, hyp = PRESETS["demo-tree"], PRESETS["demo-tree-hyphc"]
    assert {k for k in set(base) | set(hyp) if base.get(k) != hyp.get(k)} == {"r", "tau"}
    cfg = TrainConfig.preset("demo-tree-hyphc")
    assert cfg.tau > 0 and cfg.hyphc == "lca"  # Eq. 8-9 as in the paper (HypHC's reading), only bigger
    assert [p for p in check(cfg) if p.level == "error"] == []


def test_loss_presets_fit_the_page_sliders() -> None:
    """A loss preset is applied to the page's widgets: every value must lie on its slider (the HypHC
    preset's tau is the slider's top, not demo-tree-hyphc's 8)."""
    from chestlab.paper import LOSS_PRESETS
    from chestlab.settings import schema

    sch = schema()
    for name, preset in LOSS_PRESETS.items():
        for key, value in preset.items():
            ui = sch[key].ui
            if value is not None and "lo" in ui and "hi" in ui:
                assert ui["lo"] <= value <= ui["hi"], (name, key, value)
    big = LOSS_PRESETS["CHEST, HypHC enlarged: r = 1, τ = 2, not in the paper (HypHC big)"]
    assert big["loss"] == "chest" and big["r"] == 1.0 and big["tau"] == 2.0


def _colours(fig: Any) -> list[str]:
    """Every colour a figure's traces draw with (markers, their rims, lines), flattened."""
    out: list[str] = []
    for t in fig.data:
        for v in (getattr(t.marker, "color", None) if hasattr(t, "marker") else None,
                  getattr(getattr(t.marker, "line", None), "color", None) if hasattr(t, "marker") else None,
                  getattr(t.line, "color", None) if hasattr(t, "line") else None):
            out += [v] if isinstance(v, str) else [w for w in (v or ()) if isinstance(w, str)]
    return out


def test_one_colour_per_super_class_across_the_disk_dendrograms_and_hier_panel(hier_run: Run) -> None:
    """Branch A is one colour in the disk (its legend entry and its node), in the dendrograms (its
    leaves, both sides) and in HIER's disk (its class proxies); none of these figures, nor the level
    strip, uses Fig. 3's positive red or negative blue."""
    from chestlab.dashboard.panels import disk as dp

    box = Box()
    dp.render(ctx_of(hier_run), box)
    hp.render(ctx_of(hier_run), box)
    figs = box.figures()
    assert {"disk_A", "levels_A", "hier_A", "hierdisk_A"} <= set(figs)
    names = H.hierarchy_of(hier_run.trainer.train_set).group_names(1)
    assert names == ["branch A", "branch B", "branch C", "branch D"]
    seen: dict[str, set] = {n: set() for n in names}
    for key in ("disk_A", "hier_A", "hierdisk_A"):  # every trace named for a super-class, one colour
        for t in figs[key].data:
            if t.name in seen and isinstance(t.marker.color, str):
                seen[t.name].add((key, t.marker.color))
        if key == "disk_A":
            node = next(t for t in figs[key].data if t.name == "super-class nodes")
            for letter, col in zip(node.customdata, node.marker.color):
                seen[f"branch {letter}"].add(("node", col))
    for s, n in enumerate(names):
        assert {where for where, _ in seen[n]} == {"disk_A", "node", "hier_A", "hierdisk_A"}, n
        assert {col for _, col in seen[n]} == {super_color(s)}, n
    for key in ("disk_A", "levels_A", "hier_A", "hierdisk_A"):
        used = {c.lower() for c in _colours(figs[key])}
        assert used and not used & {COLORS["pos"].lower(), COLORS["neg"].lower()}, key
