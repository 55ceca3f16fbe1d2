r"""The hard-negative paper's losses as registered modules: the pairwise cross-entropy on the
sphere or in the ball (``pair_ce``) and the "Mix" geometry (``mix``). Both call the functional core
(:func:`~chestlab.losses.functional.pair_ce_loss`, :func:`~chestlab.losses.functional.mix_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..settings import BIG, setting
from .base import Loss, LossOutput, register_loss
from .functional import mix_loss, pair_ce_loss

__all__ = ["PairCELoss", "MixLoss"]

_T = {"lo": 0.01, "hi": 1.0, "step": 0.01}


@register_loss("pair_ce")
class PairCELoss(Loss):
    """Pairwise cross-entropy over the batch, with ``s = cos`` (``pair_space = sphere``, on x^E) or
    ``s = -D_H`` (``hyperbolic``, on x^H)."""

    @dataclass
    class Settings:
        pair_space: str = setting("hyperbolic", group="loss", live=True, choices=("sphere", "hyperbolic"),
                                  help="sphere | hyperbolic: similarity of the pairwise cross-entropy")
        t: float = setting(0.2, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t",
                           help="temperature of the pairwise cross-entropy", ui=_T)

    parts = ("pair_ce",)

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor) -> LossOutput:
        s = self.settings
        with torch.autocast(device_type=x_e.device.type, enabled=False):
            if s.pair_space == "sphere":
                loss = pair_ce_loss(x_e.float(), labels, s.t)
            else:
                loss = pair_ce_loss(x_h.float(), labels, s.t, c=self.c)
        return LossOutput(loss, {"pair_ce": loss.detach()})


@register_loss("mix")
class MixLoss(Loss):
    r"""Pairwise cross-entropy on the logits :math:`\cos(z^E_i, z^E_k)/t_E + \beta(-d_H(z^H_i, z^H_k))/t_H`
    (docs/maths.md, Mix geometry; ``beta`` is the setting ``mix_lam``)."""

    @dataclass
    class Settings:
        t_e: float = setting(0.1, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t_E",
                             help="Euclidean (cosine) temperature of the Mix loss", ui=_T)
        t_h: float = setting(0.2, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t_H",
                             help="hyperbolic temperature of the Mix loss", ui=_T)
        mix_lam: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="β",
                                 help="weight of -d_H in the Mix logits cos/t_E + β (-d_H)/t_H", ui={"lo": 0.0, "hi": 4.0, "step": 0.1})

    parts = ("mix",)

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor) -> LossOutput:
        s = self.settings
        with torch.autocast(device_type=x_e.device.type, enabled=False):
            loss = mix_loss(x_e.float(), x_h.float(), labels, s.t_e, s.t_h, s.mix_lam, self.c)
        return LossOutput(loss, {"mix": loss.detach()})
