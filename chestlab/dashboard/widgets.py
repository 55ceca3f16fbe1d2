"""Drawing the sidebar generated from the settings schema (:func:`chestlab.settings.schema`).

One widget per setting (:func:`widget`; its kind from the declaration, :func:`.fields.widget_kind`).
Label = :attr:`Setting.label` (name, paper symbol, equation), help = :attr:`Setting.help` + the
paper's value + :meth:`Setting.allowed` + live/Reset (:func:`help_of`). The sidebar
(:func:`draw_sidebar`) shows the loss presets, one section per :data:`SIDEBAR` entry with the
settings the page shows (:func:`.values.shown_keys`), and the page's own controls; a closed
section's widgets are not drawn (:func:`lazy_expander`).
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any, Optional

from chestlab.paper import LOSS_PRESETS
from chestlab.settings import Setting, schema

from .defaults import PAGE_ONLY, PAGE_RANGE, TRAIN_FRACTION
from .fields import options_of, widget_kind, wkey
from .presets import NO_PRESET, matching_preset
from .state import DashState
from .values import ensure_widgets, shown_keys

__all__ = ["SIDEBAR", "PAGE_NOTES", "label_of", "help_of", "widget", "lazy_expander", "section_key", "LAZY_SECTIONS",
           "draw_sidebar"]

#: The sidebar's sections: title and the setting groups (:data:`chestlab.settings.GROUPS`) they show.
SIDEBAR: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("Data, model and run", ("data", "model", "run"), False),
    ("Geometry", ("geometry",), True),
    ("Loss", ("loss",), True),
    ("Optimisation and evaluation", ("optim", "schedule"), False),
)

#: Extra help the page adds to a setting.
PAGE_NOTES: dict[str, str] = {
    "eval_every": "The page evaluates at most 600 samples per split, to stay responsive.",
    **{k: f"On this page: {why}." for k, (_, why) in PAGE_ONLY.items()},
}


def label_of(s: Setting, marker: bool = False) -> str:
    return ("⟳ " if marker and not s.live else "") + s.label


def help_of(s: Setting) -> str:
    eq = f"Eq. {s.eq}" if s.eq[:1].isdigit() else s.eq
    paper = ", ".join(x for x in (s.symbol, eq, f"paper: {s.paper}" if s.paper else "") if x)
    text = s.help[:1].upper() + s.help[1:]
    parts = [text + ("" if text.endswith(".") else "."), f"({paper})" if paper else "", f"Allowed: {s.allowed()}.",
             "Live: applies at the next step." if s.live else "Needs Reset: a new run is built with it.",
             PAGE_NOTES.get(s.name, "")]
    return " ".join(p for p in parts if p)


def _nice_step(default: Any) -> float:
    if not isinstance(default, (int, float)) or default == 0 or not math.isfinite(default):
        return 0.1
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def widget(s: Setting, box: Any, key: str, *, label: Optional[str] = None, help: Optional[str] = None) -> Any:
    """Draw the widget of setting ``s`` in ``box`` (``st``, a container, or a test double); its value
    is ``session[key]``. Returns what the widget returns."""
    label = label or s.label
    help = help if help is not None else help_of(s)
    kind = widget_kind(s)
    if kind == "slider":
        cast = int if s.type is int else float
        return box.slider(label, min_value=cast(s.ui["lo"]), max_value=cast(s.ui["hi"]), step=cast(s.ui.get("step", 1 if cast is int else 0.1)),
                          key=key, help=help)
    if kind == "select":
        fmt = (lambda x: f"{x:g}") if s.type is float else str
        return box.selectbox(label, options_of(s), key=key, help=help, format_func=fmt)
    if kind == "radio":
        return box.radio(label, options_of(s), key=key, help=help, horizontal=True)
    if kind == "toggle":
        return box.toggle(label, key=key, help=help)
    if kind == "number":
        lo = None if s.low is None or s.low_open else s.low
        hi = s.high
        if s.name in PAGE_RANGE:
            lo, hi = PAGE_RANGE[s.name]
        if s.type is int:
            return box.number_input(label, min_value=None if lo is None else int(lo), max_value=None if hi is None else int(hi),
                                    step=1, key=key, help=help)
        step = float(s.ui.get("step", _nice_step(s.default)))
        return box.number_input(label, min_value=None if lo is None else float(lo), max_value=None if hi is None else float(hi),
                                step=step, format="%g", key=key, help=help)
    return box.text_input(label, key=key, help=help, placeholder="none" if s.nullable else "")


def lazy_expander(box: Any, label: str, key: str, expanded: bool = False) -> Optional[Any]:
    """An expander whose content is drawn only while it is open: its container, or None while it is
    closed (opening it reruns the page). A closed section's widgets are not sent to the browser,
    which keeps the first frame light; their values live on in ``DashState.values``. (Streamlit
    versions without lazy expanders: an ordinary expander, always drawn.)"""
    try:
        exp = box.expander(label, expanded=expanded, key=key, on_change="rerun")
    except TypeError:
        return box.expander(label, expanded=expanded)
    return None if getattr(exp, "open", None) is False else exp


def _section_title(title: str, specs: list[Setting], loss: str, groups: tuple[str, ...]) -> str:
    if groups == ("loss",):
        title = f"Loss: {loss}"
    live = [s.live for s in specs]
    if all(live):
        return f"{title} — live"
    if not any(live):
        return f"{title} — need Reset"
    return f"{title} — live (⟳ = needs Reset)"


def draw_sidebar(state: DashState, session: MutableMapping, sb: Any, on_preset: Any = None) -> None:
    """The whole sidebar in ``sb`` (``st.sidebar``): the loss presets, one expander per
    :data:`SIDEBAR` section with the shown settings of its groups, and the page's own controls."""
    sch = schema()
    keys = shown_keys(state.values)
    ensure_widgets(state, session, keys)
    sb.header("Settings")
    from .scenarios import shown_preset  # a scenario's preset stays named under the scenario's own overrides

    session["preset"] = shown_preset(state.values, session) or matching_preset(state.values, session.get("preset"))
    sb.selectbox("Loss preset", [*LOSS_PRESETS, NO_PRESET], key="preset", on_change=on_preset,
                 help="The trainings of Tables 6–7 (η_H, η_E, K, τ) and the hard-negative paper's losses. "
                      "Sets the controls below; K and loss need Reset.")
    for title, groups, expanded in SIDEBAR:
        specs = [sch[k] for k in keys if sch[k].group in groups]
        if not specs:
            continue
        mixed = len({s.live for s in specs}) > 1
        label = _section_title(title, specs, state.values.get("loss", ""), groups)
        # open sections are drawn at once; closed ones only when opened (a lighter first frame)
        box = sb.expander(label, expanded=True) if expanded else lazy_expander(sb, label, section_key(groups))
        for s in specs if box is not None else ():
            widget(s, box, wkey(s.name), label=label_of(s, marker=mixed))
    page = lazy_expander(sb, "Page", "sb_page")
    if page is not None:
        page.slider("refresh every (s)", 0.4, 3.0, step=0.1, key="refresh",
                    help=f"Plots redraw this often while playing; {TRAIN_FRACTION:.0%} of the time trains.")
        page.slider("steps per ‘Step’ click", 1, 200, key="step_n")
        state.view.update(refresh=session["refresh"], step_n=session["step_n"])


def section_key(groups: tuple[str, ...]) -> str:
    """The widget key of a sidebar section's expander (its open state), e.g. ``sb_data``."""
    return "sb_" + groups[0]


#: widget keys of the sections drawn only while open
LAZY_SECTIONS: tuple[str, ...] = tuple(section_key(g) for _, g, expanded in SIDEBAR if not expanded) + ("sb_page",)
