r"""Poincaré-ball geometry: Möbius operations, exp/log maps, distances, the hyperbolic LCA, and the
gyrovector tools (gyration, geodesics, parallel transport, the gyro-midpoint).

The ball of curvature ``-c`` (``c > 0``) is :math:`\{x : c\|x\|^2 < 1\}`, radius :math:`1/\sqrt{c}`
(geoopt's ``k`` is ``-c``).  ``c = 0`` is the exact Euclidean limit: every function here is
continuous in ``c`` at 0, and ``dist`` tends to :math:`2\|x - y\|` (note the factor 2).

Conventions
-----------
* ``c`` is a real number (``int`` or ``float``; not ``bool``, not ``str``) or a floating-point 0-d
  tensor, with ``0 <= c < inf``; anything else raises ``TypeError`` / ``ValueError`` naming ``c``.
  A tensor ``c`` may require grad: every function is differentiable in ``c``, at ``c = 0`` too.
* Points and vectors are floating-point tensors that broadcast over leading dimensions; the last
  dimension is the coordinate. Non-tensors and integer tensors raise ``TypeError``.
* Points given to a function must lie inside the ball: ``check_in_ball`` raises a ``ValueError``
  naming the argument otherwise; tangent / Euclidean vectors must be finite (``check_finite``).
  These checks read tensor *values* (one reduction and, on a GPU, one host sync per argument);
  switch them off in hot loops with ``checks(False)`` (for the current thread only: a context
  variable). Checks of types, shapes and Python scalars always run. Maps that can land on the
  boundary in finite precision (``expmap0``, ``expmap``, ``mobius_add``...) ``project`` their
  output, so no NaN ever comes out silently.
* Extreme but valid inputs give the mathematical limit: a tangent vector of any finite norm (even
  one whose squared norm overflows) maps towards the boundary in its direction, an infinite scalar
  ``r`` (``mobius_scalar_mul``) or ``t`` (``geodesic``) gives the ideal point (projected; this needs
  ``c > 0``), a tiny ``c`` the Euclidean formulas. A batch with no points (a leading dimension of
  size 0) gives an empty result; ``weighted_midpoint`` of no points raises.

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
* :math:`\sqrt c` never stands alone where ``c`` may be 0: the functions
  :math:`\operatorname{tanhc}(t) = \tanh t / t` and :math:`\operatorname{asinhc}(t) = \operatorname{asinh} t / t`
  take the *squared* argument :math:`c z^2` (series below :math:`10^{-8}`), so
  :math:`\partial/\partial c` is finite at ``c = 0`` (where :math:`\sqrt c` has an infinite slope
  and autograd would multiply it by the series' zero slope: NaN). Large arguments are evaluated as
  :math:`\tanh(t)/t` with :math:`t = \sqrt{c z^2}` (never :math:`c z^2`, which overflows first).
* In float64, :math:`\alpha_x` is computed with error-free (double-double) arithmetic, so points
  1e-9 from the boundary keep ~1e-15 relative accuracy (a naive ``1 - c*x.pow(2).sum()`` keeps
  only ~1e-7 there, and geoopt clamps the artanh argument, losing whole units of distance).
* Norms are reductions (``torch.linalg.vector_norm``), never an (N, D) temporary: on the CPU a
  fresh large tensor costs more (page faults) than the arithmetic. For the same reason the hot maps
  have hand-written backward passes that make one (N, D) tensor each: ``_NormScale``
  (:math:`v\,f(\|v\|)`: ``expmap0``, ``clip_features``, ``project``, and ``expmap0_clipped``,
  the head's two in one), ``_PairwiseSq`` (:math:`\|x_i - y_j\|^2` from one matmul) and
  ``_PairwiseDist`` (the whole distance matrix of ``pairwise_dist`` for a float ``c`` and of
  ``pairwise_euclidean``, with a few (N, M) temporaries), all checked by ``gradcheck``. On the
  CPU ``torch.asinh`` is not vectorised (~6x slower than the ``log1p`` form): the hot path uses
  ``asinh_nonneg_``.
* The gyration (and so ``parallel_transport``) is evaluated as the rotation it is, by the angle
  :math:`2\operatorname{atan2}(c\|u\wedge v\|, 1 + c\langle u, v\rangle)` in the plane of ``u`` and ``v``,
  from :math:`u + v` and :math:`u - v` (``_gyration_scaled``): the expanded closed form cancels where
  ``u`` is near ``-v`` near the boundary (it stretched vectors by up to 5e14 in float64 there, and
  transported vectors overflowed after ~25 transports); huge vectors are scaled by a power of two.
* ``pairwise_dist`` below ``c = sqrt(finfo.tiny)`` (1e-19 in float32) takes the series form
  :math:`2u\,\operatorname{asinhc}(\sqrt c u)` (``2/sqrt(c)`` overflowed float32 at c = 1e-78), and
  ``pairwise_euclidean`` divides its inputs by a power of two where squared norms would overflow.
* ``group_dist_lca`` takes everything from the Gram matrices of the groups
  (:math:`\|a\|^2, \|b\|^2, \langle a, b\rangle`), gathered in chunks; the few pairs where
  :math:`\|a-b\|^2 = \|a\|^2 + \|b\|^2 - 2\langle a,b\rangle` or
  :math:`\|a\wedge b\|^2 = \|a\|^2\|b\|^2 - \langle a,b\rangle^2` would cancel are recomputed from
  the vectors.

The unchecked numerics helpers ``alpha_of``, ``asinh_nonneg_``, ``sqdist_screened``,
``overflow_scale``, ``tiny_c``, ``check_pairwise`` and ``one_minus_c_sqnorm_exact`` are not in
``__all__``: they are shared with the fused loss (``chestlab.losses.parts``) so that its numerics
stay the ones written here.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from typing import Iterator, Optional, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

Curvature = Union[float, Tensor]

__all__ = [
    "mobius_add",
    "mobius_scalar_mul",
    "gyration",
    "dist",
    "pairwise_dist",
    "pairwise_euclidean",
    "dist0",
    "expmap0",
    "expmap0_clipped",
    "expmap",
    "logmap0",
    "logmap",
    "geodesic",
    "parallel_transport",
    "weighted_midpoint",
    "conformal_factor",
    "alpha",
    "project",
    "clip_features",
    "lca_depth",
    "group_dist_lca",
    "check_in_ball",
    "check_finite",
    "check_curvature",
    "max_norm",
    "checks",
    "checks_enabled",
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

#: Whether the value checks are on, per thread and per asyncio task (a ``ContextVar``, not a module
#: flag: the dashboard serves each browser tab in its own thread, and one tab's ``checks(False)``
#: must not switch the checks off for the others). A new thread starts with the default, on.
_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("chestlab_poincare_checks", default=True)

#: Elements per gathered chunk in ``group_dist_lca`` on the CPU (4 MiB of float32): small enough for
#: the allocator to reuse the memory of the previous chunk instead of mapping fresh pages.
_GROUP_CHUNK = 2**20


@contextlib.contextmanager
def checks(enabled: bool) -> Iterator[None]:
    """Turn the checks of tensor values (points in the ball, finite vectors, finite ``c``) on or off
    inside a ``with`` block.

    The checks cost one reduction and, on a GPU, one host sync per argument; the trainer switches
    them off in its inner loop, where points come from ``expmap0`` and are in the ball by construction.
    Checks of types, shapes and Python scalars stay on. The switch holds for the current thread (or
    asyncio task) only, until the block exits: other threads keep their own setting.
    """
    token = _CHECKS.set(bool(enabled))
    try:
        yield
    finally:
        _CHECKS.reset(token)


def checks_enabled() -> bool:
    """Whether the value checks are on (they are, except inside ``checks(False)``)."""
    return _CHECKS.get()


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _c_value(c: Curvature) -> float:
    """``c`` as a Python float; a tensor is detached first (no autograd warning for a ``c`` that
    requires grad)."""
    return float(c.detach()) if isinstance(c, Tensor) else float(c)


def check_curvature(c: Curvature, name: str = "c") -> Curvature:
    """Validate a curvature: a real number or a floating-point 0-d tensor with ``0 <= c < inf``.

    Returns ``c`` unchanged. ``TypeError`` for strings, ``bool``, integer tensors and other types;
    ``ValueError`` for NaN, inf, negative values and tensors that are not 0-d. The value of a
    tensor on a GPU is read (a host sync) only while the ``checks`` are on.
    """
    if isinstance(c, Tensor):
        if c.dim() != 0:
            raise ValueError(
                f"{name} must be a float or a 0-d tensor, got a tensor of shape {tuple(c.shape)}; "
                f"pass a Python float or {name}.reshape(())"
            )
        if not c.dtype.is_floating_point:
            raise TypeError(
                f"{name} must be a float or a floating-point 0-d tensor, got a {c.dtype} tensor; "
                f"pass {name}.double() or a Python float such as 0.5"
            )
        if not _CHECKS.get() and c.device.type != "cpu":
            return c
        value = float(c.detach())
    elif isinstance(c, bool) or not isinstance(c, numbers.Real):
        raise TypeError(
            f"{name} must be a real number >= 0 or a 0-d tensor, got {type(c).__name__} {c!r}; "
            f"pass a float such as {name}=0.5"
        )
    else:
        value = float(c)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name} = {value!r} is not a valid curvature: the Poincaré ball needs {name} >= 0 "
            f"(curvature -{name}; {name} = 0 is the Euclidean limit). Use {name} in [0, inf), e.g. 0.5."
        )
    return c


def _check_tensor(x: object, name: str, what: str = "points (..., D)") -> None:
    """Cheap type checks (always on): a floating-point tensor with at least one dimension."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of {what}, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype=torch.float32)"
        )
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor of {what}, got dtype {x.dtype}; "
            f"convert it with {name}.float() (or .double())"
        )
    if x.dim() == 0:
        raise ValueError(f"{name} must have a last (coordinate) dimension, got a 0-d tensor; use {name}.reshape(1)")


def _check_broadcast(*named: tuple[str, Tensor]) -> None:
    """The tensors must share the last dimension and broadcast over the leading ones."""
    dims = {x.shape[-1] for _, x in named}
    shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in named)
    if len(dims) > 1:
        raise ValueError(f"{shapes} must have the same last (coordinate) dimension D")
    try:
        torch.broadcast_shapes(*(x.shape for _, x in named))
    except RuntimeError:
        raise ValueError(f"{shapes} do not broadcast against each other; add singleton dimensions") from None


