"""The gyrovector tools of chestlab.poincare (gyration, geodesic, parallel_transport,
weighted_midpoint), the curvature derivative at c = 0, and the Gram-based pair geometry of the HypHC
term (group_dist_lca), against independent oracles: geoopt (float64, k = -c), the gyrogroup
identities (hypothesis), finite differences, and the elementwise route (dist + lca_depth on
gathered pairs) that hyphc_loss used before."""

from __future__ import annotations

import math
import warnings

import geoopt.manifolds.stereographic.math as gm
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.autograd import gradcheck
from torch.utils._python_dispatch import TorchDispatchMode

from chestlab import losses as L
from chestlab import poincare as P

from _helpers import F64, ball_points, gen

CS = [0.1, 0.5, 1.0, 2.0]


def k_of(c: float) -> torch.Tensor:
    return torch.tensor(-c, dtype=F64)


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return float((a - b).abs().max()) <= tol


# ------------------------------------------------------------------------------------------------
# geoopt oracle
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CS)
def test_against_geoopt(c):
    x, y, u = ball_points(32, 5, c, 1, 0.9), ball_points(32, 5, c, 2, 0.9), ball_points(32, 5, c, 3, 0.9)
    w = torch.randn(32, 5, generator=gen(4), dtype=F64) * 3  # any vectors, not only points of the ball
    k = k_of(c)
    assert close(P.gyration(x, y, w, c), gm.gyration(x, y, w, k=k), 1e-12)
    assert close(P.parallel_transport(x, y, w, c), gm.parallel_transport(x, y, w, k=k), 1e-11)
    t = torch.linspace(-1.5, 2.5, 32, dtype=F64)[:, None]
    assert close(P.geodesic(x, y, t, c), gm.geodesic(t, x, y, k=k), 1e-11)
    wts = torch.rand(32, generator=gen(5), dtype=F64)
    ref = gm.weighted_midpoint(u, wts, k=k, reducedim=[0])
    assert close(P.weighted_midpoint(u, wts, c), ref, 1e-12)
    assert close(P.weighted_midpoint(u, None, c), gm.weighted_midpoint(u, k=k, reducedim=[0]), 1e-12)


def test_gyration_matches_its_definition_for_points():
    # gyr[u, v]w = -(u + v) + (u + (v + w)) for w in the ball (the lessons' definition)
    c = 0.8
    u, v, w = (ball_points(20, 4, c, s, 0.9) for s in (6, 7, 8))
    add = P.mobius_add
    assert close(P.gyration(u, v, w, c), add(-add(u, v, c), add(u, add(v, w, c), c), c), 1e-11)


def test_euclidean_limit():
    x, y = ball_points(10, 3, 1.0, 9, 0.9), ball_points(10, 3, 1.0, 10, 0.9)
    w = torch.randn(10, 3, generator=gen(11), dtype=F64)
    assert torch.equal(P.gyration(x, y, w, 0.0), w)
    assert torch.equal(P.parallel_transport(x, y, w, 0.0), w)
    t = torch.tensor([[-0.5], [0.25], [2.0]], dtype=F64)
    assert close(P.geodesic(x[0], y[0], t, 0.0), x[0] + t * (y[0] - x[0]), 1e-15)
    wts = torch.rand(10, generator=gen(12), dtype=F64)
    assert close(P.weighted_midpoint(x, wts, 0.0), (wts[:, None] * x).sum(0) / wts.sum(), 1e-15)
    for c in (1e-12, 1e-9):  # continuous at c = 0
        assert close(P.gyration(x, y, w, c), w, 1e3 * c)
        assert close(P.geodesic(x[0], y[0], t, c), x[0] + t * (y[0] - x[0]), 1e3 * c)
        assert close(P.weighted_midpoint(x, wts, c), (wts[:, None] * x).sum(0) / wts.sum(), 1e3 * c)


# ------------------------------------------------------------------------------------------------
# hypothesis: identities
# ------------------------------------------------------------------------------------------------
D = 3
coords = arrays(np.float64, (D,), elements=st.floats(-1, 1, allow_nan=False))
radii = st.floats(0.0, 0.95)
curvatures = st.floats(1e-3, 5.0)


