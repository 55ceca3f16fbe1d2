"""The sidebar, generated from the settings schema (:func:`chestlab.settings.schema`).

One widget per setting, its kind chosen from the declaration (:func:`widget_kind`):

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

Label = :attr:`Setting.label` (name, paper symbol, equation), help = :attr:`Setting.help` + the
paper's value + :meth:`Setting.allowed` + live/Reset. The sidebar shows the core settings and the
settings of the *chosen* loss only (what :meth:`TrainConfig.keys` holds), so a plug-in loss registered
with :func:`chestlab.losses.register_loss` gets its controls without any change here; a few settings
that make no sense on the page are left out (:data:`HIDDEN`, each with its reason).

Every value is validated by the schema before it reaches the config (:func:`read`): a value the
schema refuses is reported in one line and the last valid value is kept. The URL query
(``?delta_h=5&loss=mix&preset=H+only&cmp=eta_e:0&play=1``) is parsed with :meth:`Setting.parse`
(:func:`load_url`), and the settings that differ from the page's defaults are written back
(:func:`url_query`), so a link reopens the same experiment.

Nothing from a link or a widget reads the server's files: settings that name a file or folder
(``Setting.path``: ``data_root``, ``hierarchy_file``, ``weights``) and the dataset options that do
(:func:`chestlab.data.path_options`) are not offered, and a link that sets them is refused. Text
echoed from a link or a text box is shown literally (:func:`literal`), never as Markdown.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Optional

from chestlab.paper import LOSS_PRESETS
from chestlab.settings import Setting, SettingError, TrainConfig, path_keys, schema

from .state import DashState

__all__ = [
    "BASE", "HIDDEN", "SIDEBAR", "literal", "escape", "refusal", "path_reason", "LOSS_PRESETS", "REFRESH_S", "TRAIN_FRACTION", "COMPARE_FIRST",
    "wkey", "widget_kind", "options_of", "format_value", "to_widget", "label_of", "help_of", "shown_keys", "init", "set_value",
    "ensure_widgets", "lazy_expander", "section_key", "LAZY_SECTIONS",
    "apply_preset", "matching_preset", "NO_PRESET", "from_widget", "parse_url_value", "read", "config", "load_url", "url_query", "sync_url",
    "compare_keys", "compare_range", "check_compare", "find_preset", "widget", "draw_sidebar", "PAGE_ONLY", "PAGE_RANGE",
]

#: The page's defaults: the ``demo-tree`` preset with a small evaluation (≤ 0.5 s UI block) and one
#: torch thread (the demo models are tiny: on a 2-core machine a second intra-op thread competes with
#: the Streamlit server and the browser, measured 93 vs 10 steps/s on ``tree``).
BASE = TrainConfig.preset("demo-tree", eval_every=50, eval_max=600, threads=1)

#: Settings the page does not offer, and why (the URL reports them too).
HIDDEN: dict[str, str] = {
    "steps": "the page trains until you press Pause",
    "eval_max": "the page evaluates at most 600 samples per split, to stay responsive",
    "checkpoint_every": "the page writes no run folder",
    "threads": "the page trains with one CPU thread, so the browser keeps the other core",
    "workers": "the page loads data in its own process",
}

#: Choices the page leaves out, and why (offered: only what builds and trains on the page). The ViT
#: backbones fix D_E to their own width (dim_e must be none) and need images: on this page's
#: datasets they would train at a few steps per second at best.
PAGE_ONLY: dict[str, tuple[Any, str]] = {
    "backbone": (("mlp", "cnn"), "the page offers mlp (tree) and cnn (shapes, digits); the paper's ViTs (D_E fixed by "
                 "the network, 224-px images) train with python -m chestlab.train --preset cub200"),
}

#: Sizes the page bounds although the schema does not (a value beyond them would take minutes per
#: step or all the memory of the demo machine): setting -> (lowest, highest).
PAGE_RANGE: dict[str, tuple[int, int]] = {"dim_e": (1, 1024), "hier_proxies": (2, 1024), "pretrain_steps": (0, 300)}

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


def path_reason(assignment: str) -> str:
    """Why a link or the page may not set a setting (``Setting.path``) or dataset option that names a
    file or folder: ``assignment`` is how to give it on the command line (``data_root=...``)."""
    return (f"a file or folder path on the server: the page and its links never set one; give it on the command line "
            f"(python -m chestlab.train --set '{assignment}')")


#: Default redraw period (s): the browser timer drifts, so a bit under 1 s keeps "at least once a second".
REFRESH_S = 0.8
#: Share of each refresh spent training; the rest draws and leaves the (shared) CPU to the browser.
TRAIN_FRACTION = 0.4
#: Charts redrawn per timer redraw while playing, in turn (the others are sent unchanged and stay
#: drawn): the browser draws an updated chart from scratch, and drawing every chart at every
#: refresh kept a loaded 2-core machine's browser so busy that charts went blank and a Pause click
#: waited seconds (see chestlab.dashboard.page.HeldCharts). A widget change redraws them all.
CHART_UPDATES = 3

#: Settings offered first for compare mode (run B = run A with one of them changed); then every
#: other numeric setting the sidebar shows.
COMPARE_FIRST = ("eta_e", "eta_h", "tau", "c", "delta_h", "delta_e", "gamma_h", "r", "K", "dim_h", "lr")

#: Page widgets that are not settings: key -> default.
VIEW_DEFAULTS: dict[str, Any] = dict(refresh=REFRESH_S, step_n=10, disk_split="train", disk_grid=False, disk_circles=True,
                                     disk_view="fast projection", compare=False, cmp_key="eta_e", cmp_value=0.0,
                                     preset=next(iter(LOSS_PRESETS)))


def wkey(name: str) -> str:
    """The widget key of setting ``name``."""
    return f"w_{name}"


def literal(text: Any, limit: int = 80) -> str:
    """``text`` (from a link or a text box) as Markdown that shows it literally: one line, clipped
    to ``limit`` characters, in a code span whose backtick fence is longer than any run of
    backticks inside, so no link, image, emphasis, colour or emoji shortcode in it is rendered."""
    one = " ".join(str(text).split())
    if not one:
        return "(empty)"
    if len(one) > limit:
        one = one[: limit - 1] + "…"
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", one)), default=0))
    pad = " " if one[:1] == "`" or one[-1:] == "`" else ""
    return f"{fence}{pad}{one}{pad}{fence}"


def escape(text: str) -> str:
    """Prose for the page's Markdown with every character Markdown gives a meaning (links, images,
    emphasis, code, HTML, headings, tables, maths, a colon of a URL or shortcode) backslash-escaped:
    it reads as written."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$:])", r"\\\1", " ".join(text.split()))