def _check_scalar(r: object, name: str, like: Tensor, allow_inf: bool = True) -> Tensor:
    """A real number or a floating-point tensor (``r``, ``t``...) as a tensor like ``like``; NaN
    raises (a tensor's values only while the checks are on), as does inf unless ``allow_inf``."""
    if isinstance(r, Tensor):
        if not r.dtype.is_floating_point:
            raise TypeError(f"{name} must be a float or a floating-point tensor, got dtype {r.dtype}; use {name}.float()")
        if _CHECKS.get() and r.numel():
            with torch.no_grad():
                bad = torch.isnan(r) if allow_inf else ~torch.isfinite(r)
                if bool(bad.any()):
                    raise ValueError(f"{name} contains {'NaN' if allow_inf else 'NaN or inf'}; pass finite values"
                                     + (" (or ±inf for the limit)" if allow_inf else ""))
        return r.to(dtype=like.dtype, device=like.device)
    if isinstance(r, bool) or not isinstance(r, numbers.Real):
        raise TypeError(f"{name} must be a real number or a floating-point tensor, got {type(r).__name__} {r!r}")
    v = float(r)
    if math.isnan(v) or (not allow_inf and math.isinf(v)):
        raise ValueError(f"{name} = {v!r} is not allowed: pass a finite real number")
    return torch.tensor(v, dtype=like.dtype, device=like.device)


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def _bad_entries(x: Tensor) -> int:
    return int((~torch.isfinite(x)).sum())


def check_finite(x: Tensor, name: str = "x") -> Tensor:
    """Raise unless ``x`` is a floating-point tensor (``TypeError``) whose entries are all finite
    (``ValueError``, only while the ``checks`` are on). Returns ``x`` so it can be used inline.

    The value check is one reduction (the sum, which NaN and inf poison) in the common case; the
    entries are only inspected one by one when the sum is not finite.
    """
    _check_tensor(x, name, "values")
    if not _CHECKS.get() or x.numel() == 0:
        return x
    with torch.no_grad():
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{name} contains NaN or inf in {_bad_entries(x)} of its {x.numel()} entries; check the "
                f"inputs (or the learning rate / curvature upstream) and pass finite values."
            )
    return x


def max_norm(c: Curvature, dtype: torch.dtype = torch.float32) -> float:
    """The largest norm ``project`` allows: ``(1 - BALL_EPS[dtype]) / sqrt(c)`` (``inf`` at c = 0)."""
    check_curvature(c)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}")
    cf = _c_value(c)
    if cf == 0:
        return math.inf
    return (1.0 - BALL_EPS.get(dtype, 1e-5)) / math.sqrt(cf)


def check_in_ball(x: Tensor, c: Curvature, name: str = "x") -> Tensor:
    """Raise ``ValueError`` unless every point of ``x`` (..., D) is finite and ``c||x||^2 < 1``.

    "Inside" means ``alpha(x, c) = 1 - c||x||^2 > 0`` as this module computes it in ``x``'s precision
    (the denominator of every formula). ``TypeError`` unless ``x`` is a floating-point tensor (always
    checked), or if ``c`` is not a valid curvature. Returns ``x`` so it can be used inline. The
    value check does nothing while ``checks(False)`` is active; it is one norm reduction when every
    point is clearly inside.
    """
    check_curvature(c)
    _check_tensor(x, name)
    if not _CHECKS.get() or x.numel() == 0:
        return x
    with torch.no_grad():
        cf = _c_value(c)
        xs = x if x.dtype in (torch.float32, torch.float64) else x.float()
        n = torch.linalg.vector_norm(xs, dim=-1)
        # NaN and inf fail both comparisons, so the fast path is one pass
        ok = n * n * cf < 1 - 1e-6 if cf > 0 else torch.isfinite(n)
        if bool(ok.all()):
            return x
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(dim=-1).sum()) if x.dim() else 1
            raise ValueError(
                f"{name} contains NaN or inf in {bad} point(s); check the inputs (or the learning rate "
                f"/ curvature upstream) before computing Poincaré-ball quantities."
            )
        if cf > 0:
            inside = alpha_of(xs, cf) > 0  # the exact criterion, for the points near the boundary
            if bool(inside.all()):
                return x
            n_out = int((~inside).sum())
            worst = float((cf * x.double().pow(2).sum(-1)).max().sqrt())
        else:  # c = 0: finite entries whose norm overflows
            raise ValueError(
                f"{name}: {int((~torch.isfinite(n)).sum())} point(s) have a norm beyond the largest "
                f"{xs.dtype} number; rescale {name} (or use float64)"
            )
        raise ValueError(
            f"{name}: {n_out} point(s) lie outside the Poincaré ball of curvature c={cf:g} "
            f"(need sqrt(c)*||{name}|| < 1, found up to {worst:.6g}). Map Euclidean vectors with "
            f"expmap0(v, c), or call project({name}, c) to pull points just inside the ball."
        )


# --------------------------------------------------------------------------------------------
# numerics kept in one place
# --------------------------------------------------------------------------------------------
def _as_c(c: Curvature, like: Tensor) -> Union[float, Tensor]:
    # Python numbers stay floats: no tensor creation (and no host-device copy) per call
    if isinstance(c, Tensor):
        return c.to(dtype=like.dtype, device=like.device)
    return float(c)


def _tanhc_sq(s: Tensor) -> Tensor:
    r""":math:`\tanh(\sqrt s)/\sqrt s` for ``s >= 0`` (``0`` at ``s = inf``), smooth in ``s`` at 0:
    series :math:`1 - s/3 + 2s^2/15` below 1e-8 (error < 1e-25)."""
    small = s < 1e-8
    r = torch.where(small, torch.ones_like(s), s).sqrt()
    return torch.where(small, 1 - s / 3 + s * s * (2 / 15), torch.tanh(r) / r)


def _asinhc_sq(s: Tensor) -> Tensor:
    r""":math:`\operatorname{asinh}(\sqrt s)/\sqrt s` for ``s >= 0``, smooth in ``s`` at 0: series
    :math:`1 - s/6 + 3s^2/40` below 1e-8 (error < 1e-25)."""
    small = s < 1e-8
    r = torch.where(small, torch.ones_like(s), s).sqrt().clamp_max(torch.finfo(s.dtype).max)
    return torch.where(small, 1 - s / 6 + s * s * (3 / 40), torch.asinh(r) / r)


def _tanh_ratio(a: Tensor, b2: Tensor, c: Curvature, m: Tensor, m_over_a: Tensor) -> Tensor:
    r""":math:`m\,\tanh(t)/t` with :math:`t = \sqrt{c\,b_2}\;a`, for ``a >= 0`` and ``b2 >= 0``.

    Small :math:`s = c\,b_2 a^2 < 1`: :math:`m\,\operatorname{tanhc}_{sq}(s)`, smooth in ``c`` and
    ``b2`` at 0. Otherwise :math:`\tanh(t)\cdot(m/a)/\sqrt{c\,b_2}` with ``m_over_a`` given by the
    caller (finite where ``a`` is huge or infinite), so that neither ``t`` overflowing nor
    ``a = inf`` (the limit :math:`\tanh = 1`) gives a wrong value or a NaN gradient. Where ``a`` may
    be infinite, ``c * b2`` must be > 0.
    """
    cc = _as_c(c, b2)
    cb2 = cc * b2
    s = cb2 * a * a  # may overflow to inf: then the large branch is taken, which does not square
    small = s < 1
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    out_small = torch.where(small, m, zero) * _tanhc_sq(torch.where(small, s, zero))
    inf_a = torch.isinf(a)
    sq = torch.where(small, one, cb2).sqrt()
    th = torch.where(inf_a, one, torch.tanh(sq * torch.where(small | inf_a, one, a)))
    out_big = th * torch.where(small, zero, m_over_a) / sq
    return torch.where(small, out_small, out_big)


def asinh_nonneg_(z: Tensor) -> Tensor:
    r""":math:`\operatorname{asinh} z` for ``0 <= z < finfo.max / 2`` or ``z = inf``, in place:
    :math:`\operatorname{log1p}\big(z + z/(1/z + \sqrt{1 + 1/z^2})\big)`, the identity
    :math:`\operatorname{asinh} z = \operatorname{log1p}(z + z^2/(1 + \sqrt{1 + z^2}))` divided through by
    ``z`` so that nothing overflows (``z = 0`` and ``z = inf`` come out exact). A few ulp from
    ``torch.asinh``, and ~6x faster on the CPU, where ``torch.asinh`` is not vectorised (the hot
    path of ``pairwise_dist``: 32 ms of the SOP step's 1.7M distances on one core)."""
    r = torch.reciprocal(z)
    q = torch.mul(r, r).add_(1).sqrt_().add_(r)  # 1/z + sqrt(1 + 1/z^2)
    return _log1p_nonneg_(z.add_(torch.div(z, q, out=q)))


#: elements per block of ``_log1p_nonneg_``: its ~5 temporaries of a block stay in the CPU's cache
_LOG1P_BLOCK = 1 << 18