def to_ball(u: np.ndarray, rad: float, c: float) -> torch.Tensor:
    t = torch.tensor(u, dtype=F64)
    n = float(t.norm())
    if n == 0:
        return t[None] * 0
    return (t / n * rad / math.sqrt(c))[None]


@settings(max_examples=80, deadline=None)
@given(coords, radii, coords, radii, coords, radii, curvatures)
def test_gyration_makes_addition_associative(u, ru, v, rv, w, rw, c):
    a, b, z = to_ball(u, ru, c), to_ball(v, rv, c), to_ball(w, rw, c)
    lhs = P.mobius_add(a, P.mobius_add(b, z, c), c)
    rhs = P.mobius_add(P.mobius_add(a, b, c), P.gyration(a, b, z, c), c)
    scale = 1 / math.sqrt(c) / (1 - max(ru, rv, rw)) ** 2
    assert float((lhs - rhs).norm()) <= 1e-11 * scale


@settings(max_examples=80, deadline=None)
@given(coords, radii, coords, radii, coords, st.floats(1e-6, 1e6), coords, curvatures)
def test_gyration_is_a_linear_isometry_of_any_vector(u, ru, v, rv, w, size, q, c):
    a, b = to_ball(u, ru, c), to_ball(v, rv, c)
    z = torch.tensor(w, dtype=F64)[None] * size
    y = torch.tensor(q, dtype=F64)[None]
    gz = P.gyration(a, b, z, c)
    assert abs(float(gz.norm() - z.norm())) <= 1e-12 * (1 + float(z.norm()))
    lin = P.gyration(a, b, 2.5 * z - y, c)
    assert float((lin - (2.5 * gz - P.gyration(a, b, y, c))).norm()) <= 1e-12 * (1 + float(z.norm()))
    # gyr[b, a] is the inverse rotation
    assert float((P.gyration(b, a, gz, c) - z).norm()) <= 1e-12 * (1 + float(z.norm()))


@settings(max_examples=80, deadline=None)
@given(coords, radii, coords, radii, coords, st.floats(0.0, 10.0), curvatures)
def test_parallel_transport_keeps_the_conformal_norm(u, ru, v, rv, w, size, c):
    x, y = to_ball(u, ru, c), to_ball(v, rv, c)
    vec = torch.tensor(w, dtype=F64)[None] * size
    moved = P.parallel_transport(x, y, vec, c)
    lx, ly = P.conformal_factor(x, c), P.conformal_factor(y, c)
    assert abs(float(ly * moved.norm() - lx * vec.norm())) <= 1e-11 * (1 + float(lx * vec.norm()))
    back = P.parallel_transport(y, x, moved, c)
    assert float((back - vec).norm()) <= 1e-11 * (1 + float(vec.norm()))


# ------------------------------------------------------------------------------------------------
# near the boundary: geoopt's test_add_infinity_and_beyond, and huge vectors
# ------------------------------------------------------------------------------------------------
#: geoopt's projx margins (its BALL_EPS); chestlab's own are 1e-5 (float32) and 1e-15 (float64)
GEOOPT_EPS = {torch.float32: 4e-3, torch.float64: 1e-5}


def infinity_and_beyond(dtype, c: float, seed: int, eps=None, n: int = 8, steps: int = 100):
    """geoopt's tests/test_gyrovector_math.py::test_add_infinity_and_beyond with chestlab: a tangent
    vector 1e7 b sent from a by expmap, the point pushed to the boundary (project, 1000 (x) z, project)
    and the vector transported there, ``steps`` times (values checked at every step; the library's
    own value checks off, for speed). Returns (a, v, the relative change of the conformal norm
    lambda_a ||v||, which transport keeps)."""
    g = gen(seed)

    def points():  # geoopt's fixture: uniform per-coordinate radii inside min(1/sqrt(c), 100)
        a = torch.empty(n, 10, dtype=F64).normal_(-1, 1, generator=g)
        a = a / a.norm(dim=-1, keepdim=True) * min(1 / math.sqrt(c), 100)
        return P.project((a * torch.rand(n, 10, dtype=F64, generator=g)).to(dtype), c, eps)

    a = points()
    v = points() * 1e7
    norm0 = (P.conformal_factor(a.double(), c) * v.double()).norm(dim=-1)
    with P.checks(False):
        for i in range(steps):
            z = P.project(P.expmap(a, v, c), c, eps)
            z = P.project(P.mobius_scalar_mul(1000.0, z, c), c, eps)
            v = P.parallel_transport(a, z, v, c)
            assert bool(torch.isfinite(z).all()) and bool(torch.isfinite(v).all()), (i, z, v)
            a = z
    norm = (P.conformal_factor(a.double(), c) * v.double()).norm(dim=-1)
    return a, v, float(((norm - norm0) / norm0).abs().max())


