"""chestlab.viz: the geometry layer computes the right curves (checked with chestlab.poincare's
distances in float64), and the plotly and matplotlib backends draw the same ones."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from chestlab import lessons, poincare, viz
from chestlab.viz import disk as vdisk

F64 = torch.float64
CURVATURES = [0.3, 1.0, 2.5]


def _t(a) -> torch.Tensor:
    return torch.tensor(np.array(a), dtype=F64)


def _dist(a, b, c: float) -> np.ndarray:
    return poincare.dist(_t(a), _t(b), c).numpy()


def _plotly_polylines(trace) -> list[np.ndarray]:
    """Split a ``None``-separated plotly line trace back into (n, 2) polylines."""
    out, cur = [], []
    for x, y in zip(trace.x, trace.y):
        if x is None:
            out.append(np.array(cur))
            cur = []
        else:
            cur.append((x, y))
    return out + ([np.array(cur)] if cur else [])


def _ax() -> object:
    return Figure().subplots()


# ------------------------------------------------------------------------------------------------
# radii
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CURVATURES)
def test_boundary_radius_is_one_over_sqrt_c(c: float) -> None:
    assert viz.disk_radius(c) == pytest.approx(1 / math.sqrt(c), rel=1e-15)
    b = viz.boundary_circle(c, n=100)
    assert b.shape == (100, 2)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1 / math.sqrt(c), rtol=1e-14)
    np.testing.assert_allclose(b[0], b[-1], atol=1e-14)  # closed


def test_euclidean_plane_has_no_boundary() -> None:
    assert viz.disk_radius(0.0) == math.inf
    with pytest.raises(ValueError, match="no boundary"):
        viz.boundary_circle(0.0)


@pytest.mark.parametrize("c", CURVATURES + [0.0])
@pytest.mark.parametrize("d", [0.1, 1.0, 3.0, 8.0])
def test_euclid_radius_is_at_the_stated_distance(c: float, d: float) -> None:
    r = viz.euclid_radius(d, c)
    assert float(poincare.dist0(_t([r, 0.0]), c)) == pytest.approx(d, rel=1e-9)


def test_view_limit() -> None:
    assert viz.view_limit(0.25) == pytest.approx(1.03 * 2)
    assert viz.view_limit(0.0, np.array([[0.5, -2.0]])) == pytest.approx(1.05 * 2)
    assert viz.view_limit(0.0, margin=0.04, extent=3.0) == pytest.approx(3.12)


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CURVATURES)
@pytest.mark.parametrize("center", [(0.0, 0.0), (0.3, -0.2), (0.0, 0.9)])
def test_hyperbolic_circle_is_at_distance_d_from_its_centre(c: float, center: tuple) -> None:
    z = np.array(center) / math.sqrt(c)  # the same relative position in every disk
    for d in (0.5, 2.0, 5.0):
        circ = viz.hyperbolic_circle(z, d, c, n=90)
        assert circ.shape == (90, 2)
        np.testing.assert_allclose(_dist(np.broadcast_to(z, circ.shape), circ, c), d, rtol=1e-9)
    # centred at the origin it is the Euclidean circle of radius euclid_radius(d, c)
    np.testing.assert_allclose(np.linalg.norm(viz.hyperbolic_circle((0, 0), 2.0, c), axis=1), viz.euclid_radius(2.0, c),
                               rtol=1e-12)


@pytest.mark.parametrize("c", CURVATURES)
def test_geodesic_segment_is_additive_and_has_constant_speed(c: float) -> None:
    x, y = np.array([0.4, 0.3]) / math.sqrt(c), np.array([-0.5, 0.7]) / math.sqrt(c)
    g = viz.geodesic_arc(x, y, c, n=41)
    assert g.shape == (41, 2)
    np.testing.assert_allclose(g[0], x, atol=1e-12)
    np.testing.assert_allclose(g[-1], y, atol=1e-12)
    dxy = float(_dist(x, y, c))
    dxm, dmy = _dist(np.broadcast_to(x, g.shape), g, c), _dist(g, np.broadcast_to(y, g.shape), c)
    np.testing.assert_allclose(dxm + dmy, dxy, rtol=1e-9)  # d(x, m) + d(m, y) = d(x, y): m is on the geodesic
    np.testing.assert_allclose(dxm, np.linspace(0, 1, 41) * dxy, rtol=1e-9, atol=1e-12)  # constant speed
    # not the chord: the midpoint leaves the straight segment
    assert np.linalg.norm(g[20] - (x + y) / 2) > 1e-3 / math.sqrt(c)


@pytest.mark.parametrize("c", CURVATURES)
def test_full_geodesic_reaches_the_boundary_and_stays_on_the_line(c: float) -> None:
    x, y = np.array([0.2, 0.1]) / math.sqrt(c), np.array([-0.1, 0.4]) / math.sqrt(c)
    g = viz.geodesic_arc(x, y, c, n=401, full=True)
    assert (c * (g ** 2).sum(1) < 1).all()
    assert c * (g[0] ** 2).sum() > 1 - 1e-9 and c * (g[-1] ** 2).sum() > 1 - 1e-9
    mid = g[150:250]  # well inside the disk: every point lies on the geodesic through x and y
    np.testing.assert_allclose(poincare.lca_depth(_t(mid[:50]), _t(mid[50:]), c).numpy(),
                               float(poincare.lca_depth(_t(x), _t(y), c)), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("c", CURVATURES)
def test_geodesic_grid_lines_are_geodesics_at_the_stated_distance(c: float) -> None:
    R = 1 / math.sqrt(c)
    dists = (0.5, 1.5, 3.0)
    lines = viz.geodesic_grid(c, n_diameters=4, dists=dists, n=65)  # odd: vertex 32 is the arc's middle
    assert len(lines) == 4 * (1 + 2 * len(dists))
    for k in range(4):
        block = lines[k * 7:(k + 1) * 7]
        diameter, arcs = block[0], block[1:]
        u = np.array([math.cos(math.pi * k / 4), math.sin(math.pi * k / 4)])
        np.testing.assert_allclose(diameter, [-R * u, R * u], atol=1e-12)
        for i, arc in enumerate(arcs):
            d = dists[i // 2]
            assert arc.shape == (65, 2)
            np.testing.assert_allclose(np.linalg.norm(arc[[0, -1]], axis=1), R, rtol=1e-12)  # ends on the boundary
            inner = arc[8:-8]
            # its closest point to 0 is at distance d, and it lies on the diameter (crosses it there)
            np.testing.assert_allclose(float(poincare.dist0(_t(arc[32]), c)), d, rtol=1e-9)
            assert abs(arc[32] @ np.array([-u[1], u[0]])) < 1e-12
            assert (poincare.dist0(_t(inner), c).numpy() >= d - 1e-9).all()
            # a geodesic: the geodesic through any two of its points passes at distance d from 0
            half = len(inner) // 2
            np.testing.assert_allclose(poincare.lca_depth(_t(inner[:half]), _t(inner[-half:]), c).numpy(), d, rtol=1e-7)
            a, m, b = _t(inner[0]), _t(inner[len(inner) // 3]), _t(inner[-1])
            assert float(poincare.dist(a, m, c) + poincare.dist(m, b, c)) == pytest.approx(float(poincare.dist(a, b, c)),
                                                                                            rel=1e-9)


def test_geodesic_grid_in_the_euclidean_plane_is_straight() -> None:
    lines = viz.geodesic_grid(0.0, n_diameters=3, dists=(2.0,))
    for k in range(3):
        u = np.array([math.cos(math.pi * k / 3), math.sin(math.pi * k / 3)])
        for line in lines[k * 3 + 1:k * 3 + 3]:
            assert line.shape == (2, 2)
            assert abs((line[1] - line[0]) @ u) < 1e-12  # perpendicular to the diameter
            assert abs(line[0] @ u) == pytest.approx(1.0)  # at Euclidean radius d/2 (D = 2|x| at c = 0)


def test_proxy_points_layouts() -> None:
    p = np.arange(12.0).reshape(3, 2, 2)
    pts, lab = viz.proxy_points(p)
    assert pts.shape == (6, 2) and lab.tolist() == [0, 0, 1, 1, 2, 2]
    assert viz.proxy_points(pts)[1].tolist() == list(range(6))
    assert viz.proxy_points(pts, [5, 5, 4, 4, 3, 3])[1].tolist() == [5, 5, 4, 4, 3, 3]


# ------------------------------------------------------------------------------------------------
# the backends draw the same thing
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.5, 1.0, 0.0])
def test_both_backends_draw_the_same_disk(c: float) -> None:
    circles = (1.0, 2.5)
    fig = viz.plotly.add_disk(go.Figure(), c, grid=True, circles=circles, n_diameters=5, grid_dists=(1.0, 2.0))
    ax = _ax()
    viz.mpl.draw_disk(ax, c, grid=True, circles=circles, n_diameters=5, grid_dists=(1.0, 2.0))
    # the geodesic grid: same polylines, vertex for vertex
    p_lines = _plotly_polylines(next(t for t in fig.data if t.name == "geodesics"))
    (coll,) = [a for a in ax.collections if isinstance(a, LineCollection)]
    m_lines = coll.get_segments()
    assert len(p_lines) == len(m_lines) == 5 * 5
    for a, b in zip(p_lines, m_lines):
        np.testing.assert_allclose(a, b, atol=1e-12)
    for a, b in zip(m_lines, viz.geodesic_grid(c, 5, (1.0, 2.0))):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # circles about 0: the boundary (none at c = 0) and the distance circles, same radii
    want = ([viz.disk_radius(c)] if c > 0 else []) + [viz.euclid_radius(d, c) for d in circles]
    p_radii = [s.x1 for s in fig.layout.shapes if s.type == "circle"]
    m_radii = [p.radius for p in ax.patches if isinstance(p, Circle)]
    np.testing.assert_allclose(p_radii, want, rtol=1e-14)
    np.testing.assert_allclose(m_radii, want, rtol=1e-14)
    assert all(s.x0 == -s.x1 and s.y0 == -s.y1 == -s.x1 for s in fig.layout.shapes)  # centred at 0


@pytest.mark.parametrize("c, n_diameters", [(1.0, 6), (0.5, 5), (2.0, 8)])
def test_distance_circle_labels_read_d_H_and_sit_between_the_diameters(c: float, n_diameters: int) -> None:
    """The distance circles are labelled with the distance's symbol d_H (docs/maths.md: D_H is the
    dimension), on a white box, each on its own circle, half-way between two diameters of the grid,
    and the labels of neighbouring circles at different angles (they crowd near the boundary)."""
    circles = (1.0, 2.0, 3.0, 4.0)
    fig = viz.plotly.add_disk(go.Figure(), c, grid=True, circles=circles, n_diameters=n_diameters)
    ax = _ax()
    viz.mpl.draw_disk(ax, c, grid=True, circles=circles, n_diameters=n_diameters)
    p_pts = [(a.x, a.y) for a in fig.layout.annotations]
    m_pts = [t.xy for t in ax.texts]
    assert [a.text for a in fig.layout.annotations] == [f"<i>d</i><sub>H</sub> = {d:g}" for d in circles]
    assert [t.get_text() for t in ax.texts] == [f"$d_H$ = {d:g}" for d in circles]
    assert not any("D_H" in a.text for a in fig.layout.annotations) and not any("D_H" in t.get_text() for t in ax.texts)
    np.testing.assert_allclose(p_pts, viz.circle_label_points(c, circles, n_diameters), atol=1e-14)
    np.testing.assert_allclose(m_pts, p_pts, atol=1e-14)
    angles = []
    for d, (x, y) in zip(circles, p_pts):
        assert math.hypot(x, y) == pytest.approx(viz.euclid_radius(d, c), rel=1e-12)  # on its circle
        th = math.atan2(y, x) % math.pi  # diameters at pi k / n: the label half-way between two
        off = (th * n_diameters / math.pi) % 1.0
        assert off == pytest.approx(0.5, abs=1e-9), (d, math.degrees(th))
        angles.append(round(math.degrees(math.atan2(y, x)), 6))
    assert all(a != b for a, b in zip(angles, angles[1:]))  # neighbours apart
    assert all(a.bgcolor and a.bgcolor.startswith("rgba(255,255,255") for a in fig.layout.annotations)
    assert all(t.get_bbox_patch() is not None and t.get_bbox_patch().get_facecolor()[:3] == (1.0, 1.0, 1.0)
               for t in ax.texts)


def test_circle_labels_avoid_the_figures_points() -> None:
    """With ``avoid``, a label leaves a crowded spot for another angle half-way between diameters, and
    two labels never share a spot; vdisk.poincare_disk passes its points and proxies."""
    c, circles = 1.0, (1.0, 2.0)
    default = viz.circle_label_points(c, circles)
    crowd = np.repeat(np.array(default), 50, axis=0) + np.random.default_rng(0).normal(0, 0.01, (100, 2))
    moved = viz.circle_label_points(c, circles, avoid=crowd)
    for (x0, y0), (x1, y1), d in zip(default, moved, circles):
        assert math.hypot(x1 - x0, y1 - y0) > 0.2  # away from the crowd ...
        assert math.hypot(x1, y1) == pytest.approx(viz.euclid_radius(d, c), rel=1e-12)  # ... still on its circle
    assert viz.circle_label_points(c, circles, avoid=np.zeros((0, 2))) == default  # nothing to avoid: as before
    # compact (the plotly figures: a disk as small as ~185 px): with nothing to avoid the first label keeps
    # its spot; the second one too unless it would touch the first (here it would: the labels' boxes are
    # 0.54 R × 0.27 R), then it moves on
    empty = viz.circle_label_points(c, circles, avoid=np.zeros((0, 2)), compact=True)
    assert empty[0] == default[0]
    (ax0, ay0), (bx, by) = empty
    assert abs(bx - ax0) >= 0.54 or abs(by - ay0) >= 0.27
    assert math.hypot(bx, by) == pytest.approx(viz.euclid_radius(2.0, c), rel=1e-12)
    fig = vdisk.poincare_disk(crowd, np.zeros(100, dtype=int), c=c, circles=circles)
    np.testing.assert_allclose([(a.x, a.y) for a in fig.layout.annotations],
                               viz.circle_label_points(c, circles, avoid=crowd, compact=True), atol=1e-12)
    (x, y), = viz.circle_label_points(c, (2.0,), label_angle=200.0)
    assert math.degrees(math.atan2(y, x)) % 360 == pytest.approx(200.0)


def test_both_backends_scatter_the_same_points_colours_and_proxies() -> None:
    rng = np.random.default_rng(0)
    x = 0.5 * rng.normal(size=(40, 2)).clip(-1.5, 1.5) / 2
    labels = np.arange(40) % 5
    sup = (labels >= 3).astype(int)
    prox = rng.uniform(-0.5, 0.5, (5, 2, 2))
    fig = viz.plotly.add_proxies(viz.plotly.add_embeddings(go.Figure(), x, labels, sup), prox)
    ax = _ax()
    viz.mpl.scatter_embeddings(ax, x, labels, sup)
    viz.mpl.scatter_proxies(ax, prox)
    cols = [a for a in ax.collections if isinstance(a, PathCollection)]
    drawn = [t for t in fig.data if list(t.x) != [None]]  # not the legend-only entries
    assert len(drawn) == len(cols) == 3  # two super-classes, then the proxies
    for trace, col in zip(drawn, cols):
        np.testing.assert_allclose(np.column_stack([trace.x, trace.y]), col.get_offsets(), atol=1e-15)
        want = [tuple(int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)) for h in trace.marker.color]
        np.testing.assert_allclose(col.get_facecolors()[:, :3], want, atol=1e-9)
    assert drawn[-1].marker.symbol == "star" and len(drawn[-1].x) == 10


def test_disk_views_have_equal_aspect_and_labelled_axes() -> None:
    fig = viz.plotly.style_disk(go.Figure(), 1.5, title="t")
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert list(fig.layout.xaxis.range) == [-1.5, 1.5] and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert fig.layout.font.size >= 12
    ax = _ax()
    viz.mpl.style_disk(ax, 1.5, title="t")
    assert ax.get_aspect() == 1.0 and ax.get_xlim() == (-1.5, 1.5) and ax.get_ylim() == (-1.5, 1.5)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.xaxis.label.get_size() >= 10


def test_the_disk_helpers_follow_the_lecture_style() -> None:
    """style_disk / draw_disk take their sizes from rcParams: under the lecture style the axis labels,
    ticks, title and d_H labels are projector-sized (>= 13 pt), with no call to viz.style.lecture_axes."""
    from chestlab.viz.style import LECTURE_RC, fit_figsize, lecture_style

    def sizes() -> list[float]:
        ax = _ax()
        viz.mpl.draw_disk(ax, 1.0, circles=(1.0,))
        viz.mpl.style_disk(ax, 1.2, title="t")
        ticks = [t.get_size() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        return [ax.xaxis.label.get_size(), ax.yaxis.label.get_size(), ax.title.get_size(), *ticks,
                *(t.get_fontsize() for t in ax.texts)]

    plain = sizes()
    with lecture_style():
        lecture = sizes()
        assert fit_figsize((4.0, 2.0)) == (LECTURE_RC["figure.figsize"][0], 5.0)  # grown, aspect kept
        assert fit_figsize((4.0, 4.0), keep_aspect=False) == LECTURE_RC["figure.figsize"]
        assert fit_figsize((12.0, 3.0)) == (12.0, 3.0)  # never shrunk
    assert min(lecture) >= 13 and min(lecture) > max(plain) - 1, (plain, lecture)
    assert lecture[0] == LECTURE_RC["axes.labelsize"] and lecture[2] == LECTURE_RC["axes.titlesize"]


def test_figure_builders_and_lessons_draw_through_viz() -> None:
    c = 0.8
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.6, 0.6, (30, 2))
    labels = np.arange(30) % 3
    pfig = vdisk.poincare_disk(x, labels, c=c, grid=True, circles=(1.0,))
    mfig = vdisk.poincare_disk_mpl(x, labels, c=c, circles=(1.0,))
    p_radii = sorted(s.x1 for s in pfig.layout.shapes if s.type == "circle")
    m_radii = sorted(p.radius for p in mfig.axes[0].patches if isinstance(p, Circle))
    np.testing.assert_allclose(p_radii, m_radii, rtol=1e-14)
    np.testing.assert_allclose(m_radii, [viz.euclid_radius(1.0, c), 1 / math.sqrt(c)], rtol=1e-14)
    pts = next(t for t in pfig.data if t.type == "scattergl")
    np.testing.assert_allclose(np.column_stack([pts.x, pts.y]), mfig.axes[0].collections[0].get_offsets())
    # the notebooks' draw_disk: the same grid polylines as the dashboard's
    ax = _ax()
    viz.mpl.disk_view(ax, c, circles=(1.0, 2.0))
    (coll,) = [a for a in ax.collections if isinstance(a, LineCollection)]
    grid = _plotly_polylines(next(t for t in pfig.data if t.name == "geodesics"))
    for a, b in zip(coll.get_segments(), grid, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    assert ax.get_aspect() == 1.0 and ax.get_xlim()[1] == pytest.approx(1.04 / math.sqrt(c))
    # lessons' helpers return the geometry layer's curves as float64 tensors
    a, b = _t([0.4, 0.3]), _t([-0.5, 0.2])
    g = lessons.geodesic_arc(a, b, c, n=9)
    assert g.dtype == F64 and torch.equal(g, torch.from_numpy(viz.geodesic_arc(a, b, c, n=9)))
    assert torch.equal(lessons.hyperbolic_circle(a, 1.5, c), torch.from_numpy(viz.hyperbolic_circle(a, 1.5, c)))
    # one figure layer: the old homes of the builders are gone (no re-export shims)
    for old in ("figures.py", "paper_figures.py", "reproduce/figures.py"):
        assert not (ROOT / old).exists(), old


# ------------------------------------------------------------------------------------------------
# no private names across modules
# ------------------------------------------------------------------------------------------------
def test_poincare_alpha_is_public() -> None:
    x = poincare.expmap0(torch.randn(5, 3, dtype=F64), 0.7)
    np.testing.assert_allclose(poincare.alpha(x, 0.7).numpy(), (1 - 0.7 * x.pow(2).sum(-1)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(poincare.alpha(x, 0.7).numpy(), (2 / poincare.conformal_factor(x, 0.7)[..., 0]).numpy(),
                               rtol=1e-15)


ROOT = Path(__file__).resolve().parents[1] / "chestlab"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")) + ["../app.py"])
def test_no_private_names_imported_across_modules(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    modules = set()  # names that imports bind to modules
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            modules |= {a.asname or a.name for a in node.names}  # may be a module (from . import poincare)
            bad += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{node.value.id}.{node.attr}")
    assert not bad, f"chestlab/{path} uses private names of other modules: {bad}"


def test_gradients_uses_poincare_public_alpha() -> None:
    src = (ROOT / "gradients.py").read_text()
    assert "poincare._" not in src and "poincare.alpha(" in src


# ------------------------------------------------------------------------------------------------
# one colour set for super-classes; red and blue kept for positive and negative
# ------------------------------------------------------------------------------------------------
def _lab(hex_color: str) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour ``#rrggbb``: distances in it are roughly perceptual."""
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 216 / 24389, np.cbrt(t), (24389 / 27 * t + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a: str, b: str) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def test_super_class_colours_avoid_the_positive_red_and_negative_blue() -> None:
    """Fig. 3's colours (positive red, negatives blue) mean only that: no super-class colour is near
    them (CIE76 Delta E >= 35), the first four (the demos' branches A-D) are far apart, and every
    class shade of a super-class is nearer its own super-class's colour than any other's."""
    from chestlab.viz.style import COLORS, SUPER_PALETTE, class_colors, super_color

    for col in SUPER_PALETTE:
        assert min(_delta_e(col, COLORS["pos"]), _delta_e(col, COLORS["neg"])) >= 35, col
    four = [super_color(s) for s in range(4)]
    assert min(_delta_e(a, b) for i, a in enumerate(four) for b in four[i + 1:]) >= 50
    cs = np.repeat(np.arange(4), 32)  # 128 classes, 32 per branch (the wide tree's train split)
    for k, col in enumerate(class_colors(cs)):
        assert col not in (COLORS["pos"], COLORS["neg"])
        assert int(np.argmin([_delta_e(col, f) for f in four])) == cs[k], (k, col)
    assert class_colors([2]) == [super_color(2)]  # one class: the super-class's colour itself
    assert len(set(class_colors(cs))) == 128  # 32 distinct shades per branch


def test_tree_super_classes_are_named_branch_a_to_d() -> None:
    from chestlab.data.tree import TreeDataset, node_name
    from chestlab.hierarchy import Hierarchy

    ds = TreeDataset("train", branching=[4, 4, 4, 4], samples_per_class=2)
    assert ds.superclasses == ["branch A", "branch B", "branch C", "branch D"]
    h = Hierarchy.from_dataset(ds)  # what the dendrograms and the HIER panel name
    assert h.group_names(1) == ds.superclasses
    assert all(name.split(".")[0] in "ABCD" for name in ds.classes)
    assert [node_name([i]) for i in (0, 25, 26)] == ["branch A", "branch Z", "branch AA"]
    assert node_name([2, 0, 3]) == "C.0.3"
