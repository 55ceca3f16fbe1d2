"""Poincaré geometry against independent oracles: geoopt (float64, k = -c) away from the boundary,
mpmath (50 digits) near it, hypothesis for the gyrogroup identities."""

from __future__ import annotations

import math

import geoopt.manifolds.stereographic.math as gm
import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize_scalar
from torch.utils._python_dispatch import TorchDispatchMode

from chestlab import poincare as P

from _helpers import F64, ball_points
CS = [0.1, 0.5, 1.0, 2.0]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())


def k_of(c: float) -> torch.Tensor:
    return torch.tensor(-c, dtype=F64)


# ------------------------------------------------------------------------------------------------
# geoopt oracle, away from the boundary
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CS)
def test_against_geoopt(c):
    x, y = ball_points(64, 7, c, 1, 0.9), ball_points(64, 7, c, 2, 0.9)
    v = torch.randn(64, 7, dtype=F64, generator=torch.Generator().manual_seed(3))
    k = k_of(c)
    tol = 1e-10
    assert rel_err(P.mobius_add(x, y, c), gm.mobius_add(x, y, k=k)) < tol
    assert rel_err(P.dist(x, y, c), gm.dist(x, y, k=k)) < tol
    assert rel_err(P.dist0(x, c), gm.dist0(x, k=k)) < tol
    assert rel_err(P.pairwise_dist(x, y, c), gm.dist(x[:, None], y[None], k=k)) < tol
    assert rel_err(P.expmap0(v, c), gm.expmap0(v, k=k)) < tol
    assert rel_err(P.logmap0(x, c), gm.logmap0(x, k=k)) < tol
    assert rel_err(P.expmap(x, 0.3 * v, c), gm.expmap(x, 0.3 * v, k=k)) < tol
    assert rel_err(P.logmap(x, y, c), gm.logmap(x, y, k=k)) < 1e-9
    r = torch.tensor(1.7, dtype=F64)
    assert rel_err(P.mobius_scalar_mul(r, x, c), gm.mobius_scalar_mul(r, x, k=k)) < tol
    assert rel_err(P.mobius_scalar_mul(-0.4, x, c), gm.mobius_scalar_mul(torch.tensor(-0.4, dtype=F64), x, k=k)) < tol
    assert rel_err(P.conformal_factor(x, c), gm.lambda_x(x, k=k, keepdim=True)) < tol


