r"""Every setting of a run, declared once.

A setting is a dataclass field made with :func:`setting`: its default, its type (from the
annotation), the paper's symbol and equation, its allowed range or choices, its group, whether it
may change while training runs (``live``), its help line and a hint for the dashboard's widget.
Settings come in *sections*: the core sections below (data, model, geometry, optim, schedule, run)
and one section per registered loss (the loss class's nested ``Settings`` dataclass, see
:func:`chestlab.losses.register_loss`). This module holds the registry and imports no loss: the
losses register into it when they are imported (``import chestlab`` imports the built-in ones), and
rules that need other modules are registered there (:func:`register_rule`).

Names: a setting's key (``Setting.name``) is its field's name where that is unique, and
``section.name`` where sections share the name (a plug-in loss's ``c`` is ``centroid_pull.c``; the
core curvature stays ``c``). Everywhere a key is read (``--set``, ``config.json``, a link, the
dashboard's widgets, :class:`TrainConfig`) both spellings work: ``section.name`` always, the flat
name where it is unique, or the core setting's, or the chosen loss's; an ambiguous flat name is
refused with one line listing the qualified choices (:class:`AmbiguousSettingError`). Everything
else is generated from this one table:

- :class:`TrainConfig` — the values of a run (``cfg.delta_h``, ``cfg["centroid_pull.c"]``,
  ``cfg.section("centroid_pull").c``), each one validated;
- ``--help`` and ``--set key=value`` parsing (:meth:`Setting.parse`) of the CLIs;
- the dashboard's controls and its URL query parsing; :func:`live_keys`;
- :func:`check` — the rules that tie several settings together (``tau > 0`` needs ``K >= 2``, …),
  returned as :class:`Problem` s: the trainer and the CLI refuse errors, the dashboard shows them.

Adding a setting is one edit: a field in a section (or in a loss's ``Settings``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

__all__ = [
    "GROUPS",
    "Setting",
    "SettingError",
    "Problem",
    "ConfigError",
    "setting",
    "register_section",
    "settings_of",
    "AmbiguousSettingError",
    "CORE_SECTIONS",
    "keyed",
    "section_values",
    "register_rule",
    "sections",
    "schema",
    "get_setting",
    "live_keys",
    "path_keys",
    "machine_keys",
    "TrainConfig",
    "check",
    "parse_assignments",
    "help_table",
    "BIG",
    "MAX_ELEMENTS",
    "MAX_DIM",
    "MAX_STEPS",
    "too_big",
    "dataset_info_of",
    "RECORDS",
]

#: The groups settings are shown in (``--help``, the dashboard's sidebar), in this order.
GROUPS: tuple[str, ...] = ("data", "model", "geometry", "loss", "optim", "schedule", "run")

Choices = Union[Sequence[Any], Callable[[], Sequence[Any]]]

# ------------------------------------------------------------------------------------------------
# upper bounds: what a machine can hold (every size a user can set has one)
# ------------------------------------------------------------------------------------------------
#: The largest magnitude of a real-valued setting. The geometry runs in float32, which holds 3.4e38,
#: and the engine scales a setting by at most ~1e8 (Adam divides lr by 1 - beta_1 = 0.1, a logit is
#: lambda * delta, ...): a larger value could only end in a raw overflow error, where up to BIG a
#: diverging run is caught and diagnosed (``TrainingDiverged``).
BIG = 1e30
#: The most elements one tensor of a training step may hold: 2**30 float32 = 4 GiB. The rules between
#: settings refuse a combination whose largest tensor would be bigger (K x classes x D_E proxies, M
#: triplets x D_H, HIER's triplets x proxies, ...) before anything is built.
MAX_ELEMENTS = 2**30
#: The largest embedding size (D_E, D_H): four times ViT-L's 1024.
MAX_DIM = 4096
#: The most optimizer steps of a run (and the longest interval of a schedule): 200 times SOP's 50 000.
MAX_STEPS = 10**7


def too_big(what: str, n: float, fix: str) -> Optional[str]:
    """A one-line message when a tensor of ``n`` elements (``what``: its shape in words) exceeds
    :data:`MAX_ELEMENTS`, ending with how to ``fix`` it; None when it fits."""
    if n <= MAX_ELEMENTS:
        return None
    return f"{what} would hold {n:.3g} elements, more than one tensor may ({MAX_ELEMENTS:.3g} = 4 GiB of float32): {fix}"


class SettingError(ValueError):
    """A value a setting does not accept; the message is one line naming key, value and range."""

    def __init__(self, key: str, value: Any, allowed: str, why: str = "") -> None:
        shown = value if isinstance(value, str) and value else repr(value)
        super().__init__(f"{key} = {shown}: {why + '; ' if why else ''}allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


@dataclass(frozen=True)
class Setting:
    """One setting's declaration (made by :func:`setting`; ``name``, ``type``, ``section`` filled in
    when its section is registered)."""

    default: Any
    help: str
    group: str
    symbol: str = ""  #: the paper's symbol, e.g. "δ_H"
    eq: str = ""  #: the paper's equation or table, e.g. "7" or "Table 1"
    paper: str = ""  #: the paper's value(s), e.g. "1, 5, 10 or 20"
    live: bool = False  #: may change between training steps (``Trainer.set``)
    machine: bool = False  #: describes the machine, not the run: may differ when a run is resumed elsewhere
    path: bool = False  #: names a file or folder of the machine: given on the command line only, never by a link or the page
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  #: the lower bound itself is excluded (``> low``)
    finite: bool = True  #: refuse inf / nan
    choices: Optional[Choices] = None
    nullable: bool = False  #: ``None`` is allowed (its meaning is in ``help``)
    pattern: Optional[str] = None  #: a regular expression a string must match fully
    describe: str = ""  #: the allowed values in words, when the generated description would be unclear
    ui: Mapping[str, Any] = field(default_factory=dict)  #: dashboard widget hint (see dashboard.fields)
    name: str = ""  #: its key: the field's name, or ``section.field`` where sections share that name
    type: Any = None  #: float | int | bool | str | tuple (of ints) | dict
    section: str = ""  #: the section that declared it (a loss subclass shares its parent's)
    field: str = ""  #: its field in the section's dataclass (``cfg.section(section).<field>``)

    # -- description ------------------------------------------------------------------------------
    def options(self) -> Optional[list]:
        """The allowed values when the setting is a choice (callables are asked now)."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    @property
    def label(self) -> str:
        """Name with the paper's symbol, e.g. ``delta_h (δ_H, Eq. 7)``."""
        extra = ", ".join(x for x in (self.symbol, f"Eq. {self.eq}" if self.eq and self.eq[0].isdigit() else self.eq) if x)
        return f"{self.name} ({extra})" if extra else self.name

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``a number > 0`` or ``one of lca, pairwise``."""
        opts = self.options()
        if self.describe:
            text = self.describe
        elif opts is not None:
            text = "one of " + ", ".join(map(str, opts))
        elif self.type is bool:
            text = "true or false"
        elif self.type is dict:
            text = "a JSON object, e.g. {\"depth\": 3}"
        elif self.type is tuple:
            text = "a comma-separated list of integers" + (f", each {self._bounds()}" if self._bounds() else "")
        elif self.type is str:
            text = "a text" + (f" matching {self.pattern}" if self.pattern else "")
        else:
            kind = "an integer" if self.type is int else "a number" if self.finite else "a number (inf allowed)"
            text = f"{self._bounds()}, {kind}" if self._bounds() else kind
        return text + (" or none" if self.nullable else "")

    def _bounds(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{self.name} {'>' if self.low_open else '>='} {self._number(self.low)}")
        if self.high is not None:
            parts.append(f"{self.name} <= {self._number(self.high)}")
        return " and ".join(parts)

    def _number(self, v: float) -> str:
        """A bound as the user writes it: integers in full (a seed's 4294967295), reals as ``%g``."""
        return str(int(v)) if self.type in (int, tuple) and float(v).is_integer() else f"{v:g}"

    # -- values -------------------------------------------------------------------------------------
    def default_value(self) -> Any:
        return dict(self.default) if isinstance(self.default, dict) else self.default

    def validate(self, value: Any) -> Any:
        """``value`` as this setting's type (ints for int settings, tuples for lists…) or
        :class:`SettingError`. Strings are not parsed here (see :meth:`parse`): a JSON file with
        ``"K": "2"`` is refused."""
        if value is None:
            if self.nullable:
                return None
            raise SettingError(self.name, value, self.allowed(), "not a valid value")
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
        elif t is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
            value = int(value)
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
            value = float(value)
            if math.isnan(value) or (self.finite and math.isinf(value)):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
        elif t is str:
            if not isinstance(value, str):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
            if self.pattern and not re.fullmatch(self.pattern, value):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
        elif t is tuple:
            if not isinstance(value, (list, tuple)) or not value:
                raise SettingError(self.name, value, self.allowed(), "need at least one value")
            if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
            value = tuple(int(v) for v in value)
            for v in value:
                self._check_range(v, ",".join(map(str, value)))
            return value
        elif t is dict:
            if not isinstance(value, dict):
                raise SettingError(self.name, value, self.allowed(), "not a valid value")
            return dict(value)
        opts = self.options()
        if opts is not None and value not in opts:
            raise SettingError(self.name, value, self.allowed(), "not a valid value")
        if t in (int, float):
            self._check_range(value, value)
        return value

    def _check_range(self, v: float, shown: Any) -> None:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise SettingError(self.name, shown, self.allowed(), "out of range")
        if self.high is not None and v > self.high and not (not self.finite and v == math.inf):
            raise SettingError(self.name, shown, self.allowed(), "out of range")

    def parse(self, text: str) -> Any:
        """A value written as text (``--set``, a URL) -> a valid value, or :class:`SettingError`."""
        s = text.strip()
        if self.nullable and s.lower() in ("none", "null", ""):
            return None
        t = self.type
        try:
            if t is bool:
                low = s.lower()
                if low in ("1", "true", "yes", "on"):
                    value: Any = True
                elif low in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError
            elif t is int:
                value = int(s)
            elif t is float:
                value = float(s)
            elif t is tuple:
                value = tuple(int(x) for x in s.split(",") if x.strip()) if s else ()
            elif t is dict:
                value = json.loads(s)
            else:
                value = s
                opts = self.options()
                if opts is not None:  # choices that are not strings (e.g. numbers written in a URL)
                    value = next((o for o in opts if str(o) == s), s)
        except ValueError:
            raise SettingError(self.name, text, self.allowed(), "not a valid value") from None
        return self.validate(value)


def setting(default: Any = dataclasses.MISSING, *, help: str, group: str, **meta: Any) -> Any:
    """Declare a setting as a dataclass field of a section (see :class:`Setting` for ``meta``)."""
    spec = Setting(default=default, help=help, group=group, **meta)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"chestlab": spec})
    return field(default=default, metadata={"chestlab": spec})