@settings(max_examples=2, deadline=None)
@given(st.sampled_from([F64, torch.float32]), st.integers(0, 2**16), st.floats(0.05, 2.0))
def test_transport_at_infinity_and_beyond_stays_finite(dtype, seed, c):
    """The scenario at chestlab's own margins (points 1e-15 from the boundary in float64): before, the
    transported vector overflowed to inf after ~25 transports (float32 and float64; geoopt, which keeps
    points 1e-5 away, stays finite). The transport keeps the conformal norm (float32 to the ~3e-3
    relative accuracy of its 1 - c||x||^2 there, float64 exactly)."""
    _, _, drift = infinity_and_beyond(dtype, c, seed)
    assert drift < (1e-12 if dtype == F64 else 5e-2)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_transport_at_infinity_and_beyond_as_geoopt(dtype):
    """geoopt's scenario with geoopt's margins and its final check: the last vector, sent back from
    the last point, reaches the antipode (the geodesic ends orthogonally to the boundary, so after
    the transports the vector is radial); geoopt's tolerances."""
    c = 0.7
    a, v, drift = infinity_and_beyond(dtype, c, 30, GEOOPT_EPS[dtype])
    z = P.expmap(a, -v, c)
    tol = dict(rtol=3e-1, atol=2e-1) if dtype == torch.float32 else dict(rtol=1e-1, atol=1e-3)
    np.testing.assert_allclose(z.numpy(), -a.numpy(), **tol)
    assert drift < (1e-12 if dtype == F64 else 1e-3)


@settings(max_examples=60, deadline=None)
@given(coords, st.floats(0.0, 15.0), coords, st.floats(0.0, 15.0), coords, curvatures, st.floats(0.0, 1e-3))
def test_gyration_is_a_rotation_up_to_the_boundary(u, gap_u, v, gap_v, w, c, shift):
    # u near -v, both up to 1e-15 from the boundary: where the expanded closed form cancelled (D -> 0)
    # and stretched w by up to 5e14; it is a rotation (norm kept, gyr[v, u] its inverse) to rounding
    d = torch.tensor(u, dtype=F64)
    if float(d.norm()) == 0:
        return
    d = d / d.norm()
    a = P.project((d * (1 - 10.0**-gap_u) / math.sqrt(c))[None], c)
    e = -d + shift * torch.tensor(v, dtype=F64)
    b = P.project((e / e.norm() * (1 - 10.0**-gap_v) / math.sqrt(c))[None], c)
    z = torch.tensor(w, dtype=F64)[None]
    gz = P.gyration(a, b, z, c)
    assert abs(float(gz.norm() - z.norm())) <= 1e-12 * (1 + float(z.norm()))
    assert float((P.gyration(b, a, gz, c) - z).norm()) <= 1e-9 * (1 + float(z.norm()))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.floats(1e-2, 2.0), st.integers(2, 12), st.sampled_from([F64, torch.float32]))