def test_pairwise_matches_elementwise_and_close_pairs_are_exact():
    c = 0.7
    x = ball_points(40, 5, c, 5)
    y = torch.cat([x[:10] + 1e-9, ball_points(30, 5, c, 6)])  # near-duplicates cancel in the matmul
    pw = P.pairwise_dist(x, y, c)
    ref = P.dist(x[:, None], y[None], c)
    assert rel_err(pw, ref) < 1e-10
    assert float(P.pairwise_dist(x, x, c).diagonal().abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------
# near the boundary: mpmath oracle (geoopt's float64 dist loses whole units there)
# ------------------------------------------------------------------------------------------------
mp.mp.dps = 50


def mp_dist(x, y, c) -> float:
    """Textbook Eq. 2, artanh(sqrt(c) ||(-x) + y||), in 50-digit arithmetic on the float64 inputs."""
    x = [mp.mpf(float(t)) for t in x]
    y = [mp.mpf(float(t)) for t in y]
    c = mp.mpf(c)
    xy = mp.fsum(a * b for a, b in zip(x, y))
    x2, y2 = mp.fsum(a * a for a in x), mp.fsum(b * b for b in y)
    den = 1 - 2 * c * xy + c * c * x2 * y2
    num = [(1 - 2 * c * xy + c * y2) * (-a) + (1 - c * x2) * b for a, b in zip(x, y)]
    n = mp.sqrt(mp.fsum(t * t for t in num)) / den
    return float(2 / mp.sqrt(c) * mp.atanh(mp.sqrt(c) * n))


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("gap", [1e-6, 1e-9])
def test_dist_exact_near_boundary(c, gap):
    g = torch.Generator().manual_seed(7)
    u = torch.randn(8, 6, dtype=F64, generator=g)
    u = u / u.norm(dim=-1, keepdim=True)
    x = u * (1 / math.sqrt(c) - gap)  # 'gap' from the boundary
    y = torch.roll(x, 1, 0) * torch.linspace(0.5, 1.0, 8, dtype=F64)[:, None]
    ours = P.dist(x, y, c)
    ref = torch.tensor([mp_dist(x[i], y[i], c) for i in range(8)], dtype=F64)
    assert rel_err(ours, ref) < 1e-12
    assert rel_err(P.pairwise_dist(x, y, c).diagonal(), ref) < 1e-12
    zero = torch.zeros(1, 6, dtype=F64)
    ref0 = torch.tensor([mp_dist(zero[0], x[i], c) for i in range(8)], dtype=F64)
    assert rel_err(P.dist0(x, c), ref0) < 1e-12
    if gap == 1e-9:
        # the reason for all the care: geoopt's clamped artanh is off by whole units here
        assert float((gm.dist(x, y, k=k_of(c)) - ref).abs().max()) > 1.0


def test_logmap0_exact_near_boundary():
    c = 1.0
    x = torch.tensor([[1 - 1e-9, 0.0], [0.6, 0.8 - 1e-10]], dtype=F64)
    for i in range(2):
        n = mp.sqrt(mp.fsum(mp.mpf(float(t)) ** 2 for t in x[i]))
        expected = float(mp.atanh(n) / n)
        got = float(P.logmap0(x[i : i + 1], c).norm() / x[i].norm())
        assert abs(got - expected) / expected < 1e-12


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([0.0, 1e-300, 1e-30, 1e-3, 0.5, 2.0]), st.sampled_from([F64, torch.float32]),
       st.booleans(), st.floats(0.05, 0.999))
def test_pairwise_dist_of_identical_rows_is_exactly_zero(seed, c, dtype, tensor_c, radius):
    """pairwise_dist(x, x) has exactly 0 on its diagonal (it was 2.98e-154 in float64, the root of the
    smallest normal number), and so have duplicated rows of y; the gradient there is 0 and finite."""
    scale = c if c >= 1e-3 else 1.0  # (for a tiny c, points of norm ~1: 1/sqrt(c) overflows float32)
    x = ball_points(6, 5, scale, seed, radius, dtype)
    y = torch.cat([x[:3], ball_points(4, 5, scale, seed + 1, radius, dtype)])
    cc = torch.tensor(c, dtype=dtype) if tensor_c else c
    xx = x.clone().requires_grad_()
    d = P.pairwise_dist(xx, xx, cc)
    assert torch.equal(d.diagonal(), torch.zeros(6, dtype=dtype))
    assert torch.equal(P.pairwise_dist(x, y, cc)[:3, :3].diagonal(), torch.zeros(3, dtype=dtype))
    assert bool((d + torch.eye(6, dtype=dtype) > 0).all())  # distinct rows: positive
    (g,) = torch.autograd.grad(d.diagonal().sum(), xx)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("dtype,c", [(torch.float32, c) for c in (1e-15, 1.09e-19, 1.07e-19, 1e-23, 1e-36)]
                         + [(F64, c) for c in (1e-150, 1.493e-154, 1.490e-154, 1e-158, 1e-300)])
