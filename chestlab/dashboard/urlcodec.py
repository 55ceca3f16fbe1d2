"""The page's URL query: a link reopens the same experiment.

``?delta_h=5&loss=mix&preset=H+only&cmp=eta_e:0&play=1&scenario=clip-radius``: a lecture scenario
(:mod:`.scenarios`), a loss preset (:func:`.presets.find_preset`), one parameter per setting (parsed
with :meth:`Setting.parse`, :func:`parse_url_value`), compare mode (``cmp=SETTING:VALUE``) and play.
:func:`load_url` applies a query, :func:`url_query` writes the settings that differ from the page's
defaults back, :func:`sync_url` puts it into the address bar.

A setting's name is used as it is, an opaque string (``hier.margin`` is a parameter like any
other); the only names the codec reads itself are :data:`RESERVED`. A setting that names a file or
folder is refused from a link, its value unread (:func:`.defaults.path_reason`). Text echoed from a
link is shown literally (:func:`.text.literal`), never as Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from chestlab.paper import LOSS_PRESETS
from chestlab.settings import Setting, SettingError, schema

from . import scenarios
from .compare import check_compare, compare_keys
from .defaults import HIDDEN, default, path_reason
from .fields import format_value, page_check
from .presets import apply_preset, find_preset
from .state import DashState
from .text import literal, refusal, refusal_reason
from .values import set_value, shown_keys

__all__ = ["RESERVED", "parse_url_value", "load_url", "url_query", "sync_url"]

#: The query parameters that are not settings: the loss preset, compare mode, play, the lecture scenario.
RESERVED = ("preset", "cmp", "play", scenarios.KEY)


def parse_url_value(s: Setting, text: str) -> Any:
    """A URL value -> a valid value the page's widget can show, or :class:`SettingError`."""
    return page_check(s, s.parse(text))


def load_url(state: DashState, session: MutableMapping, query: Mapping[str, str]) -> list[str]:
    """Apply the URL's settings (once per session; before the widgets are drawn): the scenario first,
    then the preset, then the settings (they override the preset's), compare mode, play. Returns one
    line per ignored parameter, naming the key, the value (shown literally, :func:`literal`) and what
    is allowed. A setting that names a file or folder is refused, its value unread."""
    problems: list[str] = []
    sch = schema()
    q = dict(query)
    if scenarios.KEY in q:  # a lecture scenario first: the preset and settings of the link apply on top of it
        problems += scenarios.load_url(state, session, q)
    if "preset" in q:
        found = find_preset(q["preset"])
        if found is not None:
            session["preset"] = found
            apply_preset(state, session, found)
        else:
            problems.append(f"{literal('preset=' + q['preset'])}: choose one of {', '.join(LOSS_PRESETS)} "
                            "(or the short name in parentheses, e.g. H only)")
    for key, text in q.items():
        if key in RESERVED:
            continue
        head = literal(f"{key}={text}")
        if key not in sch:
            problems.append(f"{head}: not a setting (see python -m chestlab.train --help)")
        elif sch[key].path:
            problems.append(f"{literal(key + '=...')}: not set from a link — {key} is {path_reason(key + '=...')}")
        elif key in HIDDEN:
            problems.append(f"{head}: not set on this page — {HIDDEN[key]}")
        else:
            try:
                set_value(state, session, key, parse_url_value(sch[key], text))
            except SettingError as err:
                problems.append(f"{head}: {refusal_reason(err)}")
    if "cmp" in q:  # compare mode: run B = A with one setting changed
        key, _, text = q["cmp"].partition(":")
        allowed = compare_keys(state.values)
        head = f"{literal('cmp=' + q['cmp'])} (run B's setting, compare mode off)"
        if key not in allowed:
            problems.append(f"{head}: write cmp=SETTING:VALUE with SETTING one of {', '.join(allowed)}")
        else:
            try:
                value = check_compare(sch[key], sch[key].parse(text))
                session["compare"], session["cmp_key"], session["cmp_value"] = True, key, float(value)
            except SettingError as err:
                problems.append(f"{head}: {refusal(err)}")
    if q.get("play", "").lower() in ("1", "true", "yes"):
        state.playing = True
    return problems


def url_query(state: DashState, session: Mapping) -> dict[str, str]:
    """The query that reopens this experiment: the shown settings that differ from the page's
    defaults, compare mode, and the lecture scenario (with the settings it changes)."""
    sch = schema()
    want = {k: format_value(sch[k], v) for k in shown_keys(state.values)
            if (v := state.values.get(k)) != default(k)}
    if session.get("compare"):
        want["cmp"] = f"{session['cmp_key']}:{float(session['cmp_value']):g}"
    if session.get(scenarios.KEY):  # the lecture scenario chosen (its info box); the settings above override it
        want.update(scenarios.url_params(state, session))
    return want


def sync_url(query_params: Any, want: Mapping[str, str]) -> None:
    """Write ``want`` into the address bar (``st.query_params``) when it differs."""
    if query_params.to_dict() != dict(want):
        query_params.from_dict(dict(want))