def test_transport_of_huge_vectors(seed, c, dim, dtype):
    """v of entries +-1e38 (float32) or +-1e307 (float64): the transported vector, of norm
    ||v|| alpha_y / alpha_x, is finite whenever its entries fit the dtype (before: inf or NaN from
    intermediate overflow), and otherwise one ValueError names v. Reference: the same vector
    transported in float64, scaled down by 2^-64 and up again (inf where the float64 result overflows)."""
    g = gen(seed)
    dirs = torch.randn(2, dim, generator=g, dtype=F64)
    pts = dirs / dirs.norm(dim=-1, keepdim=True) * torch.rand(2, 1, generator=g, dtype=F64) ** 0.2 * 0.999 / math.sqrt(c)
    x, y = pts[:1].to(dtype), pts[1:].to(dtype)
    big = 1e38 if dtype == torch.float32 else 1e307
    v = (torch.sign(torch.randn(1, dim, generator=g, dtype=F64)) * big).to(dtype)
    ref = P.parallel_transport(x.double(), y.double(), v.double() * 2.0**-64, c) * 2.0**64  # inf where it overflows
    top, fmax = float(ref.abs().max()), torch.finfo(dtype).max
    if top > 0.99 * fmax:
        if top > 1.01 * fmax:
            with pytest.raises(ValueError, match="v: the transported vector"):
                P.parallel_transport(x, y, v, c)
        return
    out = P.parallel_transport(x, y, v, c)
    assert bool(torch.isfinite(out).all())
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    assert float((out.double() - ref).norm()) <= tol * float(ref.norm())
    back = P.parallel_transport(y, x, out, c)
    assert float((back.double() - v.double()).norm()) <= 10 * tol * float(v.double().norm())


@settings(max_examples=60, deadline=None)
@given(coords, st.floats(0.0, 0.9), coords, st.floats(0.0, 0.9), curvatures)
def test_parallel_transport_along_the_geodesic_carries_its_velocity(u, ru, v, rv, c):
    # the velocity log_x(y) at x arrives at y as -log_y(x): the geodesic is autoparallel
    x, y = to_ball(u, ru, c), to_ball(v, rv, c)
    moved = P.parallel_transport(x, y, P.logmap(x, y, c), c)
    target = -P.logmap(y, x, c)
    assert float((moved - target).norm()) <= 1e-9 * (1 + float(target.norm()))


@settings(max_examples=80, deadline=None)
@given(coords, radii, coords, radii, st.floats(-3.0, 3.0), curvatures)
def test_geodesic_has_constant_speed(u, ru, v, rv, t, c):
    x, y = to_ball(u, ru, c), to_ball(v, rv, c)
    d = float(P.dist(x, y, c))
    g = P.geodesic(x, y, t, c)
    tol = 1e-9 * (1 + d * abs(t)) / (1 - max(ru, rv)) ** 2
    if float(c * g.pow(2).sum()) < 1 - 1e-9:  # not pushed onto the float64 boundary
        assert abs(float(P.dist(x, g, c)) - abs(t) * d) <= tol
        if 0 <= t <= 1:
            assert abs(float(P.dist(g, y, c)) - (1 - t) * d) <= tol
    assert float((P.geodesic(x, y, 0.0, c) - x).norm()) <= 1e-15
    assert float((P.geodesic(x, y, 1.0, c) - y).norm()) <= 1e-10 / math.sqrt(c) / (1 - max(ru, rv)) ** 2


@settings(max_examples=60, deadline=None)
@given(coords, radii, coords, radii, curvatures)
def test_midpoint_of_two_points_is_on_their_geodesic_at_equal_distances(u, ru, v, rv, c):
    x, y = to_ball(u, ru, c), to_ball(v, rv, c)
    m = P.weighted_midpoint(torch.cat([x, y]), torch.ones(2, dtype=F64), c)
    tol = 1e-10 / (1 - max(ru, rv)) ** 2
    assert abs(float(P.dist(m, x, c) - P.dist(m, y, c))) <= tol
    assert abs(float(P.dist(m, x, c) + P.dist(m, y, c) - P.dist(x, y, c))) <= tol
    assert float((m - P.geodesic(x, y, 0.5, c)[0]).norm()) <= tol / math.sqrt(c)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(coords, radii, st.floats(0.01, 100.0)), min_size=1, max_size=6), coords, st.floats(0.0, 0.8), curvatures)
