r"""Poincaré-ball geometry: Möbius operations, exp/log maps, distances and the hyperbolic LCA.

The ball of curvature ``-c`` (``c > 0``) is :math:`\{x : c\|x\|^2 < 1\}`, radius :math:`1/\sqrt{c}`
(geoopt's ``k`` is ``-c``).  ``c = 0`` is the exact Euclidean limit: every function here is
continuous in ``c`` at 0, and ``dist`` tends to :math:`2\|x - y\|` (note the factor 2).

Conventions
-----------
* ``c`` is a Python float or a 0-d tensor with ``c >= 0``; a negative ``c`` raises ``ValueError``.
* Points broadcast over leading dimensions; the last dimension is the coordinate.
* Points given to a function must lie inside the ball: ``check_in_ball`` raises a ``ValueError``
  naming the argument otherwise (switch the check off in hot loops with ``checks(False)``).
  Maps that can land on the boundary in finite precision (``expmap0``, ``expmap``,
  ``mobius_add``...) ``project`` their output, so no NaN ever comes out silently.

Numerics (kept in this module only)
-----------------------------------
Every formula is rewritten so that nothing cancels and nothing divides by zero:

* :math:`\|(-x)\oplus y\|^2 = \|x-y\|^2 / (\alpha_x\alpha_y + c\|x-y\|^2)` with
  :math:`\alpha_x = 1 - c\|x\|^2`: both terms of the denominator are non-negative.
* Eq. 2 as :math:`D = \tfrac{2}{\sqrt c}\operatorname{asinh}(\sqrt c\, u)`,
  :math:`u = \|x - y\| / \sqrt{\alpha_x\alpha_y}` (since
  :math:`\operatorname{artanh} t = \operatorname{asinh}(t/\sqrt{1-t^2})`), which is well
  conditioned up to the boundary and needs no clamp, and
  :math:`\operatorname{asinh}(\sqrt c u)/\sqrt c = u\cdot\operatorname{asinhc}(\sqrt c u)` is smooth
  at ``c = 0``.
* In float64, :math:`\alpha_x` is computed with error-free (double-double) arithmetic, so points
  1e-9 from the boundary keep ~1e-15 relative accuracy (a naive ``1 - c*x.pow(2).sum()`` keeps
  only ~1e-7 there, and geoopt clamps the artanh argument, losing whole units of distance).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Union

import torch
from torch import Tensor

Curvature = Union[float, Tensor]

__all__ = [
    "mobius_add",
    "mobius_scalar_mul",
    "dist",
    "pairwise_dist",
    "dist0",
    "expmap0",
    "expmap",
    "logmap0",
    "logmap",
    "conformal_factor",
    "alpha",
    "project",
    "clip_features",
    "lca_depth",
    "check_in_ball",
    "check_curvature",
    "max_norm",
    "checks",
    "BALL_EPS",
]

#: Relative margin kept from the boundary by ``project``: points are kept at norm
#: ``(1 - eps) / sqrt(c)``.  float32 keeps ``1 - c||x||^2 >= 2e-5``, far above its ulp (6e-8),
#: so distances and gradients stay finite; float64 lets points come 1e-15 close.
BALL_EPS = {
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-15,
}

_CHECKS = True


@contextlib.contextmanager
def checks(enabled: bool) -> Iterator[None]:
    """Turn the input checks (``check_in_ball``, finite ``c``) on or off inside a ``with`` block.

    The checks cost one reduction and, on a GPU, one host sync per call; the trainer switches them
    off in its inner loop, where points come from ``expmap0`` and are in the ball by construction.
    """
    global _CHECKS
    old, _CHECKS = _CHECKS, bool(enabled)
    try:
        yield
    finally:
        _CHECKS = old


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def check_curvature(c: Curvature, name: str = "c") -> Curvature:
    """Validate a curvature: a finite float or 0-d tensor with ``c >= 0``; returns it unchanged."""
    if isinstance(c, Tensor):
        if c.dim() != 0:
            raise ValueError(f"{name} must be a float or a 0-d tensor, got a tensor of shape {tuple(c.shape)}")
        if _CHECKS or not c.is_cuda:
            value = float(c.detach())
        else:
            return c
    else:
        try:
            value = float(c)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a float or a 0-d tensor, got {type(c).__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name} = {value!r} is not a valid curvature: the Poincaré ball needs {name} >= 0 "
            f"(curvature -{name}; {name} = 0 is the Euclidean limit). Use {name} in [0, inf), e.g. 0.5."
        )
    return c


def max_norm(c: Curvature, dtype: torch.dtype = torch.float32) -> float:
    """The largest norm ``project`` allows: ``(1 - BALL_EPS[dtype]) / sqrt(c)`` (``inf`` at c = 0)."""
    cf = float(c)
    if cf == 0:
        return math.inf
    return (1.0 - BALL_EPS.get(dtype, 1e-5)) / math.sqrt(cf)


def check_in_ball(x: Tensor, c: Curvature, name: str = "x") -> Tensor:
    """Raise ``ValueError`` unless every point of ``x`` (..., D) is finite and ``c||x||^2 < 1``.

    Returns ``x`` so it can be used inline. Does nothing while ``checks(False)`` is active.
    """
    if not _CHECKS:
        return x
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    with torch.no_grad():
        if x.numel() == 0:
            return x
        cf = float(c)
        # one reduction in the input's precision (project keeps float32 points 1e-5 inside, far above
        # float32's resolution); NaN and inf fail the comparison too, so the fast path is one pass
        xs = x if x.dtype in (torch.float32, torch.float64) else x.float()
        sq = xs.pow(2).sum(-1)
        ok = sq * cf < 1 if cf > 0 else torch.isfinite(sq)
        if bool(ok.all()):
            return x
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(dim=-1).sum()) if x.dim() else 1
            raise ValueError(
                f"{name} contains NaN or inf in {bad} point(s); check the inputs (or the learning rate "
                f"/ curvature upstream) before computing Poincaré-ball quantities."
            )
        csq = cf * x.double().pow(2).sum(-1)
        n = int((csq >= 1).sum())
        worst = float(csq.max().sqrt())
        raise ValueError(
            f"{name}: {n} point(s) lie outside the Poincaré ball of curvature c={cf:g} "
            f"(need sqrt(c)*||{name}|| < 1, found up to {worst:.6g}). Map Euclidean vectors with "
            f"expmap0(v, c), or call project({name}, c) to pull points just inside the ball."
        )
    return x


# --------------------------------------------------------------------------------------------
# numerics kept in one place
# --------------------------------------------------------------------------------------------
def _sqrt_c(c: Curvature, like: Tensor) -> Union[float, Tensor]:
    # Python floats stay floats: no tensor creation (and no host-device copy) per call
    if isinstance(c, Tensor):
        return c.to(dtype=like.dtype, device=like.device).sqrt()
    return math.sqrt(c)


def _as_c(c: Curvature, like: Tensor) -> Union[float, Tensor]:
    if isinstance(c, Tensor):
        return c.to(dtype=like.dtype, device=like.device)
    return float(c)


def _tanhc(t: Tensor) -> Tensor:
    """tanh(t) / t, smooth at 0 (series below 1e-4, where the error of 1 - t^2/3 is < 1e-16)."""
    small = t.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 - t * t / 3, torch.tanh(safe) / safe)


def _asinhc(t: Tensor) -> Tensor:
    """asinh(t) / t, smooth at 0 (series below 1e-4)."""
    small = t.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 - t * t / 6, torch.asinh(safe) / safe)


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt clamped at 0 with a zero (not NaN/inf) gradient at 0."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def _two_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Knuth's TwoSum: s + e == a + b exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Dekker's TwoProduct for float64 (no FMA needed): p + e == a * b exactly."""
    split = 134217729.0  # 2**27 + 1
    p = a * b
    ta, tb = a * split, b * split
    ahi = ta - (ta - a)
    bhi = tb - (tb - b)
    alo, blo = a - ahi, b - bhi
    e = ((ahi * bhi - p) + ahi * blo + alo * bhi) + alo * blo
    return p, e