def test_pairwise_dist_continuous_across_tiny_c(dtype, c):
    """Around the c where the hot path switches to the series form (sqrt(finfo.tiny): 1.08e-19 in
    float32, 1.49e-154 in float64) and far below it (float32 down to c = 1e-36, whose points of norm
    1e18 still square finitely; float64 to 1e-300), with points at hyperbolic scale (norms up to
    0.95 / sqrt(c)): pairwise_dist equals Eq. 2 in 50-digit arithmetic (geoopt's float64 is off by up to
    25 % at such c), and its hand-written gradients equal the autograd route of dist."""
    g = torch.Generator().manual_seed(17)
    raw = [torch.randn(n, 3, generator=g, dtype=F64) for n in (4, 5)]
    x, y = (r / r.norm(dim=-1, keepdim=True) * torch.rand(len(r), 1, generator=g, dtype=F64) * 0.95 / math.sqrt(c) for r in raw)
    x, y = x.to(dtype).requires_grad_(), y.to(dtype).requires_grad_()
    d = P.pairwise_dist(x, y, c)
    ref = torch.tensor([[mp_dist(a.double(), b.double(), c) for b in y.detach()] for a in x.detach()], dtype=F64)
    assert rel_err(d.detach().double(), ref) < (1e-5 if dtype == torch.float32 else 1e-12)
    gx, gy = torch.autograd.grad(d.sum(), (x, y))
    hx, hy = torch.autograd.grad(P.dist(x[:, None], y[None], c).sum(), (x, y))
    for a, b in ((gx, hx), (gy, hy)):
        torch.testing.assert_close(a, b, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


# ------------------------------------------------------------------------------------------------
# the Euclidean limit c -> 0
# ------------------------------------------------------------------------------------------------
def test_c_to_zero_is_smooth():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 4, dtype=F64, generator=g), torch.randn(20, 4, dtype=F64, generator=g)
    v = torch.randn(20, 4, dtype=F64, generator=g)
    euclid = 2 * (x - y).norm(dim=-1)
    assert torch.equal(P.dist(x, y, 0.0), euclid)
    for c in [1e-12, 1e-8]:
        # the first correction is O(c |x|^2): no 0/0, no jump
        assert rel_err(P.dist(x, y, c), euclid) < 1e3 * c + 1e-14
        assert rel_err(P.pairwise_dist(x, y, c), P.pairwise_dist(x, y, 0.0)) < 1e3 * c + 1e-12
        assert rel_err(P.expmap0(v, c), v) < 1e3 * c + 1e-15
        assert rel_err(P.logmap0(x, c), x) < 1e3 * c + 1e-15
        assert rel_err(P.mobius_add(x, y, c), x + y) < 1e4 * c + 1e-15
        assert rel_err(P.mobius_scalar_mul(0.3, x, c), 0.3 * x) < 1e3 * c + 1e-15
        assert rel_err(P.lca_depth(x, y, c), P.lca_depth(x, y, 0.0)) < 1e3 * c + 1e-12
    assert rel_err(P.expmap(x, v, 0.0), x + v) < 1e-15
    assert rel_err(P.logmap(x, y, 0.0), y - x) < 1e-15
    # lca at c = 0: twice the distance from the origin to the line through x and y
    t = -(x * (y - x)).sum(-1, keepdim=True) / (y - x).pow(2).sum(-1, keepdim=True)
    foot = x + t * (y - x)
    assert rel_err(P.lca_depth(x, y, 0.0), 2 * foot.norm(dim=-1)) < 1e-10


# ------------------------------------------------------------------------------------------------
# float32 robustness
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_float32_finite_everywhere_project_allows(c):
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(256, 16, generator=g) * torch.logspace(-8, 4, 256)[:, None]
    x = P.project(raw, c).requires_grad_()
    y = P.project(raw.flip(0) * -1, c).requires_grad_()
    assert float((c * x.detach().pow(2).sum(-1)).max()) < 1
    for out in (P.dist(x, y, c), P.pairwise_dist(x, y, c), P.dist0(x, c), P.lca_depth(x, y, c),
                P.logmap0(x, c), P.logmap(x, y, c), P.mobius_add(x, y, c), P.expmap0(x * 1e3, c)):
        assert torch.isfinite(out).all()
        grads = torch.autograd.grad(out.sum(), [x, y], allow_unused=True)
        assert all(gr is None or torch.isfinite(gr).all() for gr in grads)