def test_midpoint_is_equivariant_under_mobius_translation(pts, z, rz, c):
    x = torch.cat([to_ball(p, r, c) for p, r, _ in pts])
    w = torch.tensor([q for _, _, q in pts], dtype=F64)
    a = to_ball(z, rz, c)
    moved = P.weighted_midpoint(P.mobius_add(a, x, c), w, c)
    ref = P.mobius_add(a, P.weighted_midpoint(x, w, c)[None], c)[0]
    worst = max(r for _, r, _ in pts)
    assert float((moved - ref).norm()) <= 1e-9 / math.sqrt(c) / (1 - max(worst, rz)) ** 2
    # scale and order of the weights do not matter
    assert float((P.weighted_midpoint(x, 7.0 * w, c) - P.weighted_midpoint(x, w, c)).norm()) <= 1e-12 / math.sqrt(c)
    perm = torch.arange(len(pts) - 1, -1, -1)
    assert float((P.weighted_midpoint(x[perm], w[perm], c) - P.weighted_midpoint(x, w, c)).norm()) <= 1e-12 / math.sqrt(c)


def test_midpoint_limits():
    c = 0.5
    x = ball_points(5, 3, c, 13, 0.9)
    # one point: itself; a weight of +inf: the midpoint of the infinitely weighted points
    assert close(P.weighted_midpoint(x[:1], torch.ones(1, dtype=F64), c), x[0], 1e-15)
    w = torch.tensor([1.0, math.inf, 2.0, math.inf, 1.0], dtype=F64)
    assert close(P.weighted_midpoint(x, w, c), P.weighted_midpoint(x[[1, 3]], None, c), 1e-15)
    huge = torch.tensor([1e300, 2e300, 1e300, 1e300, 5e299], dtype=F64)
    assert close(P.weighted_midpoint(x, huge, c), P.weighted_midpoint(x, huge / 1e300, c), 1e-15)


# ------------------------------------------------------------------------------------------------
# d/dc, at c = 0 too (sqrt(c) has an infinite slope there; the true derivative is finite)
# ------------------------------------------------------------------------------------------------
def _c_functions():
    x, y = ball_points(6, 4, 1.0, 20, 0.5), ball_points(6, 4, 1.0, 21, 0.5)
    v = torch.randn(6, 4, generator=gen(22), dtype=F64) * 0.6
    t = torch.tensor([[-0.5], [0.3], [1.5], [2.0], [0.0], [1.0]], dtype=F64)
    groups = torch.tensor([[0, 1, 2], [3, 4, 5], [1, 3, 5]])
    return {
        "mobius_scalar_mul": lambda c: P.mobius_scalar_mul(1.7, x, c),
        "mobius_add": lambda c: P.mobius_add(x, y, c),
        "dist": lambda c: P.dist(x, y, c),
        "dist0": lambda c: P.dist0(x, c),
        "pairwise_dist": lambda c: P.pairwise_dist(x, y, c),
        "expmap0": lambda c: P.expmap0(v, c),
        "expmap": lambda c: P.expmap(x, v, c),
        "logmap0": lambda c: P.logmap0(x, c),
        "logmap": lambda c: P.logmap(x, y, c),
        "lca_depth": lambda c: P.lca_depth(x, y, c),
        "conformal_factor": lambda c: P.conformal_factor(x, c),
        "gyration": lambda c: P.gyration(x, y, v, c),
        "parallel_transport": lambda c: P.parallel_transport(x, y, v, c),
        "geodesic": lambda c: P.geodesic(x, y, t, c),
        "weighted_midpoint": lambda c: P.weighted_midpoint(x, None, c),
        "group_dist_lca": lambda c: torch.cat(P.group_dist_lca(x, groups, c), -1),
        "hyphc_loss": lambda c: L.hyphc_loss(x, groups, c, detach_similarity=False),
    }


FUNCS = _c_functions()


def _weights(out: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1.0, 2.0, out.numel(), dtype=F64).view_as(out)


