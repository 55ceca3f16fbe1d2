r"""What every trainable loss shares: the :class:`Loss` base class, its one output type
:class:`LossOutput`, what the trainer hands it (:class:`LossContext`), the :class:`Term` a loss is
summed from, and the registry (:func:`register_loss`, :func:`get_loss`, :func:`list_losses`), in
the style of the backbone and dataset registries.

**Terms.** A term is a module that returns ``(value, extras)`` for a batch (:class:`Step`); it
names its ``part`` (a column of ``steps.csv``), the setting that weighs it (``weight``; None: 1) and
may bring its own settings section (``Settings``), rules, optimizer group and state. A loss is the
weighted sum of its terms, in the order they were assigned:

.. math:: L = \sum_t w_t\,L_t, \qquad w_t = \texttt{settings.}\mathit{weight}_t

(a term whose weight is 0 is not computed; its part is 0 and its extras None). A term that joins
any loss (HIER's, :class:`chestlab.losses.hier.HIERTerm`) is added by composition, one line::

    register_loss("chest_hier")(CHESTLoss.with_terms(HIERTerm))

which makes a subclass whose settings section is the base's plus the term's, whose parts are the
base's plus the term's, and whose rules, optimizer groups and state include the term's.

**A loss of its own** is one class; with terms::

    class Pull(Term):
        part, weight = "pull", "pull_weight"

        @dataclass
        class Settings:                        # the term's settings section
            pull_weight: float = setting(1.0, group="loss", live=True, low=0, high=1e3, help="weight of the pull")

        def forward(self, step, s):
            return step.x_e.pow(2).sum(1).mean(), {}

    @register_loss("pull")
    class PullLoss(Loss.with_terms(Pull)):
        pass

or with its own ``forward`` (then ``parts`` names what it reports)::

    @register_loss("centre")
    class CentreLoss(Loss):
        @dataclass
        class Settings:
            pull: float = setting(1.0, group="loss", live=True, low=0, high=1e3, help="weight of the pull")

        parts = ("pull",)

        def forward(self, x_e, x_h, labels):
            ...
            return LossOutput(total, {"pull": pull})

and is then trainable with ``--set loss=centre --set pull=0.5``. A subclass of a registered loss,
registered under a new name, inherits its settings, parts, terms and behaviour.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Optional

import torch
from torch import Tensor, nn

from .. import settings as _settings
from ..settings import Problem, SettingError, TrainConfig

__all__ = ["Loss", "LossOutput", "LossContext", "Step", "Term", "register_loss", "get_loss", "list_losses", "settings_section"]


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


@dataclass
class Step:
    """What the terms of a loss see at one ``forward``: the batch, in float32 with autocast off
    (``x_e`` (B, D_E), ``x_h`` (B, D_H), ``labels`` (B,) or None, ``index`` (B,) or None: the batch's
    training-set indices), the ``loss`` the terms belong to (its ``c``, its parameters) and what its
    :meth:`Loss.prepare` computed once for all its terms (``shared``, e.g. CHEST's proxies)."""

    x_e: Tensor
    x_h: Tensor
    labels: Optional[Tensor]
    loss: "Loss"
    index: Optional[Tensor] = None
    shared: dict[str, Any] = field(default_factory=dict)


class Term(nn.Module):
    """A named term of a loss: ``forward(step, settings) -> (value, extras)``, ``value`` a scalar
    (unweighted), ``extras`` a dict (e.g. similarities for figures). ``settings`` is the loss's whole
    section (its own fields and those of every other term).

    Class attributes (instances may override ``part``, ``weight`` and ``extras``):

    - ``part``: its name in :attr:`LossOutput.parts` and ``steps.csv``;
    - ``weight``: the name of the setting that weighs it in the sum, None for 1;
    - ``extras``: the extras it reports (None while its weight is 0);
    - ``Settings``: the settings section it brings to a loss it joins (:meth:`Loss.with_terms`);
    - ``attr``: the loss's attribute that holds it when it joins (its state-dict prefix);
    - ``group``: the optimizer group of its parameters (:meth:`group_hparams`), None: the loss's;
    - ``exports``: methods ``m(self, loss, ...)`` of the term that a loss it joins offers as ``loss.m(...)``.

    A term that joins other losses defines :meth:`create` (build it from the settings and the
    :class:`LossContext`); :meth:`rules` and :meth:`validate_settings` add its rules."""

    Settings: ClassVar[Optional[type]] = None
    part: str = ""
    weight: Optional[str] = None
    extras: tuple[str, ...] = ()
    attr: ClassVar[str] = ""
    group: ClassVar[Optional[str]] = None
    exports: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def create(cls, settings: Any, ctx: "LossContext") -> "Term":
        """The term for a loss built with ``settings`` (its section included) and ``ctx``."""
        raise NotImplementedError(f"{cls.__name__} does not join other losses: it defines no create(settings, ctx)")

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        """Rules between settings that this term adds to :func:`chestlab.settings.check`."""
        return ()

    @classmethod
    def validate_settings(cls, settings: Any) -> None:
        """Raise ``ValueError`` when ``settings`` cannot be used (checked by :meth:`Loss.set`)."""

    def group_hparams(self, cfg: TrainConfig) -> dict[str, float]:
        """``{"lr", "weight_decay"}`` of the optimizer group :attr:`group`."""
        raise NotImplementedError

    def weight_of(self, settings: Any) -> Optional[float]:
        """The weight of the term under ``settings`` (None: 1, the term is always on)."""
        return None if self.weight is None else float(getattr(settings, self.weight))

    def forward(self, step: Step, settings: Any) -> tuple[Tensor, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError


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

    # -- hooks for what is particular to a loss (the engine and the dashboard name no loss) ------------
    @classmethod
    def auto_euclid_space(cls, settings: Any) -> str:
        """Where L_E lives when ``euclid_space = auto``: "backbone" (x^E) unless the loss says otherwise."""
        return "backbone"

    @classmethod
    def rules(cls, cfg: TrainConfig) -> Iterable[Problem]:
        """Rules between settings that this loss adds to :func:`chestlab.settings.check`."""
        return ()

    @classmethod
    def divergence_hint(cls, cfg: TrainConfig) -> Optional[str]:
        """A likely cause, under the settings ``cfg``, when training diverges (the trainer's message), or None."""
        return None

    @classmethod
    def hints(cls, cfg: TrainConfig) -> list[str]:
        """Teaching notes about a valid but telling combination of this loss's settings (the dashboard shows them)."""
        return []

    # -- terms ---------------------------------------------------------------------------------------
    #: the term classes joined to this loss by :meth:`with_terms` (built by :meth:`join_terms`)
    joined: ClassVar[tuple[type[Term], ...]] = ()

    @classmethod
    def with_terms(cls, *terms: type[Term], name: Optional[str] = None) -> type["Loss"]:
        """A subclass of this loss with ``terms`` (classes with :meth:`Term.create`) added to its sum:
        its settings section is this loss's plus each term's ``Settings``, its parts this loss's plus
        each term's ``part``, its rules, live checks, optimizer groups and state include the terms'.
        Register it with one line: ``register_loss("chest_hier")(CHESTLoss.with_terms(HIERTerm))``."""
        for t in terms:
            if not (isinstance(t, type) and issubclass(t, Term)) or not t.part or not t.attr:
                raise TypeError(f"with_terms takes Term classes with a part and an attr, got {t!r}")
            if t.part in cls.parts or t in cls.joined:
                raise ValueError(f"{cls.__name__} already has a part {t.part!r}")
        title = name or cls.__name__.removesuffix("Loss") + "".join(t.__name__.removesuffix("Term") for t in terms) + "Loss"
        caller = inspect.currentframe()
        caller = caller.f_back if caller is not None else None  # the module that composes: recorded as the run's plug-in
        module = caller.f_globals.get("__name__", cls.__module__) if caller is not None else cls.__module__
        settings = settings_section(title.removesuffix("Loss") + "Settings", cls.Settings, *terms, module=module,
                                    owners=(cls.__name__, *(t.__name__ for t in terms)))
        base_init = cls.__init__

        def __init__(self: Loss, *args: Any, **kwargs: Any) -> None:
            base_init(self, *args, **kwargs)
            if type(self).joined and not self._joined_built:
                self.join_terms()

        ns = {"Settings": settings, "parts": (*cls.parts, *(t.part for t in terms)), "joined": (*cls.joined, *terms),
              "__init__": __init__, "__module__": module,
              "__doc__": f"{cls.__name__} plus " + ", ".join(t.__name__ for t in terms) + " (composed by with_terms)."}
        for t in terms:
            for meth in t.exports:
                ns[meth] = _exported(t, meth)
        if cls.forward is not Loss.forward:  # a loss with its own forward: the joined terms continue its sum
            base_forward = cls.forward

            def forward(self: Loss, x_e: Tensor, x_h: Tensor, labels: Tensor, **kw: Any) -> LossOutput:
                out = base_forward(self, x_e, x_h, labels, **kw)
                todo = [t for t in self.terms() if t.part not in out.parts]
                if not todo:
                    return out
                with torch.autocast(device_type=x_e.device.type, enabled=False):
                    step = Step(x_e.float(), x_h.float(), labels, self, kw.get("index"))
                    return self.sum_terms(step, todo, start=out)

            ns["forward"] = forward
        return type(title, (cls,), ns)

    _joined_built: bool = False

    def join_terms(self) -> None:
        """Build the joined terms (:attr:`joined`) from this loss's settings and context."""
        ctx = self.ctx if self.ctx is not None else LossContext(0, 0, 0)
        for t in type(self).joined:
            setattr(self, t.attr, t.create(self.settings, ctx))
        self._joined_built = True

    def terms(self) -> list[Term]:
        """The terms of the sum, in order: the loss's own (in the order assigned), then the joined ones."""
        joined = {t.attr for t in type(self).joined}
        own = [m for k, m in self._modules.items() if isinstance(m, Term) and k not in joined]
        return own + [self._modules[a] for a in (t.attr for t in type(self).joined) if a in self._modules]

    def prepare(self, step: Step) -> Step:
        """Compute, once per ``forward``, what several terms use (into ``step.shared``) and check the
        inputs; by default nothing."""
        return step

    def sum_terms(self, step: Step, terms: Optional[Iterable[Term]] = None, start: Optional[LossOutput] = None) -> LossOutput:
        r""":math:`\sum_t w_t L_t` over ``terms`` (default: :meth:`terms`), left to right, added to
        ``start`` (a sum so far) if given; a term whose weight is 0 is skipped (its part 0, its extras None)."""
        s = self.settings
        total: Optional[Tensor] = None if start is None else start.total
        parts: dict[str, Tensor] = {} if start is None else dict(start.parts)
        extras: dict[str, Any] = {} if start is None else dict(start.extras)
        for term in self.terms() if terms is None else terms:
            w = term.weight_of(s)
            if w is not None and not w > 0:
                parts[term.part] = step.x_h.new_zeros(())
                extras.update({k: None for k in term.extras})
                continue
            value, more = term(step, s)
            parts[term.part] = value
            extras.update({k: None for k in term.extras})
            extras.update(more)
            weighted = value if w is None else w * value
            total = weighted if total is None else total + weighted
        if total is None:  # every weight is 0
            total = step.x_h.new_zeros(())
        return LossOutput(total, parts, extras)

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
        for t in type(self).joined:
            t.validate_settings(new)
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
        grouped = [t for t in self.terms() if t.group is not None]
        term_params = [[p for p in t.parameters() if id(p) not in exclude] for t in grouped]
        exclude = exclude | {id(p) for ps in term_params for p in ps}
        own = [p for p in self.parameters() if id(p) not in exclude]
        groups = [{"name": "proxies", "params": own, **self.group_hparams("proxies", cfg)}] if own else []
        return groups + [{"name": t.group, "params": ps, **t.group_hparams(cfg)} for t, ps in zip(grouped, term_params) if ps]

    def group_hparams(self, name: str, cfg: TrainConfig) -> dict[str, float]:
        """``{"lr", "weight_decay"}`` of the loss's optimizer group ``name`` under the settings ``cfg``
        (asked again whenever a live setting changes): ``proxies`` train with ``lr_proxy`` and no
        weight decay; a term's group (:attr:`Term.group`) as the term says."""
        for t in self.terms():
            if t.group is not None and t.group == name:
                return t.group_hparams(cfg)
        if name != "proxies":
            raise ValueError(f"{type(self).__name__} has no optimizer group {name!r}")
        return {"lr": cfg.lr_proxy, "weight_decay": 0.0}

    def proxy_points(self) -> Optional[dict[str, Tensor]]:
        """``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU for losses with class proxies, else None."""
        return None

    def forward(self, x_e: Tensor, x_h: Tensor, labels: Tensor, index: Optional[Tensor] = None) -> LossOutput:
        """The weighted sum of the terms (:meth:`sum_terms`) on the batch in float32, autocast off
        (the geometry of the ball needs it), after :meth:`prepare`. A loss with no terms overrides it."""
        if not self.terms():
            raise NotImplementedError(f"{type(self).__name__} has no terms: define forward(x_e, x_h, labels) or add Terms")
        with torch.autocast(device_type=x_e.device.type, enabled=False):
            step = Step(x_e.float(), x_h.float(), labels, self, index)
            return self.sum_terms(self.prepare(step))


def settings_section(name: str, *parts: Any, module: Optional[str] = None,
                     owners: Optional[Iterable[str]] = None) -> type:
    """One settings section (a dataclass) made of ``parts``: sections (dataclasses of
    :func:`~chestlab.settings.setting` fields) or :class:`Term` classes (their ``Settings``; a term
    with none adds nothing), their fields in the order given. A loss whose terms own their settings
    declares its section this way (``CHESTSettings = settings_section("CHESTSettings",
    CHESTProxySettings, *CHEST_TERMS)``), and :meth:`Loss.with_terms` adds a joined term's section to
    the loss's. A setting two parts declare is refused (``ValueError`` naming both; ``owners``: their
    names in messages). ``module``: the new class's ``__module__`` (default: the caller's)."""
    sections = [p.Settings if isinstance(p, type) and issubclass(p, Term) else p for p in parts]
    names = list(owners) if owners is not None else [getattr(p, "__qualname__", repr(p)) for p in parts]
    seen: dict[str, str] = {}
    for sec, owner in zip(sections, names):
        if sec is None:
            continue
        if not dataclasses.is_dataclass(sec):
            raise TypeError(f"{owner}: a settings section is a dataclass of chestlab.settings.setting fields, got {sec!r}")
        clash = sorted(f.name for f in dataclasses.fields(sec) if f.name in seen)
        if clash:
            raise ValueError(f"{owner}'s settings {clash} clash with {seen[clash[0]]}'s: rename them")
        seen.update((f.name, owner) for f in dataclasses.fields(sec))
    # a dataclass collects its bases' fields from the last base to the first: reverse, so the order is ``parts``'
    cls = dataclasses.make_dataclass(name, [], bases=tuple(sec for sec in reversed(sections) if sec is not None))
    if module is None:
        caller = inspect.currentframe()
        caller = caller.f_back if caller is not None else None
        module = caller.f_globals.get("__name__", __name__) if caller is not None else __name__
    cls.__module__ = module
    return cls


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
        _settings.register_rule(_rules_of(cls), section=name)
        _LOSSES[name] = cls
        cls.name = name
        return cls

    return deco


def _exported(term: type[Term], meth: str):
    """``loss.meth(...)`` -> ``loss.<term.attr>.meth(loss, ...)``."""

    def method(self: Loss, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, term.attr), meth)(self, *args, **kwargs)

    method.__name__ = meth
    method.__doc__ = getattr(term, meth).__doc__
    return method


def _rules_of(cls: type[Loss]):
    """The loss's rules, then those of each joined term."""
    if not cls.joined:
        return cls.rules

    def rules(cfg: TrainConfig) -> Iterable[Problem]:
        return itertools.chain(cls.rules(cfg), *(t.rules(cfg) for t in cls.joined))

    rules.__qualname__ = f"{cls.__name__}.rules"
    return rules


def get_loss(name: str) -> type[Loss]:
    """The loss class registered under ``name``."""
    if name not in _LOSSES:
        raise SettingError("loss", name, "one of " + ", ".join(_LOSSES), "not a registered loss")
    return _LOSSES[name]


def list_losses() -> list[str]:
    """Registered loss names, in registration order."""
    return list(_LOSSES)