def _one_minus_c_sqnorm_exact(x: Tensor, c: Curvature) -> Tensor:
    """1 - c||x||^2 to ~1 ulp in float64 (double-double sum of squares, pairwise tree)."""
    hi, lo = _two_prod(x, x)
    while hi.shape[-1] > 1:
        if hi.shape[-1] % 2:
            pad = hi.new_zeros(hi.shape[:-1] + (1,))
            hi, lo = torch.cat([hi, pad], -1), torch.cat([lo, pad], -1)
        s, e = _two_sum(hi[..., 0::2], hi[..., 1::2])
        lo = lo[..., 0::2] + lo[..., 1::2] + e
        hi = s
    hi, lo = hi[..., 0], lo[..., 0]
    c_t = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    chi, clo = _two_prod(c_t.expand_as(hi), hi)
    one = torch.ones_like(hi)
    r, r_err = _two_sum(one, -chi)
    return r + (r_err - clo - c_t * lo)


def alpha(x: Tensor, c: Curvature) -> Tensor:
    r"""The denominator of the conformal factor, :math:`\alpha_x = 1 - c\|x\|^2 = 2 / \lambda_x`.
    (..., D) -> (...); exact value in float64 (double-double), plain gradient. No input checks: it
    sits inside the other functions' formulas (callers check ``x`` and ``c`` first)."""
    naive = 1 - _as_c(c, x) * x.pow(2).sum(-1)
    if x.dtype != torch.float64 or float(c) == 0:
        return naive
    with torch.no_grad():
        correction = _one_minus_c_sqnorm_exact(x.detach(), c) - naive.detach()
    return naive + correction


