r"""The CHEST loss (Eq. 10) as a registered module, composed from its parts:

.. math:: L = \eta_H\,\overline{L_H} + \eta_E\,\overline{L_E} + \tau\,\overline{L_{\mathrm{HypHC}}}

with :class:`~chestlab.losses.parts.ProxyTerm` under the Poincaré distance (L_H) and under the
Euclidean distance (L_E), and :class:`~chestlab.losses.parts.HypHCTerm` on the proxies.
:func:`chestlab.losses.functional.chest_loss` computes the same thing in one function (the tests
hold the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from .. import poincare
from ..settings import BIG, MAX_ELEMENTS, Problem, SettingError, TrainConfig, dataset_info_of, setting, too_big
from .base import Loss, LossContext, LossOutput, register_loss
from .functional import check_chest_inputs, check_overflow
from .parts import HypHCTerm, PoincareDistance, ProxyTerm, euclidean_distance

__all__ = ["CHESTLoss", "CHESTSettings", "hyphc_needs_two_proxies"]


def hyphc_needs_two_proxies(tau: float, K: int) -> Optional[str]:
    """The rule "tau > 0 needs K >= 2" (a HypHC triplet pairs two proxies of one class): the
    message when it is broken, else None."""
    if tau > 0 and K < 2:
        return f"tau = {tau:g} > 0 needs K >= 2 proxies per class (got K = {K}); set tau = 0 or K >= 2"
    return None


_W = {"lo": 0.0, "hi": 2.0, "step": 0.1}


@dataclass
class CHESTSettings:
    """The settings of the CHEST loss (Eq. 5–10)."""

    K: int = setting(2, group="loss", low=1, high=1000, symbol="K", eq="Table 1", paper="10 CUB/Cars, 2 SOP/In-shop",
                     help="proxies per class; tau > 0 needs K >= 2", ui={"lo": 1, "hi": 10, "step": 1})
    M: int = setting(32, group="loss", live=True, low=1, high=100_000, symbol="M", eq="Table 1", paper="up to 11318 (SOP)",
                     help="HypHC triplets per step",
                     ui={"lo": 1, "hi": 256, "step": 1})
    proxy_std: float = setting(1.0, group="loss", low=0, low_open=True, high=BIG, help="standard deviation of the proxies' initialisation")
    gamma_e: float = setting(5.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_E", eq="5", paper="5",
                             help="temperature of the soft similarity over the K proxies", ui={"lo": 0.1, "hi": 20.0, "step": 0.1})
    gamma_h: float = setting(5.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_H", eq="6", paper="5",
                             help="the same in hyperbolic space", ui={"lo": 0.1, "hi": 20.0, "step": 0.1})
    lambda_e: float = setting(20.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="λ_E", eq="7", paper="20",
                              help="scale of the Euclidean proxy loss's logits", ui={"lo": 1.0, "hi": 64.0, "step": 1.0})
    lambda_h: float = setting(20.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="λ_H", eq="7", paper="20",
                              help="scale of the hyperbolic proxy loss's logits", ui={"lo": 1.0, "hi": 64.0, "step": 1.0})
    delta_e: float = setting(1.0, group="loss", live=True, low=-BIG, high=BIG, symbol="δ_E", eq="7", paper="1, 5, 10 or 20",
                             help="Euclidean margin", ui={"lo": 0.0, "hi": 20.0, "step": 0.5})
    delta_h: float = setting(1.0, group="loss", live=True, low=-BIG, high=BIG, symbol="δ_H", eq="7", paper="1, 5, 10 or 20",
                             help="hyperbolic margin", ui={"lo": 0.0, "hi": 20.0, "step": 0.5})
    eta_e: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="η_E", eq="10", paper="1",
                           help="weight of L_E", ui=_W)
    eta_h: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="η_H", eq="10", paper="1",
                           help="weight of L_H", ui=_W)
    tau: float = setting(0.5, group="loss", live=True, low=0, high=BIG, symbol="τ", eq="10", paper="0.5",
                         help="weight of the HypHC regulariser", ui={"lo": 0.0, "hi": 2.0, "step": 0.05})
    gamma_hyp: float = setting(1.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_hyp", eq="9", paper="1",
                               help="temperature of the HypHC softmax", ui={"lo": 0.1, "hi": 5.0, "step": 0.1})
    hyphc: str = setting("lca", group="loss", live=True, choices=("lca", "pairwise"), eq="9",
                         help="lca (HypHC's reading of Eq. 9, default) | pairwise (the literal reading)")


def proxy_memory_rules(cfg: TrainConfig) -> Iterable[Problem]:
    """The largest tensors of CHEST must fit (:func:`chestlab.settings.too_big`): the proxies
    (C, K, D_E), the batch's distances to them (B, C K) and HypHC's triplets (M, 3, D_H); C is the
    dataset's training classes, D_E = 1024 when the backbone chooses it (``dim_e = none``)."""
    info = dataset_info_of(cfg)
    C = (info.num_classes.get("train") if info is not None else None) or 0
    D_E = cfg.dim_e or 1024
    for keys, msg in (
        (("K", "dim_e"), too_big(f"the proxies (C = {C} classes x K = {cfg.K} x D_E = {D_E})", C * cfg.K * D_E,
                                 f"K <= {MAX_ELEMENTS // max(1, C * D_E)} here, or a smaller dim_e")),
        (("K", "batch_size"), too_big(f"the distances of a batch to the proxies (B = {cfg.batch_size} x C = {C} x K = {cfg.K})",
                                      cfg.batch_size * C * cfg.K, f"K <= {MAX_ELEMENTS // max(1, cfg.batch_size * C)} here, "
                                      "or a smaller batch_size")),
        (("M", "dim_h"), too_big(f"HypHC's triplets (M = {cfg.M} x 3 x D_H = {cfg.dim_h})", 3 * cfg.M * cfg.dim_h,
                                 f"M <= {MAX_ELEMENTS // (3 * cfg.dim_h)} here, or a smaller dim_h")),
    ):
        if msg:
            yield Problem(keys, msg)


