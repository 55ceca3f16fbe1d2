"""The setting values behind the sidebar, kept in :attr:`DashState.values` and in the widgets.

Every value is validated by the schema before it reaches the config (:func:`read`): a value the
schema refuses is reported in one line and the last valid value is kept. The sidebar shows the
core settings and the settings of the *chosen* loss only (:func:`shown_keys`: what
:meth:`TrainConfig.keys` holds, less :data:`~.defaults.HIDDEN` and the settings that name a file or
folder), so a plug-in loss registered with :func:`chestlab.losses.register_loss` gets its controls
without any change here. The run's config is :func:`config`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from chestlab.settings import SettingError, TrainConfig, path_keys, schema

from .defaults import BASE, HIDDEN, VIEW_DEFAULTS, default
from .fields import format_value, from_widget, to_widget, wkey
from .state import DashState
from .text import literal, refusal

__all__ = ["shown_keys", "init", "set_value", "read", "ensure_widgets", "config"]


def shown_keys(values: Mapping[str, Any]) -> list[str]:
    """The settings the sidebar shows for these values: the core sections and the chosen loss's
    section (:meth:`TrainConfig.keys`), less :data:`HIDDEN` and the settings that name a file or
    folder (``Setting.path``)."""
    loss = values.get("loss", BASE.loss)
    try:
        keys = BASE.replace(loss=loss).keys()
    except SettingError:  # a loss that is no longer registered
        keys = BASE.keys()
    paths = path_keys()
    return [k for k in keys if k not in HIDDEN and k not in paths]


def init(state: DashState, session: MutableMapping) -> None:
    """Fill in the defaults: every setting's value (also of losses registered since the last run)
    and the page widgets."""
    for name in schema():
        if name not in state.values:
            state.values[name] = default(name)
    for key, value in VIEW_DEFAULTS.items():
        session.setdefault(key, state.view.get(key, value))


def set_value(state: DashState, session: MutableMapping, name: str, value: Any) -> None:
    """Set a setting (validated) and its widget: before the widget is drawn (a callback, the URL)."""
    s = schema()[name]
    value = s.validate(value)
    state.values[name] = value
    session[wkey(name)] = to_widget(s, value)


def read(state: DashState, session: MutableMapping, keys: list[str]) -> list[str]:
    """Read the widgets of ``keys`` into ``state.values``, each validated by the schema; returns one
    line per refused value (the last valid value is kept)."""
    problems = []
    sch = schema()
    for name in keys:
        k = wkey(name)
        if k not in session:
            continue
        try:
            state.values[name] = from_widget(sch[name], session[k])
        except SettingError as err:
            shown = format_value(sch[name], state.values.get(name))
            kept = literal(shown) if sch[name].type in (str, dict) else shown  # text is shown literally
            problems.append(f"{refusal(err)} — the page keeps {name} = {kept}")
    return problems


def ensure_widgets(state: DashState, session: MutableMapping, keys: list[str]) -> None:
    """Give the widgets about to be drawn their value (a widget drawn again after a run without it —
    the section of a loss chosen again — starts from the kept value, not from its default)."""
    sch = schema()
    for name in keys:
        if wkey(name) not in session:
            session[wkey(name)] = to_widget(sch[name], state.values[name])


def config(state: DashState) -> TrainConfig:
    """The run's config from the validated values (a path setting keeps the page's default, whatever
    the values hold)."""
    paths = path_keys()
    return BASE.replace(**{k: v for k, v in state.values.items() if k in schema() and k not in paths})