def test_dist_to_itself_has_zero_gradient_float32():
    x = P.expmap0(torch.randn(8, 5), 1.0).requires_grad_()
    d = P.dist(x, x, 1.0)
    (gx,) = torch.autograd.grad(d.sum(), x)
    assert torch.equal(d, torch.zeros(8)) and torch.equal(gx, torch.zeros_like(gx))
    d = P.pairwise_dist(x, x, 1.0)
    (gx,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(gx).all()


def test_expmap0_saturation_is_projected_not_nan():
    v = torch.tensor([[1e3, 0.0], [0.0, 50.0]])
    x = P.expmap0(v, 1.0)
    assert float(x.norm(dim=-1).max()) <= P.max_norm(1.0, torch.float32) + 1e-7
    assert torch.isfinite(P.dist0(x, 1.0)).all()


def test_clip_features_bounds_the_ball_radius():
    c, r = 0.5, 2.3
    v = torch.randn(100, 8, dtype=F64) * 10
    x = P.expmap0(P.clip_features(v, r), c)
    assert float(x.norm(dim=-1).max()) <= math.tanh(math.sqrt(c) * r) / math.sqrt(c) + 1e-12
    small = torch.randn(5, 8, dtype=F64) * 0.01
    assert torch.equal(P.clip_features(small, r), small)
    assert torch.equal(P.clip_features(v, math.inf), v)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_errors_name_the_parameter():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"c = -0.5.*c >= 0"):
        P.dist(x, x, -0.5)
    with pytest.raises(ValueError, match="c = nan"):
        P.expmap0(x, float("nan"))
    with pytest.raises(ValueError, match=r"y: 1 point\(s\) lie outside the Poincaré ball"):
        P.dist(x, torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), 1.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        P.pairwise_dist(torch.full((2, 3), float("nan")), x, 1.0)
    with pytest.raises(ValueError, match="same D"):
        P.pairwise_dist(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="r = 0"):
        P.clip_features(x, 0.0)
    with pytest.raises(ValueError, match="a: 1 point"):
        P.lca_depth(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), 1.0)
    # points exactly on the boundary are outside too (c ||x||^2 = 1)
    with pytest.raises(ValueError, match="outside"):
        P.logmap0(torch.tensor([[1.0, 0.0]], dtype=F64), 1.0)
    # strings, bools and integer tensors where floats are expected: TypeError naming the parameter
    with pytest.raises(TypeError, match="c must be a real number"):
        P.dist(x, x, "0.5")
    with pytest.raises(TypeError, match="c must be a real number"):
        P.check_curvature(True)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        P.dist0(torch.zeros(2, 3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="v contains NaN or inf"):
        P.expmap0(torch.tensor([[1.0, math.inf]]), 1.0)
    # the check can be switched off for hot loops; project pulls points back inside
    with P.checks(False):
        P.dist(x, x, 1.0)
    inside = P.project(torch.tensor([[3.0, 4.0]]), 1.0)
    P.check_in_ball(inside, 1.0)


def test_pairwise_dist_never_builds_an_NxMxD_tensor():
    n, m, d = 64, 80, 32

    class Largest(TorchDispatchMode):
        biggest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    Largest.biggest = max(Largest.biggest, t.numel())
            return out

    x, y = P.expmap0(torch.randn(n, d), 1.0), P.expmap0(torch.randn(m, d), 1.0)
    with Largest():
        P.pairwise_dist(x, y, 1.0)
    assert Largest.biggest <= n * m
    with Largest():
        gm.dist(x[:, None], y[None], k=torch.tensor(-1.0))
    assert Largest.biggest >= n * m * d  # the broadcasting reference does build it


# ------------------------------------------------------------------------------------------------
# hyperbolic LCA against a numerical search along geoopt's geodesic
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.3, 1.0, 2.0])
def test_lca_depth_is_the_closest_point_of_the_geodesic(c):
    a, b = ball_points(5, 3, c, 11, 0.9), ball_points(5, 3, c, 12, 0.9)
    ours = P.lca_depth(a, b, c)
    k = k_of(c)
    for i in range(5):
        u = gm.logmap(a[i], b[i], k=k)

        def along(t: float) -> float:
            return float(gm.dist0(gm.expmap(a[i], t * u, k=k), k=k))

        best = minimize_scalar(along, bounds=(-4.0, 5.0), method="bounded", options={"xatol": 1e-10})
        assert abs(float(ours[i]) - best.fun) < 1e-8
    # geodesics through the origin have depth 0; a point with itself is its own LCA
    assert float(P.lca_depth(a, -0.5 * a, c).abs().max()) < 1e-7
    assert rel_err(P.lca_depth(a, a, c), P.dist0(a, c)) < 1e-14