_alpha = alpha  # the name this module's formulas use


def _dist_from_parts(sq: Tensor, ax: Tensor, ay: Tensor, c: Curvature) -> Tensor:
    r"""Eq. 2 from :math:`\|x-y\|^2`, :math:`\alpha_x`, :math:`\alpha_y`:
    :math:`2 u\,\operatorname{asinhc}(\sqrt c u)`, :math:`u = \|x-y\|/\sqrt{\alpha_x\alpha_y}`."""
    u = _safe_sqrt(sq / (ax * ay))
    return 2 * u * _asinhc(_sqrt_c(c, u) * u)


# --------------------------------------------------------------------------------------------
# the ball
# --------------------------------------------------------------------------------------------
def project(x: Tensor, c: Curvature, eps: float | None = None) -> Tensor:
    r"""Pull points back inside the ball: norms above ``(1 - eps)/sqrt(c)`` are scaled down to it.

    ``x``: (..., D). ``eps`` defaults to ``BALL_EPS[x.dtype]``. Identity for ``c = 0``.
    """
    check_curvature(c)
    if float(c) == 0:
        return x
    eps = BALL_EPS.get(x.dtype, 1e-5) if eps is None else eps
    maxnorm = (1 - eps) / _sqrt_c(c, x)
    norm = x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return torch.where(norm > maxnorm, x / norm * maxnorm, x)


def conformal_factor(x: Tensor, c: Curvature) -> Tensor:
    r"""Conformal factor :math:`\lambda_x = 2 / (1 - c\|x\|^2)`. (..., D) -> (..., 1)."""
    check_curvature(c)
    check_in_ball(x, c, "x")
    return (2 / _alpha(x, c)).unsqueeze(-1)


def clip_features(v: Tensor, r: float) -> Tensor:
    r"""Feature clipping (Hyp-ViT): :math:`v \leftarrow v\cdot\min(1, r/\|v\|)`, before ``expmap0``.

    Keeps :math:`\exp_0(v)` at most :math:`\tanh(\sqrt c\, r)/\sqrt c` from the origin, far from
    the boundary where float32 loses precision. The paper uses ``r = 2.3``; ``r = inf`` disables it.
    """
    r = float(r)
    if not r > 0:
        raise ValueError(f"r = {r!r}: the clipping radius must be > 0 (use r = inf to disable clipping)")
    if math.isinf(r):
        return v
    norm = v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return v * torch.clamp(r / norm, max=1.0)