def _log1p_nonneg_(w: Tensor) -> Tensor:
    r""":math:`\operatorname{log1p} w` for ``w >= 0`` (``inf`` included), in place: ``log1p_`` off the
    CPU; on the CPU by Goldberg's correction :math:`\log(u)\,w/(u - 1)` with :math:`u = \operatorname{fl}(1 + w)` (exactly ``w``
    where ``u = 1``): within 2 ulp of ``torch.log1p``, which the CPU build does not vectorise
    (``torch.log`` it does: 850 vs 107 µs for 200k floats, 2 threads). Evaluated in blocks of
    ``_LOG1P_BLOCK`` elements, so that its temporaries stay in cache. ``pairwise_dist`` forward,
    2 threads: 2.63 → 2.43 ms on CUB's (200, 1000) distances, 32.1 → 29.1 ms on SOP's (75, 22636)
    (unblocked, the extra passes over memory made the SOP case slower than ``log1p_``)."""
    if w.device.type != "cpu":  # a GPU's log1p is vectorised: one kernel
        return w.log1p_()
    if not w.is_contiguous():
        return w.copy_(_log1p_nonneg_(w.contiguous()))
    for part in w.view(-1).split(_LOG1P_BLOCK):
        u = part + 1
        t = u - 1  # exact: the part of w that survived the rounding of 1 + w
        exact = t == 0  # 1 + w rounded to 1: log1p w = w to within an ulp
        ratio = torch.div(part, t, out=t).nan_to_num_(1.0)  # inf / inf (w = inf) -> 1; w / 0 is replaced below
        torch.where(exact, part, u.log_().mul_(ratio), out=part)
    return w


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt clamped at 0 with a zero (not NaN/inf) gradient at 0."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def _sqnorm(x: Tensor, keepdim: bool = False) -> Tensor:
    """||x||^2 over the last dimension, as a reduction (no (..., D) temporary, forward or backward)."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdim).square()


def _row_norm(x: Tensor, name: str) -> tuple[Tensor, bool]:
    """``(||x||, huge)``: the norms (..., 1) of finite vectors of any size, and whether some norm is
    beyond sqrt(finfo.max), where squares overflow and factors like 1/||x|| become subnormal.

    Only while the checks are on (one reduction): a norm that is not finite means NaN/inf entries
    (``ValueError``) or a squared norm that overflowed, and those rows are rescaled by a power of two
    before the reduction (exact). Callers then write their result as ``(x / ||x||) * radius``
    instead of ``x * factor``. With the checks off, ``huge`` is False (inputs are trusted)."""
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if not _CHECKS.get() or n.numel() == 0:
        return n, False
    big = math.sqrt(torch.finfo(x.dtype).max)
    if bool((n <= big).all()):  # NaN fails too
        return n, False
    check_finite(x, name)
    if not bool(torch.isfinite(n).all()):
        with torch.no_grad():
            m = x.abs().amax(-1, keepdim=True)
            scale = torch.where(m > 0, torch.exp2(-torch.floor(torch.log2(m))), torch.ones_like(m))
        n = torch.linalg.vector_norm(x * scale, dim=-1, keepdim=True) / scale
        if not bool(torch.isfinite(n).all()):
            raise ValueError(
                f"{name}: some norms exceed the largest {x.dtype} number ({torch.finfo(x.dtype).max:.3g}); "
                f"rescale {name} (or use float64)"
            )
    return n, True


def _unit(x: Tensor, n: Tensor) -> Tensor:
    """x / ||x|| (0 for x = 0), by division (no subnormal reciprocal of a huge norm)."""
    return x / torch.where(n > 0, n, torch.ones_like(n))


def _direction(x: Tensor) -> Tensor:
    """x / ||x|| for finite vectors of any size, tiny ones too (0 for x = 0): scaled by the largest
    entry first, so the squares neither overflow nor underflow."""
    m = x.detach().abs().amax(-1, keepdim=True)
    xs = x / torch.where(m > 0, m, torch.ones_like(m))
    return _unit(xs, torch.linalg.vector_norm(xs, dim=-1, keepdim=True))


class _NormScale(torch.autograd.Function):
    r"""``v * f(||v||)`` for vectors ``v`` (..., D) and a per-row factor ``f`` (..., 1) computed from
    the norms by ``fn(n, *params)`` (small tensors; ``params`` are tensors ``fn`` may need gradients
    for, such as a ``c`` that requires grad).

    Same values and gradients as writing it out, but the backward makes one (..., D) tensor instead
    of five: :math:`\nabla_v = g f + v\,(\partial_n f\;\langle g, v\rangle) / n`, with the row-wise
    dot product from ``einsum`` and :math:`\partial_n f` from autograd on the small graph of ``fn``.
    On the CPU every fresh (N, D) tensor costs page faults, more than the arithmetic."""

    @staticmethod
    def forward(ctx, v: Tensor, fn, *params: Tensor) -> Tensor:
        n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        with torch.enable_grad():
            n_ = n.detach().requires_grad_()
            params_ = [p.detach().requires_grad_(p.requires_grad) for p in params]
            f = fn(n_, *params_)
        ctx.save_for_backward(v)
        ctx.graph = (n_, params_, f)
        return v * f.detach()

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        (v,) = ctx.saved_tensors
        n_, params_, f = ctx.graph
        gf = torch.einsum("...d,...d->...", g, v).unsqueeze(-1)
        wrt = [n_] + [p for p in params_ if p.requires_grad]
        # retain_graph: the outer backward may run again (retain_graph=True, gradcheck); the graph is tiny
        grads = torch.autograd.grad(f, wrt, gf, allow_unused=True, retain_graph=True) if f.requires_grad else [None] * len(wrt)
        gn = grads[0]
        gv = g * f.detach()
        if gn is not None:
            n = n_.detach()
            gv.addcmul_(v, torch.where(n > 0, gn / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(n)))
        it = iter(grads[1:])
        gparams = [next(it) if p.requires_grad else None for p in params_]
        return (gv, None, *gparams)


class _NormScaleClosed(torch.autograd.Function):
    r"""``v * F(||v||)`` as ``_NormScale``, for a factor whose slope is known in closed form:
    ``fdf(n) -> (F, dF/dn)`` (..., 1), evaluated without autograd; ``n``: the norms (..., 1), already
    computed by the caller. Backward :math:`\nabla_v = g F + v\,F'(n)\,\langle g, v\rangle / n`: the
    (..., D) work of ``_NormScale`` without the small autograd graph of its factor (~70 tiny ops
    forward and backward, a per-call cost that dominated the head on 1000 proxies)."""

    @staticmethod
    def forward(ctx, v: Tensor, n: Tensor, fdf) -> Tensor:
        f, df = fdf(n)
        ctx.save_for_backward(v, n, f, df)
        return v * f

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        v, n, f, df = ctx.saved_tensors
        gf = torch.einsum("...d,...d->...", g, v).unsqueeze(-1)
        k = torch.where(n > 0, df * gf / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(n))
        return (g * f).addcmul_(v, k), None, None


def _scale_by_norm(v: Tensor, fn, c: Curvature) -> Tensor:
    """``v * fn(||v||, c)`` through ``_NormScale`` (``fn`` takes the norms (..., 1) and ``c``)."""
    if isinstance(c, Tensor):
        return _NormScale.apply(v, fn, c)
    return _NormScale.apply(v, lambda n: fn(n, c))


class _PairwiseSq(torch.autograd.Function):
    r"""``(S, ||x_i||^2, ||y_j||^2)`` with :math:`S_{ij} = \max(0, \|x_i\|^2 + \|y_j\|^2 - 2\langle x_i, y_j\rangle)`
    (N, M) from one ``addmm``. Backward: :math:`\nabla_x = 2\,x \odot (S^g\mathbf 1 + g_{x^2}) - 2\,S^g y`
    (and the same for ``y`` with :math:`S^{g\top}`): one matmul and an in-place row scaling per input,
    no (N, D) or (M, D) temporaries besides the gradients themselves."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor):
        x2 = torch.linalg.vector_norm(x, dim=-1).square()
        y2 = torch.linalg.vector_norm(y, dim=-1).square()
        sq = torch.addmm(x2[:, None] + y2[None, :], x, y.T, alpha=-2)
        neg = sq < 0
        clamped = bool(neg.any())
        if clamped:
            sq = sq.clamp_min_(0)
        ctx.save_for_backward(x, y, neg if clamped else None)
        return sq, x2, y2

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor, gx2: Optional[Tensor], gy2: Optional[Tensor]):
        x, y, neg = ctx.saved_tensors
        if g is None:
            g = x.new_zeros(x.shape[0], y.shape[0])
        elif neg is not None:
            g = g.masked_fill(neg, 0)
        gx = gy = None
        if ctx.needs_input_grad[0]:
            s = g.sum(1) if gx2 is None else g.sum(1) + gx2
            gx = torch.mm(g, y).mul_(-2).addcmul_(x, s[:, None], value=2)
        if ctx.needs_input_grad[1]:
            s = g.sum(0) if gy2 is None else g.sum(0) + gy2
            gy = torch.mm(g.T, x).mul_(-2).addcmul_(y, s[:, None], value=2)
        return gx, gy


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


def one_minus_c_sqnorm_exact(x: Tensor, c: Curvature) -> Tensor:
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
    c_t = torch.as_tensor(c, dtype=x.dtype, device=x.device).detach()
    chi, clo = _two_prod(c_t.expand_as(hi), hi)
    one = torch.ones_like(hi)
    r, r_err = _two_sum(one, -chi)
    return r + (r_err - clo - c_t * lo)


def alpha_of(x: Tensor, c: Curvature, sq: Optional[Tensor] = None) -> Tensor:
    """1 - c||x||^2 (...), unchecked; ``sq`` = ||x||^2 if the caller has it. Exact value in float64
    (a detached double-double correction on top of the plain expression, which carries the gradient)."""
    if sq is None:
        sq = _sqnorm(x)
    naive = 1 - _as_c(c, x) * sq
    if x.dtype != torch.float64 or x.shape[-1] == 0 or _c_value(c) == 0:
        return naive
    with torch.no_grad():
        correction = one_minus_c_sqnorm_exact(x.detach(), c) - naive.detach()
    return naive + correction


def alpha(x: Tensor, c: Curvature) -> Tensor:
    r"""The denominator of the conformal factor, :math:`\alpha_x = 1 - c\|x\|^2 = 2 / \lambda_x`.

    (..., D) -> (...); exact value in float64 (double-double), plain gradient. Checks ``c`` and
    that ``x`` is in the ball (the value check only while the ``checks`` are on)."""
    check_curvature(c)
    check_in_ball(x, c, "x")
    return alpha_of(x, c)


def _dist_from_parts(sq: Tensor, ax: Tensor, ay: Tensor, c: Curvature) -> Tensor:
    r"""Eq. 2 from :math:`\|x-y\|^2`, :math:`\alpha_x`, :math:`\alpha_y`:
    :math:`2 u\,\operatorname{asinhc}(\sqrt c u)`, :math:`u = \|x-y\|/\sqrt{\alpha_x\alpha_y}`."""
    u2 = sq / (ax * ay)
    return 2 * _safe_sqrt(u2) * _asinhc_sq(_as_c(c, u2) * u2)


def _shrink(n: Tensor, c: Curvature, eps: float) -> Tensor:
    """The factor (..., 1) that ``project`` applies to points of norm ``n``: min(1, (1 - eps)/(sqrt(c) n))."""
    cc = _as_c(c, n)
    over = cc * n * n > (1 - eps) ** 2  # an overflowing n * n counts as over
    one = torch.ones_like(n)
    nn = torch.where(over, n, one)
    if isinstance(cc, float):
        f = (1 - eps) / (math.sqrt(cc) * nn)
    else:
        f = (1 - eps) / (torch.where(over, cc, one).sqrt() * nn)
    return torch.where(over, f, one)