# ------------------------------------------------------------------------------------------------
# hypothesis: gyrogroup identities
# ------------------------------------------------------------------------------------------------
D = 3
coords = arrays(np.float64, (D,), elements=st.floats(-1, 1, allow_nan=False))
radii = st.floats(0.0, 0.97)
curvatures = st.floats(1e-3, 5.0)


def to_ball(u: np.ndarray, rad: float, c: float) -> torch.Tensor:
    t = torch.tensor(u, dtype=F64)
    n = float(t.norm())
    if n == 0:
        return t[None] * 0
    return (t / n * rad / math.sqrt(c))[None]


@settings(max_examples=60, deadline=None)
@given(coords, radii, coords, radii, curvatures)
def test_left_cancellation(u, ru, w, rw, c):
    x, y = to_ball(u, ru, c), to_ball(w, rw, c)
    back = P.mobius_add(-x, P.mobius_add(x, y, c), c)
    assert float((back - y).norm()) <= 1e-9 / math.sqrt(c) * (1 + 1 / (1 - rw))


@settings(max_examples=60, deadline=None)
@given(coords, radii, coords, radii, coords, radii, curvatures)
def test_dist_symmetric_and_triangle_inequality(u, ru, w, rw, z, rz, c):
    x, y, q = to_ball(u, ru, c), to_ball(w, rw, c), to_ball(z, rz, c)
    dxy, dyx = P.dist(x, y, c), P.dist(y, x, c)
    assert abs(float(dxy - dyx)) <= 1e-12 * (1 + float(dxy))
    assert float(dxy) <= float(P.dist(x, q, c) + P.dist(q, y, c)) + 1e-9


@settings(max_examples=60, deadline=None)
@given(coords, radii, coords, st.floats(0.0, 3.0), curvatures)
def test_exp_log_inverse(u, ru, w, scale, c):
    z = to_ball(u, ru, c)
    v = torch.tensor(w, dtype=F64)[None] * scale / math.sqrt(c)
    y = P.expmap(z, v, c)
    if float(c * y.pow(2).sum()) < 1 - 1e-6:  # skip points pushed onto the float64 boundary
        lam = float(P.conformal_factor(z, c))
        assert float((P.logmap(z, y, c) - v).norm()) <= 1e-8 * (1 + float(v.norm())) * lam
    assert float((P.logmap0(P.expmap0(v, c), c) - v).norm()) <= 1e-8 * (1 + float(v.norm())) ** 3


@settings(max_examples=60, deadline=None)
@given(coords, radii, coords, radii, coords, st.floats(0.0, 0.8), curvatures)
def test_dist_invariant_under_mobius_translation(u, ru, w, rw, z, rz, c):
    x, y, a = to_ball(u, ru, c), to_ball(w, rw, c), to_ball(z, rz, c)
    d = float(P.dist(x, y, c))
    moved = float(P.dist(P.mobius_add(a, x, c), P.mobius_add(a, y, c), c))
    assert abs(moved - d) <= 1e-7 * (1 + d) / (1 - max(ru, rw)) ** 2


@settings(max_examples=40, deadline=None)
@given(coords, coords, st.floats(1e-14, 1e-6))
def test_continuity_at_c_zero(u, w, c):
    x, y = torch.tensor(u, dtype=F64)[None] * 0.5, torch.tensor(w, dtype=F64)[None] * 0.5
    assert abs(float(P.dist(x, y, c) - P.dist(x, y, 0.0))) <= 10 * c + 1e-14


