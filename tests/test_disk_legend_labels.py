"""The dashboard's disk on a 1280×720 projector (issue 19 item 3): in a compare column the legend beside
the disk shows every entry it keeps without a scroll bar, and the "d_H = 1/2/3" labels of the distance
circles neither overlap nor touch on a disk as small as a compare column's (~185 px across). The
browser check of the same is ``tests/test_app_projector.py`` (plotly's ``.scrollbar``, the annotations'
boxes); these run without a browser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chestlab.dashboard.panels import disk as panel
from chestlab.viz import geometry
from chestlab.viz import hierarchy as vh
from chestlab.viz.disk import poincare_disk
from chestlab.viz.plotly import circle_label, note_to_axis_title

CIRCLES = (1.0, 2.0, 3.0)
#: a compare column's disk at the page's focus height (measured in Chromium: 178 px of plot area)
DISK_PX = 185
#: a "d_H = 2" label on the page (14 px text on its white box), measured in Chromium: 38 × 25 px (the
#: projector test prints them); a little more here, so that labels merely touching count as meeting
LABEL_PX = (42, 28)


def _cloud(c: float, max_dist: float, n: int = 300, seed: int = 0, side=None) -> np.ndarray:
    """``n`` points up to Poincaré distance ``max_dist`` from 0, all around or in a 140° wedge about ``side``."""
    g = np.random.default_rng(seed)
    d = max_dist * np.sqrt(g.uniform(0, 1, n))
    th = g.uniform(0, 2 * math.pi, n) if side is None else side + g.uniform(-1.2, 1.2, n)
    r = np.array([geometry.euclid_radius(float(v), c) for v in d])
    return np.stack([r * np.cos(th), r * np.sin(th)], 1)


def _touching(plan, c: float) -> list:
    """The pairs of placed labels whose boxes (:data:`LABEL_PX`) meet on a disk :data:`DISK_PX` across."""
    s = DISK_PX / 2 / geometry.disk_radius(c)
    px = [(p[0] * s, p[1] * s) for p in plan if p is not None]
    w, h = LABEL_PX
    return [(a, b) for i, a in enumerate(px) for b in px[i + 1:] if abs(a[0] - b[0]) < w and abs(a[1] - b[1]) < h]


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("max_dist", [1.0, 2.0, 4.0, 8.0])
def test_circle_labels_do_not_touch_on_a_compare_disk(c: float, max_dist: float) -> None:
    # (before: 134 of these 320 layouts had two labels touching, e.g. clip-radius run B's "d_H = 3d_H = 2")
    for seed in range(4):
        for side in (None, 0.0, 2.0, 3.5, 5.0):
            plan = geometry.circle_label_plan(c, CIRCLES, avoid=_cloud(c, max_dist, seed=seed, side=side), compact=True)
            assert not _touching(plan, c), (seed, side, plan)


def test_a_label_that_would_touch_goes_to_the_note() -> None:
    """Two labels with one clear spot between them: the second one is named in the corner note instead."""
    c = 0.5
    plan = geometry.circle_label_plan(c, (2.0, 3.0), n_diameters=1, avoid=np.zeros((0, 2)), compact=True)
    # one diameter: the candidate angles are 90° and -90°, the labels at r(2) = 0.61 R, r(3) = 0.79 R on the same
    # side (both 90° first) would be 0.18 R = 17 px apart vertically on a 185 px disk: touching
    assert plan[0] is not None and plan[1] is not None and plan[1][1] * plan[0][1] < 0  # the other side instead
    crowd = _cloud(c, 8.0, n=2000)  # every other spot covered by points
    plan = geometry.circle_label_plan(c, CIRCLES, n_diameters=1, avoid=crowd, compact=True)
    assert geometry.circle_note(CIRCLES, plan) and not _touching(plan, c)


def _figure(n_super: int = 4, grid: bool = True, proxies: bool = True, c: float = 0.5):
    g = np.random.default_rng(1)
    n_cls = 2 * n_super
    labels = np.arange(300) % n_cls
    class_super = np.arange(n_cls) // 2
    x_h = torch.tensor(g.normal(0, 0.3, (300, 2)) + 0.2 * np.stack([np.cos(labels), np.sin(labels)], 1))
    prox_h = torch.tensor(g.normal(0, 0.4, (n_cls, 1, 2))) if proxies else None
    tree = vh.disk_tree_geometry(x_h, torch.tensor(labels), class_super, c, proxies_h=prox_h)
    xy = geometry.project_to_disk(x_h, c)
    pxy = None if prox_h is None else prox_h.numpy()
    return poincare_disk(xy, labels, class_super[labels], pxy, c=c, grid=grid, circles=CIRCLES,
                         super_names=[f"branch {chr(65 + i)}" for i in range(n_super)], class_super=class_super,
                         tree=tree, height=470)


def test_the_right_hand_legend_keeps_every_super_class_and_fits() -> None:
    fig = _figure(grid=True)
    names = panel.legend_entries(fig)
    supers = [f"branch {s}" for s in "ABCD"]
    assert len(names) == 8 and all(s in names for s in supers)  # geodesics, 4 super-classes, proxies, nodes, root
    panel.fit_right_legend(fig)
    kept = panel.legend_entries(fig)
    assert len(kept) <= panel.RIGHT_LEGEND_ROWS and all(s in kept for s in supers)
    assert "root" not in kept and "nodes, ■ root" in kept  # merged: one entry still hides the whole tree group
    assert fig.layout.legend.tracegroupgap == 0 and fig.layout.showlegend is not False
    # what plotly draws: 14 px entries (21.2 px a row) and 10 px of padding in the ~178 px plot area beside a
    # 290 px high disk (Chromium; one more entry and the legend scrolled)
    assert len(kept) * 21.2 + 10 <= 178


def test_a_legend_that_fits_is_left_whole() -> None:
    fig = _figure(grid=False)  # 7 entries: as many as fit
    before = panel.legend_entries(fig)
    panel.fit_right_legend(fig)
    assert panel.legend_entries(fig) == before and len(before) == 7


def test_too_many_super_classes_hide_the_legend_rather_than_scroll_it() -> None:
    fig = _figure(n_super=9, grid=True)
    panel.fit_right_legend(fig)
    assert fig.layout.showlegend is False


def test_the_circle_note_moves_to_the_x_title() -> None:
    """The corner note ("dotted: d_H = ...") becomes part of the x₁ title, once; the labels on circles stay."""
    c = 0.01  # circles a few px apart inside the data: all three in the note
    pts = _cloud(c, 3.0)
    fig = poincare_disk(pts, np.arange(len(pts)) % 4, c=c, circles=CIRCLES)
    assert any(str(a.text).startswith("dotted:") for a in fig.layout.annotations)
    note_to_axis_title(fig)
    note_to_axis_title(fig)
    title = fig.layout.xaxis.title.text
    assert title.startswith("x₁ · dotted:") and title.count("dotted") == 1 and all(f"{d:g}" in title for d in CIRCLES)
    assert not any(str(a.text).startswith("dotted:") for a in fig.layout.annotations)
    fig = poincare_disk(pts[:3] * 0, np.zeros(3, dtype=int), c=1.0, circles=CIRCLES)  # no note: unchanged
    anns = [a.text for a in fig.layout.annotations]
    note_to_axis_title(fig)
    assert [a.text for a in fig.layout.annotations] == anns and fig.layout.xaxis.title.text == "x₁"
    assert circle_label(2.0) in anns


@pytest.mark.parametrize("seed, side", [(0, 2.0), (0, 3.0), (0, 5.0), (1, 0.0)])
def test_a_label_sent_to_the_note_does_not_keep_the_others_away(seed: int, side: float) -> None:
    """A cloud over 300° of the disk up to d_H = 1.5 (like t = 0.05's collapse). Whatever goes to the note
    had no clear spot: every candidate spot on its circle (half-way between the 6 diameters) covers more
    than 2 points or meets a label drawn (the footprint circle_label_plan documents: 0.27 R × 0.135 R each
    side, 15 % of that height apart). Before, a label sent to the note still kept the next ones away from
    its spot (temperature-collapse run B: all three circles in the note, "d_H = 3" had room)."""
    c = 0.5
    pts = _wedge(c, side, seed)
    plan = geometry.circle_label_plan(c, CIRCLES, avoid=pts, compact=True)
    R = geometry.disk_radius(c)
    w, h = 0.27 * R, 0.135 * R

    def covered(p) -> int:
        return int(((np.abs(pts[:, 0] - p[0]) < w) & (np.abs(pts[:, 1] - p[1]) < h)).sum())

    drawn = [p for p in plan if p is not None]
    assert drawn and not _touching(plan, c)
    assert all(covered(p) <= 2 for p in drawn)
    for d, p in zip(CIRCLES, plan):
        if p is not None:
            continue
        r = geometry.euclid_radius(d, c)
        for k in range(12):
            th = math.pi * (k + 0.5) / 6
            q = (r * math.cos(th), r * math.sin(th))
            meets = any(abs(q[0] - o[0]) < 1.15 * 2 * w and abs(q[1] - o[1]) < 1.15 * 2 * h for o in drawn)
            assert meets or covered(q) > 2, f"d_H = {d:g} went to the note, but {q} was clear"


def _wedge(c: float, side: float, seed: int = 0) -> np.ndarray:
    """300 points up to d_H = 1.5 in a 300° wedge about ``side`` (radians)."""
    g = np.random.default_rng(seed)
    d = 1.5 * np.sqrt(g.uniform(0, 1, 300))
    g.uniform(0, 1, 300)  # (the draws of the cloud that found these cases)
    th = side + g.uniform(-2.6, 2.6, 300)
    r = np.array([geometry.euclid_radius(float(v), c) for v in d])
    return np.stack([r * np.cos(th), r * np.sin(th)], 1)


def test_the_lessons_static_disks_keep_their_label_spots() -> None:
    """The lessons' matplotlib disks (a few inches across) keep the looser rule: lesson 01's geodesic figure
    (c = 1, the curves to avoid) has its three labels where they were (numbers from before this change);
    the plotly disk (the page's, ~185 px in a compare column) moves "d_H = 2", which would touch "d_H = 1"
    there."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from chestlab import lessons
    from chestlab.viz import mpl as viz_mpl

    c = 1.0
    x = torch.tensor([0.6 * math.cos(math.radians(20)), 0.6 * math.sin(math.radians(20))], dtype=torch.float64)
    y = torch.tensor([0.8 * math.cos(math.radians(150)), 0.8 * math.sin(math.radians(150))], dtype=torch.float64)
    avoid = np.concatenate([lessons.geodesic_arc(x, y, c).numpy(), np.linspace(x.numpy(), y.numpy(), 50),
                            lessons.hyperbolic_circle(x, 1.0, c).numpy()])
    before = [(0.32676617560120313, -0.326766175601203), (0.5385283921883665, -0.5385283921883662),
              (0.23426960668457855, -0.8743060748160247)]
    np.testing.assert_allclose(geometry.circle_label_plan(c, CIRCLES, avoid=avoid), before, atol=1e-12)
    ax = Figure().subplots()
    viz_mpl.disk_view(ax, c, circles=CIRCLES, avoid=avoid)
    np.testing.assert_allclose([t.xy for t in ax.texts if t.get_text().startswith("$d_H$")], before, atol=1e-12)
    compact = geometry.circle_label_plan(c, CIRCLES, avoid=avoid, compact=True)
    assert compact[0] == before[0] and compact[1] != before[1] and not _touching(compact, c)