def _cap(n: Tensor, c: Curvature, eps: float) -> Tensor:
    """min(n, (1 - eps)/sqrt(c)) (..., 1): the norm after ``project``, for norms of any size (even inf)."""
    cc = _as_c(c, n)
    over = cc * n * n > (1 - eps) ** 2
    if isinstance(cc, float):
        return torch.where(over, (1 - eps) / math.sqrt(cc) if cc > 0 else math.inf, n)
    return torch.where(over, (1 - eps) / torch.where(over, cc, torch.ones_like(n)).sqrt(), n)


def _project(x: Tensor, c: Curvature, eps: Optional[float] = None) -> Tensor:
    """``project`` without the checks (for outputs that are finite by construction)."""
    if x.numel() == 0 or _c_value(c) == 0:
        return x
    eps = BALL_EPS.get(x.dtype, 1e-5) if eps is None else eps
    return _scale_by_norm(x, lambda n, c: _shrink(n, c, eps), c)


# --------------------------------------------------------------------------------------------
# the ball
# --------------------------------------------------------------------------------------------
def project(x: Tensor, c: Curvature, eps: Optional[float] = None) -> Tensor:
    r"""Pull points back inside the ball: norms above ``(1 - eps)/sqrt(c)`` are scaled down to it,

    .. math:: \operatorname{proj}(x) = x \cdot \min\Big(1, \frac{1 - \epsilon}{\sqrt c\,\|x\|}\Big).

    ``x``: (..., D), finite (any size: a huge vector lands on the boundary in its direction).
    ``eps`` in [0, 1) defaults to ``BALL_EPS[x.dtype]``. Identity for ``c = 0``.
    """
    check_curvature(c)
    _check_tensor(x, "x")
    if eps is not None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= float(eps) < 1:
            raise ValueError(f"eps = {eps!r} is out of range: the margin must be a float in [0, 1) (or None for BALL_EPS)")
        eps = float(eps)
    if x.numel() == 0:
        return x
    if _c_value(c) == 0:
        return check_finite(x, "x")
    eps = BALL_EPS.get(x.dtype, 1e-5) if eps is None else eps
    n, huge = _row_norm(x, "x")
    if huge:
        return _unit(x, n) * _cap(n, c, eps)
    return _scale_by_norm(x, lambda n, c: _shrink(n, c, eps), c)


def conformal_factor(x: Tensor, c: Curvature) -> Tensor:
    r"""Conformal factor :math:`\lambda_x = 2 / (1 - c\|x\|^2)`. (..., D) -> (..., 1)."""
    check_curvature(c)
    check_in_ball(x, c, "x")
    return (2 / alpha_of(x, c)).unsqueeze(-1)


def _check_radius(r: object) -> float:
    """The clipping radius ``r`` as a float: a real number > 0 (``inf`` disables clipping)."""
    if isinstance(r, bool) or not isinstance(r, numbers.Real):
        raise TypeError(f"r must be a real number > 0 (the clipping radius, e.g. 2.3, or inf), got {type(r).__name__} {r!r}")
    if not float(r) > 0:
        raise ValueError(f"r = {r!r}: the clipping radius must be > 0 (use r = inf to disable clipping)")
    return float(r)


def clip_features(v: Tensor, r: float) -> Tensor:
    r"""Feature clipping (Hyp-ViT): :math:`v \leftarrow v\cdot\min(1, r/\|v\|)`, before ``expmap0``.

    Keeps :math:`\exp_0(v)` at most :math:`\tanh(\sqrt c\, r)/\sqrt c` from the origin, far from
    the boundary where float32 loses precision. The paper uses ``r = 2.3``; ``r = inf`` disables it.
    ``v``: (..., D) finite vectors of any size.
    """
    _check_tensor(v, "v", "vectors (..., D)")
    r = _check_radius(r)
    if math.isinf(r) or v.numel() == 0:
        return check_finite(v, "v")
    n, huge = _row_norm(v, "v")
    if huge:
        return _unit(v, n) * n.clamp(max=r)
    tiny = torch.finfo(v.dtype).tiny
    return _scale_by_norm(v, lambda n, _: torch.clamp(r / n.clamp_min(tiny), max=1.0), 0.0)


# --------------------------------------------------------------------------------------------
# Möbius operations (Eq. 1), gyration, and distance (Eq. 2)
# --------------------------------------------------------------------------------------------
def _mobius_add(x: Tensor, y: Tensor, c: Curvature) -> Tensor:
    cc = _as_c(c, x)
    x2 = _sqnorm(x, keepdim=True)
    y2 = _sqnorm(y, keepdim=True)
    xy = (x * y).sum(-1, keepdim=True)
    num = (1 + 2 * cc * xy + cc * y2) * x + (1 - cc * x2) * y
    # denominator = (1 + c<x,y>)^2 + c^2 (|x|^2|y|^2 - <x,y>^2) >= 0; zero only at y = -x on the boundary
    den = 1 + 2 * cc * xy + cc * cc * x2 * y2
    return _project(num / den.clamp_min(torch.finfo(x.dtype).tiny), c)


def mobius_add(x: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""Möbius addition, Eq. (1):

    .. math:: x \oplus_c y = \frac{(1 + 2c\langle x,y\rangle + c\|y\|^2)\,x + (1 - c\|x\|^2)\,y}
                                  {1 + 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}

    ``x``, ``y``: (..., D), broadcast. At ``c = 0`` it is ``x + y``. The result is projected.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    _check_broadcast(("x", x), ("y", y))
    return _mobius_add(x, y, c)


def _scalar_times(r: Tensor, h2: Tensor, rho: Tensor, v: Tensor, c: Curvature) -> Tensor:
    r"""The vector :math:`r\otimes p = f\,v` for a point ``p`` along ``v`` with
    :math:`h = \operatorname{artanh}(\sqrt c\|p\|)/\sqrt c` (``h2`` = :math:`h^2`) and
    :math:`\rho = h/\|v\|`: :math:`f = \tanh(\sqrt c\, r h)/(\sqrt c \|v\|) = r\rho\operatorname{tanhc}(\sqrt c r h)`
    (not projected). ``r = ±inf`` gives the ideal point :math:`\pm v/(\sqrt c\|v\|)` (0 for ``v = 0``),
    written as a division so that a tiny ``v`` keeps its direction."""
    r_inf = torch.isinf(r)
    if not bool(r_inf.any()):
        return _tanh_ratio(r.abs(), h2, c, r * rho, torch.sign(r) * rho) * v
    if _c_value(c) == 0:
        raise ValueError("an infinite scalar has no limit at c = 0 (r ⊗ x = r x is unbounded); pass a finite value or c > 0")
    r_f = torch.where(r_inf, torch.zeros_like(r), r)
    finite = _tanh_ratio(r_f.abs(), h2, c, r_f * rho, torch.sign(r_f) * rho) * v
    inf = torch.full_like(v[..., :1], math.inf)
    ideal = _direction(v) * (torch.sign(r) * _cap(inf, c, 0.0))
    return torch.where(r_inf, ideal, finite)


def mobius_scalar_mul(r: Union[float, Tensor], x: Tensor, c: Curvature) -> Tensor:
    r"""Möbius scalar multiplication :math:`r \otimes_c x = \tanh(r\,\operatorname{artanh}(\sqrt c\|x\|))
    \frac{x}{\sqrt c\|x\|}`.

    ``r``: float or tensor broadcasting against ``x[..., :1]``; ``x``: (..., D). Computed as
    :math:`r\,\rho\,\operatorname{tanhc}(r\sqrt c\|x\|\rho)\,x` with
    :math:`\rho = \operatorname{artanh}(\sqrt c\|x\|)/(\sqrt c\|x\|)`, finite at ``x = 0`` and ``c = 0``.
    ``r = ±inf`` (``c > 0``) gives the ideal point :math:`\pm x/(\sqrt c\|x\|)`, projected.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    r = _check_scalar(r, "r", x)
    n2 = _sqnorm(x, keepdim=True)
    a = alpha_of(x, c, n2.squeeze(-1)).unsqueeze(-1)
    rho = _asinhc_sq(_as_c(c, x) * n2 / a) / a.sqrt()  # artanh(sqrt(c) n) / (sqrt(c) n)
    return _project(_scalar_times(r, n2 * rho * rho, rho, x, c), c)


def _gyration_scaled(u: Tensor, v: Tensor, w: Tensor, c: Curvature) -> tuple[Tensor, Tensor]:
    r"""``(g, s)`` with :math:`\operatorname{gyr}[u, v]w = g\,s`: ``s`` (..., 1) a power of two near the
    largest entry of each huge ``w`` (1 for the others) and ``g`` the gyration of ``w / s``, so that no
    intermediate overflows for any finite ``w``.

    The rotation of the plane of ``u`` and ``v`` by the angle :math:`\theta = 2\operatorname{atan2}(c\|u\wedge v\|, F)`,
    :math:`F = 1 + c\langle u, v\rangle`, written with :math:`m = u + v` and :math:`\delta = u - v`
    (both exact to rounding, however close ``u`` is to ``-v``):

    .. math:: g = \hat w + \frac{c}{D}\Big(F\,(\delta\langle m,\hat w\rangle - m\langle\delta,\hat w\rangle)
              - \frac c2\,\big[(\|\delta\|^2\langle m,\hat w\rangle - \langle m,\delta\rangle\langle\delta,\hat w\rangle)\,m
              + (\|m\|^2\langle\delta,\hat w\rangle - \langle m,\delta\rangle\langle m,\hat w\rangle)\,\delta\big]\Big),

    :math:`F = \tfrac{\alpha_u + \alpha_v}2 + \tfrac c2\|m\|^2`, :math:`D = F^2 + \tfrac{c^2}4\|m\wedge\delta\|^2`
    (sums of non-negative terms): the first bracket is :math:`\sin\theta` times the quarter turn of
    the plane, the second :math:`1 - \cos\theta` times the projection on it. Algebraically the
    closed form of ``gyration``; expanded in ``u`` and ``v`` it cancels catastrophically where
    :math:`D \to 0` (``u`` near ``-v`` near the boundary: in float64 it stretched vectors by up
    to 5e14 there, so transported vectors overflowed), written this way it stays a rotation to
    rounding. Every product is formed as ``c`` times a bounded quantity (no overflow for tiny
    ``c`` and points of norm up to :math:`1/\sqrt c`)."""
    cc = _as_c(c, w)
    m, dl = u + v, u - v
    # intermediates reach ~|w| / sqrt(alpha): rows with entries above finfo.max / 2^32 are divided by
    # the power of two at or below their largest entry (exact; no host read), the others not at all
    # (so c = 0 returns w itself)
    top = w.detach().abs().amax(-1, keepdim=True)
    s = torch.where(top > torch.finfo(w.dtype).max * 2.0**-32, torch.ldexp(torch.ones_like(top), torch.frexp(top)[1] - 1),
                    torch.ones_like(top))
    ws = w / s
    m2, d2 = _sqnorm(m, keepdim=True), _sqnorm(dl, keepdim=True)
    cm2, cd2, cmd = cc * m2, cc * d2, cc * (m * dl).sum(-1, keepdim=True)
    cmw, cdw = cc * (m * ws).sum(-1, keepdim=True), cc * (dl * ws).sum(-1, keepdim=True)
    au, av = alpha_of(u, c).unsqueeze(-1), alpha_of(v, c).unsqueeze(-1)
    f = (au + av) / 2 + cm2 / 2
    # c^2 |m ^ delta|^2 by Gram-Schmidt: |c|m|^2 delta - c<m,delta> m|^2 / |m|^2 (0 at m = 0)
    cw2 = _sqnorm(cm2 * dl - cmd * m, keepdim=True) / m2.clamp_min(torch.finfo(m.dtype).tiny)
    d = f * f + cw2 / 4
    quarter = dl * cmw - m * cdw  # c (delta <m, w> - m <delta, w>)
    proj = (cd2 * cmw - cmd * cdw) * m + (cm2 * cdw - cmd * cmw) * dl  # c^2 |m ^ delta|^2 (projection of w)
    return ws + (f * quarter - proj / 2) / d, s


def _unscale(g: Tensor, s: Tensor, name: str, what: str) -> Tensor:
    """``g * s`` for the scaled results of ``_gyration_scaled``: a result whose norm exceeds the
    dtype's largest number raises (while the checks are on) instead of coming out as inf."""
    out = g * s
    if _CHECKS.get() and out.numel() and not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"{name}: {what} has entries beyond the largest {out.dtype} number ({torch.finfo(out.dtype).max:.3g}) "
            f"in {int((~torch.isfinite(out)).any(-1).sum())} row(s); rescale {name} (or use float64)"
        )
    return out