@pytest.mark.parametrize("c0", [0.0, 0.3, 1.2])
@pytest.mark.parametrize("name", sorted(FUNCS))
def test_derivative_in_c_against_finite_differences(name, c0):
    f = FUNCS[name]
    c = torch.tensor(c0, dtype=F64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float(c) on a c that requires grad warns: never done
        out = f(c)
        (g,) = torch.autograd.grad((out * _weights(out)).sum(), c)
    F_ = lambda cc: float((f(cc) * _weights(out)).sum())  # noqa: E731
    h = 1e-5
    if c0 == 0:  # one-sided, second order (c < 0 is not a curvature)
        fd = (-3 * F_(0.0) + 4 * F_(h) - F_(2 * h)) / (2 * h)
    else:
        fd = (F_(c0 + h) - F_(c0 - h)) / (2 * h)
    assert math.isfinite(float(g))
    assert abs(float(g) - fd) <= 1e-6 * (1 + abs(fd))


@pytest.mark.parametrize("c0", [0.0, 0.7])
def test_derivative_in_c_against_geoopt(c0):
    # geoopt's tan_k / artan_k Taylor branches give d/dk at k = 0; d/dc = -d/dk
    x, y = ball_points(5, 3, 1.0, 23, 0.6), ball_points(5, 3, 1.0, 24, 0.6)
    v = torch.randn(5, 3, generator=gen(25), dtype=F64) * 0.5
    pairs = [
        (lambda c: P.dist(x, y, c), lambda k: gm.dist(x, y, k=k)),
        (lambda c: P.expmap0(v, c), lambda k: gm.expmap0(v, k=k)),
        (lambda c: P.logmap0(x, c), lambda k: gm.logmap0(x, k=k)),
        (lambda c: P.mobius_scalar_mul(0.6, x, c), lambda k: gm.mobius_scalar_mul(torch.tensor(0.6, dtype=F64), x, k=k)),
        (lambda c: P.gyration(x, y, v, c), lambda k: gm.gyration(x, y, v, k=k)),
    ]
    for ours, ref in pairs:
        c = torch.tensor(c0, dtype=F64, requires_grad=True)
        k = torch.tensor(-c0, dtype=F64, requires_grad=True)
        (gc,) = torch.autograd.grad(ours(c).sum(), c)
        (gk,) = torch.autograd.grad(ref(k).sum(), k)
        assert abs(float(gc + gk)) <= 1e-7 * (1 + abs(float(gk)))


def test_gradcheck_new_functions():
    c = 0.6
    x = ball_points(4, 3, c, 26, 0.8).requires_grad_()
    y = ball_points(4, 3, c, 27, 0.8).requires_grad_()
    w = torch.randn(4, 3, generator=gen(28), dtype=F64).requires_grad_()
    t = torch.tensor([[-0.4], [0.2], [0.9], [1.7]], dtype=F64, requires_grad=True)
    cc = torch.tensor(c, dtype=F64, requires_grad=True)
    assert gradcheck(lambda x, y, w, cc: P.gyration(x, y, w, cc), (x, y, w, cc))
    assert gradcheck(lambda x, y, w, cc: P.parallel_transport(x, y, w, cc), (x, y, w, cc))
    assert gradcheck(lambda x, y, t, cc: P.geodesic(x, y, t, cc), (x, y, t, cc))
    wts = torch.rand(4, generator=gen(29), dtype=F64).add(0.1).requires_grad_()
    assert gradcheck(lambda x, wts, cc: P.weighted_midpoint(x, wts, cc), (x, wts, cc))
    r = torch.tensor(1.3, dtype=F64, requires_grad=True)
    assert gradcheck(lambda r, x, cc: P.mobius_scalar_mul(r, x, cc), (r, x, cc))


# ------------------------------------------------------------------------------------------------
# group_dist_lca: the Gram route of the HypHC term against the elementwise route
# ------------------------------------------------------------------------------------------------
def elementwise(x: torch.Tensor, groups: torch.Tensor, c):
    k = groups.shape[1]
    ia, ib = torch.triu_indices(k, k, 1)
    pa, pb = x[groups[:, ia]], x[groups[:, ib]]
    return P.dist(pa, pb, c), P.lca_depth(pa, pb, c)


def hyphc_elementwise(proxies_h, triplets, c, gamma_hyp=1.0, variant="lca", detach_similarity=True):
    """hyphc_loss as it was before the Gram route: dist and lca_depth on (M, 3, D) pairs."""
    d_pairs, depth = elementwise(proxies_h.reshape(-1, proxies_h.shape[-1]), triplets, c)
    S = torch.exp(-d_pairs)
    if detach_similarity:
        S = S.detach()
    w = torch.softmax((depth if variant == "lca" else d_pairs) / gamma_hyp, dim=-1)
    return S.sum(-1) - (S * w).sum(-1)


def tricky_points(c: float, seed: int) -> torch.Tensor:
    """Points with close pairs (cancelling ||a-b||^2), parallel pairs (cancelling ||a ^ b||^2),
    duplicates, the origin and points near the boundary."""
    base = ball_points(12, 5, c, seed, 0.9)
    near = base[:3] * (1 + 1e-7)
    parallel = base[3:6] * 0.3
    dup = base[6:8].clone()
    edge = base[8:10] / base[8:10].norm(dim=-1, keepdim=True) * (1 - 1e-9) / math.sqrt(c)
    return torch.cat([base, near, parallel, dup, edge, torch.zeros(1, 5, dtype=F64)])


@pytest.mark.parametrize("c", [0.0, 1e-9, 0.5, 2.0])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_group_dist_lca_matches_elementwise(c, k):
    x = tricky_points(c or 1.0, 30)
    n = x.shape[0]
    g = gen(31)
    groups = torch.randint(n, (60, k), generator=g)
    # make sure the special pairs are there: (i, i + 12) close, (i + 3, i + 15) parallel, duplicates
    special = torch.tensor([[0, 12], [1, 13], [3, 15], [4, 16], [6, 18], [7, 19], [20, 21], [0, 22], [22, 22]])
    groups[: len(special), :2] = special
    d, depth = P.group_dist_lca(x, groups, c)
    d_ref, depth_ref = elementwise(x, groups, c)
    torch.testing.assert_close(d, d_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(depth, depth_ref, rtol=1e-11, atol=1e-13)
    d_only, none = P.group_dist_lca(x, groups, c, lca=False)
    assert none is None
    torch.testing.assert_close(d_only, d, rtol=1e-12, atol=1e-14)


def test_group_dist_lca_float32_and_chunks(monkeypatch):
    c = 0.5
    x = P.expmap0(P.clip_features(torch.randn(300, 16, generator=gen(32)), 2.3), c)
    groups = torch.randint(300, (500, 3), generator=gen(33))
    d, depth = P.group_dist_lca(x, groups, c)
    d64, depth64 = elementwise(x.double(), groups, c)
    assert float(((d.double() - d64).abs() / d64.clamp_min(1e-3)).max()) < 1e-5
    assert float(((depth.double() - depth64).abs() / depth64.clamp_min(1e-3)).max()) < 1e-4
    # the chunking is invisible: one chunk per group gives the same values and gradients
    xr = x.detach().clone().requires_grad_()
    (g1,) = torch.autograd.grad(sum(t.sum() for t in P.group_dist_lca(xr, groups, c)), xr)
    monkeypatch.setattr(P, "_GROUP_CHUNK", 1)
    d1, depth1 = P.group_dist_lca(xr, groups, c)
    (g2,) = torch.autograd.grad(d1.sum() + depth1.sum(), xr)
    assert torch.allclose(d1, d) and torch.allclose(depth1, depth)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_gradcheck_group_dist_lca(c):
    # pairs close enough to take the recomputed branch (||a - b||^2 < 1e-4 (A + B), ||a ^ b||^2 < 1e-4 AB)
    # but farther apart than gradcheck's step, where the functions are smooth
    cc = c or 1.0
    base = ball_points(6, 3, cc, 34, 0.8)
    perp = torch.randn(6, 3, generator=gen(35), dtype=F64) * 1e-3 * base.norm(dim=-1, keepdim=True)
    x = torch.cat([base, base * (1 + 3e-3) + perp, base * 0.4 + perp]).requires_grad_()
    groups = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 6, 12], [1, 7, 13], [2, 14, 8], [5, 11, 17]])
    a, b, q = x.detach()[0], x.detach()[6], x.detach()[12]
    assert (a - b).pow(2).sum() < 1e-4 * (a.pow(2).sum() + b.pow(2).sum())  # recomputed ||a - b||^2
    wedge2 = a.pow(2).sum() * q.pow(2).sum() - (a @ q) ** 2
    assert wedge2 < 1e-4 * a.pow(2).sum() * q.pow(2).sum()  # recomputed ||a ^ q||^2
    assert gradcheck(lambda x: torch.cat(P.group_dist_lca(x, groups, c), -1), (x,))


