r"""The CHEST loss (Eq. 10) as a registered module, the weighted sum of three terms:

.. math:: L = \eta_H\,\overline{L_H} + \eta_E\,\overline{L_E} + \tau\,\overline{L_{\mathrm{HypHC}}}

:class:`CHESTProxyTermH` in the ball (``l_h``, weight ``eta_h``) and :class:`CHESTProxyTermE` in
Euclidean space (``l_e``, weight ``eta_e``) — Eq. 5–7, the fused
:class:`~chestlab.losses.parts.ProxyTerm` — and :class:`CHESTHypHCTerm` on the proxies (``l_hyphc``,
weight ``tau``; Eq. 8–9, :class:`~chestlab.losses.parts.HypHCTerm`). The loss owns the proxies and
computes them once per step for its terms (:meth:`CHESTLoss.prepare`).
:func:`chestlab.losses.functional.chest_loss` is the readable reference of the same thing (the tests
hold the two equal).

**Settings.** Each term owns its section (its nested ``Settings``): ``gamma_h``, ``lambda_h``,
``delta_h``, ``eta_h`` (L_H); ``gamma_e``, ``lambda_e``, ``delta_e``, ``eta_e`` (L_E); ``tau``,
``M``, ``gamma_hyp``, ``hyphc`` (HypHC). The loss's own section holds what both proxy terms share,
``K`` and ``proxy_std`` (:class:`CHESTProxySettings`). The registered section ``chest`` is their
union, :data:`CHESTSettings` (:func:`~chestlab.losses.base.settings_section`), so every name stays
flat (``--set gamma_h=4``) and ``chest.gamma_h`` also works.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Optional

import torch
from torch import Tensor, nn

from .. import poincare
from ..settings import BIG, MAX_ELEMENTS, Problem, SettingError, TrainConfig, dataset_info_of, setting, too_big
from .base import Loss, LossContext, Step, Term, register_loss, settings_section
from .checks import check_chest_inputs, check_euclid_space, check_overflow, hyphc_needs_two_proxies
from .parts import Distance, HypHCTerm, PoincareDistance, ProxyTerm, euclidean_distance

__all__ = ["CHESTLoss", "CHESTSettings", "CHESTProxySettings", "CHESTProxyTerm", "CHESTProxyTermH", "CHESTProxyTermE",
           "CHESTHypHCTerm", "CHEST_TERMS", "hyphc_needs_two_proxies"]


_W = {"lo": 0.0, "hi": 2.0, "step": 0.1}


@dataclass
class CHESTProxySettings:
    """CHEST's own settings: the proxies it owns and both proxy terms share (K per class, their
    initial spread). Each term brings its own section (:attr:`CHESTProxyTermH.Settings`, ...); the
    loss's section is all of them, :data:`CHESTSettings`."""

    K: int = setting(2, group="loss", low=1, high=1000, symbol="K", eq="Table 1", paper="10 CUB/Cars, 2 SOP/In-shop",
                     help="proxies per class; tau > 0 needs K >= 2", ui={"lo": 1, "hi": 10, "step": 1})
    proxy_std: float = setting(1.0, group="loss", low=0, low_open=True, high=BIG, help="standard deviation of the proxies' initialisation")


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


class CHESTProxyTerm(Term):
    r"""Eq. 5–7 of CHEST in one space (``space``: ``"h"``, the ball, or ``"e"``): part ``l_<space>``,
    weight ``eta_<space>``, settings ``gamma_<space>``, ``lambda_<space>``, ``delta_<space>`` (with
    the weight, the subclass's own ``Settings``); extra ``s_<space>`` (B, C), the soft similarities.
    Runs on the proxies :meth:`CHESTLoss.prepare` computed and checked (``step.shared``). The two
    spaces are :class:`CHESTProxyTermH` and :class:`CHESTProxyTermE`."""

    space: ClassVar[str] = ""

    def __init__(self, distance: Distance) -> None:
        super().__init__()
        self.fn = ProxyTerm(distance)

    def forward(self, step: Step, s: Any) -> tuple[Tensor, dict[str, Any]]:
        sp = self.space
        x, proxies = (step.x_h, step.shared["proxies_h"]) if sp == "h" else (step.x_e, step.shared["proxies_e"])
        with poincare.checks(False):  # checked once by CHESTLoss.prepare, under the names of the inputs
            value, S = self.fn(x, proxies, step.labels, gamma=getattr(s, f"gamma_{sp}"), lam=getattr(s, f"lambda_{sp}"),
                               delta=getattr(s, f"delta_{sp}"), K=step.shared["K"])
        check_overflow(value, f"the CHEST loss's l_{sp}", {f"x_{sp}": x, f"proxies_{sp}": proxies})
        return value, {f"s_{sp}": S}