def gyration(u: Tensor, v: Tensor, w: Tensor, c: Curvature) -> Tensor:
    r"""The gyration :math:`\operatorname{gyr}[u, v]w = \ominus(u\oplus v)\oplus(u\oplus(v\oplus w))`,
    in closed form for any vector ``w`` (Ungar; geoopt's ``gyration`` with ``k = -c``):

    .. math:: \operatorname{gyr}[u,v]w = w + 2\,\frac{A\,u + B\,v}{D}, \quad
              A = c\langle v,w\rangle + c^2\big(2\langle u,v\rangle\langle v,w\rangle - \langle u,w\rangle\|v\|^2\big),

              B = -c\langle u,w\rangle - c^2\langle v,w\rangle\|u\|^2, \quad
              D = 1 + 2c\langle u,v\rangle + c^2\|u\|^2\|v\|^2.

    It is the rotation that makes :math:`\oplus` associative,
    :math:`u\oplus(v\oplus w) = (u\oplus v)\oplus\operatorname{gyr}[u,v]w`; linear in ``w`` and
    norm-preserving; the identity at ``c = 0``. ``u``, ``v``: points of the ball, ``w``: any finite
    vectors; (..., D), broadcast -> (..., D). Evaluated as the rotation by
    :math:`2\operatorname{atan2}(c\|u\wedge v\|, 1 + c\langle u,v\rangle)` in the plane of ``u`` and ``v``
    (``_gyration_scaled``), which stays norm-preserving to rounding up to the boundary; a result
    beyond the dtype's range raises ``ValueError`` (while the checks are on).
    """
    check_curvature(c)
    check_in_ball(u, c, "u")
    check_in_ball(v, c, "v")
    check_finite(w, "w")
    _check_broadcast(("u", u), ("v", v), ("w", w))
    g, s = _gyration_scaled(u, v, w, c)
    return _unscale(g, s, "w", "gyr[u, v]w")


def dist(x: Tensor, y: Tensor, c: Curvature, keepdim: bool = False) -> Tensor:
    r"""Poincaré distance, Eq. (2): :math:`D_c(x,y) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\,\|(-x)\oplus_c y\|)`.

    ``x``, ``y``: (..., D), broadcast -> (...) (or (..., 1) with ``keepdim``). Evaluated as
    :math:`\tfrac{2}{\sqrt c}\operatorname{asinh}(\sqrt c\,\|x-y\|/\sqrt{\alpha_x\alpha_y})`; at
    ``c = 0`` it is :math:`2\|x-y\|`. The gradient of ``dist(x, x)`` is 0.
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    _check_broadcast(("x", x), ("y", y))
    _check_bool(keepdim, "keepdim")
    sq = _sqnorm(x - y)
    d = _dist_from_parts(sq, alpha_of(x, c), alpha_of(y, c), c)
    return d.unsqueeze(-1) if keepdim else d


def dist0(x: Tensor, c: Curvature, keepdim: bool = False) -> Tensor:
    r"""Distance to the origin, :math:`D_c(0, x) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)`. (..., D) -> (...)."""
    check_curvature(c)
    check_in_ball(x, c, "x")
    _check_bool(keepdim, "keepdim")
    sq = _sqnorm(x)
    d = _dist_from_parts(sq, torch.ones_like(sq), alpha_of(x, c, sq), c)
    return d.unsqueeze(-1) if keepdim else d


def _pairwise_sqdist(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(||x_i - y_j||^2 (N, M), ||x||^2, ||y||^2) by one fused matmul; entries that cancel badly are
    recomputed directly."""
    sq, x2, y2 = _PairwiseSq.apply(x, y)
    # relative error of the expansion ~ eps * (|x|^2 + |y|^2) / sq: redo the few close pairs exactly
    tol = 1e-4 if x.dtype == torch.float64 else 1e-2
    with torch.no_grad():
        close = sq < tol * (x2[:, None] + y2[None, :])
        idx = close.nonzero(as_tuple=True) if bool(close.any()) else None
    if idx is not None:
        exact = (x[idx[0]] - y[idx[1]]).pow(2).sum(-1)
        sq = sq.index_put(idx, exact)
    return sq, x2, y2