def test_gradients_finite_at_special_points():
    # a = b, a = 0, a parallel to b (geodesic through the origin): no NaN, as for lca_depth
    c = 0.7
    x = tricky_points(c, 36).requires_grad_()
    groups = torch.tensor([[22, 0, 1], [0, 0, 3], [3, 15, 22], [20, 21, 22], [22, 22, 22]])
    d, depth = P.group_dist_lca(x, groups, c)
    (g,) = torch.autograd.grad(d.sum() + depth.sum(), x)
    assert bool(torch.isfinite(g).all())
    d_ref, depth_ref = elementwise(x, groups, c)
    (g_ref,) = torch.autograd.grad(d_ref.sum() + depth_ref.sum(), x)
    assert bool(torch.isfinite(g_ref).all())
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("c", [0.0, 0.5, 1.5])
def test_hyphc_loss_equals_the_elementwise_route(variant, detach, c):
    # values to 1e-12 and gradients to 1e-10 in float64; the bench checks float32 at SOP scale
    cc = c or 1.0
    C, K = 40, 3
    p = tricky_points(cc, 35)[:, :4]
    p = torch.cat([p, ball_points(C * K - p.shape[0], 4, cc, 36, 0.95)]).view(C, K, 4).requires_grad_()
    trip = L.sample_triplets(C, K, 300, gen(37))
    new = L.hyphc_loss(p, trip, c, 0.7, variant=variant, detach_similarity=detach)
    old = hyphc_elementwise(p, trip, c, 0.7, variant=variant, detach_similarity=detach)
    torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-13)
    (g_new,) = torch.autograd.grad(new.mean(), p)
    (g_old,) = torch.autograd.grad(old.mean(), p)
    torch.testing.assert_close(g_new, g_old, rtol=1e-10, atol=1e-12)