class CHESTProxyTermH(CHESTProxyTerm):
    r""":math:`L_H`: Eq. 5–7 in the ball (D_H, distance Eq. 2), part ``l_h``, weight ``eta_h``."""

    @dataclass
    class Settings:
        gamma_h: float = setting(5.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_H", eq="6", paper="5",
                                 help="temperature of the soft similarity over the K proxies, in the ball",
                                 ui={"lo": 0.1, "hi": 20.0, "step": 0.1})
        lambda_h: float = setting(20.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="λ_H", eq="7", paper="20",
                                  help="scale of the hyperbolic proxy loss's logits", ui={"lo": 1.0, "hi": 64.0, "step": 1.0})
        delta_h: float = setting(1.0, group="loss", live=True, low=-BIG, high=BIG, symbol="δ_H", eq="7", paper="1, 5, 10 or 20",
                                 help="hyperbolic margin", ui={"lo": 0.0, "hi": 20.0, "step": 0.5})
        eta_h: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="η_H", eq="10", paper="1",
                               help="weight of L_H", ui=_W)

    space, part, weight, extras, attr = "h", "l_h", "eta_h", ("s_h",), "l_h_term"

    @classmethod
    def create(cls, settings: Any, ctx: LossContext) -> "CHESTProxyTermH":
        return cls(PoincareDistance(lambda: ctx.head.c))  # the head's curvature now (it may change live)


class CHESTProxyTermE(CHESTProxyTerm):
    r""":math:`L_E`: Eq. 5–7 in Euclidean space (D_E), part ``l_e``, weight ``eta_e``."""

    @dataclass
    class Settings:
        gamma_e: float = setting(5.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_E", eq="5", paper="5",
                                 help="temperature of the soft similarity over the K proxies, in Euclidean space",
                                 ui={"lo": 0.1, "hi": 20.0, "step": 0.1})
        lambda_e: float = setting(20.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="λ_E", eq="7", paper="20",
                                  help="scale of the Euclidean proxy loss's logits", ui={"lo": 1.0, "hi": 64.0, "step": 1.0})
        delta_e: float = setting(1.0, group="loss", live=True, low=-BIG, high=BIG, symbol="δ_E", eq="7", paper="1, 5, 10 or 20",
                                 help="Euclidean margin", ui={"lo": 0.0, "hi": 20.0, "step": 0.5})
        eta_e: float = setting(1.0, group="loss", live=True, low=0, high=BIG, symbol="η_E", eq="10", paper="1",
                               help="weight of L_E", ui=_W)

    space, part, weight, extras, attr = "e", "l_e", "eta_e", ("s_e",), "l_e_term"

    @classmethod
    def create(cls, settings: Any, ctx: LossContext) -> "CHESTProxyTermE":
        return cls(euclidean_distance)