# --------------------------------------------------------------------------------------------
# Möbius operations (Eq. 1) and distance (Eq. 2)
# --------------------------------------------------------------------------------------------
def mobius_add(x: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""Möbius addition, Eq. (1):

    .. math:: x \oplus_c y = \frac{(1 + 2c\langle x,y\rangle + c\|y\|^2)\,x + (1 - c\|x\|^2)\,y}
                                  {1 + 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}

    ``x``, ``y``: (..., D), broadcast. At ``c = 0`` it is ``x + y``. The result is projected.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    cc = _as_c(c, x)
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True)
    xy = (x * y).sum(-1, keepdim=True)
    num = (1 + 2 * cc * xy + cc * y2) * x + (1 - cc * x2) * y
    # denominator = (1 + c<x,y>)^2 + c^2 (|x|^2|y|^2 - <x,y>^2) >= 0; zero only at y = -x on the boundary
    den = 1 + 2 * cc * xy + cc * cc * x2 * y2
    out = num / den.clamp_min(torch.finfo(x.dtype).tiny)
    return project(out, c)


def mobius_scalar_mul(r: Union[float, Tensor], x: Tensor, c: Curvature) -> Tensor:
    r"""Möbius scalar multiplication :math:`r \otimes_c x = \tanh(r\,\operatorname{artanh}(\sqrt c\|x\|))
    \frac{x}{\sqrt c\|x\|}`.

    ``r``: float or tensor broadcasting against ``x[..., :1]``; ``x``: (..., D). Computed as
    :math:`r\,\rho\,\operatorname{tanhc}(r\sqrt c\|x\|\rho)\,x` with
    :math:`\rho = \operatorname{artanh}(\sqrt c\|x\|)/(\sqrt c\|x\|)`, finite at ``x = 0`` and ``c = 0``.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    r = torch.as_tensor(r, dtype=x.dtype, device=x.device)
    n = x.norm(dim=-1, keepdim=True)
    a = _alpha(x, c).unsqueeze(-1)
    sc = _sqrt_c(c, x)
    rho = _asinhc(sc * n / a.sqrt()) / a.sqrt()  # artanh(sqrt(c) n) / (sqrt(c) n)
    return project(r * rho * _tanhc(r * sc * n * rho) * x, c)


def dist(x: Tensor, y: Tensor, c: Curvature, keepdim: bool = False) -> Tensor:
    r"""Poincaré distance, Eq. (2): :math:`D_c(x,y) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\,\|(-x)\oplus_c y\|)`.

    ``x``, ``y``: (..., D), broadcast -> (...) (or (..., 1) with ``keepdim``). Evaluated as
    :math:`\tfrac{2}{\sqrt c}\operatorname{asinh}(\sqrt c\,\|x-y\|/\sqrt{\alpha_x\alpha_y})`; at
    ``c = 0`` it is :math:`2\|x-y\|`. The gradient of ``dist(x, x)`` is 0.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    diff = x - y
    sq = diff.pow(2).sum(-1)
    d = _dist_from_parts(sq, _alpha(x, c), _alpha(y, c), c)
    return d.unsqueeze(-1) if keepdim else d


def dist0(x: Tensor, c: Curvature, keepdim: bool = False) -> Tensor:
    r"""Distance to the origin, :math:`D_c(0, x) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)`. (..., D) -> (...)."""
    check_curvature(c)
    check_in_ball(x, c, "x")
    d = _dist_from_parts(x.pow(2).sum(-1), torch.ones_like(x[..., 0]), _alpha(x, c), c)
    return d.unsqueeze(-1) if keepdim else d


