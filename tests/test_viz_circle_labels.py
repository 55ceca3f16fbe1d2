"""The "d_H = 1/2/3" labels of the disk's distance circles (issue 19): clear of each other and of the
data, at c = 0.01 (circles a few pixels apart inside the data), c = 0.1, c = 0.5 with r = 0.5 (every
point inside d_H <= 1) and c = 1; circles whose label has no such place are named in a corner note
instead of being labelled on top of the points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chestlab.viz import geometry
from chestlab.viz.disk import poincare_disk

CIRCLES = (1.0, 2.0, 3.0)


def _cloud(c: float, max_dist: float, n: int = 300, seed: int = 0) -> np.ndarray:
    """``n`` points spread over the disk of curvature -c up to Poincaré distance ``max_dist`` from 0."""
    g = np.random.default_rng(seed)
    d = max_dist * np.sqrt(g.uniform(0, 1, n))
    th = g.uniform(0, 2 * math.pi, n)
    r = np.array([geometry.euclid_radius(float(v), c) for v in d])
    return np.stack([r * np.cos(th), r * np.sin(th)], 1)


def _boxes_clear(spots, pts, view_half: float, tolerate: int) -> None:
    """Independent check in view units: a label is a box about 18 % of the view's half-width wide
    each side and 9 % high (a 60×15 px label on a ~330 px plot); two boxes must not meet, and a box
    may cover at most ``tolerate`` points."""
    hw, hh = 0.18 * view_half, 0.09 * view_half
    placed = [s for s in spots if s is not None]
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            assert not (abs(a[0] - b[0]) < 2 * hw and abs(a[1] - b[1]) < 2 * hh), (a, b)
        covered = int(((np.abs(pts[:, 0] - a[0]) < hw) & (np.abs(pts[:, 1] - a[1]) < hh)).sum())
        assert covered <= tolerate, (a, covered)


@pytest.mark.parametrize("c, max_dist", [(0.01, 3.0), (0.1, 3.5), (0.5, 1.0), (1.0, 4.0)])
def test_circle_labels_are_clear_of_each_other_and_of_the_data(c: float, max_dist: float) -> None:
    # (0.5, 1.0): r = 0.5 clips every point to d_H(0, x) <= 2r = 1
    pts = _cloud(c, max_dist)
    plan = geometry.circle_label_plan(c, CIRCLES, avoid=pts)
    R = geometry.disk_radius(c)
    _boxes_clear(plan, pts, R, tolerate=2)
    assert geometry.circle_note(CIRCLES, plan) == [d for d, s in zip(CIRCLES, plan) if s is None]


def test_at_c_001_the_crowded_circles_go_to_a_corner_note() -> None:
    """c = 0.01: the view is 20 wide, the circles d_H = 1, 2, 3 have Euclidean radii ~0.5, 1, 1.5: on
    them the three labels would overlap each other; the figure names them once, in its corner."""
    c = 0.01
    pts = _cloud(c, 3.0)
    plan = geometry.circle_label_plan(c, CIRCLES, avoid=pts)
    assert sum(s is None for s in plan) >= 2
    fig = poincare_disk(pts, np.arange(len(pts)) % 4, c=c, circles=CIRCLES)
    texts = [a.text for a in fig.layout.annotations]
    notes = [t for t in texts if t.startswith("dotted:")]
    assert len(notes) == 1 and all(f"{d:g}" in notes[0] for d in geometry.circle_note(CIRCLES, plan))
    on_circles = [t for t in texts if not t.startswith("dotted:")]
    assert len(on_circles) == len(CIRCLES) - len(geometry.circle_note(CIRCLES, plan))


def test_data_on_one_side_leaves_the_labels_on_the_other() -> None:
    """c = 1, points only in the lower half: every label finds a place (upper half), none in a note."""
    c = 1.0
    pts = _cloud(c, 4.0)
    pts = pts[pts[:, 1] < -0.05]
    plan = geometry.circle_label_plan(c, CIRCLES, avoid=pts)
    assert all(s is not None for s in plan)
    assert all(s[1] > 0 for s in plan)
