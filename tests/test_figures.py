"""chestlab.viz's figure builders: the figures build, hold the expected traces, and the disk maps keep points inside
the Poincaré disk."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chestlab import gradients, metrics, poincare, viz
from chestlab.viz import disk as vdisk
from chestlab.viz import geometry, hardneg
from chestlab.viz import mpl as vmpl
from chestlab.viz import paper as vpaper
from chestlab.viz import similarity as vsim
from chestlab.viz import training as vtrain
from chestlab.train import SimilarityEvent


def _sim(eta_e_off: bool = False) -> SimilarityEvent:
    rng = np.random.default_rng(0)
    return SimilarityEvent(step=3, h_pos=rng.normal(-2, 0.3, 64), h_neg=rng.normal(-4, 0.5, 64 * 15),
                           e_pos=None if eta_e_off else rng.normal(-1, 0.2, 64),
                           e_neg=None if eta_e_off else rng.normal(-2, 0.4, 64 * 15))


def _ball_points(n: int, d: int, c: float, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return poincare.expmap0(torch.randn(n, d, generator=g, dtype=torch.float64) * scale, c)


# ------------------------------------------------------------------------------------------------
# similarity histograms
# ------------------------------------------------------------------------------------------------
def test_similarity_histogram_traces_and_margins() -> None:
    fig = vsim.similarity_histogram(_sim(), delta_h=1.0, delta_e=5.0, lambda_h=20.0, lambda_e=20.0)
    assert isinstance(fig, go.Figure)
    hists = [t for t in fig.data if t.type == "histogram"]
    assert [t.name for t in hists] == ["positive class", "negative classes"] * 2
    assert {t.xaxis for t in hists} == {"x", "x2"}  # H and E side by side
    # no pooled "median of negatives + δ" line: Eq. 7 compares each sample with its own negatives
    assert not [t for t in fig.data if t.type == "scatter"]
    assert fig.layout.uirevision == "similarity"
    assert "δ_H = 1" in fig.layout.annotations[0].text and "δ_E = 5" in fig.layout.annotations[1].text
    # instead the titles give the fraction of samples whose own margin (per_sample_margins) meets δ
    for ann, space, delta in zip(fig.layout.annotations[:2], "he", (1.0, 5.0)):
        m = metrics.per_sample_margins(_sim(), space, 20.0)["soft"]
        assert f"m ≥ δ for {np.mean(m >= delta):.0%} of 64 samples" in ann.text
    assert fig.layout.xaxis.title.text.startswith("S(x_i, y)")  # y: the class (docs/maths.md); c is the curvature


def test_similarity_histogram_without_a_space_or_margins() -> None:
    fig = vsim.similarity_histogram(_sim(eta_e_off=True))
    assert len([t for t in fig.data if t.type == "histogram"]) == 2
    assert any("not computed" in a.text for a in fig.layout.annotations)
    assert not [t for t in fig.data if t.type == "scatter"]
    # a plain mapping works too (notebooks); negatives not laid out (B, C - 1): δ named, no fraction
    fig = vsim.similarity_histogram({"h_pos": [0.1, 0.2], "h_neg": [0.0, -0.1, -0.2]}, delta_h=0.5, lambda_h=20.0)
    assert fig.layout.annotations[0].text.endswith("(δ_H = 0.5)")


def test_similarity_histogram_mpl_png() -> None:
    fig = vsim.similarity_histogram_mpl(_sim(), 1.0, 1.0, lambda_h=20.0, lambda_e=20.0, title="step 3")
    png = vmpl.to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "$S_H(x_i, y)$" and fig.axes[1].get_xlabel() == "$S_E(x_i, y)$"
    assert not fig.axes[0].lines  # no pooled margin line
    assert r"$\delta_H$ = 1" in fig.axes[0].get_title() and "samples" in fig.axes[0].get_title()


def test_no_class_index_written_c_in_figure_labels() -> None:
    """c is the curvature; a class is y (docs/maths.md's notation table): no label writes p_c."""

    texts = [t.text for t in vsim.similarity_histogram(_sim(), 1.0, 1.0).layout.annotations]
    texts += [vsim.similarity_histogram(_sim()).layout.xaxis.title.text]
    fig = vsim.similarity_histogram_mpl(_sim())
    texts += [ax.get_xlabel() for ax in fig.axes]
    fig = vpaper.similarity_histograms([("a", _sim().h_pos, _sim().h_neg)])
    texts += [ax.get_xlabel() for ax in fig.axes]
    assert texts and not [t for t in texts if "p_c" in t or "x, c)" in t], texts


def test_lecture_style_reaches_the_plotly_figures() -> None:
    """The lessons' projector rule (>= 14 pt) for plotly too: under the lecture style (the same call
    as for matplotlib) the plotly template ``chestlab-lecture`` is on and the builders' own font
    sizes grow to >= 19 px (14 pt); outside it (the dashboard) they keep their sizes."""
    import plotly.io as pio

    from chestlab.viz.style import LECTURE_TEMPLATE, lecture_active, lecture_style

    x = _ball_points(30, 2, 1.0, scale=0.5).numpy()
    rows = [{"step": i, "loss": 3.0 / i} for i in range(1, 20)]

    def build():
        return {"hist": vsim.similarity_histogram(_sim(), 1.0, 1.0, title="t"),
                "disk": vdisk.poincare_disk(x, np.arange(30) % 3, c=1.0, circles=(1.0, 2.0), title="disk"),
                "margins": vsim.margin_histogram(_sim(True), 1.0, None, title="t"),
                "curves": vtrain.training_curves(rows)}

    def smallest(fig) -> float:
        lay = fig.layout
        sizes = [lay.font.size, lay.legend.font.size]
        sizes += [a.font.size if a.font.size is not None else lay.font.size for a in lay.annotations]
        sizes += [ax.title.font.size for ax in (lay.xaxis, lay.yaxis) if ax.title.font.size is not None]
        sizes += [ax.tickfont.size for ax in (lay.xaxis, lay.yaxis) if ax.tickfont.size is not None]
        return min(s for s in sizes if s is not None)

    default = pio.templates.default
    plain = build()
    with lecture_style():
        assert lecture_active() and LECTURE_TEMPLATE in pio.templates.default
        lecture = build()
    assert pio.templates.default == default and not lecture_active()  # restored
    assert lecture["hist"].layout.font.size >= 19 and lecture["disk"].layout.font.size >= 19
    for name, fig in lecture.items():
        assert smallest(fig) >= 19, (name, smallest(fig))
        assert fig.layout.height > plain[name].layout.height  # room for the larger text
    assert plain["disk"].layout.font.size == 14 and plain["hist"].layout.font.size == 12  # the dashboard's sizes
    assert pio.templates[LECTURE_TEMPLATE].layout.font.size >= 19
    assert pio.templates[LECTURE_TEMPLATE].layout.title.font.size > pio.templates[LECTURE_TEMPLATE].layout.font.size


def test_lecture_style_reaches_the_matplotlib_figures() -> None:
    """The matplotlib builders take their font sizes and widths from rcParams: under the lecture style
    every text is >= 13 pt (ticks and legends 13, labels and titles 15-16) and every figure >= 10 in wide."""
    from chestlab.viz.style import LECTURE_RC, lecture_style

    rows = [{"step": i, "loss": 3.0 / i, "l_h": 1.0 / i, "l_e": 2.0 / i} for i in range(1, 50)]
    rows += [{"step": 49, **{f"{sp}/{S}/{m}": 0.5 for sp in ("test", "train") for S in ("H", "E") for m in ("R@1", "MAP@R")}}]
    x = _ball_points(30, 2, 1.0, scale=0.5).numpy()

    def build():
        return [vsim.similarity_histogram_mpl(_sim(), 1.0, 1.0, lambda_h=20.0, lambda_e=20.0, title="t"),
                vtrain.training_curves_mpl(rows),
                vdisk.poincare_disk_mpl(x, np.arange(30) % 3, c=1.0, circles=(1.0,), title="disk"),
                vsim.margin_histogram_mpl(_sim(), 1.0, 1.0)]

    def sizes(fig):
        out = []
        for ax in fig.axes:
            out += [ax.xaxis.label.get_size(), ax.title.get_size()]
            out += [t.get_size() for t in ax.get_xticklabels() + ax.get_yticklabels()]
            leg = ax.get_legend()
            out += [t.get_size() for t in leg.get_texts()] if leg else []
        for leg in fig.legends:
            out += [t.get_size() for t in leg.get_texts()]
        return out

    plain = build()
    with lecture_style():
        lecture = build()
    for p, f in zip(plain, lecture):
        assert f.get_size_inches()[0] >= LECTURE_RC["figure.figsize"][0]
        assert min(sizes(f)) >= 13 and min(sizes(f)) > min(sizes(p)), (f, sizes(f))
        assert vmpl.to_png(f)[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------------
# the disk
# ------------------------------------------------------------------------------------------------
def test_project_to_disk_exact_for_two_dimensions() -> None:
    x = _ball_points(50, 2, c=0.5)
    out = geometry.project_to_disk(x, 0.5, method="exact")
    np.testing.assert_array_equal(out, x.numpy())
    np.testing.assert_array_equal(geometry.project_to_disk(x, 0.5), x.numpy())  # auto = exact
    with pytest.raises(ValueError, match="D_H = 2"):
        geometry.project_to_disk(_ball_points(5, 3, 0.5), 0.5, method="exact")


@settings(max_examples=25, deadline=None)
@given(c=st.floats(0.05, 4.0), d=st.integers(3, 40), scale=st.floats(0.1, 20.0), seed=st.integers(0, 1000))
def test_tangent_pca_keeps_points_inside_and_distances_to_origin_shrink(c: float, d: int, scale: float, seed: int) -> None:
    x = _ball_points(40, d, c, seed, scale)
    out = torch.as_tensor(geometry.project_to_disk(x, c, method="tangent_pca"))
    assert out.shape == (40, 2)
    assert bool(torch.isfinite(out).all())
    assert float((c * out.pow(2).sum(-1)).max()) < 1.0
    # an orthogonal projection in the tangent space at 0: no point moves away from the origin.
    # Exact only where float64 resolves the point: at D_H(0, x) = 2 artanh(sqrt(c)|x|) the rounding
    # of |x| moves D_H by about eps / (1 - sqrt(c)|x|) ~ 1e-16 e^{D_H}, 1e-9 at D_H = 16, while
    # saturated points (tanh = 1 - 1e-15, D_H ~ 35) move by +-0.1 (CI met one on another CPU).
    d_in, d_out = poincare.dist0(x, c), poincare.dist0(out, c)
    resolved = d_in < 16.0
    assert bool((d_out[resolved] <= d_in[resolved] + 1e-6).all())
    assert bool((d_out <= d_in + 0.5).all())


def test_tangent_pca_fit_on_shares_the_projection_and_is_exact_on_a_plane() -> None:
    c = 0.5
    v = torch.zeros(30, 5, dtype=torch.float64)
    v[:, :2] = torch.randn(30, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = poincare.expmap0(v, c)
    out = geometry.project_to_disk(x, c)
    # data in a 2-plane through 0: the projection is an isometry, distances to 0 are kept
    np.testing.assert_allclose(poincare.dist0(torch.as_tensor(out), c).numpy(), poincare.dist0(x, c).numpy(), rtol=1e-9)
    prox = geometry.project_to_disk(x[:4], c, fit_on=x)
    np.testing.assert_allclose(prox, out[:4], atol=1e-12)


def test_hyperboloid_to_disk_stays_in_the_ball() -> None:
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(0, 1e6, (20, 2)), [[0.0, 0.0], [1e300, -1e300]]])
    for c in (0.1, 1.0, 3.0):
        p = geometry.hyperboloid_to_disk(xy, c)
        assert np.isfinite(p).all()
        assert (c * (p ** 2).sum(-1)).max() < 1.0
    np.testing.assert_allclose(geometry.hyperboloid_to_disk([[0.0, 0.0]], 1.0), [[0.0, 0.0]])
    # the stereographic map is an isometry from the hyperboloid: distance to 0 = acosh(z) = 2 artanh(|p|)
    q = np.array([[0.7, -1.3]])
    z = math.sqrt(1 + (q ** 2).sum())
    p = geometry.hyperboloid_to_disk(q, 1.0)
    assert 2 * math.atanh(np.linalg.norm(p)) == pytest.approx(math.acosh(z))


@pytest.mark.parametrize("c", [0.5, 0.0])
def test_poincare_disk_traces(c: float) -> None:
    x = _ball_points(60, 2, c if c > 0 else 1.0).numpy()
    labels = np.repeat(np.arange(6), 10)
    sup = labels // 3
    prox = x[:12].reshape(6, 2, 2)
    fig = vdisk.poincare_disk(x, labels, sup, prox, c=c, grid=True, circles=(1.0, 2.0), title="t",
                                super_names=["a", "b"])
    names = [t.name for t in fig.data]
    assert "a" in names and "b" in names  # one trace per super-class (its colour)
    assert "proxies (train classes)" in names and "geodesics" in names
    star = next(t for t in fig.data if t.name.startswith("proxies"))
    assert star.marker.symbol == "star" and len(star.x) == 12
    circles = [s for s in fig.layout.shapes if s.type == "circle"]
    if c > 0:
        R = 1 / math.sqrt(c)
        assert any(abs(s.x1 - R) < 1e-12 for s in circles)  # boundary of radius 1/sqrt(c)
        # distance circle D_H = 1 at Euclidean radius tanh(sqrt(c)/2)/sqrt(c)
        assert any(abs(s.x1 - math.tanh(math.sqrt(c) / 2) / math.sqrt(c)) < 1e-12 for s in circles)
        grid = next(t for t in fig.data if t.name == "geodesics")
        pts = np.array([(a, b) for a, b in zip(grid.x, grid.y) if a is not None])
        assert (np.hypot(pts[:, 0], pts[:, 1]) <= R * (1 + 1e-9)).all()
    else:
        assert len(circles) == 2  # no boundary at c = 0, only the two distance circles
    assert fig.layout.uirevision == "disk" and fig.layout.yaxis.scaleanchor == "x"
    png = vmpl.to_png(vdisk.poincare_disk_mpl(x, labels, sup, prox, c=c, circles=(1.0,)))
    assert png[:4] == b"\x89PNG"


def test_geodesic_arcs_are_orthogonal_to_the_boundary() -> None:
    c = 0.7
    R = 1 / math.sqrt(c)
    for pts in viz.geodesic_grid(c, n_diameters=3, dists=(1.5,)):
        if len(pts) > 2:  # an arc: its circle meets the boundary at right angles, |centre|^2 = R^2 + rho^2
            a, b, m = pts[0], pts[-1], pts[len(pts) // 2]
            # circumcentre of three points on the arc
            A = np.array([[b[0] - a[0], b[1] - a[1]], [m[0] - a[0], m[1] - a[1]]]) * 2
            rhs = np.array([b @ b - a @ a, m @ m - a @ a])
            centre = np.linalg.solve(A, rhs)
            rho = np.linalg.norm(a - centre)
            assert centre @ centre == pytest.approx(R * R + rho * rho, rel=1e-6)


def test_umap_disk_is_inside_the_disk() -> None:
    pytest.importorskip("umap")
    x = _ball_points(60, 8, 0.5, scale=1.0)
    out = geometry.umap_disk(x, 0.5, n_neighbors=5, seed=0)
    assert out.shape == (60, 2) and np.isfinite(out).all()
    assert (0.5 * (out ** 2).sum(-1)).max() < 1.0


# ------------------------------------------------------------------------------------------------
# curves and hard negatives
# ------------------------------------------------------------------------------------------------
def test_training_curves_traces() -> None:
    rows = [{"step": i, "loss": 3.0 / i, "l_h": 1.0 / i, "l_e": 2.0 / i, "l_hyphc": 0.0} for i in range(1, 1001)]
    for s in (0, 500, 1000):
        rows.append({"step": s, **{f"{sp}/{S}/{m}": 0.5 for sp in ("test", "train") for S in ("H", "E") for m in ("R@1", "MAP@R")}})
    fig = vtrain.training_curves(rows, max_points=100)
    names = [t.name for t in fig.data]
    assert {"total L (Eq. 10)", "L_H (Eq. 7, hyperbolic)", "L_E (Eq. 7, Euclidean)"} <= set(names)
    assert not any("HypHC" in n for n in names[1:])  # identically zero (tau = 0): not drawn
    assert not any(t.yaxis not in (None, "y", "y2", "y3") for t in fig.data)  # and no log axis for it
    metric = [t for t in fig.data if t.xaxis in ("x2", "x3")]
    assert len(metric) == 8  # {test, train} x {H, E} x {R@1, MAP@R}
    assert {t.line.dash for t in metric} == {"solid", "dash"}
    loss = next(t for t in fig.data if t.name == "total L (Eq. 10)")
    assert len(loss.x) <= 101 and loss.x[-1] == 1000  # thinned, last step kept
    vtrain.training_curves([])  # an empty run draws empty axes
    assert vmpl.to_png(vtrain.training_curves_mpl(rows))[:4] == b"\x89PNG"


@pytest.mark.parametrize("loss, total, parts", [
    ("chest", "η_H L_H + η_E L_E + τ L_HypHC (Eq. 10)", ["L_H", "L_E", "L_HypHC"]),
    ("chest_hier", "L_CHEST + η_HIER L_HIER", ["L_H", "L_E", "L_HypHC", "L_HIER"]),
    ("pair_ce_hier", "L_pair-CE + η_HIER L_HIER", ["L_pair-CE", "L_HIER"]),
])
def test_loss_panel_gives_the_regularisers_their_own_log_axis(loss: str, total: str, parts: list) -> None:
    """L_HypHC at the paper's r is ~1e-4 of the loss: on the loss's 0-60 axis a flat line at 0. Its own
    log axis (right of the loss panel) shows it move; the legend names every term of the run's loss."""
    rng = np.random.default_rng(0)
    rows = [{"step": i, "loss": 60.0 / i, "l_h": 30.0 / i, "l_e": 30.0 / i, "pair_ce": 50.0 / i,
             "l_hyphc": 4e-4 * (1 + 0.5 * np.sin(i / 5)) + 1e-6 * rng.random(), "l_hier": 0.3 / i ** 0.5}
            for i in range(1, 201)]
    fig = vtrain.training_curves(rows, loss=loss)
    loss_traces = [t for t in fig.data if t.xaxis in (None, "x")]
    assert loss_traces[0].name.endswith(total)
    assert [t.name.split(" (")[0] for t in loss_traces[1:]] == parts  # only this loss's parts, each named
    small = [t for t in loss_traces if t.name.split(" (")[0] in ("L_HypHC", "L_HIER")]
    big = [t for t in loss_traces if t not in small]
    axis = {t.yaxis for t in small}
    assert len(axis) == 1 and axis != {t.yaxis for t in big}  # one axis of their own
    lay = fig.layout["yaxis" + next(iter(axis))[1:]]
    assert lay.type == "log" and lay.overlaying == (big[0].yaxis or "y") and lay.side == "right"
    assert all(t.name.endswith("right axis, log)") and t.line.dash == "dot" for t in small)
    for t in small:  # each moves, on its own scale
        assert min(t.y) > 0 and max(t.y) / min(t.y) > 2
    assert vmpl.to_png(vtrain.training_curves_mpl(rows, loss=loss))[:4] == b"\x89PNG"


def test_hard_negative_weights_figure_matches_losses_and_sharpens() -> None:
    fig = hardneg.weights_figure([0.1, 1.0], t=0.1, n=40, seed=3)
    assert len([t for t in fig.data if t.type == "scatter"]) == 3  # sphere + two curvatures
    for tr in fig.data:
        assert sum(tr.y) == pytest.approx(1.0, abs=1e-9)  # softmax weights
        assert tr.y[0] == pytest.approx(max(tr.y))  # the nearest negative weighs most
    assert "sphere" in fig.data[0].name and "c = 1" in fig.data[2].name
    # weights and sort order equal chestlab.losses.hard_negative_weights on the same points
    v = torch.randn(20, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d, w = gradients.anchor_negative_weights(v, 0.2, 0.5, anchor=3)
    x = poincare.expmap0(v, 0.5)
    others = torch.cat([x[:3], x[4:]])
    ref = torch.sort(torch.as_tensor(__import__("chestlab.losses", fromlist=["x"]).hard_negative_weights(x[3], others, 0.2, c=0.5)), descending=True).values
    np.testing.assert_allclose(np.sort(w)[::-1], ref.numpy(), rtol=1e-9)
    assert (np.diff(d) >= 0).all()
    # with labels, same-class points are not negatives
    labels = torch.arange(20) % 5
    d2, _ = gradients.anchor_negative_weights(v, 0.2, None, anchor=0, labels=labels)
    assert len(d2) == 16


def test_fig3_colours_follow_the_paper_everywhere():
    """The paper's Fig. 3 draws the positive class red and the negative classes blue: the dashboard's
    and lessons' histograms (plotly and matplotlib) and the reproduction's figure agree."""
    import matplotlib.colors as mcolors

    from chestlab.engine import SimilarityEvent

    red, blue = mcolors.to_rgb("#d62728"), mcolors.to_rgb("#1f77b4")
    ev = SimilarityEvent(1, np.ones(4), np.zeros(12), np.ones(4), np.zeros(12))
    fig = vsim.similarity_histogram(ev)
    by_name = {}
    for tr in fig.data:
        by_name.setdefault(tr.name.split()[0].lower(), mcolors.to_rgb(tr.marker.color))
    assert by_name.get("positive") == red and by_name.get("negative") == blue, by_name
    assert mcolors.to_rgb(vpaper.PAPER_POS) == red and mcolors.to_rgb(vpaper.PAPER_NEG) == blue


# ------------------------------------------------------------------------------------------------
# the class hierarchy in the disk: super-class nodes, the root, the level strip
# ------------------------------------------------------------------------------------------------
def _gyro_mid(x: torch.Tensor, c: float) -> torch.Tensor:
    """The oracle: geoopt's weighted midpoint (k = -c, equal weights), float64."""
    import geoopt.manifolds.stereographic.math as gm

    return gm.weighted_midpoint(x, k=torch.tensor(-c, dtype=torch.float64), reducedim=[0])


def _d0(x: Any, c: float) -> np.ndarray:
    """d_H(0, x) in closed form: (2 / sqrt c) artanh(sqrt c |x|)."""
    n = np.linalg.norm(np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1]), axis=1)
    return 2 / math.sqrt(c) * np.arctanh(math.sqrt(c) * n)


def _toy_tree(c: float, dim: int = 2):
    from chestlab.viz import hierarchy as vh

    x = _ball_points(60, dim, c, seed=1, scale=1.0)
    labels = np.arange(60) % 6
    cs = np.array([0, 0, 1, 1, 2, 2])
    prox = _ball_points(12, dim, c, seed=2, scale=1.5).reshape(6, 2, dim)  # K = 2 proxies per class
    return x, labels, cs, prox, vh.disk_tree_geometry(x, labels, cs, c, proxies_h=prox)


def test_super_class_nodes_and_root_are_gyro_midpoints() -> None:
    """D_H = 2 (the projection is exact): each super-class node is the gyro-midpoint of its classes'
    proxies, the root that of the nodes (geoopt's midpoint); the lines are geodesics node -> proxy and
    root -> node; the level depths are the mean d_H(0, .) per level."""
    c = 0.7
    x, labels, cs, prox, t = _toy_tree(c)
    want = torch.stack([_gyro_mid(prox[torch.as_tensor(cs == s)].reshape(-1, 2), c) for s in range(3)])
    np.testing.assert_allclose(t["nodes"], want.numpy(), atol=1e-9)
    root = _gyro_mid(want, c)
    np.testing.assert_allclose(t["root"], root.numpy(), atol=1e-9)
    assert t["groups"].tolist() == [0, 1, 2] and t["children_are"] == "proxies"
    assert t["depth"] == pytest.approx({"root": _d0(root, c)[0], "super-classes": _d0(want, c).mean(),
                                        "classes": _d0(prox, c).mean(), "samples": _d0(x, c).mean()}, rel=1e-9)
    assert len(t["root_lines"]) == 3 and len(t["child_lines"]) == 12
    for g, line in t["child_lines"]:  # from its node to a proxy of its super-class, along the geodesic
        np.testing.assert_allclose(line[0], t["nodes"][g], atol=1e-9)
        k = int(np.argmin(np.linalg.norm(t["children"] - line[-1], axis=1)))
        assert np.linalg.norm(t["children"][k] - line[-1]) < 1e-9 and cs[t["child_class"][k]] == g
        a, b, m = (torch.as_tensor(p) for p in (line[0], line[-1], line[len(line) // 2]))
        assert float(poincare.dist(a, m, c) + poincare.dist(m, b, c)) == pytest.approx(float(poincare.dist(a, b, c)), abs=1e-9)
    for line, node in zip(t["root_lines"], t["nodes"]):
        np.testing.assert_allclose(line[0], t["root"], atol=1e-9)
        np.testing.assert_allclose(line[-1], node, atol=1e-9)


def test_without_proxies_the_nodes_hang_over_the_class_means() -> None:
    from chestlab.viz import hierarchy as vh

    c = 1.3
    x, labels, cs, _, _ = _toy_tree(c)
    t = vh.disk_tree_geometry(x, labels, cs, c)
    means = torch.stack([_gyro_mid(x[torch.as_tensor(labels == j)].double(), c) for j in range(6)])  # class gyro-midpoints
    assert t["children_are"] == "class means"
    np.testing.assert_allclose(t["children"], means.numpy(), atol=1e-9)
    want = torch.stack([_gyro_mid(means[torch.as_tensor(cs == s)], c) for s in range(3)])
    np.testing.assert_allclose(t["nodes"], want.numpy(), atol=1e-9)
    # D_H = 5: nodes and root projected with the samples' projection (tangent PCA fitted on them)
    x5, labels5, cs5, prox5, t5 = _toy_tree(c, dim=5)
    nodes5 = torch.stack([_gyro_mid(prox5[torch.as_tensor(cs5 == s)].reshape(-1, 5), c) for s in range(3)])
    np.testing.assert_allclose(t5["nodes"], geometry.project_to_disk(nodes5, c, fit_on=x5), atol=1e-9)
    assert t5["depth"]["super-classes"] == pytest.approx(_d0(nodes5, c).mean(), rel=1e-9)  # in the ball, not the picture


def test_poincare_disk_draws_the_tree_coloured_by_super_class() -> None:
    from chestlab.viz.style import COLORS, class_colors, super_color

    c = 0.7
    x, labels, cs, prox, t = _toy_tree(c)
    names = ["branch A", "branch B", "branch C"]
    fig = vdisk.poincare_disk(x.numpy(), labels, cs[labels], prox.numpy(), c=c, class_super=cs, tree=t,
                                super_names=names, class_names=[f"c{k}" for k in range(6)], circles=(1.0,))
    by_name = {}
    for tr in fig.data:
        by_name.setdefault(tr.name, []).append(tr)
    node = by_name["super-class nodes"][0]
    np.testing.assert_allclose(np.column_stack([node.x, node.y]), t["nodes"])
    assert list(node.marker.color) == [super_color(s) for s in range(3)] and list(node.customdata) == ["A", "B", "C"]
    root = by_name["root"][0]
    assert (root.x[0], root.y[0]) == pytest.approx(tuple(t["root"]))
    # the legend: one entry per branch in its colour, the nodes and root, the proxies
    entries = [tr for tr in fig.data if list(tr.x) == [None]]
    assert [tr.name for tr in entries] == names + ["proxies (train classes)", "super-class nodes", "root"]
    assert [tr.marker.color for tr in entries[:3]] == [super_color(s) for s in range(3)]
    # colour = super-class, shade = class: points and proxies of class k share class_colors(cs)[k]
    palette = class_colors(cs)
    points = [tr for tr in fig.data if tr.type == "scattergl" and tr.legendgroup.startswith("super")]
    assert sorted(tr.name for tr in points) == names and {tr.marker.symbol for tr in points} == {"circle"}
    # Plotly draws WebGL traces on a canvas above all SVG ones: the nodes and root are WebGL too, after
    # the points, or the samples near the origin would hide them
    gl = [tr.name for tr in fig.data if tr.type == "scattergl"]
    assert {"super-class nodes", "root"} <= set(gl[len(points):]) and set(gl[:len(points)]) == set(names)
    for tr in points:
        for col, txt in zip(tr.marker.color, tr.text):
            assert col == palette[int(txt[1:])]
    star = next(tr for tr in fig.data if tr.name == "proxies (train classes)" and len(tr.x) == 12)
    assert list(star.marker.color) == [palette[k] for k in np.repeat(np.arange(6), 2)]
    lines = [tr for tr in fig.data if tr.mode == "lines" and tr.legendgroup == "tree"]
    assert {tr.line.color for tr in lines} == {super_color(s) for s in range(3)} | {COLORS["root"]}
    # red and blue mean positive and negative elsewhere: not a super-class here
    used = {*node.marker.color, *palette, *(tr.line.color for tr in lines)}
    assert not used & {COLORS["pos"], COLORS["neg"]}
    # the other colouring (one colour per class, the marker tells super-classes apart) is still there
    by_class = vdisk.poincare_disk(x.numpy(), labels, cs[labels], c=c, color_by="class")
    pts = [tr for tr in by_class.data if tr.type == "scattergl"]
    assert len({tr.marker.symbol for tr in pts}) == 3
    with pytest.raises(ValueError, match="color_by"):
        vdisk.poincare_disk(x.numpy(), labels, cs[labels], c=c, color_by="shade")
    # the static version draws the same tree
    assert vmpl.to_png(vdisk.poincare_disk_mpl(x.numpy(), labels, cs[labels], prox.numpy(), c=c, class_super=cs,
                                                    tree=t))[:4] == b"\x89PNG"


def test_level_strip_plots_the_mean_distance_per_level() -> None:
    hist = [(s, {"root": 0.1 * s, "super-classes": 0.2 * s, "classes": 1.0 + s, "samples": 2.0 + s}) for s in range(5)]
    fig = vtrain.level_strip(hist, classes_are="class means")
    got = {tr.name: list(tr.y) for tr in fig.data}
    assert got == {"root": [0.1 * s for s in range(5)], "super-classes": [0.2 * s for s in range(5)],
                   "classes (class means)": [1.0 + s for s in range(5)], "samples": [2.0 + s for s in range(5)]}
    assert all(list(tr.x) == list(range(5)) for tr in fig.data)
    assert fig.layout.xaxis.title.text == "step" and "d<sub>H</sub>" in fig.layout.yaxis.title.text
    assert len(vtrain.level_strip([]).data) == 0  # no step drawn yet: empty axes


def test_plotly_and_matplotlib_draw_one_description() -> None:
    """Each twin pair draws the same description: the margin histograms' bars (plotly) and patches
    (matplotlib) hold the counts numpy gives on the shared bins, the same margin line, and the same
    fraction in the titles; the hard-negative weights of the dashboard and of the paper's figure are
    the same curves; the training curves' two backends draw the same series."""
    from matplotlib.patches import Rectangle

    ev = _sim()
    panels = vsim.margin_panels(ev, 0.5, None, lambda_h=20.0, lambda_e=5.0, bins=30)
    pfig = vsim.margin_histogram(ev, 0.5, None, lambda_h=20.0, lambda_e=5.0, bins=30)
    mfig = vsim.margin_histogram_mpl(ev, 0.5, None, lambda_h=20.0, lambda_e=5.0, bins=30)
    for k, (space, lam) in enumerate((("h", 20.0), ("e", 5.0))):
        soft = metrics.per_sample_margins(ev, space, lam)["soft"]
        want, _ = np.histogram(soft, bins=panels[k]["edges"])  # the oracle: numpy on the shared edges
        bars = [t for t in pfig.data if t.type == "bar"][k]
        np.testing.assert_array_equal(bars.y, want)
        ax = mfig.axes[k]
        heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0][:30]
        np.testing.assert_array_equal(heights, want)
        frac = f"{np.mean(soft >= 0.5):.0%}" if space == "h" else None
        if frac:
            assert frac in pfig.layout.annotations[k].text and frac in ax.get_title()
    dash = hardneg.weights_figure([0.1, 1.0], 0.2, t_sphere=0.1, n=30, seed=1)
    v = torch.randn(30, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    paper = vpaper.hardneg_weights(v, t_sphere=0.1, t=0.2, c_values=[0.1, 1.0])
    lines = [ln for ln in paper.axes[0].lines if len(ln.get_ydata()) > 2]
    assert len(dash.data) == len(lines) == 3
    for tr, ln in zip(dash.data, lines):
        np.testing.assert_allclose(tr.y, ln.get_ydata(), rtol=1e-15)
    rows = [{"step": s, "loss": 2.0 / s, "l_h": 1.0 / s, "l_hyphc": 1e-4 / s, "test/H/R@1": 0.1 * s} for s in range(1, 6)]
    p_names = {t.name for t in vtrain.training_curves(rows, loss="chest").data}
    m_names = {ln.get_label() for ax in vtrain.training_curves_mpl(rows, loss="chest").axes for ln in ax.lines}
    assert p_names == m_names and "H unseen (test) classes" in p_names