@settings(max_examples=40, deadline=None)
@given(coords, radii, st.floats(-2, 2), st.floats(-2, 2), curvatures)
def test_scalar_mul_is_a_homomorphism(u, ru, r, s, c):
    x = to_ball(u, ru, c)
    lhs = P.mobius_scalar_mul(r, P.mobius_scalar_mul(s, x, c), c)
    rhs = P.mobius_scalar_mul(r * s, x, c)
    assert float((lhs - rhs).norm()) <= 1e-7 / math.sqrt(c)
    assert float((P.mobius_scalar_mul(1.0, x, c) - x).norm()) <= 1e-12 / math.sqrt(c)


def _pairwise_dist_autograd(x, y, c: float):
    """``pairwise_dist`` for a float ``c > 0`` through autograd (the library's ``_PairwiseSq`` and
    elementwise ops): the reference ``_PairwiseDist``'s hand-written backward is held to."""
    sq, x2, y2 = P._pairwise_sqdist(x, y)
    ax, ay = P.alpha_of(x, c, x2), P.alpha_of(y, c, y2)
    sc = math.sqrt(float(c))
    u2 = sq * (1 / ax)[:, None] * (1 / ay)[None, :]
    return (2 / sc) * torch.asinh(sc * u2.clamp_min(torch.finfo(u2.dtype).tiny).sqrt())