class CHESTHypHCTerm(Term):
    r"""Eq. 8–9 on CHEST's hyperbolic proxies: part ``l_hyphc``, weight ``tau``, settings ``M``,
    ``gamma_hyp``, ``hyphc``; ``M`` triplets a step from its own seeded generator (:attr:`generator`)."""

    @dataclass
    class Settings:
        tau: float = setting(0.5, group="loss", live=True, low=0, high=BIG, symbol="τ", eq="10", paper="0.5",
                             help="weight of the HypHC regulariser", ui={"lo": 0.0, "hi": 2.0, "step": 0.05})
        M: int = setting(32, group="loss", live=True, low=1, high=100_000, symbol="M", eq="Table 1", paper="up to 11318 (SOP)",
                         help="HypHC triplets per step", ui={"lo": 1, "hi": 256, "step": 1})
        gamma_hyp: float = setting(1.0, group="loss", live=True, low=0, low_open=True, high=BIG, symbol="γ_hyp", eq="9", paper="1",
                                   help="temperature of the HypHC softmax", ui={"lo": 0.1, "hi": 5.0, "step": 0.1})
        hyphc: str = setting("lca", group="loss", live=True, choices=("lca", "pairwise"), eq="9",
                             help="lca (HypHC's reading of Eq. 9, default) | pairwise (the literal reading)")

    part, weight, attr = "l_hyphc", "tau", "hyphc_term"

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.fn = HypHCTerm(seed)

    @classmethod
    def create(cls, settings: Any, ctx: LossContext) -> "CHESTHypHCTerm":
        return cls(ctx.seed + 1)  # its own generator, apart from the proxies' (seeded by ctx.seed)

    @property
    def generator(self) -> torch.Generator:
        return self.fn.generator

    def forward(self, step: Step, s: Any) -> tuple[Tensor, dict[str, Any]]:
        proxies_h = step.shared["proxies_h"]
        with poincare.checks(False):  # checked once by CHESTLoss.prepare
            value = self.fn(proxies_h, step.loss.c, M=s.M, gamma_hyp=s.gamma_hyp, variant=s.hyphc, K=step.shared["K"])
        check_overflow(value, "the CHEST loss's l_hyphc", {"proxies_h": proxies_h})
        return value, {}


#: CHEST's terms in the order of the sum (Eq. 10): :class:`CHESTLoss` builds each with its ``create``
#: and holds it as its ``attr``; its parts and its settings section follow this tuple.
CHEST_TERMS: tuple[type[Term], ...] = (CHESTProxyTermH, CHESTProxyTermE, CHESTHypHCTerm)

#: CHEST's settings section: its own (:class:`CHESTProxySettings`), then each term's, in the order of
#: the sum (the order of ``--help`` and the dashboard: γ, λ, δ, η per space, then τ, M, γ_hyp).
CHESTSettings = settings_section("CHESTSettings", CHESTProxySettings, *CHEST_TERMS)