def _shown(err: SettingError) -> str:
    return err.value if isinstance(err.value, str) and err.value else repr(err.value)  # as SettingError shows it


def _why(err: SettingError) -> str:
    """"c = -3: out of range; allowed: ..." -> "out of range; allowed: ..." (the key/value are shown apart)."""
    text = str(err)
    head = f"{err.key} = {_shown(err)}: "
    return text[len(head):] if text.startswith(head) else text


def refusal(err: SettingError) -> str:
    """A refused value's one line, a text value shown literally: ``key = `value`: why; allowed: ...``
    (a number as it is: ``K = 2.5: ...``)."""
    number = err.value is None or isinstance(err.value, (bool, int, float))
    return f"{err.key} = {_shown(err) if number else literal(_shown(err))}: {_why(err)}"


# ------------------------------------------------------------------------------------------------
# one setting -> one widget
# ------------------------------------------------------------------------------------------------
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


def _ui_check(s: Setting, value: Any) -> Any:
    """Values the widget can show: inside the slider's range, one of the select's options; never a
    file or folder of the server (a path setting, a dataset option that names one)."""
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
        return _ui_check(s, s.parse("" if raw is None else str(raw)))
    if s.type is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    return _ui_check(s, s.validate(raw))


def parse_url_value(s: Setting, text: str) -> Any:
    """A URL value -> a valid value the page's widget can show, or :class:`SettingError`."""
    return _ui_check(s, s.parse(text))


# ------------------------------------------------------------------------------------------------
# the values
# ------------------------------------------------------------------------------------------------
def _default(name: str) -> Any:
    return getattr(BASE, name)


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
            state.values[name] = _default(name)
    for key, value in VIEW_DEFAULTS.items():
        session.setdefault(key, state.view.get(key, value))


def set_value(state: DashState, session: MutableMapping, name: str, value: Any) -> None:
    """Set a setting (validated) and its widget: before the widget is drawn (a callback, the URL)."""
    s = schema()[name]
    value = s.validate(value)
    state.values[name] = value
    session[wkey(name)] = to_widget(s, value)


#: What the preset box shows when the settings match no preset (changed by hand, or by a link)
NO_PRESET = "— none (settings changed) —"


