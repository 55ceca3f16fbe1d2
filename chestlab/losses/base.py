r"""What every trainable loss shares: the :class:`Loss` base class, its one output type
:class:`LossOutput`, what the trainer hands it (:class:`LossContext`) and the registry
(:func:`register_loss`, :func:`get_loss`, :func:`list_losses`), in the style of the backbone and
dataset registries.

A loss is one class::

    @register_loss("centre")
    class CentreLoss(Loss):
        @dataclass
        class Settings:                        # its own settings section
            pull: float = setting(1.0, group="loss", live=True, low=0, high=1e3, help="weight of the pull")

        parts = ("pull",)                       # named parts, logged in steps.csv

        def forward(self, x_e, x_h, labels):
            ...
            return LossOutput(total, {"pull": pull})

and is then trainable with ``--set loss=centre --set pull=0.5``. A subclass of a registered loss,
registered under a new name, inherits its settings, parts and behaviour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Optional

from torch import Tensor, nn

from .. import settings as _settings
from ..settings import Problem, SettingError, TrainConfig

__all__ = ["Loss", "LossOutput", "LossContext", "register_loss", "get_loss", "list_losses"]


@dataclass
class LossOutput:
    """One step of a loss: the ``total`` to minimise, its named ``parts`` (unweighted scalars, logged
    as columns of ``steps.csv``) and ``extras`` (e.g. ``s_h``/``s_e``: the (B, C) similarities of the
    batch to every class, for the paper's Fig. 3 histograms)."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> Tensor:
        return self.total

    def __getattr__(self, name: str) -> Any:  # out.l_h, out.s_h: the parts and extras by name
        d = self.__dict__
        if name in d.get("parts", {}):
            return d["parts"][name]
        if name in d.get("extras", {}):
            return d["extras"][name]
        if name.startswith("s_"):
            return None  # a similarity this loss does not compute
        raise AttributeError(f"LossOutput has no part or extra {name!r}")


@dataclass
class LossContext:
    """What a loss is built with besides its settings: the number of training classes ``C``, the
    embedding sizes ``D_E`` (the backbone's output) and ``D_H``, the model's hyperbolic ``head``
    (whose ``c`` is the curvature the data and the loss share), the run's ``seed`` and where L_E
    lives (``euclid_space``: "backbone" or "head", Sec. 4.4)."""

    num_classes: int
    dim_e: int
    dim_h: int
    head: Optional[nn.Module] = None
    seed: int = 0
    euclid_space: str = "backbone"


class Loss(nn.Module):
    """Base class of the registered losses. Subclasses declare ``Settings`` (a dataclass of
    :func:`chestlab.settings.setting` fields), ``parts`` (names of the parts they report) and
    ``forward(x_e, x_h, labels) -> LossOutput``; parameters they own (proxies) are trained with
    ``lr_proxy`` and no weight decay, in the optimizer group ``proxies`` (:meth:`param_groups`; a loss
    that trains some of its parameters otherwise overrides it and :meth:`group_hparams`)."""

    @dataclass
    class Settings:
        pass

    #: the parts ``forward`` reports, in order (the columns of ``steps.csv``)
    parts: ClassVar[tuple[str, ...]] = ()
    #: the registered name (set by :func:`register_loss`)
    name: ClassVar[str] = ""
    #: False: the loss uses no labels; the trainer then draws uniformly random batches
    supervised: ClassVar[bool] = True
    #: True: ``forward`` also gets ``index=`` (B,), the batch's indices in the training set
    needs_index: ClassVar[bool] = False

    def __init__(self, settings: Any = None, ctx: Optional[LossContext] = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else self.Settings()
        self.ctx = ctx

    @classmethod
    def build(cls, settings: Any, ctx: LossContext) -> "Loss":
        """Make the loss for a run (the trainer calls this); override when the constructor differs."""
        return cls(settings, ctx)

    @classmethod
    def auto_euclid_space(cls, settings: Any) -> str:
        """Where L_E lives when ``euclid_space = auto``: "backbone" (x^E) unless the loss says otherwise."""
        return "backbone"

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        """Rules between settings that this loss adds to :func:`chestlab.settings.check`."""
        return ()

    def __getattr__(self, name: str) -> Any:  # loss.delta_h: a setting of the loss's section
        try:
            return super().__getattr__(name)
        except AttributeError:
            s = self.__dict__.get("settings")
            if s is not None and name in {f.name for f in dataclasses.fields(s)}:
                return getattr(s, name)
            raise

    @property
    def c(self) -> float:
        """The curvature shared with the model (its head's ``c``)."""
        head = self.ctx.head if self.ctx is not None else None
        if head is None:
            raise RuntimeError(f"{type(self).__name__} was built without the model's head: pass LossContext(head=...)")
        return head.c  # type: ignore[return-value]

    def set(self, **changes: Any) -> None:
        """Change live settings of this loss; they apply at the next ``forward``. Every value is
        validated before any is applied, so a rejected call changes nothing."""
        specs = _settings.settings_of(type(self.settings))
        clean = {}
        for key, value in changes.items():
            if key not in specs:
                raise SettingError(key, value, "one of " + ", ".join(specs), f"not a setting of loss {self.name or type(self).__name__}")
            if not specs[key].live:
                raise SettingError(key, value, "its value from the start", "cannot change during training: build a new loss")
            clean[key] = specs[key].validate(value)
        new = dataclasses.replace(self.settings, **clean)
        self.validate_settings(new)
        self.settings = new

    def before_step(self, step: int, trainer: Any) -> None:
        """Called by the trainer before each step's forward (e.g. to refresh pseudo-labels from
        ``trainer.embed("train")`` on a schedule). State it keeps must travel with the checkpoint
        (buffers or ``get_extra_state``) so a resumed run continues exactly."""

    def validate_settings(self, settings: Any) -> None:
        """Raise ``ValueError`` when ``settings`` cannot be used (called by :meth:`set`)."""

    def hparams(self) -> dict[str, Any]:
        """The live settings' values."""
        specs = _settings.settings_of(type(self.settings))
        return {k: getattr(self.settings, k) for k, s in specs.items() if s.live}

    def param_groups(self, cfg: TrainConfig, exclude: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
        """The optimizer's parameter groups for the loss's own parameters (those whose ``id`` is not in
        ``exclude``: the model's, which the loss may share): ``[{"name", "params", "lr",
        "weight_decay"}]``, the values from :meth:`group_hparams`. By default one group, ``proxies``,
        when the loss owns any parameter."""
        own = [p for p in self.parameters() if id(p) not in exclude]
        return [{"name": "proxies", "params": own, **self.group_hparams("proxies", cfg)}] if own else []

    def group_hparams(self, name: str, cfg: TrainConfig) -> dict[str, float]:
        """``{"lr", "weight_decay"}`` of the loss's optimizer group ``name`` under the settings ``cfg``
        (asked again whenever a live setting changes): ``proxies`` train with ``lr_proxy`` and no
        weight decay."""
        if name != "proxies":
            raise ValueError(f"{type(self).__name__} has no optimizer group {name!r}")
        return {"lr": cfg.lr_proxy, "weight_decay": 0.0}

    def proxy_points(self) -> Optional[dict[str, Tensor]]:
        """``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU for losses with class proxies, else None."""
        return None

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# registry: one name -> one loss class
# ------------------------------------------------------------------------------------------------
_LOSSES: dict[str, type[Loss]] = {}


def register_loss(name: str, *, overwrite: bool = False):
    """Class decorator: ``@register_loss("chest")`` makes the loss trainable as ``--set loss=chest``,
    with its ``Settings`` in ``--help``, the dashboard and :class:`~chestlab.settings.TrainConfig`."""

    def deco(cls: type[Loss]) -> type[Loss]:
        if not (isinstance(cls, type) and issubclass(cls, Loss)):
            raise TypeError(f"register_loss({name!r}) decorates a subclass of chestlab.losses.Loss, got {cls!r}")
        if name in _LOSSES and not overwrite and _LOSSES[name] is not cls:
            raise ValueError(f"loss {name!r} is already registered ({_LOSSES[name].__name__}); pass overwrite=True to replace it")
        _settings.register_section(name, cls.Settings, loss=cls)
        _settings.register_rule(cls.rules, section=name)
        _LOSSES[name] = cls
        cls.name = name
        return cls

    return deco


def get_loss(name: str) -> type[Loss]:
    """The loss class registered under ``name``."""
    if name not in _LOSSES:
        raise SettingError("loss", name, "one of " + ", ".join(_LOSSES), "not a registered loss")
    return _LOSSES[name]


def list_losses() -> list[str]:
    """Registered loss names, in registration order."""
    return list(_LOSSES)