def _sqdist_values(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The values of ``_pairwise_sqdist`` (no autograd): (||x_i - y_j||^2 (N, M), ||x||^2, ||y||^2),
    one ``addmm``, the pairs that cancel badly recomputed from the vectors, in place."""
    return sqdist_screened(x, y)[:3]


def sqdist_screened(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``_sqdist_values`` and whether every pair is far (``sq >= tol (|x|^2 + |y|^2) > 0``, so none
    was recomputed and none is 0). The far case, by far the common one, is recognised from one
    reduction, ``min sq >= tol (max |x|^2 + max |y|^2)``, instead of an (N, M) comparison."""
    x2 = torch.linalg.vector_norm(x, dim=-1).square()
    y2 = torch.linalg.vector_norm(y, dim=-1).square()
    # the outer sum written once, the product added in place (addmm would copy it into a fresh result)
    sq = torch.add(x2[:, None], y2[None, :]).addmm_(x, y.T, alpha=-2)
    tol = 1e-4 if x.dtype == torch.float64 else 1e-2
    if sq.numel() == 0:
        return sq, x2, y2, True
    lo, bound = sq.amin(), tol * (x2.amax() + y2.amax())
    if bool((lo > 0) & (lo >= bound)):  # one host read
        return sq, x2, y2, True
    close = sq < tol * (x2[:, None] + y2[None, :])  # negative values are close: they are recomputed
    if bool(close.any()):
        i, j = close.nonzero(as_tuple=True)
        sq.index_put_((i, j), (x[i] - y[j]).pow(2).sum(-1))
    return sq, x2, y2, False


def overflow_scale(x: Tensor, y: Tensor, x2: Tensor, y2: Tensor) -> float:
    """1.0 while the squared norms ``x2``, ``y2`` of the rows of ``x`` and ``y`` stay below
    ``finfo.max / 16`` (then ``|x|^2 + |y|^2 - 2<x, y>`` cannot overflow); otherwise the power of two
    at or below their largest entry, by which ``pairwise_euclidean`` divides them (one host read)."""
    if x2.numel() == 0 or y2.numel() == 0:
        return 1.0
    big = float(torch.maximum(x2.max(), y2.max()))
    if big <= torch.finfo(x2.dtype).max / 16:
        return 1.0
    m = float(torch.maximum(x.abs().max(), y.abs().max()))
    return 2.0 ** math.floor(math.log2(m)) if 0 < m < math.inf else 1.0


def tiny_c(dtype: torch.dtype) -> float:
    r"""Below this ``c`` the hot path of ``pairwise_dist`` takes the series form of Eq. 2
    (:math:`2u\,\operatorname{asinhc}(\sqrt c u)`): :math:`\sqrt{\mathrm{tiny}}` of the dtype (1e-19 in float32,
    1.5e-154 in float64), where :math:`\sqrt c` and :math:`2/\sqrt c` are still far inside its normal
    range (float32: at c = 1e-78, 2/sqrt(c) overflowed to inf, and at c <= 1e-100 sqrt(c) u underflowed
    to 0, giving 0 * inf = NaN)."""
    return math.sqrt(torch.finfo(dtype).tiny)


class _PairwiseDist(torch.autograd.Function):
    r"""All distances (N, M) between the rows of ``x`` (N, D) and ``y`` (M, D), for a float ``c``:
    Eq. 2 for ``c > 0``, the Euclidean :math:`\|x - y\|` for ``c = None``; the values of the
    autograd route (``_pairwise_sqdist``, ``alpha_of``, ``torch.asinh``; to a few ulp) and of
    ``torch.cdist`` (to rounding), with a hand-written backward; the tests hold it to both.

    Forward: ``sq`` from ``_sqdist_values``, then :math:`u^2 = sq/(\alpha_x\alpha_y)` and
    :math:`D = \tfrac2{\sqrt c}\operatorname{asinh}(\sqrt c\,u)` in place (exactly 0 for coincident
    points); below ``tiny_c`` (float32: c < 1e-19) :math:`D = 2u\,\operatorname{asinhc}(\sqrt c\,u)`,
    which tends to the Euclidean :math:`2u` as ``c -> 0``. Backward, from the saved
    :math:`u^2`, with :math:`t = \max(u^2, \mathrm{tiny})`:

    .. math:: g_{u^2} = \frac{g}{\sqrt{t(1 + c t)}}\,[u^2 \ge \mathrm{tiny}], \quad
              g_{sq} = \frac{g_{u^2}}{\alpha_x\alpha_y}, \quad
              g_{\|x\|^2} = \frac{c}{\alpha_x}\sum_j g_{u^2} u^2, \quad
              \nabla_x = 2x\,(g_{sq}\mathbf 1 + g_{\|x\|^2}) - 2\,g_{sq}\,y

    (the same for ``y`` with the transposes); Euclidean: :math:`h = g / D` (0 where ``D = 0``),
    :math:`\nabla_x = x\,(h\mathbf 1) - h\,y`. A handful of (N, M) temporaries and one matmul
    per input, instead of autograd's ~20 (N, M) tensors; ``gradcheck`` in the tests."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, c: Optional[float]) -> Tensor:
        sq, x2, y2 = _sqdist_values(x, y)
        ctx.c = c
        if c is None:
            s = overflow_scale(x, y, x2, y2)
            if s != 1.0:  # squared norms near overflow: the same in units of s (a power of two, exact)
                x, y = x / s, y / s
                sq = _sqdist_values(x, y)[0]
            d = sq.sqrt_()
            ctx.save_for_backward(x, y, d)  # the gradient is scale-free: the backward uses the scaled values
            if s == 1.0:
                return d
            out = d * s
            if _CHECKS.get() and not bool(torch.isfinite(out).all()):
                raise ValueError(f"x, y: some distances exceed the largest {out.dtype} number "
                                 f"({torch.finfo(out.dtype).max:.3g}); rescale x and y (or use float64)")
            return out
        iax, iay = 1 / alpha_of(x, c, x2), 1 / alpha_of(y, c, y2)
        u2 = sq.mul_(iax[:, None]).mul_(iay[None, :])
        ctx.save_for_backward(x, y, u2, iax, iay)
        if c < tiny_c(u2.dtype):  # sqrt(c) or 2 / sqrt(c) would leave the dtype's normal range
            return 2 * u2.sqrt() * _asinhc_sq(c * u2)
        sc = math.sqrt(c)
        # sqrt(0) = 0 and asinh(0) = 0: coincident points get exactly 0
        return asinh_nonneg_(u2.sqrt().mul_(sc)).mul_(2 / sc)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        c = ctx.c
        if c is None:
            x, y, d = ctx.saved_tensors
            h = torch.where(d > 0, g / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
            rx, ry = h.sum(1), h.sum(0)
            cx = cy = 1.0
        else:
            x, y, u2, iax, iay = ctx.saved_tensors
            tiny = torch.finfo(u2.dtype).tiny
            t = u2.clamp_min(tiny)
            h = torch.addcmul(t, t, t, value=c).rsqrt_().mul_(g)  # g / sqrt(t (1 + c t)) = dD/du^2 * g
            below = u2 < tiny  # coincident points: clamp's zero gradient
            if h.device.type != "cpu" or bool(below.any()):  # (no host sync on a GPU)
                h.masked_fill_(below, 0)
            prod = torch.mul(h, u2, out=t)  # dD/du^2 * g * u^2, for the gradients of the norms
            gx2, gy2 = prod.sum(1).mul_(iax).mul_(c), prod.sum(0).mul_(iay).mul_(c)
            del prod, t
            h.mul_(iax[:, None]).mul_(iay[None, :])  # g_sq
            rx, ry = h.sum(1).add_(gx2), h.sum(0).add_(gy2)
            cx = cy = 2.0
        gx = gy = None
        # c x (h 1) - c h y: the row scaling writes the fresh gradient, the matmul adds to it in place
        if ctx.needs_input_grad[0]:
            gx = torch.mul(x, rx.mul_(cx)[:, None]).addmm_(h, y, alpha=-cx)
        if ctx.needs_input_grad[1]:
            gy = torch.mul(y, ry.mul_(cy)[:, None]).addmm_(h.T, x, alpha=-cy)
        return gx, gy, None


def check_pairwise(x: Tensor, y: Tensor, c: Optional[Curvature]) -> None:
    """The checks of ``pairwise_dist`` (``c`` given: a valid curvature, points in the ball) and of
    ``pairwise_euclidean`` (``c = None``: finite vectors): ``x`` (N, D) and ``y`` (M, D) floating-point
    with the same D; the value checks only while the checks are on."""
    what = "vectors" if c is None else "points"
    if c is not None:
        check_curvature(c)
    _check_tensor(x, "x", f"{what} (N, D)")
    _check_tensor(y, "y", f"{what} (M, D)")
    if x.dim() != 2 or y.dim() != 2 or x.shape[-1] != y.shape[-1]:
        fn = "pairwise_euclidean" if c is None else "pairwise_dist"
        raise ValueError(f"{fn} needs x (N, D) and y (M, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    if c is None:
        check_finite(x, "x")
        check_finite(y, "y")
    else:
        check_in_ball(x, c, "x")
        check_in_ball(y, c, "y")


def pairwise_euclidean(x: Tensor, y: Tensor) -> Tensor:
    r"""All Euclidean distances :math:`\|x_i - y_j\|` between the rows of ``x`` (N, D) and ``y``
    (M, D) -> (N, M): ``torch.cdist``'s values, from one matmul and the norms (pairs that would cancel
    recomputed from the vectors, so coincident points give 0), with a hand-written backward
    (``_PairwiseDist``; the gradient at a zero distance is 0). ``x``, ``y``: finite vectors (the
    value check while the checks are on)."""
    check_pairwise(x, y, None)
    return _PairwiseDist.apply(x, y, None)


def pairwise_dist(x: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""All Poincaré distances between the rows of ``x`` (N, D) and ``y`` (M, D) -> (N, M), Eq. (2).

    Never builds an (N, M, D) tensor: :math:`\|(-x)\oplus y\| = \|x-y\|/\sqrt{1 - 2c\langle x,y\rangle
    + c^2\|x\|^2\|y\|^2}` and :math:`\|x - y\|^2` come from one matmul and the norms. This is the hot
    path of the CHEST loss (a hand-written backward for a float ``c > 0``). Identical rows are at
    distance exactly 0 (with a zero gradient), and a tiny ``c`` (down to the smallest float) gives the
    Euclidean limit :math:`2\|x - y\|` in float32 and float64.
    """
    check_pairwise(x, y, c)
    if not isinstance(c, Tensor) and _c_value(c) > 0:
        return _PairwiseDist.apply(x, y, float(c))  # the float-c hot path, hand-written backward
    sq, x2, y2 = _pairwise_sqdist(x, y)
    ax, ay = alpha_of(x, c, x2), alpha_of(y, c, y2)
    return _dist_from_parts(sq, ax[:, None], ay[None, :], c)


# --------------------------------------------------------------------------------------------
# exponential and logarithmic maps (Eq. 3, 4), geodesics, parallel transport, midpoints
# --------------------------------------------------------------------------------------------
def expmap0(v: Tensor, c: Curvature) -> Tensor:
    r"""Exponential map at the origin, Eq. (4): :math:`\exp_0(v) = \tanh(\sqrt c\|v\|)\,\frac{v}{\sqrt c\|v\|}`.

    ``v``: (..., D) finite tangent vectors of any size -> points in the ball (projected, so float32
    saturation of ``tanh`` cannot put them on the boundary). At ``c = 0`` it is the identity.
    """
    check_curvature(c)
    _check_tensor(v, "v", "tangent vectors (..., D)")
    if v.numel() == 0:
        return v * 1
    n, huge = _row_norm(v, "v")
    if huge:  # radius tanh(sqrt(c) n) / sqrt(c) along v / n
        one = torch.ones_like(n)
        return _unit(v, n) * _cap(_tanh_ratio(n, one, c, n, one), c, BALL_EPS.get(v.dtype, 1e-5))
    eps = BALL_EPS.get(v.dtype, 1e-5)

    def factor(n: Tensor, c: Curvature) -> Tensor:
        one = torch.ones_like(n)
        f = _tanh_ratio(n, one, c, one, 1 / torch.where(n > 0, n, one))  # tanh(sqrt(c) n) / (sqrt(c) n)
        return f * _shrink(n * f, c, eps)  # projected: the norm of the result is n f

    return _scale_by_norm(v, factor, c)


def expmap0_clipped(v: Tensor, r: float, c: Curvature) -> Tensor:
    r"""``expmap0(clip_features(v, r), c)`` (the hyperbolic head, Sec. 3.2) as one radial scaling
    :math:`v\,F(\|v\|)`, :math:`F(n) = f_r(n)\,f_{\exp}(n f_r(n))` with :math:`f_r(n) = \min(1, r/n)`:
    one ``_NormScale`` (one (N, D) tensor forward and one backward) instead of two. Same values as
    the two calls to rounding (the clipped norm is :math:`n f_r(n)` instead of the norm of the
    clipped vector) and the same gradients. ``v``: (..., D) finite vectors of any size."""
    check_curvature(c)
    _check_tensor(v, "v", "vectors (..., D)")
    r = _check_radius(r)
    if math.isinf(r) or v.numel() == 0:
        return expmap0(check_finite(v, "v"), c)
    n, huge = _row_norm(v, "v")
    if huge:
        return expmap0(_unit(v, n) * n.clamp(max=r), c)
    eps = BALL_EPS.get(v.dtype, 1e-5)
    tiny = torch.finfo(v.dtype).tiny

    def factor(n: Tensor, c: Curvature) -> Tensor:
        fr = torch.clamp(r / n.clamp_min(tiny), max=1.0)  # clip_features
        m = n * fr  # the clipped norm
        one = torch.ones_like(m)
        f = _tanh_ratio(m, one, c, one, 1 / torch.where(m > 0, m, one))  # expmap0's factor at norm m
        return fr * (f * _shrink(m * f, c, eps))

    if isinstance(c, Tensor):
        return _scale_by_norm(v, factor, c)
    cc = float(c)

    def factor_and_slope(n: Tensor) -> tuple[Tensor, Tensor]:
        # F(n) as above, and dF/dn in closed form, in ~30 ops on the (N, 1) norms (each op here is a
        # fixed cost per call: the generic factor() took ~85): with the clipped norm m = min(n, r),
        # t = sqrt(c) m, f = tanh(t)/t, F = min(1, r/n) f, or (1 - eps)/(sqrt(c) n) where the projection
        # pulls the point in (tanh(t) > 1 - eps); dF/dn = -F/n there and where the norm is clipped
        # (n > r), otherwise (1 - tanh(t)^2 - f)/n, or its series c n (-2/3 + 8 t^2/15 - 34 t^4/105)
        # for t^2 < 1e-4 (where the difference would cancel)
        sc = math.sqrt(cc)
        nz = n.clamp_min(tiny)
        t = torch.clamp(n, max=r).mul_(sc)
        th = torch.tanh(t)
        pos = t > 0
        f = torch.where(pos, th / torch.where(pos, t, 1.0), 1.0)
        over = th > 1 - eps
        F = torch.where(over, torch.reciprocal(nz).mul_((1 - eps) / sc if sc > 0 else 0.0),
                        torch.reciprocal(nz).mul_(r).clamp_max_(1.0).mul_(f))
        t2 = t * t
        series = torch.mul(t2, -34 / 105).add_(8 / 15).mul_(t2).sub_(2 / 3).mul_(n).mul_(cc)
        slope = torch.where(t2 < 1e-4, series, torch.mul(th, th).neg_().add_(1).sub_(f).div_(nz))
        return F, torch.where((n > r) | over, torch.div(F, nz).neg_(), slope)

    return _NormScaleClosed.apply(v, n.detach(), factor_and_slope)