@register_loss("chest")
class CHESTLoss(Loss):
    r"""CHEST (Eq. 10): owns the Euclidean proxies ``P_E`` (C, K, D_E), maps them through the model's
    hyperbolic ``head`` (shared with the data, Sec. 3.2), and adds the weighted parts
    ``l_h`` (Eq. 7 with D_H), ``l_e`` (Eq. 7 with D_E) and ``l_hyphc`` (Eq. 9 on M triplets drawn
    from a seeded generator).

    ``euclid_space="head"`` makes the Euclidean loss compare ``W x + b`` with ``W P_E + b`` (pass the
    model's matching ``x_e``; the eta_H = 0 ablation rule of Sec. 4.4).

    ``head`` maps (N, D_E) -> (N, D_H) points in the ball and exposes the curvature as ``head.c``
    (e.g. :class:`chestlab.models.HyperbolicHead`), so the data, the proxies and the loss always
    share one ``c``. Live settings change with :meth:`set` and apply at the next ``forward``.
    """

    Settings = CHESTSettings
    parts = ("l_h", "l_e", "l_hyphc")

    def __init__(
        self,
        num_classes: int,
        K: int,
        dim: int,
        head: Callable[[Tensor], Tensor],
        *,
        euclid_space: str = "backbone",
        seed: int = 0,
        **settings: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes = {num_classes}: CHEST needs C >= 2 classes")
        if euclid_space not in ("backbone", "head"):
            raise ValueError(f"euclid_space = {euclid_space!r}: choose 'backbone' or 'head'")
        values = {"M": 100, **settings, "K": K}
        unknown = sorted(set(values) - set(CHESTSettings.__dataclass_fields__))
        if unknown:
            raise SettingError(unknown[0], values[unknown[0]], "one of " + ", ".join(CHESTSettings.__dataclass_fields__),
                               "not a setting of loss chest")
        from ..settings import settings_of

        specs = settings_of(CHESTSettings)
        cfg = CHESTSettings(**{k: specs[k].validate(v) for k, v in values.items()})
        super().__init__(cfg, LossContext(num_classes, dim, 0, head, seed, euclid_space))
        self.validate_settings(cfg)
        self.num_classes, self.K, self.dim = int(num_classes), int(K), int(dim)
        self.head = head
        self.euclid_space = euclid_space
        g = torch.Generator().manual_seed(seed)
        # unnormalised Euclidean proxies (Sec. 3.2); scale comparable to the embeddings
        self.proxies = nn.Parameter(torch.randn(num_classes, K, dim, generator=g) * cfg.proxy_std)
        self.l_h_term = ProxyTerm(PoincareDistance(lambda: self.c))
        self.l_e_term = ProxyTerm(euclidean_distance)
        self.hyphc_term = HypHCTerm(seed + 1)

    @classmethod
    def build(cls, settings: CHESTSettings, ctx: LossContext) -> "CHESTLoss":
        values = {k: getattr(settings, k) for k in CHESTSettings.__dataclass_fields__ if k != "K"}
        return cls(ctx.num_classes, settings.K, ctx.dim_e, ctx.head, euclid_space=ctx.euclid_space, seed=ctx.seed, **values)

    @classmethod
    def auto_euclid_space(cls, settings: CHESTSettings) -> str:
        """The Sec. 4.4 rule: L_E on ``W x^E + b`` ("head") exactly while eta_H = 0."""
        return "head" if settings.eta_h == 0 else "backbone"

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        msg = hyphc_needs_two_proxies(cfg.tau, cfg.K)
        if msg:
            yield Problem(("tau", "K"), msg)
        if cfg.eta_h == 0 and cfg.eta_e == 0 and cfg.tau == 0:
            yield Problem(("eta_h", "eta_e", "tau"), "eta_h = eta_e = tau = 0: the loss is 0 and nothing trains; set one of them > 0")
        if cfg.euclid_space == "backbone" and cfg.eta_h == 0:
            yield Problem(("euclid_space", "eta_h"), "eta_h = 0 with euclid_space = backbone departs from the paper's Sec. 4.4 "
                          "rule (L_E on W x + b while eta_H = 0); euclid_space = auto follows it", "warning")
        yield from proxy_memory_rules(cfg)

    def validate_settings(self, settings: CHESTSettings) -> None:
        msg = hyphc_needs_two_proxies(settings.tau, settings.K)
        if msg:
            raise ValueError(msg)

    @property
    def generator(self) -> torch.Generator:
        """The HypHC triplet sampler's generator (its state travels with the checkpoint)."""
        return self.hyphc_term.generator

    def proxies_h(self) -> Tensor:
        """The proxies mapped by the shared head, (C, K, D_H)."""
        C, K, D = self.proxies.shape
        return self.head(self.proxies.reshape(C * K, D)).view(C, K, -1)

    def proxies_e(self) -> Tensor:
        """The proxies the Euclidean loss sees, (C, K, D): ``P_E`` itself, or ``W P_E + b`` when
        ``euclid_space="head"`` (the eta_H = 0 ablation rule, Sec. 4.4)."""
        if self.euclid_space == "backbone":
            return self.proxies
        C, K, D = self.proxies.shape
        return self.head.tangent(self.proxies.reshape(C * K, D)).view(C, K, -1)  # type: ignore[attr-defined]

    def proxy_points(self) -> dict[str, Tensor]:
        """``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU, detached (for figures)."""
        with torch.no_grad():
            return {"h": self.proxies_h().float().cpu(), "e": self.proxies.detach().float().cpu()}

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor) -> LossOutput:
        s = self.settings
        # geometry in float32 even under AMP: fp16 cannot resolve the ball near its boundary
        with torch.autocast(device_type=x_e.device.type, enabled=False):
            x_e, x_h = x_e.float(), x_h.float()
            proxies_h = self.proxies_h().float()
            proxies_e = self.proxies_e().float()
            check_chest_inputs(x_e, x_h, labels, proxies_e, proxies_h)
            # the values are checked once here, under the names of the inputs; the terms then run
            # unchecked (each (C K, D) check is a pass over the proxies)
            if s.eta_h > 0:
                poincare.check_in_ball(x_h, self.c, "x_h")
            if s.eta_h > 0 or s.tau > 0:
                poincare.check_in_ball(proxies_h, self.c, "proxies_h")
            if s.eta_e > 0:
                poincare.check_finite(x_e, "x_e")
                poincare.check_finite(proxies_e, "proxies_e")
            with poincare.checks(False):
                out = self._terms(x_e, x_h, labels, proxies_e, proxies_h)
            for part, inputs in (("l_e", {"x_e": x_e, "proxies_e": proxies_e}), ("l_h", {"x_h": x_h, "proxies_h": proxies_h}),
                                 ("l_hyphc", {"proxies_h": proxies_h})):
                check_overflow(out.parts[part], f"the CHEST loss's {part}", inputs)
            return out

    def _terms(self, x_e: Tensor, x_h: Tensor, labels: Tensor, proxies_e: Tensor, proxies_h: Tensor) -> LossOutput:
        s = self.settings
        zero = x_e.new_zeros(())
        parts = {"l_h": zero, "l_e": zero, "l_hyphc": zero}
        extras: dict[str, Any] = {"s_h": None, "s_e": None}
        if s.eta_h > 0:
            parts["l_h"], extras["s_h"] = self.l_h_term(x_h, proxies_h, labels, gamma=s.gamma_h, lam=s.lambda_h, delta=s.delta_h)
        if s.eta_e > 0:
            parts["l_e"], extras["s_e"] = self.l_e_term(x_e, proxies_e, labels, gamma=s.gamma_e, lam=s.lambda_e, delta=s.delta_e)
        if s.tau > 0:
            parts["l_hyphc"] = self.hyphc_term(proxies_h, self.c, M=s.M, gamma_hyp=s.gamma_hyp, variant=s.hyphc)
        total = s.eta_h * parts["l_h"] + s.eta_e * parts["l_e"] + s.tau * parts["l_hyphc"]
        return LossOutput(total, parts, extras)

    # the triplet sampler's state travels with the checkpoint, so a resumed run samples the same triplets
    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state(), "hparams": self.hparams()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.set(**state["hparams"])
