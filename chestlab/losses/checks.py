r"""The validators of the losses, in one module: the argument checks of the functional core
(:mod:`.functional`), of the fused training path (:mod:`.parts`), of the registered losses and of
:mod:`chestlab.gradients`, and the rules between a loss's settings that more than one of them
states (:func:`hyphc_needs_two_proxies`). Each rule is written once, here; the other modules import
it. This module imports nothing of the kit but :mod:`chestlab.poincare` (no import cycle).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Mapping, Optional

import torch
from torch import Tensor

from .. import poincare

__all__ = [
    "check_positive",
    "check_real",
    "check_count",
    "check_values",
    "check_overflow",
    "check_index_tensor",
    "check_labels",
    "check_batch",
    "check_hyphc",
    "check_chest_inputs",
    "hyphc_needs_two_proxies",
    "HYPHC_VARIANTS",
    "EUCLID_SPACES",
    "check_euclid_space",
]

#: The readings of Eq. 9 (``hyphc`` setting, ``hyphc_loss(variant=...)``).
HYPHC_VARIANTS: tuple[str, ...] = ("lca", "pairwise")


def _real_value(value: object, name: str) -> float:
    """A real number (int, float, numpy scalar or 0-d real tensor; not bool, not str) as a float."""
    if isinstance(value, Tensor) and value.dim() == 0 and not value.dtype.is_complex and value.dtype != torch.bool:
        return float(value.detach())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}; pass a float")
    return float(value)


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """``value`` as a float: ``TypeError`` unless a real number (not ``bool``/``str``), ``ValueError``
    naming ``name`` unless finite and > 0 (>= 0 with ``allow_zero``)."""
    v = _real_value(value, name)
    ok = (v >= 0 if allow_zero else v > 0) and math.isfinite(v)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} = {value!r} is out of range: {name} must be finite and {bound}")
    return v


def check_real(value: float, name: str) -> float:
    """``value`` as a float: ``TypeError`` unless a real number, ``ValueError`` unless finite."""
    v = _real_value(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name} = {value!r} is out of range: {name} must be a finite real number")
    return v


def check_count(value: object, name: str) -> int:
    """``value`` as an int: ``TypeError`` unless an integer (not ``bool``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


def check_values(x: object, name: str, what: str) -> Tensor:
    """A floating-point tensor with finite values (the value check only while poincare's checks are on)."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        got = f"a {x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor of {what}, got {got}; convert it with torch.as_tensor(..., dtype=torch.float32)")
    return poincare.check_finite(x, name)


def check_overflow(value: Tensor, what: str, inputs: Mapping[str, Tensor]) -> Tensor:
    """Raise ``ValueError`` if ``value`` (computed from the finite ``inputs``) is not finite: the
    message names ``what`` overflowed and the largest norm of each input, so a caller sees which
    input to rescale. Only while poincare's checks are on (one host read); returns ``value``."""
    if not poincare.checks_enabled() or value.numel() == 0:
        return value
    with torch.no_grad():
        if bool(torch.isfinite(value).all()):
            return value
        norms = ", ".join(f"{k} {float(torch.linalg.vector_norm(v.double(), dim=-1).max()):.3g}"
                          for k, v in inputs.items() if v.numel())
    raise ValueError(f"{what} overflowed {value.dtype} although the inputs are finite (largest norms: {norms}); "
                     f"rescale them (or compute in float64)")


def check_index_tensor(t: object, name: str, what: str) -> None:
    """``t`` must be an integer tensor (not bool, not floating point)."""
    if not isinstance(t, Tensor) or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        got = f"a {t.dtype} tensor" if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be an integer tensor of {what}, got {got}; convert it with {name}.long()")


def check_labels(labels: Tensor, B: int, C: Optional[int] = None) -> None:
    """``labels`` must be a (B,) integer tensor of class indices in [0, C)."""
    check_index_tensor(labels, "labels", "class indices")
    if labels.dim() != 1 or labels.shape[0] != B:
        raise ValueError(f"labels must be a (B,) = ({B},) tensor of class indices, got shape {tuple(labels.shape)}")
    if C is not None:
        if C < 2:
            raise ValueError(f"C = {C}: the proxy loss needs C >= 2 classes (a softmax over one class is constant)")
        if B and (int(labels.min()) < 0 or int(labels.max()) >= C):
            raise ValueError(f"labels must lie in [0, C) = [0, {C}), found {int(labels.min())}..{int(labels.max())}")


def check_batch(B: int, name: str) -> None:
    """A loss averaged over the batch needs ``B >= 1`` samples (a mean over none is NaN)."""
    if B == 0:
        raise ValueError(
            f"{name} holds B = 0 samples: a loss averaged over no samples is undefined (NaN); "
            f"skip empty batches (e.g. DataLoader(drop_last=True)) or pass B >= 1"
        )


def check_hyphc(name: str, value: str) -> None:
    """The HypHC reading of Eq. 9: "lca" or "pairwise"."""
    if not isinstance(value, str) or value not in HYPHC_VARIANTS:
        raise ValueError(f"{name} = {value!r}: choose 'lca' (HypHC's reading of Eq. 9) or 'pairwise' (the literal reading)")


def hyphc_needs_two_proxies(tau: float, K: int) -> Optional[str]:
    """The rule "tau > 0 needs K >= 2" (a HypHC triplet pairs two proxies of one class): the
    message when it is broken, else None. The settings' rule (``CHESTLoss.rules``), the live
    check (``CHESTLoss.validate_settings``) and :func:`~chestlab.losses.functional.chest_loss` all ask it."""
    if tau > 0 and K < 2:
        return (f"tau = {tau:g} > 0 needs K >= 2 proxies per class (HypHC triplets pair two proxies of one class), "
                f"got K = {K}; set tau = 0 or K >= 2")
    return None


def check_chest_inputs(x_e: Tensor, x_h: Tensor, labels: Tensor, proxies_e: Tensor, proxies_h: Tensor) -> None:
    """Types and shapes of Eq. 10's inputs: floating (B, D_E), (B, D_H), integer (B,), floating
    (C, K, D_E), (C, K, D_H), with ``B >= 1`` (a mean over an empty batch is NaN) and ``C >= 2``.
    The values (finite Euclidean inputs, hyperbolic ones in the ball) are checked where they are used."""
    for name, t, what in (("x_e", x_e, "embeddings (B, D_E)"), ("x_h", x_h, "points (B, D_H)"),
                          ("proxies_e", proxies_e, "proxies (C, K, D_E)"), ("proxies_h", proxies_h, "proxies (C, K, D_H)")):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            got = f"a {t.dtype} tensor" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{name} must be a floating-point tensor of {what}, got {got}; convert it with .float()")
    check_index_tensor(labels, "labels", "class indices (B,)")
    if proxies_e.dim() != 3 or proxies_h.dim() != 3:
        raise ValueError(
            f"proxies must be (C, K, D): got proxies_e {tuple(proxies_e.shape)}, proxies_h {tuple(proxies_h.shape)}"
        )
    if proxies_e.shape[:2] != proxies_h.shape[:2]:
        raise ValueError(f"proxies_e {tuple(proxies_e.shape)} and proxies_h {tuple(proxies_h.shape)} need the same (C, K)")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a (B,) tensor of class indices, got shape {tuple(labels.shape)}")
    B = labels.shape[0]
    if x_e.dim() != 2 or x_h.dim() != 2 or x_e.shape[0] != B or x_h.shape[0] != B:
        raise ValueError(f"x_e {tuple(x_e.shape)}, x_h {tuple(x_h.shape)} and labels {tuple(labels.shape)} need the same B")
    if x_e.shape[-1] != proxies_e.shape[-1] or x_h.shape[-1] != proxies_h.shape[-1]:
        raise ValueError("embedding and proxy dimensions differ: x_e/proxies_e and x_h/proxies_h must share D")
    check_batch(B, "the batch (x_e, x_h, labels)")
    if proxies_e.shape[1] == 0:
        raise ValueError(f"proxies hold K = 0 proxies per class, got shape {tuple(proxies_e.shape)}; use K >= 1")
    check_labels(labels, B, proxies_e.shape[0])


#: Where L_E lives (Sec. 4.4): on the backbone's ``x^E`` or on the head's ``W x^E + b``; the
#: setting ``euclid_space`` adds ``auto`` (the loss's rule, ``Loss.auto_euclid_space``).
EUCLID_SPACES: tuple[str, ...] = ("backbone", "head")


def check_euclid_space(value: str) -> str:
    """``value`` if it is one of :data:`EUCLID_SPACES`, else ``ValueError``."""
    if value not in EUCLID_SPACES:
        raise ValueError(f"euclid_space = {value!r}: choose 'backbone' or 'head'")
    return value