def expmap(z: Tensor, v: Tensor, c: Curvature) -> Tensor:
    r"""Exponential map at ``z``, Eq. (3): :math:`\exp_z(v) = z \oplus \tanh(\sqrt c\lambda_z\|v\|/2)
    \frac{v}{\sqrt c\|v\|}`. ``z``: (..., D) points, ``v``: (..., D) finite tangent vectors of any
    size, broadcast -> (..., D), projected."""
    check_curvature(c)
    check_in_ball(z, c, "z")
    _check_tensor(v, "v", "tangent vectors (..., D)")
    _check_broadcast(("z", z), ("v", v))
    lam = 2 / alpha_of(z, c).unsqueeze(-1)
    n, huge = _row_norm(v, "v")
    if huge:  # radius tanh(sqrt(c) lam n / 2) / sqrt(c) along v / n
        step = _unit(v, n) * _tanh_ratio(n, lam * lam / 4, c, lam / 2 * n, lam / 2)
    else:
        inv_n = 1 / torch.where(n > 0, n, torch.ones_like(n))
        # tanh(sqrt(c) lam n / 2) / (sqrt(c) n) = (lam / 2) tanhc(sqrt(c) (lam / 2) n)
        step = v * _tanh_ratio(n, lam * lam / 4, c, lam / 2, lam / 2 * inv_n)
    return _mobius_add(z, _project(step, c), c)


def logmap0(y: Tensor, c: Curvature) -> Tensor:
    r"""Logarithmic map at the origin (inverse of Eq. 4): :math:`\log_0(y) = \operatorname{artanh}(\sqrt c\|y\|)\,\frac{y}{\sqrt c\|y\|}`.

    Evaluated as :math:`\operatorname{asinhc}(\sqrt c\|y\|/\sqrt{\alpha_y})\,y/\sqrt{\alpha_y}`. (..., D) -> (..., D).
    """
    check_curvature(c)
    check_in_ball(y, c, "y")
    n2 = _sqnorm(y, keepdim=True)
    a = alpha_of(y, c, n2.squeeze(-1)).unsqueeze(-1)
    return y * (_asinhc_sq(_as_c(c, y) * n2 / a) / a.sqrt())


def logmap(z: Tensor, y: Tensor, c: Curvature) -> Tensor:
    r"""Logarithmic map at ``z`` (inverse of Eq. 3): :math:`\log_z(y) = \frac{2}{\sqrt c\lambda_z}
    \operatorname{artanh}(\sqrt c\|u\|)\frac{u}{\|u\|}`, :math:`u = (-z)\oplus y`.

    Uses :math:`\frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|u\|) = D_c(z, y)` in its stable form,
    so it is finite at ``y = z`` and at ``c = 0``. ``z``, ``y``: (..., D) -> (..., D).
    """
    check_curvature(c)
    check_in_ball(z, c, "z")
    check_in_ball(y, c, "y")
    _check_broadcast(("z", z), ("y", y))
    az, ay = alpha_of(z, c).unsqueeze(-1), alpha_of(y, c).unsqueeze(-1)
    sq = _sqnorm(z - y, keepdim=True)
    w2 = sq / (az * ay)
    den = az * ay + _as_c(c, z) * sq  # ||z - y||^2 / ||u||^2
    u = _mobius_add(-z, y, c)
    return az * _asinhc_sq(_as_c(c, z) * w2) * (den / (az * ay)).sqrt() * u