# ------------------------------------------------------------------------------------------------
# the registry of sections
# ------------------------------------------------------------------------------------------------
#: The core sections, declared below; a flat name they declare always means their setting.
CORE_SECTIONS: tuple[str, ...] = ("data", "model", "geometry", "optim", "schedule", "run")

_SECTIONS: dict[str, type] = {}
#: every distinct setting by its id ``"section.field"`` (the section that declared it first);
#: ``Setting.name`` is its key: the field name where that is unique, else the id (:func:`_index`)
_SPECS: dict[str, Setting] = {}
#: section -> its fields -> the ids of their settings (a loss subclass shares its parent's ids)
_FIELDS: dict[str, dict[str, str]] = {}
#: every spelling that names one setting -> its id: ``section.field`` always, ``field`` where unique
_KEYS: dict[str, str] = {}
#: a field name several sections declare (none of them core) -> the keys it may mean
_AMBIGUOUS: dict[str, list[str]] = {}
#: loss name -> the object that registered its section (the loss class): what ``loss`` may be, and
#: the rules read it (``supervised``) without importing a loss
_LOSS_OWNERS: dict[str, Any] = {}
_RULES: list[tuple[Optional[str], Callable[["TrainConfig"], Iterable["Problem"]]]] = []

_TYPES = {float: float, int: int, bool: bool, str: str, tuple: tuple, dict: dict}
_SECTION_NAME = re.compile(r"[A-Za-z_][\w-]*", re.ASCII)