# ------------------------------------------------------------------------------------------------
# fast paths: hand-written backward passes against the autograd routes they replace
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [1e-3, 0.5, 2.0])
def test_pairwise_dist_fast_path_equals_autograd_route(c, dtype):
    """pairwise_dist (float c > 0: _PairwiseDist, hand-written backward) == the autograd route
    (_PairwiseSq + elementwise ops + torch.asinh) it replaced: values and gradients, coincident
    points (the exactly recomputed pairs) included."""
    x = ball_points(9, 6, c, 11, 0.97, dtype)
    y = torch.cat([ball_points(13, 6, c, 12, 0.97, dtype), x[:3]])
    g = torch.randn(9, 16, dtype=dtype, generator=torch.Generator().manual_seed(13))
    out = []
    for f in (P.pairwise_dist, _pairwise_dist_autograd):
        xx, yy = x.clone().requires_grad_(), y.clone().requires_grad_()
        d = f(xx, yy, c)
        out.append((d, *torch.autograd.grad(d, (xx, yy), g)))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[0][0], out[1][0], **tol)
    for a, b in zip(out[0][1:], out[1][1:]):
        scale = float(b.abs().max())
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    assert float(out[0][0].detach()[:3, 13:].diagonal().abs().max()) < 1e-6  # coincident points


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pairwise_euclidean_equals_cdist(dtype):
    """pairwise_euclidean == torch.cdist (values to 1e-6 in float32) and its gradients, and 0 with
    a zero gradient for coincident points (where cdist's expansion gives rounding noise)."""
    gg = torch.Generator().manual_seed(5)
    x = torch.randn(11, 7, dtype=dtype, generator=gg) * 3
    y = torch.randn(17, 7, dtype=dtype, generator=gg) * 3
    g = torch.randn(11, 17, dtype=dtype, generator=gg)
    out = []
    for f in (P.pairwise_euclidean, torch.cdist):
        xx, yy = x.clone().requires_grad_(), y.clone().requires_grad_()
        d = f(xx, yy)
        out.append((d, *torch.autograd.grad(d, (xx, yy), g)))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out[0][0], out[1][0], rtol=tol, atol=tol)
    for a, b in zip(out[0][1:], out[1][1:]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.abs().max()))
    z = torch.cat([x[:2], y]).requires_grad_()
    d = P.pairwise_euclidean(x[:2], z)
    assert float(d.detach()[:, :2].diagonal().abs().max()) == 0.0
    (gz,) = torch.autograd.grad(d[0, 0], z)
    assert float(gz.abs().max()) == 0.0
    with pytest.raises(ValueError, match="x"):
        P.pairwise_euclidean(torch.full((2, 7), math.nan, dtype=dtype), y)
    with pytest.raises(ValueError, match="same D"):
        P.pairwise_euclidean(x, y[:, :3])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_asinh_nonneg_matches_torch(dtype):
    """The vectorised asinh of pairwise_dist (log1p form) is within a few ulp of torch.asinh,
    exact at 0 and inf, without overflow up to finfo.max / 2."""
    fi = torch.finfo(dtype)
    z = torch.cat([torch.tensor([0.0, 1e-30, 1e-10, 1e-3, 0.5, 1.0, 10.0, 1e5, 1e15, fi.max / 4, math.inf], dtype=dtype),
                   torch.logspace(-20, 20, 2001, dtype=dtype), torch.rand(1000, dtype=dtype) * 10])
    got = P.asinh_nonneg_(z.clone())
    ref = torch.asinh(z.double())
    rel = ((got.double() - ref).abs() / ref.abs().clamp_min(1e-300)).nan_to_num(0)
    assert float(rel.max()) < 8 * fi.eps
    assert float(got[0]) == 0.0 and math.isfinite(float(got[9])) and math.isinf(float(got[10]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log1p_nonneg_matches_torch(dtype, monkeypatch):
    """The vectorised log1p (Goldberg's correction) is within a few ulp of torch.log1p from the
    subnormals to inf, exact at 0, at inf and where 1 + w rounds to 1 (log1p w = w there)."""
    fi = torch.finfo(dtype)
    w = torch.cat([torch.tensor([0.0, fi.tiny / 4, fi.tiny, 1e-30, fi.eps / 4, fi.eps / 2, fi.eps, 1e-3, 0.5, 1.0,
                                 1e10, fi.max / 2, math.inf], dtype=dtype),
                   torch.logspace(math.log10(fi.tiny), math.log10(fi.max) - 1, 20001, dtype=dtype), torch.rand(1000, dtype=dtype)])
    got = P._log1p_nonneg_(w.clone())
    ref = torch.log1p(w.double())
    rel = ((got.double() - ref).abs() / ref.abs().clamp_min(1e-300)).nan_to_num(0)
    assert float(rel.max()) < 4 * fi.eps
    assert float(got[0]) == 0.0 and math.isinf(float(got[12])) and torch.equal(got[1:5], w[1:5])
    assert torch.isfinite(got[:12]).all()
    # in place, block by block (a block boundary inside the special values), and for a strided view
    buf = w.clone()
    monkeypatch.setattr(P, "_LOG1P_BLOCK", 7)
    assert P._log1p_nonneg_(buf) is buf and torch.equal(buf, got)
    grid = w[:20000].clone().view(100, 200)
    view = grid.T  # not contiguous: written back through the view
    expect = P._log1p_nonneg_(grid.T.contiguous())
    assert P._log1p_nonneg_(view) is view and torch.equal(grid.T, expect)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("r", [2.3, 0.5, math.inf])
def test_expmap0_clipped_equals_two_calls(c, r, dtype):
    """expmap0_clipped(v, r, c) (one _NormScale) == expmap0(clip_features(v, r), c): values and
    gradients, for norms from 1e-3 to 1e2 (clipped and not), also for a tensor c."""
    v = torch.randn(40, 9, dtype=dtype, generator=torch.Generator().manual_seed(21))
    v = v * torch.logspace(-3, 2, 40, dtype=dtype)[:, None]
    g = torch.randn(40, 9, dtype=dtype, generator=torch.Generator().manual_seed(22))
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    for cc in (c, torch.tensor(c, dtype=dtype)):
        out = []
        for f in (lambda v: P.expmap0_clipped(v, r, cc), lambda v: P.expmap0(P.clip_features(v, r), cc)):
            vv = v.clone().requires_grad_()
            y = f(vv)
            out.append((y, *torch.autograd.grad(y, vv, g)))
        torch.testing.assert_close(out[0][0], out[1][0], rtol=tol, atol=tol)
        torch.testing.assert_close(out[0][1], out[1][1], rtol=tol, atol=tol * float(out[1][1].abs().max()))
    with pytest.raises(ValueError, match="r"):
        P.expmap0_clipped(v, 0.0, c)