def geodesic(x: Tensor, y: Tensor, t: Union[float, Tensor], c: Curvature) -> Tensor:
    r"""The point at parameter ``t`` of the geodesic through ``x`` (``t = 0``) and ``y`` (``t = 1``):

    .. math:: \gamma_{x\to y}(t) = x \oplus_c \big(t \otimes_c ((-x) \oplus_c y)\big),

    a constant-speed curve: :math:`D_c(x, \gamma(t)) = |t|\,D_c(x, y)`. ``t`` outside [0, 1]
    extends the segment to the whole geodesic line; ``t = ±inf`` (``c > 0``) gives its ideal
    endpoints (projected). At ``c = 0`` it is :math:`x + t(y - x)`.

    ``x``, ``y``: (..., D); ``t``: float or tensor broadcasting against ``x[..., :1]`` (e.g. ``(n, 1)``
    for ``n`` points of one geodesic) -> (..., D), projected. Evaluated with
    :math:`\operatorname{artanh}(\sqrt c\|(-x)\oplus y\|)/\sqrt c = D_c(x, y)/2` in the stable form
    of ``dist``, so points near the boundary and ``x = y`` are exact; geoopt's ``geodesic`` with
    ``k = -c``. (A polyline of the arc, for drawing: :func:`chestlab.viz.geometry.geodesic_arc`.)
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    _check_broadcast(("x", x), ("y", y))
    t = _check_scalar(t, "t", x)
    cc = _as_c(c, x)
    x2, y2 = _sqnorm(x, keepdim=True), _sqnorm(y, keepdim=True)
    ax, ay = alpha_of(x, c, x2.squeeze(-1)).unsqueeze(-1), alpha_of(y, c, y2.squeeze(-1)).unsqueeze(-1)
    sq = _sqnorm(x - y, keepdim=True)
    den = ax * ay + cc * sq  # = 1 - 2c<x,y> + c^2 |x|^2 |y|^2, the denominator of (-x) + y
    # (-x) + y = num / den, num = (1 - 2c<x,y> + c|y|^2)(-x) + alpha_x y = alpha_x (y - x) - c|x - y|^2 x:
    # exactly 0 at y = x, accurate for close points
    num = ax * (y - x) - cc * sq * x
    u2 = sq / (ax * ay)
    ash = _asinhc_sq(cc * u2)
    h2 = u2 * ash * ash  # (D(x, y) / 2)^2
    rho = ash * (den / (ax * ay)).sqrt()  # (D(x, y) / 2) / ||(-x) + y||
    step = _scalar_times(t, h2, rho / den, num, c)  # t (x) u with u = num / den
    return _mobius_add(x, _project(step, c), c)


def parallel_transport(x: Tensor, y: Tensor, v: Tensor, c: Curvature) -> Tensor:
    r"""Parallel transport of the tangent vector ``v`` at ``x`` to ``y`` along their geodesic:

    .. math:: P_{x\to y}(v) = \frac{\lambda_x}{\lambda_y}\operatorname{gyr}[y, -x]\,v
              = \frac{\alpha_y}{\alpha_x}\operatorname{gyr}[y, -x]\,v

    (geoopt's ``parallel_transport`` with ``k = -c``). It keeps the conformal (Riemannian) norm,
    :math:`\lambda_y\|P_{x\to y}v\| = \lambda_x\|v\|`, and is the identity at ``c = 0``.
    ``x``, ``y``: points (..., D), ``v``: finite tangent vectors (..., D) of any size, broadcast ->
    (..., D); transported any number of times between points at the boundary, vectors stay finite
    (geoopt's ``test_add_infinity_and_beyond``). A result beyond the dtype's range raises
    ``ValueError`` naming ``v`` (while the checks are on).
    """
    check_curvature(c)
    check_in_ball(x, c, "x")
    check_in_ball(y, c, "y")
    check_finite(v, "v")
    _check_broadcast(("x", x), ("y", y), ("v", v))
    ratio = (alpha_of(y, c) / alpha_of(x, c)).unsqueeze(-1)
    g, s = _gyration_scaled(y, -x, v, c)
    return _unscale(g * ratio, s, "v", "the transported vector")


def weighted_midpoint(x: Tensor, w: Optional[Tensor], c: Curvature) -> Tensor:
    r"""The weighted gyro-midpoint (Einstein midpoint, carried to the Poincaré ball) of the points
    ``x`` (N, D) with weights ``w`` (N,) -> (D,):

    .. math:: m = \tfrac12 \otimes_c \frac{\sum_i w_i \lambda_i x_i}{\sum_i w_i (\lambda_i - 1)},
              \qquad \lambda_i = \frac{2}{1 - c\|x_i\|^2},

    (geoopt's ``weighted_midpoint`` with ``k = -c``). The fraction :math:`y` is a convex combination
    of the points :math:`2\otimes x_i = 2x_i/(1 + c\|x_i\|^2)` with weights
    :math:`w_i(\lambda_i - 1) = w_i(1 + c\|x_i\|^2)/\alpha_i`, so it lies in the ball, and
    :math:`\tfrac12\otimes y = y/(1 + \sqrt{1 - c\|y\|^2})`. The midpoint of two points with equal
    weights lies on their geodesic at equal distances; at ``c = 0`` it is the weighted mean.

    ``w``: non-negative, not all zero; ``None`` for equal weights. The formula is invariant to the
    scale of ``w``, so ``w`` is divided by its maximum first (no overflow); infinite weights give
    the limit, the midpoint of the points with infinite weight. ``N = 0`` raises ``ValueError``.
    """
    check_curvature(c)
    _check_tensor(x, "x", "points (N, D)")
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D) points, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x holds N = 0 points: the midpoint of no points is undefined; pass N >= 1 points")
    check_in_ball(x, c, "x")
    if w is None:
        w = torch.ones_like(x[:, 0])
    else:
        _check_tensor(w, "w", "weights (N,)")
        if w.shape != x.shape[:1]:
            raise ValueError(f"w must be (N,) = ({x.shape[0]},) weights, got shape {tuple(w.shape)}")
        w = w.to(x.dtype)
        if _CHECKS.get():
            with torch.no_grad():
                if bool(torch.isnan(w).any()) or bool((w < 0).any()) or not bool((w > 0).any()):
                    raise ValueError("w must hold weights >= 0 (inf allowed), not all 0 and no NaN; "
                                     "pass e.g. torch.ones(N) for the plain midpoint")
        if bool(torch.isinf(w).any()):
            w = torch.isinf(w).to(x.dtype)
        w = w / w.detach().max()
    cc = _as_c(c, x)
    x2 = _sqnorm(x)
    ax = alpha_of(x, c, x2)
    num = ((w * 2 / ax)[:, None] * x).sum(0)
    den = (w * (1 + cc * x2) / ax).sum()
    y = num / den
    root = (1 - cc * _sqnorm(y)).clamp_min(0).sqrt()
    return _project(y / (1 + root), c)


# --------------------------------------------------------------------------------------------
# hyperbolic lowest common ancestor (HypHC)
# --------------------------------------------------------------------------------------------
def lca_depth(a: Tensor, b: Tensor, c: Curvature) -> Tensor:
    r"""Depth of the hyperbolic LCA of ``a`` and ``b`` (HypHC, Chami et al. 2020): the distance from the
    origin to the geodesic through ``a`` and ``b``, :math:`d_o = D_c(0, \mathrm{lca}(a, b))`. (In a
    known class tree the LCA's level is :meth:`chestlab.hierarchy.Hierarchy.lca_level`, an integer.)

    Closed form, derived in the Lorentz model in notebook 04, section 2 (the geodesic is the hyperboloid
    cut by a plane through the origin; :math:`\sinh^2(\sqrt c\, d_o)` is the squared Minkowski norm of
    the apex's component orthogonal to that plane):

    .. math:: \sinh(\sqrt c\, d_o) = \frac{2\sqrt c\,\|a\wedge b\|}{\|a-b\|\,\sqrt{\alpha_a\alpha_b + c\|a-b\|^2}},

    with :math:`\|a\wedge b\|^2 = \|a\|^2\|b\|^2 - \langle a,b\rangle^2`. Deeper = more similar;
    0 when the geodesic passes through the origin. At ``c = 0`` it is twice the Euclidean distance
    from the origin to the line through ``a`` and ``b``. For ``a = b`` the LCA is the point itself
    and the depth is ``dist0(a)``. ``a``, ``b``: (..., D) -> (...).
    """
    check_curvature(c)
    check_in_ball(a, c, "a")
    check_in_ball(b, c, "b")
    _check_broadcast(("a", a), ("b", b))
    tiny = torch.finfo(a.dtype).tiny
    a2 = a.pow(2).sum(-1, keepdim=True)
    ab = (a * b).sum(-1, keepdim=True)
    # |a ^ b| = || |a|^2 b - <a,b> a || / |a|   (Gram-Schmidt: milder cancellation than sqrt(AB - p^2))
    # (clamped before the sqrt: sqrt's infinite slope at a = 0 would make the gradient NaN)
    wedge = (a2 * b - ab * a).norm(dim=-1) / a2.squeeze(-1).clamp_min(tiny).sqrt()
    sq = (a - b).pow(2).sum(-1)
    aa, abeta = alpha_of(a, c), alpha_of(b, c)
    same = sq <= tiny
    sq_safe = torch.where(same, torch.ones_like(sq), sq)
    s = 2 * wedge / (sq_safe.sqrt() * (aa * abeta + _as_c(c, a) * sq_safe).sqrt())  # sinh(sqrt c d)/sqrt c
    depth = s * _asinhc_sq(_as_c(c, s) * s * s)
    a_sq = a2.squeeze(-1)
    depth0 = _dist_from_parts(a_sq, torch.ones_like(a_sq), aa, c)  # dist0(a)
    return torch.where(same, depth0, depth)


class _GroupGram(torch.autograd.Function):
    """G[m] = X_m X_m^T (M, k, k) for X_m = x[groups[m]] (k, D), gathered in chunks of rows, so that
    no (M, k, D) tensor is kept for the backward pass (which gathers the chunks again)."""

    @staticmethod
    def forward(ctx, x: Tensor, groups: Tensor, chunk: int) -> Tensor:
        M, k = groups.shape
        G = x.new_empty(M, k, k)
        for s in range(0, M, chunk):
            g = groups[s : s + chunk]
            p = x.index_select(0, g.reshape(-1)).view(g.shape[0], k, -1)
            torch.bmm(p, p.transpose(1, 2), out=G[s : s + chunk])
        ctx.save_for_backward(x, groups)
        ctx.chunk = chunk
        return G

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, groups = ctx.saved_tensors
        M, k = groups.shape
        gx = torch.zeros_like(x)
        sym = grad + grad.transpose(1, 2)  # dG/dX_m = (grad + grad^T) X_m
        for s in range(0, M, ctx.chunk):
            g = groups[s : s + ctx.chunk].reshape(-1)
            p = x.index_select(0, g).view(-1, k, x.shape[-1])
            gx.index_add_(0, g, torch.bmm(sym[s : s + ctx.chunk], p).view(-1, x.shape[-1]))
        return gx, None, None


def group_dist_lca(x: Tensor, groups: Tensor, c: Curvature, lca: bool = True) -> tuple[Tensor, Optional[Tensor]]:
    r"""Poincaré distances (Eq. 2) and hyperbolic LCA depths (``lca_depth``) of all pairs within
    groups of points, from the groups' Gram matrices.

    ``x``: (P, D) points; ``groups``: (M, k) indices into ``x`` (``k >= 2``) -> ``(dist, depth)``,
    each (M, k(k-1)/2), the pairs :math:`(a, b)`, :math:`a < b`, in ``torch.triu_indices(k, k, 1)``
    order ((0,1), (0,2), (1,2) for HypHC's triplets); ``depth`` is ``None`` unless ``lca``.

    Everything comes from :math:`A = \|x_a\|^2`, :math:`B = \|x_b\|^2`, :math:`p = \langle x_a, x_b\rangle`
    (the Gram matrix :math:`X_m X_m^\top` of each group, gathered in chunks) and
    :math:`\alpha_a = 1 - cA` (exact in float64):

    .. math:: \|x_a - x_b\|^2 = A + B - 2p, \qquad \|x_a\wedge x_b\|^2 = AB - p^2,

    then Eq. 2 and the LCA closed form of ``lca_depth``. Pairs where either expansion cancels
    (:math:`\|x_a - x_b\|^2 < \mathrm{tol}\,(A + B)`, :math:`\|x_a\wedge x_b\|^2 < \mathrm{tol}\,AB`,
    tol 1e-4 in float64, 1e-2 otherwise) are recomputed from the vectors, so the values equal
    ``dist(x[ga], x[gb], c)`` and ``lca_depth(x[ga], x[gb], c)`` to rounding. Memory and time are
    those of gathering the ``M k`` rows once forward and once backward: no per-pair (M, ., D)
    temporaries (~80 of them in the elementwise route).
    """
    check_curvature(c)
    _check_tensor(x, "x", "points (P, D)")
    if x.dim() != 2:
        raise ValueError(f"x must be (P, D) points, got shape {tuple(x.shape)}")
    if not isinstance(groups, Tensor) or groups.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"groups must be an (M, k) integer tensor of row indices into x, got {type(groups).__name__}"
                        + (f" of dtype {groups.dtype}" if isinstance(groups, Tensor) else ""))
    if groups.dim() != 2 or groups.shape[1] < 2:
        raise ValueError(f"groups must be (M, k) indices with k >= 2 points per group, got shape {tuple(groups.shape)}")
    _check_bool(lca, "lca")
    check_in_ball(x, c, "x")
    if _CHECKS.get() and groups.numel():
        lo, hi = int(groups.min()), int(groups.max())
        if lo < 0 or hi >= x.shape[0]:
            raise ValueError(f"groups must hold row indices of x in [0, P) = [0, {x.shape[0]}), found {lo}..{hi}")
    groups = groups.to(device=x.device, dtype=torch.long)
    M, k = groups.shape
    ia, ib = torch.triu_indices(k, k, 1, device=x.device)
    if M == 0:
        empty = x.new_zeros(0, ia.numel())
        return empty, (empty.clone() if lca else None)
    chunk = M if x.device.type != "cpu" else max(1, _GROUP_CHUNK // max(1, k * x.shape[1]))
    G = _GroupGram.apply(x, groups, chunk).view(M, k * k)
    # index_select, not advanced indexing: its backward is an index_add, not a sorting index_put
    diag = G.index_select(1, torch.arange(0, k * k, k + 1, device=x.device))  # (M, k) squared norms
    A, B, p = diag.index_select(1, ia), diag.index_select(1, ib), G.index_select(1, ia * k + ib)
    cc = _as_c(c, x)
    al = 1 - cc * diag
    if x.dtype == torch.float64 and _c_value(c) != 0:
        with torch.no_grad():
            al_exact = one_minus_c_sqnorm_exact(x.detach(), c)[groups]
        al = al + (al_exact - al.detach())
    aa, abeta = al.index_select(1, ia), al.index_select(1, ib)
    sq = (A + B - 2 * p).clamp_min(0)
    w2 = (A * B - p * p).clamp_min(0) if lca else None
    tol = 1e-4 if x.dtype == torch.float64 else 1e-2
    with torch.no_grad():
        bad = sq < tol * (A + B)
        if lca:
            bad |= w2 < tol * A * B
        rows, cols = bad.nonzero(as_tuple=True) if bool(bad.any()) else (None, None)
    if rows is not None:
        xa, xb = x[groups[rows, ia[cols]]], x[groups[rows, ib[cols]]]
        sq = sq.index_put((rows, cols), (xa - xb).pow(2).sum(-1))
        if lca:
            a2 = xa.pow(2).sum(-1, keepdim=True)
            ab = (xa * xb).sum(-1, keepdim=True)
            w2_exact = (a2 * xb - ab * xa).pow(2).sum(-1) / a2.squeeze(-1).clamp_min(torch.finfo(x.dtype).tiny)
            w2 = w2.index_put((rows, cols), w2_exact)
    d = _dist_from_parts(sq, aa, abeta, c)
    if not lca:
        return d, None
    tiny = torch.finfo(x.dtype).tiny
    same = sq <= tiny
    sq_safe = torch.where(same, torch.ones_like(sq), sq)
    s2 = 4 * w2 / (sq_safe * (aa * abeta + cc * sq_safe))  # (sinh(sqrt c d_o) / sqrt c)^2
    depth = _safe_sqrt(s2) * _asinhc_sq(cc * s2)
    depth0 = _dist_from_parts(A, torch.ones_like(A), aa, c)  # a = b: the point itself, dist0(a)
    return d, torch.where(same, depth0, depth)
