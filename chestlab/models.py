"""Backbones, the hyperbolic head and the CHEST model (Sec. 3.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import poincare

__all__ = ["HyperbolicHead"]


class HyperbolicHead(nn.Module):
    r"""The hyperbolic head of Sec. 3.2: :math:`x^H = \exp_0(\operatorname{clip}_r(W x^E + b))`.

    The same head maps the data and the Euclidean proxies, so both live in one ball. ``c`` (curvature,
    ``>= 0``) and ``r`` (clipping radius, ``> 0``, ``inf`` = no clipping) are plain attributes that
    may change between steps.
    """

    def __init__(self, dim_in: int, dim_out: int, c: float = 0.5, r: float = 2.3) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.c = c
        self.r = r

    @property
    def c(self) -> float:
        return self._c

    @c.setter
    def c(self, value: float) -> None:
        poincare.check_curvature(value)
        self._c = float(value)

    @property
    def r(self) -> float:
        return self._r

    @r.setter
    def r(self, value: float) -> None:
        value = float(value)
        if not value > 0:
            raise ValueError(f"r = {value!r}: the clipping radius must be > 0 (inf disables clipping)")
        self._r = value

    def tangent(self, x: Tensor) -> Tensor:
        """``W x + b`` (N, D_H): the head's output before the exp map (used by the eta_H = 0 ablation)."""
        return self.linear(x)

    def forward(self, x: Tensor) -> Tensor:
        return poincare.expmap0(poincare.clip_features(self.linear(x), self.r), self.c)

    def extra_repr(self) -> str:
        return f"c={self.c:g}, r={self.r:g}"
