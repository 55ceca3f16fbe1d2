"""Extreme and invalid inputs over every public function of chestlab.poincare, of the functional core
of the losses (chestlab.losses.functional) and of chestlab.metrics.

Contract ("nothing lost, nothing silent"): an invalid input (non-finite values, integer or string
inputs where floats are expected, out-of-range options, empty batches where a mean is taken) raises
one ``TypeError``/``ValueError`` whose one-line message names the parameter; an extreme but valid
input (huge norms, tiny ``c``, infinite scalars) returns the mathematical limit. Never a silent NaN,
never a wrong point. Value checks (finiteness, in-ball) are skipped inside ``poincare.checks(False)``;
checks of types and Python scalars are not.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from chestlab import losses as L
from chestlab import metrics as Mx
from chestlab import poincare as P
from chestlab.losses import functional as LF
from chestlab.losses import LossContext, get_loss
from chestlab.models import HyperbolicHead
from chestlab.settings import TrainConfig
from chestlab.train import StepEvent, Trainer

from _helpers import F64, ball_points, gen

C0 = 0.5


def pts(n: int = 5, d: int = 3, seed: int = 0, dtype=F64) -> torch.Tensor:
    return ball_points(n, d, C0, seed, 0.9, dtype)


def vecs(n: int = 5, d: int = 3, seed: int = 0, dtype=F64) -> torch.Tensor:
    return torch.randn(n, d, generator=gen(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------------
# every public function of poincare, with valid arguments and the role of each argument
# ------------------------------------------------------------------------------------------------
# role: "point" (in the ball), "vector" (any finite), "c", "scalar" (float or tensor), "index"
POINCARE = {
    "mobius_add": (P.mobius_add, dict(x="point", y="point", c="c")),
    "mobius_scalar_mul": (P.mobius_scalar_mul, dict(r="scalar", x="point", c="c")),
    "gyration": (P.gyration, dict(u="point", v="point", w="vector", c="c")),
    "dist": (P.dist, dict(x="point", y="point", c="c")),
    "pairwise_dist": (P.pairwise_dist, dict(x="point", y="point", c="c")),
    "pairwise_euclidean": (P.pairwise_euclidean, dict(x="vector", y="vector")),
    "dist0": (P.dist0, dict(x="point", c="c")),
    "expmap0": (P.expmap0, dict(v="vector", c="c")),
    "expmap0_clipped": (P.expmap0_clipped, dict(v="vector", r="radius", c="c")),
    "expmap": (P.expmap, dict(z="point", v="vector", c="c")),
    "logmap0": (P.logmap0, dict(y="point", c="c")),
    "logmap": (P.logmap, dict(z="point", y="point", c="c")),
    "geodesic": (P.geodesic, dict(x="point", y="point", t="scalar", c="c")),
    "parallel_transport": (P.parallel_transport, dict(x="point", y="point", v="vector", c="c")),
    "weighted_midpoint": (P.weighted_midpoint, dict(x="point", w="weights", c="c")),
    "conformal_factor": (P.conformal_factor, dict(x="point", c="c")),
    "alpha": (P.alpha, dict(x="point", c="c")),
    "project": (P.project, dict(x="vector", c="c")),
    "clip_features": (P.clip_features, dict(v="vector", r="radius")),
    "lca_depth": (P.lca_depth, dict(a="point", b="point", c="c")),
    "group_dist_lca": (P.group_dist_lca, dict(x="point", groups="index", c="c")),
    "check_in_ball": (P.check_in_ball, dict(x="point", c="c")),
    "check_finite": (P.check_finite, dict(x="vector")),
    "check_curvature": (P.check_curvature, dict(c="c")),
    "max_norm": (P.max_norm, dict(c="c")),
}


def test_the_table_covers_every_public_function():
    public = {n for n in P.__all__ if callable(getattr(P, n)) and n not in ("checks", "checks_enabled")}
    assert public == set(POINCARE)


def valid(role: str, n: int = 5, d: int = 3, seed: int = 0, dtype=F64):
    return {
        "point": lambda: pts(n, d, seed, dtype),
        "vector": lambda: vecs(n, d, seed, dtype),
        "c": lambda: C0,
        "scalar": lambda: 0.7,
        "weights": lambda: torch.rand(n, generator=gen(seed), dtype=dtype) + 0.1,
        "index": lambda: torch.randint(n, (4, 3), generator=gen(seed)),
        "radius": lambda: 2.3,
    }[role]()


def args_of(name: str, **override):
    fn, roles = POINCARE[name]
    kw = {k: valid(r, seed=i) for i, (k, r) in enumerate(roles.items())}
    kw.update(override)
    return fn, kw


def raises_clearly(call, param: str, kinds=(TypeError, ValueError)) -> str:
    """The call raises one of ``kinds`` with a one-line message that names ``param``."""
    with pytest.raises(kinds) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert param in msg, f"{param!r} not named in: {msg}"
    return msg


BAD_CURVATURES = [
    ("0.5", TypeError), (True, TypeError), (None, TypeError), ([0.5], TypeError), (0.5j, TypeError),
    (object(), TypeError), (torch.tensor(1), TypeError), (torch.tensor(True), TypeError),
    (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError), (-1e-300, ValueError),
    (-2, ValueError), (torch.tensor([0.5]), ValueError), (torch.tensor(math.nan), ValueError),
    (torch.tensor(-0.5, dtype=F64), ValueError), (np.float64(math.nan), ValueError),
]


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(n for n, (_, r) in POINCARE.items() if "c" in r.values())),
       st.sampled_from(range(len(BAD_CURVATURES))), st.booleans())
def test_invalid_curvature_is_refused(name, which, checks_on):
    bad, kind = BAD_CURVATURES[which]
    fn, kw = args_of(name, c=bad)
    with P.checks(checks_on):  # Python scalars and CPU tensors are always checked
        raises_clearly(lambda: fn(**kw), "c", kind)


@pytest.mark.parametrize("good", [1, 0, np.float32(0.5), np.float64(2.0), torch.tensor(0.5), torch.tensor(0.0, dtype=F64)])
def test_valid_curvature_types_are_accepted(good):
    for name in ("dist", "expmap0", "geodesic", "group_dist_lca"):
        fn, kw = args_of(name, c=good)
        kw = {k: v * 0.3 if k in ("x", "y") else v for k, v in kw.items()}  # inside the ball of c = 2
        out = fn(**kw)
        out = torch.cat(out, -1) if isinstance(out, tuple) else out
        assert torch.isfinite(out).all()


NON_TENSORS = [("a string", TypeError), ([[0.1, 0.2, 0.3]], TypeError), (np.zeros((2, 3)), TypeError), (3.0, TypeError)]
WRONG_DTYPES = [torch.int64, torch.int32, torch.bool, torch.uint8]


def _tensor_params(name):
    return [(k, r) for k, r in POINCARE[name][1].items() if r in ("point", "vector", "weights")]


CASES_TENSOR = [(n, k) for n in sorted(POINCARE) for k, _ in _tensor_params(n)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CASES_TENSOR), st.sampled_from(range(len(NON_TENSORS) + len(WRONG_DTYPES))), st.booleans())
def test_non_float_tensors_are_refused(case, which, checks_on):
    name, param = case
    if which < len(NON_TENSORS):
        bad, kind = NON_TENSORS[which]
    else:
        bad, kind = torch.zeros(5, 3, dtype=WRONG_DTYPES[which - len(NON_TENSORS)]), TypeError
        if POINCARE[name][1][param] == "weights":
            bad = bad[:, 0]
    fn, kw = args_of(name, **{param: bad})
    with P.checks(checks_on):  # type checks always run
        raises_clearly(lambda: fn(**kw), param, kind)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([(n, k) for n, k in CASES_TENSOR]), st.sampled_from([math.nan, math.inf, -math.inf]),
       st.integers(0, 14), st.sampled_from([torch.float32, F64]))
def test_non_finite_values_are_refused(case, value, pos, dtype):
    name, param = case
    fn, roles = POINCARE[name]
    kw = {k: valid(r, seed=i, dtype=dtype) for i, (k, r) in enumerate(roles.items())}
    bad = kw[param].clone()
    bad.view(-1)[pos % bad.numel()] = value
    if roles[param] == "weights" and value == math.inf:
        return  # an infinite weight is a valid limit (tested in test_geometry_ops)
    kw[param] = bad
    raises_clearly(lambda: fn(**kw), param, ValueError)
    # with the value checks off, no error (and no host read of the values): the trainer's hot loop
    with P.checks(False):
        fn(**kw)


@pytest.mark.parametrize("name", sorted(n for n in POINCARE if "point" in POINCARE[n][1].values()))
def test_points_outside_the_ball_are_refused(name):
    fn, roles = POINCARE[name]
    param = next(k for k, r in roles.items() if r == "point")
    outside = pts(seed=3)
    outside[2] = outside[2] / outside[2].norm() * 1.5 / math.sqrt(C0)
    on_boundary = pts(seed=4)
    on_boundary[0] = torch.tensor([1.0, -1.0, 0.0], dtype=F64)  # c ||x||^2 = 1 exactly (C0 = 0.5)
    for bad in (outside, on_boundary):
        fn, kw = args_of(name, **{param: bad})
        raises_clearly(lambda: fn(**kw), param, ValueError)


def test_other_options_are_checked():
    x = pts()
    raises_clearly(lambda: P.dist(x, x, C0, keepdim=1), "keepdim", TypeError)
    raises_clearly(lambda: P.dist0(x, C0, keepdim="yes"), "keepdim", TypeError)
    raises_clearly(lambda: P.project(x, C0, eps=1.0), "eps", ValueError)
    raises_clearly(lambda: P.project(x, C0, eps=-1e-3), "eps", ValueError)
    raises_clearly(lambda: P.project(x, C0, eps="0.1"), "eps", ValueError)
    raises_clearly(lambda: P.clip_features(x, "2.3"), "r", TypeError)
    raises_clearly(lambda: P.clip_features(x, 0.0), "r", ValueError)
    raises_clearly(lambda: P.clip_features(x, math.nan), "r", ValueError)
    raises_clearly(lambda: P.clip_features(x, True), "r", TypeError)
    raises_clearly(lambda: P.mobius_scalar_mul("2", x, C0), "r", TypeError)
    raises_clearly(lambda: P.mobius_scalar_mul(math.nan, x, C0), "r", ValueError)
    raises_clearly(lambda: P.mobius_scalar_mul(torch.tensor([1.0, math.nan], dtype=F64)[:, None], x[:2], C0), "r", ValueError)
    raises_clearly(lambda: P.mobius_scalar_mul(torch.tensor(2), x, C0), "r", TypeError)
    raises_clearly(lambda: P.geodesic(x, x, math.nan, C0), "t", ValueError)
    raises_clearly(lambda: P.geodesic(x, x, None, C0), "t", TypeError)
    raises_clearly(lambda: P.max_norm(C0, torch.int64), "dtype", TypeError)
    raises_clearly(lambda: P.max_norm(C0, "float32"), "dtype", TypeError)
    raises_clearly(lambda: P.dist(x, pts(4), C0), "x", ValueError)  # shapes do not broadcast
    raises_clearly(lambda: P.mobius_add(x, pts(5, 4), C0), "x", ValueError)  # different D
    raises_clearly(lambda: P.dist0(torch.tensor(0.1, dtype=F64), C0), "x", ValueError)  # no coordinate dimension
    raises_clearly(lambda: P.pairwise_dist(x[0], x, C0), "x", ValueError)
    raises_clearly(lambda: P.weighted_midpoint(x, torch.tensor([1.0, -1, 1, 1, 1], dtype=F64), C0), "w", ValueError)
    raises_clearly(lambda: P.weighted_midpoint(x, torch.zeros(5, dtype=F64), C0), "w", ValueError)
    raises_clearly(lambda: P.weighted_midpoint(x, torch.ones(4, dtype=F64), C0), "w", ValueError)
    raises_clearly(lambda: P.weighted_midpoint(x[None], None, C0), "x", ValueError)
    raises_clearly(lambda: P.group_dist_lca(x, torch.zeros(4, 3), C0), "groups", TypeError)
    raises_clearly(lambda: P.group_dist_lca(x, torch.zeros(4, 1, dtype=torch.long), C0), "groups", ValueError)
    raises_clearly(lambda: P.group_dist_lca(x, torch.zeros(4, 3, dtype=torch.long), C0, lca=None), "lca", TypeError)
    raises_clearly(lambda: P.mobius_scalar_mul(math.inf, x, 0.0), "c = 0", ValueError)
    raises_clearly(lambda: P.geodesic(x, x.flip(0), -math.inf, 0.0), "c = 0", ValueError)


# ------------------------------------------------------------------------------------------------
# empty batches: elementwise maps give empty results; a reduction over no points raises
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(POINCARE))
def test_empty_batches(name):
    fn, roles = POINCARE[name]
    kw = {}
    for k, r in roles.items():
        if r in ("point", "vector"):
            kw[k] = torch.zeros(0, 3, dtype=F64)
        elif r == "weights":
            kw[k] = torch.zeros(0, dtype=F64)
        elif r == "index":
            kw[k] = torch.zeros(0, 3, dtype=torch.long)
        else:
            kw[k] = valid(r)
    if name == "weighted_midpoint":
        raises_clearly(lambda: fn(**kw), "N = 0", ValueError)
        return
    if name == "group_dist_lca":  # no points, but groups index them: fine when there are no groups
        d, depth = fn(**kw)
        assert d.shape == depth.shape == (0, 3)
        return
    out = fn(**kw)
    if name in ("check_curvature", "max_norm"):
        return
    out = out if isinstance(out, torch.Tensor) else out[0]
    assert out.numel() == 0


# ------------------------------------------------------------------------------------------------
# extreme but valid inputs: the mathematical limit
# ------------------------------------------------------------------------------------------------
directions = st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(lambda u: sum(t * t for t in u) > 1e-6)


@settings(max_examples=100, deadline=None)
@given(directions, st.floats(0, 300), st.sampled_from([F64, torch.float32]), st.floats(1e-3, 1e3))
def test_huge_vectors_go_to_the_boundary_in_their_direction(u, log10_norm, dtype, c):
    if dtype == torch.float32:
        log10_norm = min(log10_norm, 37.5)
    d = torch.tensor(u, dtype=F64)
    d = d / d.norm()
    v = (d * 10.0**log10_norm).to(dtype)[None]
    n = 10.0**log10_norm
    rmax = P.max_norm(c, dtype)
    for out, radius in (
        (P.expmap0(v, c), min(math.tanh(math.sqrt(c) * n) / math.sqrt(c), rmax)),
        (P.project(v, c), min(n, rmax)),
        (P.clip_features(v, 2.3), min(n, 2.3)),
    ):
        assert torch.isfinite(out).all()
        rel = 1e-5 if dtype == torch.float32 else 1e-12
        assert abs(float(out.double().norm()) - radius) <= rel * radius
        assert float(torch.nn.functional.cosine_similarity(out.double(), d[None])) >= 1 - rel
    # expmap at a point: the geodesic from z in the direction of v, out to the boundary
    z = ball_points(1, 3, c, 9, 0.5, dtype)
    y = P.expmap(z, v, c)
    assert torch.isfinite(y).all()
    if log10_norm >= 5:
        assert float(c * y.double().pow(2).sum()) > 1 - 3 * P.BALL_EPS[dtype]
        if dtype == F64:
            back = P.logmap(z, y, c)
            assert float(torch.nn.functional.cosine_similarity(back, d[None])) >= 1 - 1e-9


def euclidean_limits(x, y, w, c):
    """(name, function of the ball at c, its Euclidean limit written out) for every function with a
    c -> 0 limit; x, y points, w a vector (4, 3)."""
    t = torch.tensor([[-1.0], [0.3], [2.0], [0.0]], dtype=x.dtype)
    g = torch.tensor([[0, 1, 2], [1, 2, 3]])
    return [
        ("mobius_add", P.mobius_add(x, y, c), x + y),
        ("mobius_scalar_mul", P.mobius_scalar_mul(1.7, x, c), 1.7 * x),
        ("gyration", P.gyration(x, y, w, c), w),
        ("dist", P.dist(x, y, c), 2 * (x - y).norm(dim=-1)),
        ("pairwise_dist", P.pairwise_dist(x, y, c), 2 * torch.cdist(x, y)),
        ("dist0", P.dist0(x, c), 2 * x.norm(dim=-1)),
        ("expmap0", P.expmap0(w, c), w),
        ("expmap0_clipped", P.expmap0_clipped(w, 0.5, c), P.clip_features(w, 0.5)),
        ("expmap", P.expmap(x, w, c), x + w),
        ("logmap0", P.logmap0(x, c), x),
        ("logmap", P.logmap(x, y, c), y - x),
        ("geodesic", P.geodesic(x, y, t, c), x + t * (y - x)),
        ("parallel_transport", P.parallel_transport(x, y, w, c), w),
        ("weighted_midpoint", P.weighted_midpoint(x, None, c), x.mean(0)),
        ("conformal_factor", P.conformal_factor(x, c), torch.full((4, 1), 2.0, dtype=x.dtype)),
        ("alpha", P.alpha(x, c), torch.ones(4, dtype=x.dtype)),
        ("project", P.project(x, c), x),
        ("lca_depth", P.lca_depth(x, y, c), P.lca_depth(x, y, 0.0)),
        ("group_dist_lca", torch.cat(P.group_dist_lca(x, g, c), -1), torch.cat(P.group_dist_lca(x, g, 0.0), -1)),
    ]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([5e-324, 1e-300, 1e-200, 1e-100, 1e-78, 1e-40, 1e-30]), st.integers(0, 2**16),
       st.sampled_from([F64, torch.float32]), st.booleans())
def test_tiny_curvature_is_the_euclidean_limit(c, seed, dtype, tensor_c):
    """Every function at a tiny c (down to the smallest float64) gives the c = 0 formulas, values and
    gradients, in float32 and float64, for a float c and a tensor c (whose own gradient stays finite).
    float32 pairwise_dist was inf at c = 1e-78 and NaN at c <= 1e-100 (sqrt(c) and 2/sqrt(c) left the
    float32 range)."""
    x, y = (vecs(4, 3, seed, dtype) * 0.8).requires_grad_(), (vecs(4, 3, seed + 1, dtype) * 0.8).requires_grad_()
    w = vecs(4, 3, seed + 2, dtype).requires_grad_()
    cc = torch.tensor(c, dtype=dtype, requires_grad=True) if tensor_c else c
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == F64 else dict(rtol=2e-6, atol=1e-6)
    for name, got, want in euclidean_limits(x, y, w, cc):
        torch.testing.assert_close(got, want, **tol, msg=lambda m: f"{name}: {m}")
        grads = grads_or_zeros(got, [x, y, w] + ([cc] if tensor_c else []))
        for gg, ref in zip(grads, grads_or_zeros(want, [x, y, w])):
            torch.testing.assert_close(gg, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10, msg=lambda m: f"d {name}: {m}")
        if tensor_c:
            assert bool(torch.isfinite(grads[-1])), name


def grads_or_zeros(out: torch.Tensor, wrt: list[torch.Tensor]) -> list[torch.Tensor]:
    """d out.sum() / d wrt, zeros for the inputs ``out`` does not depend on."""
    if not out.requires_grad:
        return [torch.zeros_like(t) for t in wrt]
    grads = torch.autograd.grad(out.sum(), wrt, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]


@settings(max_examples=60, deadline=None)
@given(directions, st.floats(0.0, 0.95), directions, st.floats(0.0, 0.95), st.floats(1e-2, 1e2), st.booleans())
def test_infinite_scalars_give_the_ideal_points(u, ru, v, rv, c, negative):
    dx = torch.tensor(u, dtype=F64)
    dx = dx / dx.norm()
    x = (dx * ru / math.sqrt(c))[None]
    y = torch.tensor(v, dtype=F64)
    y = (y / y.norm() * rv / math.sqrt(c))[None]
    sign = -1.0 if negative else 1.0
    r = P.mobius_scalar_mul(sign * math.inf, x, c)
    assert torch.isfinite(r).all()
    if float(x.abs().max()) > 0:  # even a subnormal point keeps its direction
        ideal = sign * dx[None] * P.max_norm(c, F64)
        assert float((r - ideal).norm()) <= 1e-12 / math.sqrt(c)
    else:
        assert torch.equal(r, torch.zeros_like(x))  # r (x) 0 = 0 for every r
    g = P.geodesic(x, y, sign * math.inf, c)
    assert torch.isfinite(g).all()
    if not torch.equal(x, y):
        # on the boundary, and the limit of the geodesic: far points approach it
        assert abs(float(g.norm()) - P.max_norm(c, F64)) <= 1e-12 / math.sqrt(c)
        d = float(P.dist(x, y, c))
        if d > 1e-100:  # (the distance of two points ~1e-240 apart underflows)
            far = P.geodesic(x, y, sign * 60.0 / (math.sqrt(c) * d), c)
            assert float((far - g).norm()) <= 1e-9 / math.sqrt(c)
    else:
        assert torch.equal(g, x)  # a geodesic through one point: every t gives the point
    assert torch.equal(P.clip_features(x, math.inf), x)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([1e-12, 1e-3, 0.5, 1.0, 1e3]), st.sampled_from([F64, torch.float32]),
       st.floats(0.0, 15.0))
def test_no_nan_anywhere_in_the_ball(seed, c, dtype, closeness):
    # points up to 10^-closeness from the boundary (projected, as the library keeps them), their values
    # and gradients are finite for every function
    raw = torch.randn(6, 3, generator=gen(seed), dtype=F64)
    raw = raw / raw.norm(dim=-1, keepdim=True) * (1 - 10.0 ** -closeness) / math.sqrt(c)
    raw[0] = 0
    raw[1] = raw[2]
    x = P.project(raw.to(dtype), c).requires_grad_()
    v = (torch.randn(6, 3, generator=gen(seed + 1), dtype=F64) * 3).to(dtype)
    outs = [
        P.mobius_add(x, x.flip(0), c), P.mobius_scalar_mul(-2.5, x, c), P.gyration(x, x.flip(0), v, c),
        P.dist(x, x.flip(0), c), P.pairwise_dist(x, x, c), P.dist0(x, c), P.expmap(x, v, c), P.logmap0(x, c),
        P.logmap(x, x.flip(0), c), P.geodesic(x, x.flip(0), 0.3, c), P.parallel_transport(x, x.flip(0), v, c),
        P.weighted_midpoint(x, None, c), P.conformal_factor(x, c), P.lca_depth(x, x.flip(0), c),
        *P.group_dist_lca(x, torch.tensor([[0, 1, 2], [1, 2, 3], [3, 4, 5], [5, 0, 0]]), c),
        L.hyphc_loss(x, torch.tensor([[0, 1, 2], [1, 2, 3], [3, 4, 5], [5, 0, 0]]), c),
    ]
    for out in outs:
        assert torch.isfinite(out).all()
        (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True, retain_graph=True)
        assert g is None or torch.isfinite(g).all()


# ------------------------------------------------------------------------------------------------
# the value checks honour checks(False): no host read of tensor values in the hot path
# ------------------------------------------------------------------------------------------------
class HostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
            self.n += 1
        return func(*args, **(kwargs or {}))


def test_hot_path_reads_no_values_with_checks_off():
    v = torch.randn(20, 8)

    def hot():
        x = P.expmap0(P.clip_features(v, 2.3), C0)
        P.project(x, C0)
        P.dist0(x, C0)
        P.mobius_add(x, x, C0)
        P.conformal_factor(x, C0)
        P.logmap0(x, C0)

    with P.checks(False), HostReads() as off:
        hot()
    with HostReads() as on:
        hot()
    assert off.n == 0
    assert on.n > 0  # the same calls with the checks on do read values


def test_checks_switch_holds_per_thread():
    """``checks(False)`` is a context variable: two overlapping threads (the dashboard serves each
    browser tab in its own thread), A and B, enter and leave in the order A in, B in, A out, B out,
    which left the old module flag off for the whole process. A thread with the checks on still
    raises while the other is inside checks(False); afterwards the default (on) holds everywhere."""
    steps = {name: threading.Event() for name in ("a_in", "b_in", "a_out", "probe_done")}
    seen: dict[str, object] = {}
    nan = torch.tensor([math.nan])

    def probe(tag: str) -> None:  # a third thread, created while A and B are inside checks(False)
        try:
            P.check_finite(nan, "v")
            seen[tag] = "no error"
        except ValueError as err:
            seen[tag] = "v" in str(err)

    def a() -> None:
        with P.checks(False):
            seen["a_inside"] = P.checks_enabled()
            steps["a_in"].set()
            steps["b_in"].wait(10)
            P.check_finite(nan, "v")  # off here: no error
        seen["a_after"] = P.checks_enabled()
        steps["a_out"].set()

    def b() -> None:
        steps["a_in"].wait(10)
        with P.checks(False):
            steps["b_in"].set()
            t = threading.Thread(target=probe, args=("probe_while_both_off",))
            t.start()
            t.join(10)
            steps["a_out"].wait(10)
            seen["b_inside_after_a_left"] = P.checks_enabled()
        seen["b_after"] = P.checks_enabled()

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    late = threading.Thread(target=probe, args=("probe_after",))
    late.start()
    late.join(10)
    assert seen == {"a_inside": False, "probe_while_both_off": True, "a_after": True, "b_inside_after_a_left": False,
                    "b_after": True, "probe_after": True}
    assert P.checks_enabled()
    with pytest.raises(ValueError, match="v contains NaN"):
        P.check_finite(nan, "v")


def test_out_of_range_indices_name_the_argument():
    x = pts(5, 3)
    for bad in ([[0, 1, 5]], [[0, -1, 2]]):
        msg = raises_clearly(lambda: P.group_dist_lca(x, torch.tensor(bad), C0), "groups", ValueError)
        assert "[0, 5)" in msg
    with P.checks(False):  # a value check: off in the hot path (hyphc_loss checks its triplets itself)
        with pytest.raises((IndexError, RuntimeError)):
            P.group_dist_lca(x, torch.tensor([[0, 1, 5]]), C0)


# ------------------------------------------------------------------------------------------------
# the functional core of the losses
# ------------------------------------------------------------------------------------------------
def chest_args(B: int = 4, C: int = 3, K: int = 2, seed: int = 0):
    x_e = torch.randn(B, 4, generator=gen(seed), dtype=F64)
    x_h = pts(B, 3, seed + 1)
    labels = torch.arange(B) % C
    pe = torch.randn(C, K, 4, generator=gen(seed + 2), dtype=F64)
    ph = pts(C * K, 3, seed + 3).view(C, K, 3)
    trip = L.sample_triplets(C, K, 5, gen(seed + 4))
    return x_e, x_h, labels, pe, ph, trip


KW = dict(c=C0, delta_e=1.0, delta_h=2.0)


def loss_calls():
    x_e, x_h, labels, pe, ph, trip = chest_args()
    S = -torch.rand(4, 3, dtype=F64)
    d = torch.rand(4, 3, 2, dtype=F64)
    z = pts(6, 3, 7)
    lab6 = torch.tensor([0, 0, 1, 1, 2, 2])
    return {
        "chest_loss": lambda **o: L.chest_loss(**{**dict(x_e=x_e, x_h=x_h, labels=labels, proxies_e=pe, proxies_h=ph,
                                                          triplets=trip), **KW, **o}),
        "soft_similarity": lambda **o: L.soft_similarity(**{**dict(d=d, gamma=5.0), **o}),
        "proxy_loss": lambda **o: L.proxy_loss(**{**dict(S=S, labels=labels, lam=20.0, delta=1.0), **o}),
        "hyphc_loss": lambda **o: L.hyphc_loss(**{**dict(proxies_h=ph, triplets=trip, c=C0), **o}),
        "pair_ce_loss": lambda **o: L.pair_ce_loss(**{**dict(z=z, labels=lab6, t=0.1, c=C0), **o}),
        "mix_loss": lambda **o: L.mix_loss(**{**dict(z_e=vecs(6, 4), z_h=z, labels=lab6, t_e=0.1, t_h=0.1, lam=1.0, c=C0), **o}),
        "hard_negative_weights": lambda **o: L.hard_negative_weights(**{**dict(anchor=z[0], others=z[1:], t=0.1, c=C0), **o}),
        "pair_similarity": lambda **o: L.pair_similarity(**{**dict(x=z, y=z, c=C0), **o}),
        "sample_triplets": lambda **o: L.sample_triplets(**{**dict(C=3, K=2, M=5), **o}),
    }


def test_loss_table_covers_the_functional_core():
    public = {n for n in LF.__all__ if callable(getattr(LF, n)) and not n.startswith("check") and n != "CHESTOutput"}
    assert public == set(loss_calls())


INVALID_LOSS_ARGS = [
    # (function, parameter, bad value, exception)
    *[("chest_loss", p, v, e) for p in ("gamma_e", "gamma_h", "lambda_e", "lambda_h", "gamma_hyp", "eta_e", "eta_h", "tau")
      for v, e in (("1.0", TypeError), (True, TypeError), (None, TypeError), (math.nan, ValueError), (math.inf, ValueError),
                   (-1.0, ValueError))],
    *[("chest_loss", p, v, e) for p in ("delta_e", "delta_h") for v, e in (("1", TypeError), (math.nan, ValueError), (math.inf, ValueError))],
    ("chest_loss", "c", "0.5", TypeError), ("chest_loss", "c", -0.5, ValueError), ("chest_loss", "hyphc", "centroid", ValueError),
    ("chest_loss", "hyphc", 1, ValueError), ("chest_loss", "labels", torch.tensor([0.0, 1.0, 2.0, 0.0]), TypeError),
    ("chest_loss", "labels", torch.tensor([0, 1, 2, 3]), ValueError), ("chest_loss", "x_e", torch.zeros(4, 4, dtype=torch.long), TypeError),
    ("chest_loss", "x_h", [[0.0] * 3] * 4, TypeError), ("chest_loss", "x_e", torch.full((4, 4), math.nan, dtype=F64), ValueError),
    ("chest_loss", "proxies_e", torch.full((3, 2, 4), math.inf, dtype=F64), ValueError),
    ("chest_loss", "x_h", torch.full((4, 3), 5.0, dtype=F64), ValueError),
    ("chest_loss", "proxies_h", torch.full((3, 2, 3), math.nan, dtype=F64), ValueError),
    ("chest_loss", "triplets", torch.zeros(5, 3), TypeError),
    ("soft_similarity", "gamma", "5", TypeError), ("soft_similarity", "gamma", 0.0, ValueError),
    ("soft_similarity", "d", torch.zeros(4, 3, 0, dtype=F64), ValueError), ("soft_similarity", "d", torch.zeros(4, 3, dtype=torch.long), TypeError),
    ("soft_similarity", "d", torch.tensor([[1.0, math.nan]], dtype=F64), ValueError),
    ("proxy_loss", "lambda", "20", TypeError), ("proxy_loss", "delta", math.nan, ValueError), ("proxy_loss", "delta", "1", TypeError),
    ("proxy_loss", "S", torch.tensor([[0.0, math.inf, 1.0]] * 4, dtype=F64), ValueError),
("proxy_loss", "labels", torch.zeros(4), TypeError),
    ("proxy_loss", "labels", torch.zeros(4, dtype=torch.bool), TypeError),
    ("hyphc_loss", "triplets", torch.zeros(0, 3, dtype=torch.long), ValueError), ("hyphc_loss", "triplets", torch.zeros(5, 3), TypeError),
    ("hyphc_loss", "gamma_hyp", math.inf, ValueError), ("hyphc_loss", "variant", None, ValueError),
    ("hyphc_loss", "detach_similarity", "yes", TypeError), ("hyphc_loss", "c", "1", TypeError),
    ("hyphc_loss", "proxies_h", torch.full((3, 2, 3), 9.0, dtype=F64), ValueError),
    ("pair_ce_loss", "t", "0.1", TypeError), ("pair_ce_loss", "t", 0.0, ValueError), ("pair_ce_loss", "c", "0.5", TypeError),
    ("pair_ce_loss", "labels", torch.zeros(6), TypeError), ("pair_ce_loss", "z", torch.full((6, 3), 7.0, dtype=F64), ValueError),
    ("pair_ce_loss", "z", torch.zeros(6, 3, dtype=torch.long), TypeError),
    ("mix_loss", "lam", -1.0, ValueError), ("mix_loss", "t_h", math.nan, ValueError), ("mix_loss", "c", None, TypeError),
    ("hard_negative_weights", "others", torch.zeros(0, 3, dtype=F64), ValueError), ("hard_negative_weights", "t", -1.0, ValueError),
    ("hard_negative_weights", "anchor", torch.zeros(3, dtype=torch.long), TypeError),
    ("pair_similarity", "x", torch.full((6, 3), math.nan, dtype=F64), ValueError), ("pair_similarity", "y", torch.zeros(6, 4, dtype=F64), ValueError),
    ("sample_triplets", "C", 3.0, TypeError), ("sample_triplets", "M", "5", TypeError), ("sample_triplets", "K", True, TypeError),
    ("sample_triplets", "M", 0, ValueError), ("sample_triplets", "generator", 3, TypeError),
]


@pytest.mark.parametrize("fn,param,bad,kind", INVALID_LOSS_ARGS, ids=[f"{f}-{p}-{i}" for i, (f, p, _, _) in enumerate(INVALID_LOSS_ARGS)])
def test_invalid_loss_arguments(fn, param, bad, kind):
    call = loss_calls()[fn]
    raises_clearly(lambda: call(**{param: bad}), param, kind)


def test_empty_batches_of_the_losses():
    x_e, x_h, labels, pe, ph, trip = chest_args()
    empty = dict(x_e=x_e[:0], x_h=x_h[:0], labels=labels[:0], proxies_e=pe, proxies_h=ph, triplets=trip)
    # chest_loss on a 0-row batch was NaN; now one clear error (also through the registered module)
    raises_clearly(lambda: L.chest_loss(**empty, **KW), "B = 0", ValueError)
    raises_clearly(lambda: L.chest_loss(**empty, **KW, tau=0.0), "B = 0", ValueError)
    crit = L.CHESTLoss(3, 2, 4, torch.nn.Identity(), M=4, delta_e=1.0, delta_h=1.0)
    raises_clearly(lambda: crit(x_e[:0].float(), x_e[:0].float(), labels[:0]), "B = 0", ValueError)
    raises_clearly(lambda: L.proxy_loss(-torch.rand(0, 3, dtype=F64), labels[:0], 20.0, 1.0), "B = 0", ValueError)
    raises_clearly(lambda: L.pair_ce_loss(x_h[:0], labels[:0], 0.1, C0), "positive pair", ValueError)
    # elementwise parts on empty input stay empty (no mean is taken there)
    assert L.soft_similarity(torch.zeros(0, 3, 2, dtype=F64), 5.0).shape == (0, 3)
    assert L.pair_similarity(x_h[:0], x_h, C0).shape == (0, 4)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1e-300, 1e-30, 1e-8]), st.integers(0, 2**16), st.sampled_from([F64, torch.float32]))
def test_tiny_temperatures_give_the_hard_limits(temp, seed, dtype):
    d = (torch.rand(5, 4, 3, generator=gen(seed), dtype=F64) * 10).to(dtype)
    # gamma -> 0: the soft minimum is the minimum
    torch.testing.assert_close(L.soft_similarity(d, temp), -d.amin(-1))
    # t -> 0: the weights of the hard negatives become one-hot on the hardest, the loss 0 or +inf
    z = pts(6, 3, seed, dtype)
    w = L.hard_negative_weights(z[0], z[1:], temp, C0)
    assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-6 and float(w.max()) == 1.0
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    for loss in (L.pair_ce_loss(z, lab, temp, C0), L.pair_ce_loss(z, lab, temp),
                 L.mix_loss(vecs(6, 4, seed, dtype), z, lab, temp, temp, 1.0, C0)):
        assert not torch.isnan(loss) and float(loss) >= 0


def test_loss_value_checks_respect_checks_off():
    x_e, x_h, labels, pe, ph, trip = chest_args()
    bad = torch.full_like(x_e, math.nan)
    raises_clearly(lambda: L.chest_loss(bad, x_h, labels, pe, ph, trip, **KW), "x_e", ValueError)
    with P.checks(False):  # the trainer's inner loop: no value checks (and NaN in, NaN out)
        out = L.chest_loss(bad, x_h, labels, pe, ph, trip, **KW)
    assert torch.isnan(out.loss)
    # the type checks stay on
    with P.checks(False):
        raises_clearly(lambda: L.chest_loss(x_e, x_h, labels.float(), pe, ph, trip, **KW), "labels", TypeError)


LOSSES = ["chest", "pair_ce", "mix", "chest_hier", "pair_ce_hier", "unsup"]


def registered_loss(name: str, B: int = 12):
    """(loss, head, labels, index) for the registered loss ``name``: C = 4 classes, D_E = 6, D_H = 4."""
    torch.manual_seed(0)
    head = HyperbolicHead(6, 4, c=C0)
    cfg = TrainConfig(loss=name, M=8, hier_proxies=6, hier_topk=4, hier_triplets=5, unsup_levels=(2, 4))
    loss = get_loss(name).build(cfg.section(), LossContext(4, 6, 4, head, seed=0))
    labels = torch.arange(B) % 4
    if name == "unsup":
        loss.refresh(head(torch.randn(B, 6, generator=gen(3))).detach(), torch.arange(B), B)
    return loss, head, labels, torch.arange(B)


def call_loss(loss, head, x_e, labels, index):
    return loss(x_e, head(x_e), labels, **({"index": index} if loss.needs_index else {}))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("scale", [1e20, 1e30, 1e37])
def test_every_loss_of_huge_finite_inputs_is_finite(name, scale):
    """x_e of norm up to ~1e37 in float32: every registered loss and its gradients are finite. CHEST's
    L_E returned NaN from x_e ~ 1e20 on (||x_e - p||^2 overflowed in the distance matrix)."""
    loss, head, labels, index = registered_loss(name)
    x_e = (torch.randn(12, 6, generator=gen(1)) * scale / 3).requires_grad_()
    out = call_loss(loss, head, x_e, labels, index)
    assert bool(torch.isfinite(out.total)), out.parts
    params = [x_e] + [p for p in loss.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.total, params, allow_unused=True)
    assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("scale", [1e20, 1e30])
def test_chest_l_e_of_huge_inputs_equals_float64(scale):
    """x_e and the Euclidean proxies both of norm ~scale (float32): the distances differ by ~scale, so
    L_E (~1e31) is resolved; it equals L_E computed in float64 (Eq. 5-7 with torch.cdist)."""
    loss, head, labels, index = registered_loss("chest")
    with torch.no_grad():
        loss.proxies.mul_(scale)
    x_e = torch.randn(12, 6, generator=gen(1)) * scale
    got = call_loss(loss, head, x_e, labels, index).parts["l_e"]
    s = loss.settings
    d = torch.cdist(x_e.double(), loss.proxies.detach().double().reshape(-1, 6)).view(12, 4, -1)
    want = L.proxy_loss(L.soft_similarity(d, s.gamma_e), labels, s.lambda_e, s.delta_e).mean()
    assert math.isfinite(float(got.detach())) and float(want) > 1e20
    assert abs(float(got) - float(want)) <= 1e-5 * float(want)
    fn = L.chest_loss(x_e, head(x_e), labels, loss.proxies.detach(), loss.proxies_h().detach(), None, c=C0,
                      gamma_e=s.gamma_e, lambda_e=s.lambda_e, delta_e=s.delta_e, delta_h=s.delta_h, tau=0.0)
    assert abs(float(fn.l_e) - float(want)) <= 1e-5 * float(want)


@pytest.mark.parametrize("name", ["chest", "chest_hier"])
@pytest.mark.parametrize("big", ["x_e", "proxies_e"])
def test_chest_overflow_is_reported_with_the_input(name, big):
    """Distances beyond float32 (inputs of norm ~3e38): one ValueError that names the input and what
    overflowed, from the module and from the functional chest_loss; inside checks(False) (the
    trainer's inner loop, which reports a non-finite loss itself) the loss is not finite."""
    loss, head, labels, index = registered_loss(name)
    x_e = torch.randn(12, 6, generator=gen(1))
    if big == "x_e":
        x_e = x_e / x_e.norm(dim=-1, keepdim=True) * 3e38
    else:
        with torch.no_grad():
            loss.proxies.mul_(1e38)
    msg = raises_clearly(lambda: call_loss(loss, head, x_e, labels, index), big, ValueError)
    assert "l_e overflowed" in msg
    with P.checks(False):
        assert not bool(torch.isfinite(call_loss(loss, head, x_e, labels, index).total))
    args = (x_e, head(x_e), labels, loss.proxies.detach(), loss.proxies_h().detach(), None)
    msg = raises_clearly(lambda: L.chest_loss(*args, c=C0, delta_e=1.0, delta_h=1.0, tau=0.0), big, ValueError)
    assert "overflowed" in msg


def test_pairwise_euclidean_of_huge_vectors():
    """Norms beyond sqrt(finfo.max): the distances (and gradients) of torch.cdist in float64, instead of
    NaN from inf - inf; distances beyond finfo.max: one ValueError naming x and y."""
    g = gen(9)
    for dtype, scale in ((torch.float32, 1e30), (F64, 1e300)):
        x = (torch.randn(5, 4, generator=g, dtype=F64) * scale).to(dtype).requires_grad_()
        y = (torch.randn(7, 4, generator=g, dtype=F64) * scale).to(dtype).requires_grad_()
        d = P.pairwise_euclidean(x, y)
        ref = torch.cdist(x.detach().double() / scale, y.detach().double() / scale) * scale
        torch.testing.assert_close(d.double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)
        gx, gy = torch.autograd.grad(d.sum(), (x, y))
        unit = (x.detach().double()[:, None] - y.detach().double()[None]) / ref[..., None]
        torch.testing.assert_close(gx.double(), unit.sum(1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gy.double(), -unit.sum(0), rtol=1e-4, atol=1e-5)
        over = torch.full((1, 4), torch.finfo(dtype).max / 2, dtype=dtype)
        raises_clearly(lambda: P.pairwise_euclidean(over, -over), "x, y", ValueError)


def test_training_at_a_tiny_curvature_is_the_euclidean_limit():
    """c = 1e-300 is an allowed curvature: 8 training steps give the losses of c = 0 to float32
    rounding (before, pairwise_dist returned NaN and the run stopped at step 1 with l_h = nan)."""
    small = dict(steps=8, eval_every=1000, eval_max=600, batch_size=32, m_per_class=4, dim_e=32, dim_h=8, M=16)
    runs = [[e.components for e in Trainer(TrainConfig.preset("demo-tree", **small, c=c)).run(8) if isinstance(e, StepEvent)]
            for c in (0.0, 1e-300)]
    assert len(runs[1]) == 8 and all(math.isfinite(v) for comp in runs[1] for v in comp.values())
    for a, b in zip(*runs):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 * abs(a[k]) for k in a), (a, b)


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------
EMB, LAB = torch.randn(12, 3) * 0.1, torch.arange(12) % 4

INVALID_METRIC_ARGS = [
    (dict(metric="poincare", c="0.5"), "c", TypeError),
    (dict(metric="poincare", c=True), "c", TypeError),
    (dict(metric="poincare", c=math.inf), "c", ValueError),
    (dict(metric=None), "metric", ValueError),
    (dict(emb="embeddings"), "emb", TypeError),
    (dict(emb=[["a", "b"]] * 12), "emb", TypeError),
    (dict(emb=EMB.to(torch.complex64)), "emb", TypeError),
    (dict(emb=EMB > 0), "emb", TypeError),
    (dict(emb=EMB[:0], labels=LAB[:0]), "emb", ValueError),
    (dict(emb=EMB[:, :0]), "D = 0", ValueError),
    (dict(emb=torch.full((12, 3), math.inf)), "emb", ValueError),
    (dict(labels=np.array(["a"] * 12)), "labels", TypeError),
    (dict(labels=LAB > 1), "labels", TypeError),
    (dict(chunk_size=True), "chunk_size", ValueError),
    (dict(chunk_size=2.0), "chunk_size", ValueError),
    (dict(ks=(True,)), "ks", ValueError),
    (dict(reference=EMB[:0], reference_labels=LAB[:0]), "reference", ValueError),
    (dict(reference=EMB, reference_labels=LAB.float()), "reference_labels", ValueError),
]


@pytest.mark.parametrize("kwargs,param,kind", INVALID_METRIC_ARGS)
def test_invalid_metric_arguments(kwargs, param, kind):
    args = dict(emb=EMB, labels=LAB, ks=(1, 2), metric="euclidean", c=None)
    args.update(kwargs)
    raises_clearly(lambda: Mx.retrieval_metrics(**args), param, kind)


def test_metrics_accept_one_query_against_a_gallery_and_a_tensor_c():
    out = Mx.retrieval_metrics(EMB[:1], LAB[:1], (1,), "poincare", c=torch.tensor(0.5, requires_grad=True),
                               reference=EMB[1:], reference_labels=LAB[1:])
    assert set(out) == {"R@1", "MAP@R"} and 0 <= out["R@1"] <= 1
