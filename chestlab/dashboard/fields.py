"""One setting of the schema (:func:`chestlab.settings.schema`) and the value of its widget.

Each setting gets one widget, its kind chosen from the declaration (:func:`widget_kind`):

======================================  ==============================================
declaration                             widget
======================================  ==============================================
``ui={"lo", "hi", "step"}``             slider over that range
``ui={"options": (...)}``               selectbox of those options
``choices`` (≤ 3 words; and ``loss``)  horizontal radio
``choices`` (more)                      selectbox
``bool``                                toggle
``int`` / ``float``                     number input (min/max from ``low``/``high``)
nullable, ``str``, ``tuple``, ``dict``  text input, read with :meth:`Setting.parse`
======================================  ==============================================

A value goes to its widget as :func:`to_widget` writes it (text for text inputs, :func:`format_value`)
and comes back through :func:`from_widget`: validated by the schema, then by :func:`page_check`
(what the widget can show on this page; never a file or folder of the server). The widget of
setting ``name`` has the session key :func:`wkey` (``w_<name>``; the name is used as it is).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from chestlab.settings import Setting, SettingError

from .defaults import PAGE_ONLY, PAGE_RANGE, path_reason

__all__ = ["wkey", "widget_kind", "options_of", "format_value", "to_widget", "page_check", "from_widget"]


def wkey(name: str) -> str:
    """The widget key of setting ``name``."""
    return f"w_{name}"


def options_of(s: Setting) -> Optional[list]:
    """The values a select/radio offers: the ``ui`` options, else the setting's choices."""
    opts = list(s.ui["options"]) if s.ui.get("options") is not None else s.options()
    if opts is not None and s.name in PAGE_ONLY:
        opts = [o for o in opts if o in PAGE_ONLY[s.name][0]]
    return opts


def widget_kind(s: Setting) -> str:
    """slider | select | radio | toggle | number | text (see the module's table)."""
    if s.name == "loss":
        return "radio"
    if "lo" in s.ui and "hi" in s.ui:
        return "slider"
    if s.ui.get("options") is not None:
        return "select"
    opts = s.options()
    if opts is not None:
        return "radio" if len(opts) <= 3 and all(isinstance(o, str) for o in opts) else "select"
    if s.type is bool:
        return "toggle"
    if s.nullable or s.type in (str, tuple, dict):
        return "text"
    if s.type in (int, float):
        return "number"
    return "text"


def format_value(s: Setting, value: Any) -> str:
    """A value as text that :meth:`Setting.parse` reads back (the URL, text inputs)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def to_widget(s: Setting, value: Any) -> Any:
    """A setting's value as its widget holds it (text for text inputs)."""
    return format_value(s, value) if widget_kind(s) == "text" else value


def page_check(s: Setting, value: Any) -> Any:
    """``value`` (valid for the schema) if the widget can show it: inside the slider's range, one of
    the select's options; never a file or folder of the server (a path setting, a dataset option
    that names one). Else :class:`SettingError`."""
    kind = widget_kind(s)
    if s.path and value is not None:
        raise SettingError(s.name, value, "none on this page", path_reason(f"{s.name}=..."))
    if s.type is dict and isinstance(value, dict):
        from chestlab.data import path_options

        named = [k for k in value if k in path_options()]
        if named:
            raise SettingError(s.name, value, f"options without {', '.join(named)} on this page",
                               f"{named[0]} is " + path_reason(f'{s.name}={{"{named[0]}": ...}}'))
    if kind == "slider" and value is not None:
        lo, hi = s.ui["lo"], s.ui["hi"]
        if not lo <= value <= hi:
            raise SettingError(s.name, value, f"{lo:g} to {hi:g} on this page", "outside the slider")
    elif s.name in PAGE_RANGE and value is not None:
        lo, hi = PAGE_RANGE[s.name]
        if not lo <= value <= hi:
            raise SettingError(s.name, value, f"{lo:g} to {hi:g} on this page" + (" or none" if s.nullable else ""),
                               "too large for this page's CPU" if value > hi else "out of range")
    elif kind in ("select", "radio"):
        opts = options_of(s) or []
        if value not in opts:
            why = "not offered on this page (" + PAGE_ONLY[s.name][1] + ")" if s.name in PAGE_ONLY else ""
            raise SettingError(s.name, value, "one of " + ", ".join(format_value(s, o) for o in opts) + " on this page", why)
    return value


def from_widget(s: Setting, raw: Any) -> Any:
    """A widget's value -> the setting's validated value, or :class:`SettingError` (one line)."""
    if widget_kind(s) == "text":
        return page_check(s, s.parse("" if raw is None else str(raw)))
    if s.type is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    return page_check(s, s.validate(raw))