def _preset_holds(preset: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, want in preset.items():
        have = values.get(key)
        if key == "K" and want is None:  # "keep the current K, at least 2"
            if not (isinstance(have, int) and have >= 2):
                return False
        elif isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
            if not math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif have != want:
            return False
    return True


def matching_preset(values: Mapping[str, Any], current: Optional[str] = None) -> str:
    """The loss preset the settings ``values`` follow: ``current`` while they still do, else the
    first that holds, else :data:`NO_PRESET` — so the preset box never names a preset the page no
    longer trains (e.g. "CHEST (paper)" after a link set ``loss=chest_hier``)."""
    if current in LOSS_PRESETS and _preset_holds(LOSS_PRESETS[current], values):
        return current
    return next((name for name, p in LOSS_PRESETS.items() if _preset_holds(p, values)), NO_PRESET)


def apply_preset(state: DashState, session: MutableMapping, name: str) -> None:
    """Write a loss preset of :data:`chestlab.paper.LOSS_PRESETS` into the values and widgets
    (``K=None``: keep the current K, at least 2). :data:`NO_PRESET` writes nothing."""
    if name not in LOSS_PRESETS:
        return
    for key, value in LOSS_PRESETS[name].items():
        if key == "K" and value is None:
            value = max(2, int(state.values.get("K", 2)))
        set_value(state, session, key, value)


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


# ------------------------------------------------------------------------------------------------
# the URL
# ------------------------------------------------------------------------------------------------
def compare_keys(values: Mapping[str, Any]) -> list[str]:
    """Settings run B may change: the numeric settings the sidebar shows, :data:`COMPARE_FIRST` first."""
    sch = schema()
    numeric = [k for k in shown_keys(values) if sch[k].type in (int, float)]
    return [k for k in COMPARE_FIRST if k in numeric] + [k for k in numeric if k not in COMPARE_FIRST]


def compare_range(s: Setting) -> tuple[Optional[float], Optional[float]]:
    """The values run B may take for setting ``s`` (the bounds of the compare value box): the
    schema's range; for a structural or an integer setting also the sidebar's range (slider ends,
    smallest and largest option): it sizes the model, the data or the work of a step, and a value
    outside what the sidebar offers can take minutes or all the memory (``dim_h = 1e6``,
    ``M = 1e9`` triplets). A live real value (a rate, a weight, a margin) may be anything the schema
    allows: the worst it does is diverge, which the page reports (``lr = 1e9``)."""
    lo = s.low
    hi = s.high
    if s.name in PAGE_RANGE:
        lo, hi = PAGE_RANGE[s.name]
    elif not s.live or s.type is int:
        ends: list[float] = []
        if "lo" in s.ui and "hi" in s.ui:
            ends = [s.ui["lo"], s.ui["hi"]]
        else:
            opts = [o for o in (options_of(s) or []) if isinstance(o, (int, float)) and not isinstance(o, bool)]
            ends = [min(opts), max(opts)] if opts else []
        if ends:
            lo = ends[0] if lo is None else max(lo, ends[0])
            hi = ends[1] if hi is None else min(hi, ends[1])
    return lo, hi


def check_compare(s: Setting, value: Any) -> Any:
    """Run B's ``value`` of setting ``s``, validated by the schema and inside :func:`compare_range`,
    or :class:`SettingError` (one line: key, value, allowed range)."""
    value = s.validate(value)
    lo, hi = compare_range(s)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (f"from {lo:g} to {hi:g}" if lo is not None and hi is not None else f">= {lo:g}" if lo is not None
                  else f"<= {hi:g}")
        raise SettingError(s.name, value, f"{s.name} {bounds} for run B on this page", "out of range")
    return value


def find_preset(name: str) -> Optional[str]:
    """The loss preset a URL names: its full name, or the short name in its parentheses, any case
    (``preset=H+only`` -> "Hyperbolic only (H only)")."""
    if name in LOSS_PRESETS:
        return name
    want = " ".join(name.lower().split())
    for full in LOSS_PRESETS:
        short = full[full.find("(") + 1: full.rfind(")")] if "(" in full and full.endswith(")") else ""
        if want in (full.lower(), short.lower()):
            return full
    return None


def load_url(state: DashState, session: MutableMapping, query: Mapping[str, str]) -> list[str]:
    """Apply the URL's settings (once per session; before the widgets are drawn): the preset first,
    then the settings (they override the preset's), compare mode, play. Returns one line per ignored
    parameter, naming the key, the value (shown literally, :func:`literal`) and what is allowed. A
    setting that names a file or folder is refused, its value unread."""
    problems: list[str] = []
    sch = schema()
    q = dict(query)
    if "scenario" in q:  # a lecture scenario first: the preset and settings of the link apply on top of it
        from .scenarios import load_url as load_scenario

        problems += load_scenario(state, session, q)
    if "preset" in q:
        found = find_preset(q["preset"])
        if found is not None:
            session["preset"] = found
            apply_preset(state, session, found)
        else:
            problems.append(f"{literal('preset=' + q['preset'])}: choose one of {', '.join(LOSS_PRESETS)} "
                            "(or the short name in parentheses, e.g. H only)")
    for key, text in q.items():
        if key in ("preset", "cmp", "play", "scenario"):
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
                problems.append(f"{head}: {_why(err)}")
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
    defaults, and compare mode."""
    sch = schema()
    want = {k: format_value(sch[k], v) for k in shown_keys(state.values)
            if (v := state.values.get(k)) != _default(k)}
    if session.get("compare"):
        want["cmp"] = f"{session['cmp_key']}:{float(session['cmp_value']):g}"
    if session.get("scenario"):  # the lecture scenario chosen (its info box); the settings above override it
        from .scenarios import url_params

        want.update(url_params(state, session))
    return want


def sync_url(query_params: Any, want: Mapping[str, str]) -> None:
    """Write ``want`` into the address bar (``st.query_params``) when it differs."""
    if query_params.to_dict() != dict(want):
        query_params.from_dict(dict(want))


# ------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------
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
    session["preset"] = matching_preset(state.values, session.get("preset"))  # before the box is drawn
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