def test_hyphc_loss_float32_equals_the_elementwise_route_to_1e6():
    c, C, K, D = 0.5, 500, 2, 64
    v = torch.randn(C * K, D, generator=gen(38))
    p = P.expmap0(P.clip_features(v, 2.3), c).view(C, K, D).requires_grad_()
    trip = L.sample_triplets(C, K, C, gen(39))
    new, old = L.hyphc_loss(p, trip, c), hyphc_elementwise(p, trip, c)
    assert float((new - old).detach().abs().max()) < 1e-6
    (g_new,) = torch.autograd.grad(new.mean(), p)
    (g_old,) = torch.autograd.grad(old.mean(), p)
    assert float((g_new - g_old).abs().max()) < 1e-6 * float(g_old.abs().max()) + 1e-9


def test_group_dist_lca_never_builds_a_pair_tensor():
    # the elementwise route builds (M, 3, D) tensors; the Gram route at most (P, D) (the gradient)
    P_, D_, M = 64, 48, 400

    class Largest(TorchDispatchMode):
        biggest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    Largest.biggest = max(Largest.biggest, t.numel())
            return out

    x = P.expmap0(torch.randn(P_, D_, generator=gen(40)), 1.0).requires_grad_()
    trip = torch.randint(P_, (M, 3), generator=gen(41))
    with Largest():
        L.hyphc_loss(x, trip, 1.0).sum().backward()
    assert Largest.biggest <= max(P_ * D_, P._GROUP_CHUNK)
    Largest.biggest = 0
    with Largest():
        hyphc_elementwise(x, trip, 1.0).sum().backward()
    assert Largest.biggest >= M * 3 * D_
