r"""The hard-negative paper's losses as registered modules: the pairwise cross-entropy on the
sphere or in the ball (``pair_ce``) and the "Mix" geometry (``mix``). Both call the functional core
(:func:`~chestlab.losses.functional.pair_ce_loss`, :func:`~chestlab.losses.functional.mix_loss`),
each a loss of one term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..settings import BIG, setting
from .base import Loss, Step, Term, register_loss
from .functional import mix_loss, pair_ce_loss

__all__ = ["PairCELoss", "MixLoss", "PairCETerm", "MixTerm"]

_T = {"lo": 0.01, "hi": 1.0, "step": 0.01}


class PairCETerm(Term):
    """The pairwise cross-entropy over the batch (part ``pair_ce``, weight 1), with ``s = cos``
    (``pair_space = sphere``, on x^E) or ``s = -D_H`` (``hyperbolic``, on x^H)."""

    @dataclass
    class Settings:
        pair_space: str = setting("hyperbolic", group="loss", live=True, choices=("sphere", "hyperbolic"),
                                  help="sphere | hyperbolic: similarity of the pairwise cross-entropy")
        t: float = setting(0.2, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t",
                           help="temperature of the pairwise cross-entropy", ui=_T)

    part, attr = "pair_ce", "pair_ce_term"

    @classmethod
    def create(cls, settings: Any, ctx: Any) -> "PairCETerm":
        return cls()

    def forward(self, step: Step, s: Any) -> tuple[Tensor, dict[str, Any]]:
        if s.pair_space == "sphere":
            return pair_ce_loss(step.x_e, step.labels, s.t), {}
        return pair_ce_loss(step.x_h, step.labels, s.t, c=step.loss.c), {}


class MixTerm(Term):
    r"""Pairwise cross-entropy on the logits :math:`\cos(z^E_i, z^E_k)/t_E + \beta(-d_H(z^H_i, z^H_k))/t_H`
    (part ``mix``, weight 1; docs/maths.md, Mix geometry; ``beta`` is the setting ``mix_lam``)."""

    @dataclass
    class Settings:
        t_e: float = setting(0.1, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t_E",
                             help="Euclidean (cosine) temperature of the Mix loss", ui=_T)
        t_h: float = setting(0.2, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="t_H",
                             help="hyperbolic temperature of the Mix loss", ui=_T)
        mix_lam: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="β",
                                 help="weight of -d_H in the Mix logits cos/t_E + β (-d_H)/t_H", ui={"lo": 0.0, "hi": 4.0, "step": 0.1})

    part, attr = "mix", "mix_term"

    @classmethod
    def create(cls, settings: Any, ctx: Any) -> "MixTerm":
        return cls()

    def forward(self, step: Step, s: Any) -> tuple[Tensor, dict[str, Any]]:
        return mix_loss(step.x_e, step.x_h, step.labels, s.t_e, s.t_h, s.mix_lam, step.loss.c), {}


@register_loss("pair_ce")
class PairCELoss(Loss.with_terms(PairCETerm)):
    """Pairwise cross-entropy over the batch: the one term :class:`PairCETerm`."""


@register_loss("mix")
class MixLoss(Loss.with_terms(MixTerm)):
    r"""The hard-negative paper's "Mix" geometry: the one term :class:`MixTerm`."""