def _setting_type(annotation: Any) -> Any:
    if isinstance(annotation, str):  # postponed annotations
        annotation = eval(annotation, {"Optional": Optional, "tuple": tuple, "dict": dict, "typing": typing})
    origin = typing.get_origin(annotation)
    if origin is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _setting_type(args[0])
    if origin is not None:
        annotation = origin
    if annotation not in _TYPES:
        raise TypeError(f"setting type {annotation!r} is not supported; use float, int, bool, str, tuple or dict")
    return _TYPES[annotation]


def settings_of(cls: type, section: str = "") -> dict[str, Setting]:
    """The :class:`Setting` s declared by dataclass ``cls`` (a section), by field name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"settings {cls!r} must be a dataclass whose fields are made with chestlab.settings.setting(...)")
    out: dict[str, Setting] = {}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that needs names the defining module did not import
        hints = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("chestlab")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with chestlab.settings.setting(default, help=..., group=...)")
        if spec.group not in GROUPS:
            raise ValueError(f"{cls.__name__}.{f.name}: group {spec.group!r} is not one of {', '.join(GROUPS)}")
        out[f.name] = dataclasses.replace(spec, name=f.name, field=f.name, type=_setting_type(hints.get(f.name, f.type)),
                                          section=section)
    return out


def _same(a: Setting, b: Setting) -> bool:
    """One declaration (a field a loss subclass inherits), wherever it was registered."""
    return dataclasses.replace(a, name=b.name, section=b.section) == b


def register_section(name: str, cls: type, *, loss: Any = None) -> None:
    """Add the settings of dataclass ``cls`` under section ``name`` (a loss's name for loss sections;
    :func:`chestlab.losses.register_loss` passes the loss class as ``loss``). A field may share its
    name with another section's: both are addressed as ``section.field``, and the flat name stays
    valid where it is unique (:func:`get_setting`). Two sections that hold the very same field (a
    loss subclass inherits its parent's ``Settings``) share one setting."""
    if not isinstance(name, str) or not _SECTION_NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: letters, digits, _ and - only (a dot separates section and setting)")
    if name in CORE_SECTIONS and loss is not None:
        raise ValueError(f"loss {name!r}: the name of a core section; choose another name")
    fields: dict[str, str] = {}
    for field_name, s in settings_of(cls, name).items():
        own = f"{name}.{field_name}"
        if own in _SPECS and _SPECS[own].section == name:  # registered again: the new declaration
            _SPECS[own] = s
            fields[field_name] = own
            continue
        shared = next((i for i, old in _SPECS.items() if old.field == field_name and _same(old, s)), None)
        if shared is None:
            _SPECS[own] = s
        fields[field_name] = shared or own
    _SECTIONS[name] = cls
    _FIELDS[name] = fields
    if loss is not None:
        _LOSS_OWNERS[name] = loss
    used = {i for f in _FIELDS.values() for i in f.values()}
    for i in [i for i in _SPECS if i not in used]:  # fields a section registered again no longer has
        del _SPECS[i]
    _index()


def _index() -> None:
    """Each setting's key (``Setting.name``) and every spelling :func:`get_setting` accepts. A flat
    name means the core setting that has it; else the one setting of that name; else it is ambiguous
    (:data:`_AMBIGUOUS`), and each setting of that name is keyed ``section.field``."""
    by_field: dict[str, list[str]] = {}
    for i, s in _SPECS.items():
        by_field.setdefault(s.field, []).append(i)
    _KEYS.clear()
    _AMBIGUOUS.clear()
    for field_name, ids in by_field.items():
        core = [i for i in ids if _SPECS[i].section in CORE_SECTIONS]
        if core or len(ids) == 1:
            _KEYS[field_name] = (core or ids)[0]
        else:
            _AMBIGUOUS[field_name] = ids
    for section, fields in _FIELDS.items():
        for field_name, i in fields.items():
            _KEYS[f"{section}.{field_name}"] = i
    for i, s in _SPECS.items():
        key = s.field if _KEYS.get(s.field) == i else i
        if s.name != key:
            _SPECS[i] = dataclasses.replace(s, name=key)


def register_rule(fn: Callable[["TrainConfig"], Iterable["Problem"]], section: Optional[str] = None):
    """Add a cross-setting rule ``fn(cfg) -> problems``; with ``section`` (a loss name) it runs only
    while that loss is chosen."""
    _RULES.append((section, fn))
    return fn


class AmbiguousSettingError(SettingError):
    """A flat setting name that several sections declare, none of them core and none the chosen
    loss: one line listing the qualified names to write instead."""

    def __init__(self, name: str, choices: Sequence[str]) -> None:
        ValueError.__init__(self, f"{name} is a setting of several sections ({', '.join(c.split('.')[0] for c in choices)}): "
                                  f"write {' or '.join(choices)}")
        self.key, self.value, self.allowed, self.choices = name, None, ", ".join(choices), list(choices)


def _resolve(key: str, loss: Optional[str] = None) -> str:
    """The id of the setting ``key`` names: ``section.field``, or a flat name (the core setting of
    that name; else the only setting of that name; else the one of the chosen ``loss``'s section)."""
    i = _KEYS.get(key)
    if i is not None:
        return i
    if key in _AMBIGUOUS:
        mine = _FIELDS.get(loss or "", {}).get(key)
        if mine is not None:
            return mine
        raise AmbiguousSettingError(key, [_SPECS[i].name for i in _AMBIGUOUS[key]])
    raise SettingError(key, "?", "no value: it is not a setting (see --help for the list)", "unknown setting")


def sections() -> dict[str, type]:
    """Section name -> its dataclass (core sections first, then one per registered loss)."""
    return dict(_SECTIONS)


def schema() -> dict[str, Setting]:
    """Every registered setting by its key (``Setting.name``: the flat name where it is unique, else
    ``section.name``), in declaration order."""
    return {s.name: s for s in _SPECS.values()}


def get_setting(key: str, loss: Optional[str] = None) -> Setting:
    """The setting ``key`` names: a flat name or ``section.name`` (see :func:`_resolve`; ``loss``,
    the run's loss, settles a flat name several loss sections declare). An unknown key raises
    :class:`SettingError`, an ambiguous one :class:`AmbiguousSettingError` (both one line)."""
    return _SPECS[_resolve(key, loss)]


def keyed(changes: Mapping[str, Any], loss: Optional[str] = None) -> dict[str, Any]:
    """``changes`` under each setting's key (``{"geometry.c": 1}`` -> ``{"c": 1}``), the flat names
    of several sections settled by ``loss`` or by the ``loss`` that ``changes`` sets."""
    loss = changes.get("loss", changes.get("model.loss", loss))
    return {get_setting(k, loss).name: v for k, v in changes.items()}


def section_values(changes: Mapping[str, Any], section: str, loss: Optional[str] = None) -> dict[str, Any]:
    """Those of ``changes`` (keys flat or ``section.name``) that are settings of ``section``, by the
    field names of its dataclass: what a loss's ``set`` takes."""
    loss = changes.get("loss", changes.get("model.loss", loss))
    mine = {i: f for f, i in _FIELDS.get(section, {}).items()}
    return {mine[i]: v for k, v in changes.items() if (i := _resolve(k, loss)) in mine}


def machine_keys() -> frozenset[str]:
    """Settings of the machine, not of the run (device, threads, …): they may change on resume."""
    return frozenset(s.name for s in _SPECS.values() if s.machine)


def path_keys() -> frozenset[str]:
    """Settings that name a file or folder (``Setting.path``): a link or the dashboard may not set them."""
    return frozenset(s.name for s in _SPECS.values() if s.path)


def live_keys() -> frozenset[str]:
    """Settings that may change between steps (the dashboard's sliders, ``Trainer.set``)."""
    return frozenset(s.name for s in _SPECS.values() if s.live)


# ------------------------------------------------------------------------------------------------
# core sections
# ------------------------------------------------------------------------------------------------
def _datasets() -> list[str]:
    from .data import available_datasets

    return list(available_datasets())


def _backbones() -> list[str]:
    from .models import list_backbones

    return list(list_backbones())


def _losses() -> list[str]:
    return list(_LOSS_OWNERS)


@dataclass
class DataSettings:
    dataset: str = setting("tree", group="data", choices=_datasets,
                           help="tree | shapes | digits (embedded) or cub200 | cars196 | sop | inshop | cifar100 (--data-root), or a plug-in")
    data_root: Optional[str] = setting(None, group="data", nullable=True, machine=True, path=True,
                                       help="folder holding a benchmark (CUB_200_2011/, cars_annos.mat, Ebay_*.txt, ...)")
    data_options: dict = setting({}, group="data",
                                 help="dataset options as JSON, e.g. {\"depth\": 3} (tree) or {\"image_size\": 32}; each "
                                      "dataset checks their types, ranges and the total size they make (chestlab.data.dataset_options)")
    hierarchy_file: Optional[str] = setting(None, group="data", nullable=True, machine=True, path=True,
                                            help="a class hierarchy for the hierarchy metrics (JSON {class: [ancestors...]} "
                                                 "or CSV rows class,ancestor1,...,parent); default: the dataset's own super-classes")
    batch_size: int = setting(64, group="data", low=2, high=4096, eq="Table 1", paper="200 CUB, 198 Cars, 100 In-shop, 75 SOP",
                              help="batch size", ui={"options": (16, 32, 48, 64, 96, 128)})
    m_per_class: int = setting(4, group="data", low=2, high=4096, help="samples per class in a batch (m-per-class sampler)")
    workers: int = setting(0, group="data", low=0, high=256, machine=True,
                           help="DataLoader worker processes for image datasets read from disk (at most 256)")


@dataclass
class ModelSettings:
    backbone: str = setting("mlp", group="model", choices=_backbones,
                            help="mlp | cnn | vit_tiny_patch16_224 | vit_small_patch16_224 (paper) | vit_base_patch16_224",
                            ui={"options": ("mlp", "cnn", "vit_tiny_patch16_224", "vit_small_patch16_224")})
    pretrained: bool = setting(False, group="model", help="load ImageNet weights from the hub for timm backbones (random init offline, with a warning)")
    weights: Optional[str] = setting(None, group="model", nullable=True, path=True, help="a local state-dict file for the backbone (instead of the hub)")
    pretrain_steps: int = setting(0, group="model", low=0, high=MAX_STEPS,
                                  help="first train the network this many steps with a supervised proxy loss on other classes "
                                       "(tree: another tree seen through the same map), as the papers start from a network "
                                       "pretrained on ImageNet; 0 = from its random initialisation")
    dim_e: Optional[int] = setting(64, group="model", low=1, high=MAX_DIM, nullable=True, symbol="D_E",
                                   help="Euclidean embedding size (none = the backbone's own: 384 for ViT-S)")
    dim_h: int = setting(16, group="model", low=1, high=MAX_DIM, symbol="D_H", paper="384",
                         help="hyperbolic embedding size; 2 makes the Poincaré disk the embedding",
                         ui={"options": (2, 3, 4, 8, 16, 32, 64, 128)})
    euclid_space: str = setting("auto", group="model", choices=("auto", "backbone", "head"), eq="Sec. 4.4",
                                help="the x^E the model returns, where L_E lives: the backbone's f(x) (backbone) or the head's "
                                     "W f(x) + b (head); auto = the loss decides (chest: head exactly while eta_h = 0)")
    loss: str = setting("chest", group="loss", choices=_losses,
                        help="the registered loss to train: chest (Eq. 10), pair_ce or mix (hard-negative paper), or a plug-in")


@dataclass
class GeometrySettings:
    c: float = setting(0.5, group="geometry", live=True, low=0, high=BIG, symbol="c", eq="1-4", paper="0.5",
                       help="curvature of the Poincaré ball; 0 = the Euclidean limit", ui={"lo": 0.0, "hi": 2.0, "step": 0.05})
    r: float = setting(2.3, group="geometry", live=True, low=0, low_open=True, high=BIG, finite=False, symbol="r", paper="2.3",
                       help="feature-clipping radius before exp_0 (Hyp-ViT); inf = no clipping", ui={"lo": 0.1, "hi": 6.0, "step": 0.1})


_LR_UI = {"options": (1e-5, 3e-5, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)}  # every preset's lr


@dataclass
class OptimSettings:
    lr: float = setting(1e-3, group="optim", live=True, low=0, low_open=True, high=BIG, eq="Table 1", paper="3e-5 CUB, 1e-5 others",
                        help="learning rate of the backbone", ui=_LR_UI)
    lr_head: Optional[float] = setting(None, group="optim", live=True, low=0, low_open=True, high=BIG, nullable=True,
                                       help="learning rate of the hyperbolic head (none = lr)")
    lr_proxy: float = setting(1e-2, group="optim", live=True, low=0, low_open=True, high=BIG, eq="Table 1", paper="1e-2 CUB/Cars, 1e-1 SOP/In-shop",
                              help="learning rate of the loss's own parameters (the proxies)", ui=_LR_UI)
    weight_decay: float = setting(1e-4, group="optim", live=True, low=0, high=BIG, help="AdamW weight decay (the proxies get none)")
    grad_clip: Optional[float] = setting(10.0, group="optim", live=True, low=0, low_open=True, high=BIG, nullable=True,
                                         help="max gradient norm (none = no clipping)")


@dataclass
class ScheduleSettings:
    steps: int = setting(300, group="schedule", live=True, low=1, high=MAX_STEPS, eq="Table 1", paper="120 CUB, 1800 Cars, 30000 In-shop, 50000 SOP",
                         help="optimizer steps")
    eval_every: int = setting(100, group="schedule", live=True, low=0, high=MAX_STEPS,
                              help="evaluate Recall@k and MAP@R in both spaces every N steps (0 = only at the end)",
                              ui={"lo": 10, "hi": 500, "step": 10})
    eval_max: Optional[int] = setting(4000, group="schedule", live=True, low=2, high=10**7, nullable=True,
                                      help="at most this many samples per evaluated split (none = all; at least 2: "
                                           "a sample needs a neighbour)")
    eval_train: bool = setting(True, group="schedule", help="also evaluate on the training classes")
    ks: tuple = setting((1, 2, 4, 8), group="schedule", low=1, high=1000,
                        help="the k of Recall@k, e.g. 1,2,4,8 (up to SOP's 1000; each k below the samples evaluated)")
    eval_hierarchy: bool = setting(True, group="schedule", live=True,
                                   help="also score the hierarchy at each evaluation: mistake severity, super-class R@1, "
                                        "cophenetic correlation / purity / Dasgupta cost of the decoded dendrograms (average "
                                        "linkage on each space's distance, and HypHC's LCA decoding as lca_*)")
    checkpoint_every: int = setting(0, group="schedule", low=0, high=MAX_STEPS, help="write an atomic checkpoint every N steps (0 = only at the end / on Ctrl-C)")


@dataclass
class RunSettings:
    seed: int = setting(0, group="run", low=0, high=2**32 - 1,
                        help="seed of data, initialisation, batches and triplets (what NumPy's and torch's generators take)")
    device: str = setting("auto", group="run", machine=True, pattern=r"auto|cpu|cuda(:\d+)?", describe="auto, cpu, cuda or cuda:N",
                          help="auto (CUDA when available) | cpu | cuda | cuda:N", ui={"options": ("auto", "cpu", "cuda")})
    amp: bool = setting(True, group="run", machine=True, help="mixed precision on CUDA (the geometry stays float32)")
    threads: int = setting(0, group="run", low=0, high=1024, machine=True,
                           help="CPU threads for torch (0 = all cores but one: spinning threads that compete with the UI slow small models 10x)")


for _name, _cls in zip(CORE_SECTIONS, (DataSettings, ModelSettings, GeometrySettings, OptimSettings, ScheduleSettings, RunSettings)):
    register_section(_name, _cls)


# ------------------------------------------------------------------------------------------------
# a run's values
# ------------------------------------------------------------------------------------------------
class TrainConfig:
    """The values of every registered setting, validated.

    Read a setting as an attribute by its flat name (``cfg.delta_h``, ``cfg.c``) or by its key
    (``cfg["centroid_pull.c"]``, ``getattr(cfg, "centroid_pull.c")``); a section's values as its
    dataclass: ``cfg.section("centroid_pull").c``. A flat name means the core setting of that name,
    else the one section's that declares it, else the chosen loss's (a name several loss sections
    declare: :class:`AmbiguousSettingError` otherwise). Writing takes the same spellings:
    ``cfg.replace(**{"centroid_pull.c": 0.5})``.

    Immutable: :meth:`replace` returns a changed copy. ``TrainConfig.preset("demo-tree", tau=0)``
    starts from a preset of :mod:`chestlab.paper`. :meth:`to_dict` holds the core settings and the
    chosen loss's section by their keys (what ``config.json`` stores).
    """

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        v = {i: s.default_value() for i, s in _SPECS.items()}
        _assign(v, values)
        object.__setattr__(self, "_values", v)

    def _get(self, i: str) -> Any:
        values = object.__getattribute__(self, "_values")
        return values[i] if i in values else _SPECS[i].default_value()  # a loss registered after this config

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = object.__getattribute__(self, "_values")
        try:
            return self._get(_resolve(name, values[_KEYS["loss"]]))
        except SettingError as err:
            raise AttributeError(f"TrainConfig: {err}" if isinstance(err, AmbiguousSettingError)
                                 else f"TrainConfig has no setting {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        """``cfg["section.name"]`` or ``cfg["name"]``: the value of a setting (``KeyError`` for none)."""
        try:
            return self._get(_resolve(key, self._values[_KEYS["loss"]]))
        except SettingError as err:
            raise KeyError(str(err)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TrainConfig is immutable: use cfg.replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    def __getstate__(self) -> dict:
        return dict(self._values)

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "_values", dict(state))

    def replace(self, **changes: Any) -> "TrainConfig":
        new = dict(self._values)
        _assign(new, changes)
        out = TrainConfig.__new__(TrainConfig)
        object.__setattr__(out, "_values", new)
        return out

    def _ids(self) -> list[str]:
        ids = [i for i, s in _SPECS.items() if s.section in CORE_SECTIONS]
        return ids + [i for i in _FIELDS.get(self.loss, {}).values() if i not in ids]

    def keys(self) -> list[str]:
        """The settings :meth:`to_dict` holds, by key: the core sections and the chosen loss's section."""
        return [_SPECS[i].name for i in self._ids()]

    def to_dict(self) -> dict:
        out = {}
        for i in self._ids():
            v = self._get(i)
            out[_SPECS[i].name] = list(v) if isinstance(v, tuple) else v
        return out

    def section(self, name: Optional[str] = None) -> Any:
        """The dataclass of section ``name`` (default: the chosen loss's) filled with this run's values."""
        name = name or self.loss
        if name not in _SECTIONS:
            raise SettingError("section", name, "one of " + ", ".join(_SECTIONS), "not a registered section")
        return _SECTIONS[name](**{f: self._get(i) for f, i in _FIELDS[name].items()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Values from JSON (``config.json``); every value is validated, none is parsed from text.
        A flat name is read in the dict's own loss's section where several sections declare it, so a
        run stored before a plug-in that shares its names was loaded is read as it was written."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a configuration must be a JSON object of settings, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in RECORDS}
        loss = d.get("loss", "chest")
        if isinstance(loss, str) and loss not in _LOSS_OWNERS:
            raise ConfigError(f"loss = {loss}: it is not registered; import the module that defines it first: "
                              f"--plugin MODULE or CHESTLAB_PLUGINS=MODULE (registered: {', '.join(_losses())})")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        from .paper import PRESETS

        if name not in PRESETS:
            raise SettingError("preset", name, "one of " + ", ".join(PRESETS))
        return cls(**{**PRESETS[name], **overrides})


def _assign(values: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Validate ``changes`` (keys flat or ``section.name``) into ``values`` (by id), in place. A flat
    name several loss sections declare is read in the chosen loss's section (``changes``' loss, else
    ``values``'); two spellings of one setting are refused."""
    loss_id = _KEYS["loss"]
    ids: dict[str, str] = {}
    for key in changes:
        i = _KEYS.get(key)
        if i == loss_id:
            values[loss_id] = _SPECS[loss_id].validate(changes[key])
        ids[key] = i if i is not None else _resolve(key, values.get(loss_id))
    seen: dict[str, str] = {}
    for key, i in ids.items():
        if i in seen:
            raise SettingError(key, changes[key], f"{seen[i]} or {key}", f"{seen[i]} and {key} are one setting; give it once")
        seen[i] = key
        values[i] = _SPECS[i].validate(changes[key])


class ConfigError(ValueError):
    """A configuration that cannot be used (one line that says why and how to fix it)."""


#: What ``config.json`` records besides the settings: the history of live changes, the plug-in
#: modules the run used (:mod:`chestlab.plugins`).
RECORDS: tuple[str, ...] = ("history", "plugins")


# ------------------------------------------------------------------------------------------------
# rules between settings
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A broken rule between settings: ``keys`` involved, a one-line ``message`` that says how to
    fix it, and ``level`` ("error": the trainer refuses; "warning": shown, training goes on)."""

    keys: tuple[str, ...]
    message: str
    level: str = "error"

    def __str__(self) -> str:
        return self.message


def check(cfg: TrainConfig) -> list[Problem]:
    """Every rule between settings that ``cfg`` breaks (core rules, then the chosen loss's)."""
    out: list[Problem] = []
    for section, rule in _RULES:
        if section is None or section == cfg.loss:
            out.extend(rule(cfg))
    return out


@register_rule
def _batch_rules(cfg: TrainConfig) -> Iterable[Problem]:
    if cfg.m_per_class > cfg.batch_size:
        yield Problem(("m_per_class", "batch_size"),
                      f"m_per_class = {cfg.m_per_class} > batch_size = {cfg.batch_size}: a batch must hold m samples of at least one class")
    elif cfg.batch_size % cfg.m_per_class and _samples_per_class(cfg):
        lo = cfg.batch_size - cfg.batch_size % cfg.m_per_class
        yield Problem(("batch_size", "m_per_class"),
                      f"batch_size = {cfg.batch_size} is not a multiple of m_per_class = {cfg.m_per_class}: "
                      f"use batch_size = {lo} or {lo + cfg.m_per_class} (or an m_per_class that divides {cfg.batch_size})")


def dataset_info_of(cfg: TrainConfig) -> Any:
    """:func:`chestlab.data.dataset_info` of ``cfg``'s dataset and options (shapes and class counts,
    nothing generated or read), or None when the options are refused (:func:`check` says why)."""
    from .data import dataset_info

    try:
        return dataset_info(cfg.dataset, **cfg.data_options)
    except ValueError:
        return None


@register_rule
def _data_rules(cfg: TrainConfig) -> Iterable[Problem]:
    # the dataset's own options: types, ranges and the total size they make, before any is generated
    from .data import dataset_options

    try:
        dataset_options(cfg.dataset, cfg.data_options)
    except ValueError as err:
        yield Problem(("data_options", "dataset"), f"data_options = {json.dumps(cfg.data_options, default=str)}: {err}")
        return
    info = dataset_info_of(cfg)
    if info is not None:
        msg = too_big(f"a batch of batch_size = {cfg.batch_size} samples of shape {tuple(info.input_shape)}",
                      cfg.batch_size * math.prod(info.input_shape),
                      f"batch_size <= {MAX_ELEMENTS // math.prod(info.input_shape)} here, or a smaller image_size")
        if msg:
            yield Problem(("batch_size", "data_options"), msg)


@register_rule
def _eval_rules(cfg: TrainConfig) -> Iterable[Problem]:
    if cfg.eval_max is not None and max(cfg.ks) >= cfg.eval_max:
        missing = ", ".join(f"R@{k}" for k in cfg.ks if k >= cfg.eval_max)
        yield Problem(("ks", "eval_max"), f"ks = {','.join(map(str, cfg.ks))} with eval_max = {cfg.eval_max}: {missing} needs more "
                      f"than k samples and is not computed; raise eval_max above {max(cfg.ks)} or drop that k", "warning")


@register_rule
def _machine_rules(cfg: TrainConfig) -> Iterable[Problem]:
    cores = os.cpu_count() or 1
    for key in ("threads", "workers"):
        if getattr(cfg, key) > cores:
            yield Problem((key,), f"{key} = {getattr(cfg, key)} is more than this machine's {cores} CPU cores: they take "
                          "turns and each one is slower", "warning")


def _samples_per_class(cfg: TrainConfig) -> bool:
    # label-free losses draw plain random batches: m_per_class does not shape them
    return bool(getattr(_LOSS_OWNERS.get(cfg.loss), "supervised", True))


# ------------------------------------------------------------------------------------------------
# text: --set and --help
# ------------------------------------------------------------------------------------------------
def parse_assignments(items: Iterable[str], loss: Optional[str] = None) -> dict[str, Any]:
    """``["delta_h=5", "ks=1,2,4", "centroid_pull.c=0.5"]`` -> ``{"delta_h": 5.0, "ks": (1, 2, 4),
    "centroid_pull.c": 0.5}``, by each setting's key (``geometry.c=1`` -> ``{"c": 1.0}``). A flat
    name several loss sections declare is read in the section of the loss the items set, else of
    ``loss`` (the run's). A malformed item, an unknown or ambiguous key or a bad value raises
    :class:`SettingError` with one line."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise SettingError(item, item, "KEY=VALUE, e.g. --set delta_h=5", "expected KEY=VALUE")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
        if _KEYS.get(key.strip()) == _KEYS["loss"]:
            loss = get_setting("loss").parse(value)
    out: dict[str, Any] = {}
    for key, value in pairs:
        s = get_setting(key, loss)
        out[s.name] = s.parse(value)
    return out


def help_table(width: int = 17) -> str:
    """Every setting by group: name, paper symbol / equation / value, help and allowed values."""
    lines = []
    by_group: dict[str, list[Setting]] = {}
    for s in schema().values():
        by_group.setdefault(s.group, []).append(s)
    for group in GROUPS:
        rows = by_group.get(group, [])
        if not rows:
            continue
        lines.append(f"  [{group}]")
        for s in rows:
            paper = ", ".join(x for x in (s.symbol, f"Eq. {s.eq}" if s.eq[:1].isdigit() else s.eq,
                                          f"paper {s.paper}" if s.paper else "") if x)
            owner = "" if s.section in CORE_SECTIONS else f" [{s.section}]"
            live = " (live)" if s.live else ""
            default = list(s.default) if isinstance(s.default, tuple) else s.default
            lines.append(f"  {s.name:<{width}} {s.help}{' — ' + paper if paper else ''}{owner}{live}")
            lines.append(f"  {'':<{width}}   default {json.dumps(default)}; {s.allowed()}")
    return "\n".join(lines)