@register_loss("chest")
class CHESTLoss(Loss):
    r"""CHEST (Eq. 10): owns the Euclidean proxies ``P_E`` (C, K, D_E), maps them through the model's
    hyperbolic ``head`` (shared with the data, Sec. 3.2), and sums its weighted terms
    ``l_h`` (Eq. 7 with D_H), ``l_e`` (Eq. 7 with D_E) and ``l_hyphc`` (Eq. 9 on M triplets drawn
    from a seeded generator). Built directly, a setting not passed takes its declared default
    (:class:`CHESTSettings`, e.g. ``M``).

    ``euclid_space="head"`` makes the Euclidean loss compare ``W x + b`` with ``W P_E + b`` (pass the
    model's matching ``x_e``; the eta_H = 0 ablation rule of Sec. 4.4).

    ``head`` maps (N, D_E) -> (N, D_H) points in the ball and exposes the curvature as ``head.c``
    (e.g. :class:`chestlab.models.HyperbolicHead`), so the data, the proxies and the loss always
    share one ``c``. Live settings change with :meth:`set` and apply at the next ``forward``.
    """

    Settings = CHESTSettings
    parts = tuple(t.part for t in CHEST_TERMS)  # ("l_h", "l_e", "l_hyphc")

    def __init__(
        self,
        num_classes: int,
        K: int,
        dim: int,
        head: Callable[[Tensor], Tensor],
        *,
        euclid_space: str = "backbone",
        seed: int = 0,
        dim_h: int = 0,
        **settings: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes = {num_classes}: CHEST needs C >= 2 classes")
        check_euclid_space(euclid_space)
        section = type(self).Settings  # CHEST's, or CHEST's plus joined terms' (with_terms)
        names = [f.name for f in dataclasses.fields(section)]
        values = {**settings, "K": K}  # the others take their declared defaults (M: the setting's default)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise SettingError(unknown[0], values[unknown[0]], "one of " + ", ".join(names),
                               f"not a setting of loss {self.name or 'chest'}")
        from ..settings import settings_of

        specs = settings_of(section)
        cfg = section(**{k: specs[k].validate(v) for k, v in values.items()})
        dim_h = dim_h or getattr(getattr(head, "linear", None), "out_features", 0)
        super().__init__(cfg, LossContext(num_classes, dim, dim_h, head, seed, euclid_space))
        self.validate_settings(cfg)
        self.num_classes, self.K, self.dim = int(num_classes), int(K), int(dim)
        self.head = head
        self.euclid_space = euclid_space
        g = torch.Generator().manual_seed(seed)
        # unnormalised Euclidean proxies (Sec. 3.2); scale comparable to the embeddings
        self.proxies = nn.Parameter(torch.randn(num_classes, K, dim, generator=g) * cfg.proxy_std)
        for term in CHEST_TERMS:  # the terms, in the order of the sum
            setattr(self, term.attr, term.create(cfg, self.ctx))

    @classmethod
    def build(cls, settings: CHESTSettings, ctx: LossContext) -> "CHESTLoss":
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls.Settings) if f.name != "K"}
        return cls(ctx.num_classes, settings.K, ctx.dim_e, ctx.head, euclid_space=ctx.euclid_space, seed=ctx.seed,
                   dim_h=ctx.dim_h, **values)

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

    @classmethod
    def divergence_hint(cls, cfg: TrainConfig) -> Optional[str]:
        if max(cfg.lambda_h, cfg.lambda_e) * max(cfg.delta_h, cfg.delta_e, 1) > 1e4:
            return "lambda * delta is very large: the logits overflow"
        return None

    @classmethod
    def hints(cls, cfg: TrainConfig) -> list[str]:
        joined_on = any(t.weight is not None and getattr(cfg, t.weight) > 0 for t in cls.joined)
        if cfg.eta_h == 0 and cfg.eta_e == 0 and cfg.tau > 0 and not joined_on:
            return ["η_H = η_E = 0: only the HypHC term trains, and it moves the proxies only (the data are not in it)."]
        return []

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
        C, K, _ = self.proxies.shape
        return self._flat_proxies(e=False)[1].view(C, K, -1)

    def proxies_e(self) -> Tensor:
        """The proxies the Euclidean loss sees, (C, K, D): ``P_E`` itself, or ``W P_E + b`` when
        ``euclid_space="head"`` (the eta_H = 0 ablation rule, Sec. 4.4)."""
        if self.euclid_space == "backbone":
            return self.proxies
        C, K, _ = self.proxies.shape
        return self._flat_proxies(h=False)[0].view(C, K, -1)

    def _flat_proxies(self, e: bool = True, h: bool = True) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """``(proxies_e, proxies_h)`` as (C K, D_E) and (C K, D_H) (``None`` where not asked for), both
        from one flat view of ``P_E``: the gradients the terms send to it add up in place."""
        C, K, D = self.proxies.shape
        flat = self.proxies.view(C * K, D)
        p_h = self.head(flat) if h else None
        if not e:
            return None, p_h
        return (flat if self.euclid_space == "backbone" else self.head.tangent(flat)), p_h  # type: ignore[attr-defined]

    def proxy_points(self) -> dict[str, Tensor]:
        """``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU, detached (for figures)."""
        with torch.no_grad():
            return {"h": self.proxies_h().float().cpu(), "e": self.proxies.detach().float().cpu()}

    def prepare(self, step: Step) -> Step:
        """The proxies, once for the three terms: ``proxies_e`` (C K, D_E) and ``proxies_h`` (C K, D_H)
        in ``step.shared`` (from one flat view of ``P_E``, so the gradients the terms send add up in
        place), float32 even under AMP (fp16 cannot resolve the ball near its boundary). The inputs
        are checked here, once, under their names; the terms then run unchecked (each (C K, D) check
        is a pass over the proxies)."""
        s = self.settings
        C, K = self.proxies.shape[:2]
        proxies_e, proxies_h = (p.float() for p in self._flat_proxies())  # (C K, D_E), (C K, D_H)
        check_chest_inputs(step.x_e, step.x_h, step.labels, proxies_e.view(C, K, -1), proxies_h.view(C, K, -1))
        if s.eta_h > 0:
            poincare.check_in_ball(step.x_h, self.c, "x_h")
        if s.eta_h > 0 or s.tau > 0:
            poincare.check_in_ball(proxies_h, self.c, "proxies_h")
        if s.eta_e > 0:
            poincare.check_finite(step.x_e, "x_e")
            poincare.check_finite(proxies_e, "proxies_e")
        step.shared.update(proxies_e=proxies_e, proxies_h=proxies_h, K=K)
        return step

    # the triplet sampler's state travels with the checkpoint, so a resumed run samples the same triplets
    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state(), "hparams": self.hparams()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.set(**state["hparams"])