def _pairwise_sqdist(x: Tensor, y: Tensor, x2: Tensor, y2: Tensor) -> Tensor:
    """||x_i - y_j||^2 (N, M) by one fused matmul; entries that cancel badly are recomputed directly."""
    norms = x2[:, None] + y2[None, :]
    sq = torch.addmm(norms, x, y.T, alpha=-2).clamp_min(0)
    # relative error of the expansion ~ eps * (|x|^2 + |y|^2) / sq: redo the few close pairs exactly
    tol = 1e-4 if x.dtype == torch.float64 else 1e-2
    with torch.no_grad():
        close = sq < tol * norms
        idx = close.nonzero(as_tuple=True) if bool(close.any()) else None
    if idx is not None:
        exact = (x[idx[0]] - y[idx[1]]).pow(2).sum(-1)
        sq = sq.index_put(idx, exact)
    return sq


def pairwise_dist(x: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""All Poincaré distances between the rows of ``x`` (N, D) and ``y`` (M, D) -> (N, M), Eq. (2).

    Never builds an (N, M, D) tensor: :math:`\|(-x)\oplus y\| = \|x-y\|/\sqrt{1 - 2c\langle x,y\rangle
    + c^2\|x\|^2\|y\|^2}` and :math:`\|x - y\|^2` come from one matmul and the norms. This is the hot
    path of the CHEST loss, so for a float ``c > 0`` it skips the ``c -> 0`` guards of ``dist``; a
    point's distance to itself is then below 1e-18 instead of exactly 0 (its gradient is 0 either way).
    """
    check_curvature(c)
    if x.dim() != 2 or y.dim() != 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"pairwise_dist needs x (N, D) and y (M, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    x2, y2 = x.pow(2).sum(-1), y.pow(2).sum(-1)
    sq = _pairwise_sqdist(x, y, x2, y2)
    ax, ay = _alpha(x, c), _alpha(y, c)
    if isinstance(c, Tensor) or float(c) == 0:
        return _dist_from_parts(sq, ax[:, None], ay[None, :], c)
    sc = math.sqrt(float(c))
    u2 = sq * (1 / ax)[:, None] * (1 / ay)[None, :]
    # clamping at the smallest normal keeps sqrt's gradient finite; clamp passes 0 below it
    return (2 / sc) * torch.asinh(sc * u2.clamp_min(torch.finfo(u2.dtype).tiny).sqrt())


# --------------------------------------------------------------------------------------------
# exponential and logarithmic maps (Eq. 3, 4)
# --------------------------------------------------------------------------------------------
def expmap0(v: Tensor, c: Curvature) -> Tensor:
    r"""Exponential map at the origin, Eq. (4): :math:`\exp_0(v) = \tanh(\sqrt c\|v\|)\,\frac{v}{\sqrt c\|v\|}`.

    ``v``: (..., D) tangent vectors -> points in the ball (projected, so float32 saturation of
    ``tanh`` cannot put them on the boundary). At ``c = 0`` it is the identity.
    """
    check_curvature(c)
    n = v.norm(dim=-1, keepdim=True)
    return project(_tanhc(_sqrt_c(c, v) * n) * v, c)


def expmap(z: Tensor, v: Tensor, c: Curvature) -> Tensor:
    r"""Exponential map at ``z``, Eq. (3): :math:`\exp_z(v) = z \oplus \tanh(\sqrt c\lambda_z\|v\|/2)
    \frac{v}{\sqrt c\|v\|}`. ``z``, ``v``: (..., D) -> (..., D), projected."""
    check_curvature(c)
    check_in_ball(z, c, "z")
    lam = 2 / _alpha(z, c).unsqueeze(-1)
    n = v.norm(dim=-1, keepdim=True)
    step = _tanhc(_sqrt_c(c, v) * lam * n / 2) * (lam / 2) * v
    return mobius_add(z, project(step, c), c)


def logmap0(y: Tensor, c: Curvature) -> Tensor:
    r"""Logarithmic map at the origin (inverse of Eq. 4): :math:`\log_0(y) = \operatorname{artanh}(\sqrt c\|y\|)\,\frac{y}{\sqrt c\|y\|}`.

    Evaluated as :math:`\operatorname{asinhc}(\sqrt c\|y\|/\sqrt{\alpha_y})\,y/\sqrt{\alpha_y}`. (..., D) -> (..., D).
    """
    check_curvature(c)
    check_in_ball(y, c, "y")
    a = _alpha(y, c).unsqueeze(-1).sqrt()
    n = y.norm(dim=-1, keepdim=True)
    return _asinhc(_sqrt_c(c, y) * n / a) * y / a


def logmap(z: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""Logarithmic map at ``z`` (inverse of Eq. 3): :math:`\log_z(y) = \frac{2}{\sqrt c\lambda_z}
    \operatorname{artanh}(\sqrt c\|u\|)\frac{u}{\|u\|}`, :math:`u = (-z)\oplus y`.

    Uses :math:`\frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|u\|) = D_c(z, y)` in its stable form,
    so it is finite at ``y = z`` and at ``c = 0``. ``z``, ``y``: (..., D) -> (..., D).
    """
    check_curvature(c)
    check_in_ball(z, c, "z")
    check_in_ball(y, c, "y")
    az, ay = _alpha(z, c).unsqueeze(-1), _alpha(y, c).unsqueeze(-1)
    sq = (z - y).pow(2).sum(-1, keepdim=True)
    w = _safe_sqrt(sq / (az * ay))
    den = az * ay + _as_c(c, z) * sq  # ||z - y||^2 / ||u||^2
    u = mobius_add(-z, y, c)
    return az * _asinhc(_sqrt_c(c, z) * w) * (den / (az * ay)).sqrt() * u


# --------------------------------------------------------------------------------------------
# hyperbolic lowest common ancestor (HypHC)
# --------------------------------------------------------------------------------------------
def lca_depth(a: Tensor, b: Tensor, c: Curvature) -> Tensor:
    r"""Depth of the hyperbolic LCA of ``a`` and ``b`` (HypHC, Chami et al. 2020): the distance from the
    origin to the geodesic through ``a`` and ``b``, :math:`d_o = D_c(0, \mathrm{lca}(a, b))`.

    Closed form (derived from the Lorentz model, see notebook 04):

    .. math:: \sinh(\sqrt c\, d_o) = \frac{2\sqrt c\,\|a\wedge b\|}{\|a-b\|\,\sqrt{\alpha_a\alpha_b + c\|a-b\|^2}},

    with :math:`\|a\wedge b\|^2 = \|a\|^2\|b\|^2 - \langle a,b\rangle^2`. Deeper = more similar;
    0 when the geodesic passes through the origin. At ``c = 0`` it is twice the Euclidean distance
    from the origin to the line through ``a`` and ``b``. For ``a = b`` the LCA is the point itself
    and the depth is ``dist0(a)``. ``a``, ``b``: (..., D) -> (...).
    """
    check_curvature(c)
    check_in_ball(a, c, "a")
    check_in_ball(b, c, "b")
    tiny = torch.finfo(a.dtype).tiny
    a2 = a.pow(2).sum(-1, keepdim=True)
    ab = (a * b).sum(-1, keepdim=True)
    # |a ^ b| = || |a|^2 b - <a,b> a || / |a|   (Gram-Schmidt: milder cancellation than sqrt(AB - p^2))
    wedge = (a2 * b - ab * a).norm(dim=-1) / a2.squeeze(-1).sqrt().clamp_min(math.sqrt(tiny))
    sq = (a - b).pow(2).sum(-1)
    aa, abeta = _alpha(a, c), _alpha(b, c)
    same = sq <= tiny
    sq_safe = torch.where(same, torch.ones_like(sq), sq)
    s = 2 * wedge / (sq_safe.sqrt() * (aa * abeta + _as_c(c, a) * sq_safe).sqrt())  # sinh(sqrt c d)/sqrt c
    depth = s * _asinhc(_sqrt_c(c, s) * s)
    return torch.where(same, dist0(a, c), depth)
