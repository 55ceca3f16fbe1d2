"""The page: sidebar, controls row, warnings, and the training fragment that draws the panels.

How it works
    * The session's runs (trainer + step rows) live in the session's :class:`DashState`.
    * The training loop runs in chunks inside ``st.fragment(run_every=refresh)``: every refresh the
      fragment trains for ``TRAIN_FRACTION`` of the refresh period, then redraws the panels; widgets
      stay responsive because a widget change interrupts the fragment between steps. While playing,
      each timer redraw updates ``CHART_UPDATES`` charts in turn and sends the others unchanged, so
      that they stay drawn in the browser (:class:`HeldCharts`).
    * A run whose step fails (divergence, nothing to train) stops with one line that says why; its
      charts keep its last good state (:func:`prepare`); in compare mode the other run goes on.
    * Live settings go to ``Trainer.set`` and apply at the next step; structural ones need a new
      run: the page says so and offers Reset. Rules between settings (:func:`chestlab.settings.check`)
      are shown as warnings, with what the page does about them.
    * Every setting is mirrored in the URL's query parameters, so a link reopens the same experiment.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from .. import plugins
from ..settings import schema
from . import assets, runner, scenarios, trace, urlcodec, values
from .first import ROUTE as FIRST_CHART_ROUTE
from .first import hold_after_first_chart
from .defaults import BASE, CHART_UPDATES, TRAIN_FRACTION
from .fields import format_value
from .panels import PanelContext, available, cannot_draw, compare, draw_run, export, run_panels
from .presets import apply_preset
from .state import KEY, DashState, get_state
from .widgets import draw_sidebar, lazy_expander

__all__ = ["main", "body", "live_panel", "status_row", "warm_up", "draw_runs", "ordered_panels", "TITLE"]

#: Projector layout (1280×720): little padding above the page, a one-line title, compact metrics and
#: headings, so that the panel a scenario names is in view without scrolling.
_CSS = ("<style>div.block-container{padding-top:0.8rem;padding-bottom:1rem;padding-left:1.5rem;padding-right:1.5rem;}"
        # (side padding 1.5rem, not 5rem: ~110 px more for the two charts of compare mode)
        " [data-testid='stMetricValue']{font-size:1.2rem;line-height:1.3;}"
        " [data-testid='stMetricLabel']{min-height:0;}"
        " h3.chestlab-title{font-size:1.35rem;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;margin:0;padding:0 0 0.2rem 0;}"
        # (the sidebar's scenario selectbox is a text input, which cannot wrap: its labels are short instead,
        # scenarios.SHORT_MAX)
        " h4{padding:0.2rem 0 0.1rem 0;}</style>")
#: the page's title: one line at 1280 px (with the sidebar open)
TITLE = "chestlab · hyperbolic + Euclidean metric learning, live"
#: what the title's (?) says (on a projector, one line of title instead of a paragraph)
INTRO = ("CHEST (Combined Hyperbolic and Euclidean Soft Triple) trains class proxies in two spaces at once: the "
         "Poincaré ball (curvature −c) and ordinary Euclidean space. Press Play, then move any slider on the left — "
         "the next training step uses it. The (?) next to each control gives the paper's symbol and value.")
#: the largest height (px) of the charts of the panel a scenario names: with the title, the scenario box,
#: the controls and the run headers above it, it fits a 1280×720 projector
FOCUS_HEIGHT = 350
#: ... less for a panel with more above its chart (the similarity panel's heading and view radio)
FOCUS_HEIGHTS = {"similarity": 260, "disk": 290, "curves": 320}


#: the key of the hidden element that starts loading the browser's plotting library (see :func:`preload_plotly`)
PRELOAD_KEY = "chestlab_preload"


_PLOTLY_CHUNK = assets.plotly_chunk()  # PlotlyChart.<hash>.js, or None
trace.install()  # CHESTLAB_TRACE=file: timestamps of what a click sets off (benchmarks/bench_app.py --trace)


def preload_plotly(box: Any, token: Optional[str] = None) -> None:
    """A hidden element, first on the page, whose script imports Streamlit's plotly chunk (4.7 MB of
    JavaScript) at once. Without it the browser fetches and compiles that chunk only when the first
    chart arrives, after the server has built the run and its first figures; with it, both happen
    at the same time, so the first chart is drawn as soon as it arrives. The chunk is found next to
    the page's own script (``…/static/js/index.<hash>.js``), so a server path prefix is kept (the
    page's HTML already asked the browser to fetch it: :mod:`chestlab.dashboard.assets`).

    ``token`` (a new session's first run, :mod:`chestlab.dashboard.first`): the script also tells
    the server, at :data:`chestlab.dashboard.first.ROUTE`, when the first chart is drawn, so that the rest of the first
    frame goes out then."""
    if _PLOTLY_CHUNK is None and token is None:
        return
    import json

    base = "const s=[...document.scripts].find(s=>/static\\/js\\/index\\.[^/]+\\.js/.test(s.src)); if(!s) return;"
    js = ""
    if _PLOTLY_CHUNK is not None:
        js += ("(function(){if(window.__chestlabPreload) return; " + base +
               f" window.__chestlabPreload=performance.now(); import(s.src.replace(/index\\.[^/]+\\.js.*$/, {json.dumps(_PLOTLY_CHUNK)}))"
               ".then(()=>{window.__chestlabPreloaded=performance.now();}).catch(e=>console.warn('chestlab preload',e));})();")
    if token is not None:
        # at the first animation frame that shows a drawn chart: the server sends the rest of the first frame
        url = json.dumps(FIRST_CHART_ROUTE.lstrip("/") + "?t=" + token)
        js += ("(function(){" + base + " const u=s.src.replace(/static\\/js\\/index\\.[^/]+\\.js.*$/, " + url + "); const t0=performance.now();"
               " const f=()=>{ if(document.querySelector('.js-plotly-plot .main-svg')){ window.__chestlabFirstChart=performance.now();"
               " fetch(u,{method:'POST',keepalive:true}).catch(()=>{}); return; }"
               " if(performance.now()-t0 > 60000) return; requestAnimationFrame(f); }; requestAnimationFrame(f);})();")
    box.container(key=PRELOAD_KEY).html(f"<style>.st-key-{PRELOAD_KEY}{{display:none}}</style><script>{js}</script>",
                                        unsafe_allow_javascript=True)


def _threads() -> None:
    # The demo models are tiny: one intra-op thread is ~10x faster than two on a 2-core machine, where the
    # second thread competes with the Streamlit server and the browser (measured: 93 vs 10 steps/s on
    # `tree`). Set in every script run: each run is a new thread, and OpenMP's setting is per thread.
    # With a GPU too: device=auto trains the demos on the CPU (runner.pick_device).
    torch.set_num_threads(1)


# -- callbacks (run before the script, so they may write widget values) ----------------------------
def _on_preset() -> None:
    state = get_state(st.session_state)
    apply_preset(state, st.session_state, st.session_state["preset"])


def _on_scenario() -> None:
    state = get_state(st.session_state)
    name = st.session_state.get(scenarios.KEY)
    if name in scenarios.SCENARIOS:  # its settings, compare mode and view; then a new run with them
        scenarios.apply(state, st.session_state, name)
        state.want_reset = True


def _on_reset() -> None:
    get_state(st.session_state).want_reset = True


def _on_play(playing: bool) -> None:
    # sets the value the button showed (not a toggle): a callback Streamlit runs twice -- a rerun
    # interrupted by the fragment's timer is rerun with the same click -- must not undo itself
    state = get_state(st.session_state)
    state.playing = playing
    state.play_click = True  # the redraw keeps the charts as drawn (see chart_turns)
    trace.event("on_play", playing=playing)


def _on_step() -> None:
    get_state(st.session_state).pending_steps = int(st.session_state["step_n"])


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def status_row(state: DashState) -> None:
    tr = state.trainer
    rows = state.rows
    last = tr.history[-1] if tr.history else {}
    cols = st.columns(6)
    cols[0].metric("step", tr.step_count)
    rate = state.rate_wall or state.rate  # wall-clock rate of the last play, else of the last Step
    cols[1].metric("steps / s", f"{rate:.0f}" if rate else "—",
                   help="optimizer steps per wall-clock second while playing, drawing included "
                        "(before any play: the speed of the last Step)")
    cols[2].metric("loss", _fmt(rows[-1]["loss"] if rows else None))
    cols[3].metric("R@1 H (unseen)", _fmt(last.get("test/H/R@1")),
                   help="Recall@1 on the test classes (never trained on), Poincaré distance")
    cols[4].metric("R@1 E (unseen)", _fmt(last.get("test/E/R@1")), help="Recall@1 on the test classes, Euclidean distance on x^E")
    cols[5].metric("device", str(tr.device), help="auto: the CPU for a demo model of at most %d parameters (faster there than a GPU), else CUDA when present; torch threads: %d" % (runner.TINY_PARAMS, torch.get_num_threads()))


def _yield_point() -> None:
    st.session_state.get(KEY)  # a session-state access: Streamlit stops or reruns the fragment here when asked


def prepare(ctx: PanelContext, split: str) -> None:
    """Compute what the run's panels draw (similarities, disk data of ``split``) before anything is
    drawn, so that a run whose parameters went NaN/inf is caught here — stopped, explained — and not
    by a panel halfway through the page. A stopped run draws its last good computations
    (``run.good``): the plots it had when it stopped stay on screen."""
    run = ctx.run
    with run.lock:  # not while another script thread is in a step of this run (see Run.lock)
        if not run.diverged:
            try:
                ctx.similarities()
                ctx.disk_data(split)
                run.good = dict(ctx.cache)
                runner.remember(run)
                return
            except Exception as err:  # e.g. an update that left the parameters NaN with a finite loss
                runner.stop(ctx.state, run, runner.explain(run, err))
    ctx.cache.clear()
    ctx.cache.update(run.good)
    ctx.cache.setdefault("sim", None)
    disks = [k for k in run.good if isinstance(k, tuple) and k[0] == "disk"]
    if ("disk", split) not in ctx.cache and disks:
        ctx.cache[("disk", split)] = run.good[disks[0]]  # the split it had (the panel says so)


class HeldCharts:
    """A Streamlit container whose ``plotly_chart(fig, key=K)`` decides, per chart, what the browser
    does with it; containers it makes behave alike. ``hold`` (a bool, or a function of K giving a bool
    or one of ``"draw"``, ``"hold"``, ``"patch"``) says which:

    * ``"draw"`` (False): send ``fig`` and remember it under ``K`` -- a new figure is a new element
      (see below): the browser mounts it and draws it from scratch;
    * ``"hold"`` (True): send the figure last *drawn* under ``K`` again: same element, the chart
      stays as it is in the browser;
    * ``"patch"``: send the figure last drawn under ``K`` (same element: the browser keeps the chart
      and its SVG) and queue ``fig`` in ``patches``: :func:`send_patches` then updates the drawn
      chart in place with ``Plotly.react`` (the figures carry ``uirevision``: zoom and legend
      clicks survive). A chart never drawn under ``K`` is drawn.

    Why: Streamlit derives a chart's element id from its figure, and the browser's React key from
    the id, so a changed figure is a new element that is mounted blank and drawn from scratch (the
    browser also ignores a new figure sent under the *same* id: it keeps the figure it mounted).
    Redrawing every chart at every refresh kept the browser of a loaded 2-core machine so busy that
    charts were blank much of the time and a Pause click waited seconds for it. So while playing,
    charts are updated in place, ``CHART_UPDATES`` per timer redraw in turn (:func:`chart_turns`);
    a stopped run holds its charts for good; any other redraw draws them anew."""

    _WRAP_ONE = ("container", "expander", "empty", "popover")
    _WRAP_MANY = ("columns", "tabs")

    def __init__(self, box: Any, sent: dict, hold: Any, cap: Optional[int] = None,
                 patches: Optional[list] = None) -> None:
        self._box, self._sent, self._hold, self._cap = box, sent, hold, cap
        self._patches = patches

    def _mode(self, key: Any) -> str:
        hold = self._hold(key) if callable(self._hold) else self._hold
        mode = {True: "hold", False: "draw"}.get(hold, hold) if isinstance(hold, bool) else hold
        if mode != "draw" and key not in self._sent:
            return "draw"  # nothing drawn under this key yet
        if mode == "patch" and self._patches is None:
            return "hold"  # nowhere to send a patch: keep the chart as it is
        return mode

    def plotly_chart(self, fig: Any, *args: Any, key: Any = None, **kw: Any) -> Any:
        if self._cap is not None and fig is not None and hasattr(fig, "update_layout"):
            height = fig.layout.height or 450  # Streamlit's default
            if height > self._cap:
                fig.update_layout(height=self._cap)  # the scenario's panel: in view on a projector
        if key is not None:
            mode = self._mode(key)
            trace.event("chart", key=str(key), mode=mode)
            if mode == "draw":
                if fig is None:
                    raise ValueError(f"chart {key!r}: no figure to draw (holds() said it was held)")
                self._sent[key] = fig
            else:
                if mode == "patch" and fig is not None and fig is not self._sent[key]:
                    self._patches.append((str(key), fig))
                fig = self._sent[key]
            record = getattr(self._hold, "record", None)
            if record is not None:
                record(key, mode)
        return self._box.plotly_chart(fig, *args, key=key, **kw)

    def holds(self, key: Any) -> bool:
        """The chart ``key`` is held in this redraw: the browser keeps what it shows, so a panel need
        not build its figure (:func:`chestlab.dashboard.panels.chart.chart` passes None)."""
        return self._mode(key) == "hold"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._box, name)
        if name in self._WRAP_ONE:
            return lambda *a, **k: HeldCharts(attr(*a, **k), self._sent, self._hold, self._cap, self._patches)
        if name in self._WRAP_MANY:
            return lambda *a, **k: [HeldCharts(b, self._sent, self._hold, self._cap, self._patches) for b in attr(*a, **k)]
        return attr

    def __enter__(self) -> Any:
        return self._box.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._box.__exit__(*exc)


#: the key of the (hidden) element that carries the in-place chart updates of a redraw
PATCH_KEY = "chestlab_patch"
#: the browser side of :func:`send_patches`: for each (element key, figure), ``Plotly.react`` on the
#: chart drawn under that key, with what Streamlit's frontend gave it when it mounted it (its themed
#: template, its width; its height unless the figure has one; a bold title, as the theme draws it).
#: The figures wait in one queue, the newest per chart (a chart's older update not yet applied is
#: dropped: a browser that falls behind catches up instead of piling work up), and are applied one
#: chart per animation frame, the first 150 ms after they arrive, so that the redraw's other
#: elements (the Play/Pause button of a click's rerun) are shown first and a click is handled
#: between two charts, not after all of them
_PATCH_JS = """(function(){const P=window.Plotly; if(!P||!P.react) return; const figs=%s;
const q=window.__chestlabQueue=window.__chestlabQueue||{}; for(const k in figs) q[k]=figs[k];
window.__chestlabPatches=(window.__chestlabPatches||0)+1;
if(window.__chestlabBusy) return; window.__chestlabBusy=true;
const apply=(k,f)=>{const gd=document.querySelector('.st-key-'+CSS.escape(k)+' .js-plotly-plot');
 if(!gd||!gd.layout||!gd._fullLayout) return; const lay=f.layout||{};
 lay.template=gd.layout.template; lay.width=gd.layout.width; if(lay.height==null) lay.height=gd.layout.height;
 if(lay.title){const t=typeof lay.title==='string'?{text:lay.title}:lay.title;
  if(t.text&&!String(t.text).startsWith('\\x3cb>')) lay.title=Object.assign({},t,{text:'\\x3cb>'+t.text+'\\x3c/b>'});}
 try{P.react(gd,f.data||[],lay);}catch(e){console.warn('chestlab patch',k,e);}};
const next=()=>{const ks=Object.keys(q); if(!ks.length){window.__chestlabBusy=false; return;}
 const k=ks[0], f=q[k]; delete q[k]; apply(k,f); requestAnimationFrame(()=>setTimeout(next,0));};
setTimeout(next,150);})();"""


def patch_json(fig: Any) -> str:
    """``fig`` as the JSON :data:`_PATCH_JS` applies: data and layout, without the template (the
    browser keeps the themed template of the chart it drew)."""
    import plotly.io as pio

    d = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else dict(fig)
    layout = dict(d.get("layout") or {})
    layout.pop("template", None)
    return pio.to_json({"data": d.get("data") or [], "layout": layout}, validate=False)


def send_patches(box: Any, patches: list) -> None:
    """One hidden element at a fixed place (the end of the fragment) whose script updates the charts
    in ``patches`` (``(key, figure)``) in place. Drawn at every redraw (empty when there is nothing to
    update), so that it never moves the elements before it."""
    import json

    body = ",".join(f"{json.dumps(k)}:{patch_json(f)}" for k, f in patches)
    # no "<" in the script: the browser's HTML sanitiser drops a script whose text looks like markup
    # ("<b>", "<extra>" in titles and hover templates); in JSON strings "\u003c" reads as "<"
    body = body.replace("<", "\\u003c")
    style = f"<style>.st-key-{PATCH_KEY}{{display:none}}</style>"
    box.container(key=PATCH_KEY).html(f"{style}<script>{_PATCH_JS % ('{' + body + '}')}</script>",
                                      unsafe_allow_javascript=True)


#: the keys of the built-in panels' charts (their figures depend on the run's step and on the widgets
#: :func:`layout_fingerprint` reads, nothing else)
_OWN_CHARTS = ("sim_", "cur_", "disk_", "levels_", "hardneg", "hier_", "hierdisk_")


def _layout_keys() -> tuple:
    """The widget values besides the runs' settings that decide what the charts show and where:
    compare mode, the scenario (its focus panel), the panels' views."""
    from .panels import disk, hardneg, similarity

    return (("compare", "cmp_key", "cmp_value", scenarios.KEY, similarity.VIEW_KEY, "hier_decoder")
            + tuple(disk.DEFAULTS) + tuple(hardneg.OWN_KEYS.values()))


def layout_fingerprint(state: DashState, session: Any) -> int:
    """A fingerprint of everything but the training step that decides what the charts show and
    where: the runs on the page and their settings, compare mode, the scenario, the panels' views,
    the disk's UMAP. Two redraws with the same fingerprint lay the page out alike, so a chart drawn
    under one is still mounted, in place, under the other. (Named keys only: iterating the whole
    session state from a fragment is not safe while a click's fast rerun runs in another thread.)"""
    items = tuple(repr(session.get(k)) for k in _layout_keys())
    runs = tuple((r.name, id(r), bool(r.diverged), repr(sorted(r.trainer.config.to_dict().items()))
                  if r.trainer is not None else None) for r in state.runs)
    return hash((items, runs, id(state.umap)))


def refingerprint(state: DashState, old: Any, new: Any) -> None:
    """After a redraw: the charts it drew or updated under the fingerprint ``old`` (taken before
    it) count as drawn under ``new`` (taken after it): the panels set some widget values while they
    draw (a view's default, run B's greyed copy of run A's view), which the next redraw finds."""
    if old == new:
        return
    for run in state.runs:
        for k, v in run.mounted.items():
            if v == old:
                run.mounted[k] = new
        for k, tok in run.shown.items():
            if tok and tok[0] == old:
                run.shown[k] = (new,) + tuple(tok[1:])


def redraw_token(run: Any, fp: Any) -> tuple:
    """What a run's chart shows, short of building it: the layout fingerprint and the run's step,
    evaluations and rows (a figure is a function of these)."""
    tr = run.trainer
    return (fp, getattr(tr, "step_count", None), len(getattr(tr, "history", None) or ()), len(run.rows), run.diverged)


class Turns:
    """``hold`` for :class:`HeldCharts` (see :func:`chart_turns`), one per run and redraw: decides
    each chart's mode once (a panel may ask before it builds the figure: :meth:`HeldCharts.holds`)
    and records what the browser then shows (:meth:`record`)."""

    def __init__(self, state: DashState, run: Any, timer: bool, fp: Any = None, keep: bool = True) -> None:
        self.state, self.run, self.timer, self.fp, self.keep = state, run, timer, fp, keep
        self.token = redraw_token(run, fp) if fp is not None else None
        self._memo: dict = {}

    def __call__(self, key: Any) -> Any:
        if key not in self._memo:
            self._memo[key] = self._decide(key)
        return self._memo[key]

    def _decide(self, key: Any) -> Any:
        run = self.run
        mounted = key in run.sent and self.fp is not None and run.mounted.get(key) == self.fp
        same = mounted and run.shown.get(key) == self.token
        if self.timer:
            order, n = self.state.chart_order, CHART_UPDATES
            item = (run.name, key)
            if item not in order:
                order.append(item)
                if not mounted:
                    return False  # never drawn (or, without a fingerprint, not known to be)
            elif self.fp is not None and not mounted:
                return "draw"  # mounted under another layout (a widget inside the fragment changed)
            start = (self.state.redraws * n) % len(order)
            if (order.index(item) - start) % len(order) >= n or same:
                return "hold"
            return "patch"
        if self.fp is not None and (run.name, key) not in self.state.chart_order:
            self.state.chart_order.append((run.name, key))  # the order of the timer redraws' turns, complete from the start
        if not mounted or not self.keep:
            return "draw"
        # a plug-in's chart may change with a widget of its own, which the fingerprint does not know: updated
        return "hold" if same and str(key).startswith(_OWN_CHARTS) else "patch"

    def record(self, key: Any, mode: str) -> None:
        if self.fp is None:
            return
        if mode == "draw":
            self.run.mounted[key] = self.fp
        if mode in ("draw", "patch"):
            self.run.shown[key] = self.token


def chart_turns(state: DashState, run: Any, timer: bool, fp: Any = None, keep: bool = True) -> Any:
    """``hold`` for :class:`HeldCharts`: a stopped run holds every chart. A timer redraw while
    playing patches the ``CHART_UPDATES`` charts whose turn it is in place (over all runs' charts,
    in the order first drawn; a chart never drawn is drawn) and holds the others. Any other redraw
    (a click: Pause, Play, Step; a widget) with the page's layout fingerprint ``fp``
    (:func:`layout_fingerprint`): a chart mounted under the same fingerprint is held when it shows
    this step already (:func:`redraw_token`: a Pause or Play click changes nothing drawn), else
    updated in place; a chart mounted under another layout (a widget changed) is drawn anew.
    ``keep=False`` (a full rerun for anything but Play/Pause: a widget, Step, Reset) draws every
    chart anew, as does a redraw without ``fp``; a fragment's own rerun while paused (its timer's
    last one after Pause, a panel's widget) keeps them (a changed view changes ``fp``; a plug-in's
    chart is updated, never held)."""
    if run.diverged:
        return True
    if not timer and fp is None:
        return False
    return Turns(state, run, timer, fp, keep)


def stopped_warning(state: DashState, run: Any) -> str:
    """The warning of a stopped run: which run, what it changes, why, and what its plots show."""
    step = next((v.get("step") for k, v in run.good.items() if isinstance(k, tuple) and isinstance(v, dict)), None)
    shows = f" Its plots show step {step}, its last good state." if step is not None else ""
    if len(state.runs) < 2:
        return f"⚠ Training stopped. {run.diverged.rstrip('.')}.{shows}  \nChange the setting it suggests, then press Reset."
    other = next(r for r in state.runs if r is not run)
    goes_on = "" if other.diverged else f" Run {other.name} trains on (Play or Step)."
    return (f"⚠ Training stopped for run {run.name} ({run.label or 'settings as in the sidebar'}): {run.diverged.rstrip('.')}.{shows}"
            f"{goes_on}  \nChange the setting it suggests, then press Reset.")


def ordered_panels(focus: Any) -> tuple[Any, ...]:
    """The run panels (:func:`~chestlab.dashboard.panels.run_panels`: built-in, then plug-ins') with the
    panel named ``focus`` (a key of :data:`scenarios.PANELS`) first."""
    panels = run_panels()
    first = tuple(p for p in panels if _name(p) == focus)
    return first + tuple(p for p in panels if p not in first)


def hardneg_each(ctx: PanelContext, box: Any) -> None:
    """Compare mode's hard-negative panel: one figure per run, at the run's own temperatures (the
    panel of a single run is wide and has its own sliders; here each column shows its run)."""
    from chestlab.settings import schema as _schema

    from .panels import hardneg
    from .panels.chart import PLOTLY_CONFIG, chart

    cfg, sch = ctx.trainer.config, _schema()
    keys = set(cfg.keys())
    temps = {k: float(getattr(cfg, k)) if k in keys else float(sch[k].default) for k in ("t", "t_e")}
    box.markdown(f"**Hard negatives, run {ctx.name}** — weights w over the negatives sorted by distance, "
                 f"at t = {temps['t']:g}, t_E = {temps['t_e']:g}")
    d = ctx.disk_data(ctx.session.get("disk_split", "train"))
    chart(box, lambda: hardneg.figure(ctx, d, temps["t"], temps["t_e"]), key=f"hardneg_{ctx.name}", config=PLOTLY_CONFIG)


def draw_runs(state: DashState, contexts: list, timer: bool, focus: Any = None, status: Any = None,
              patches: Optional[list] = None, fp: Any = None, keep: bool = True) -> None:
    """The runs' panels, the panel ``focus`` (the scenario's) first, right under the run headers and
    above ``status()`` (the metrics row), with its charts at most :data:`FOCUS_HEIGHT` px high: on a
    1280×720 projector it is in view without scrolling. One run: its panels (columns and a
    full-width part). Compare mode: a header row, then one row per panel with run A and run B side
    by side, so that the two columns stay aligned; the hard-negative panel is drawn per run
    (:func:`hardneg_each`) where a scenario names it. Charts a timer redraw updates in place go to
    ``patches`` (see :class:`HeldCharts`); a click is noticed between two panels (:func:`_yield_point`)."""
    helds = [chart_turns(state, ctx.run, timer, fp, keep) for ctx in contexts]
    panels = ordered_panels(focus)
    status = status or (lambda: None)
    first = panels[:1] if focus is not None and panels and _name(panels[0]) == focus else ()
    cap = FOCUS_HEIGHTS.get(focus, FOCUS_HEIGHT)
    if len(contexts) == 1:
        ctx = contexts[0]
        if first:
            draw_run(ctx, HeldCharts(st.container(), ctx.run.sent, helds[0], cap, patches), first)
        status()
        _yield_point()
        draw_run(ctx, HeldCharts(st.container(), ctx.run.sent, helds[0], None, patches), tuple(p for p in panels if p not in first))
        return
    for ctx, col in zip(contexts, st.columns(len(contexts))):
        compare.header(ctx, col)
    if focus == "hardneg":
        for ctx, col, hold in zip(contexts, st.columns(len(contexts)), helds):
            try:
                hardneg_each(ctx, HeldCharts(col, ctx.run.sent, hold, FOCUS_HEIGHT, patches))
            except Exception as err:
                col.warning(cannot_draw(ctx, hardneg_panel(), err))
    done_status = False
    for panel in panels:
        drawn = [ctx for ctx in contexts if available(panel, ctx)]
        if not drawn:
            continue
        row_cap = cap if panel in first else None
        if focus is not None and not done_status and panel not in first:
            status()
            done_status = True
        for ctx, col, hold in zip(contexts, st.columns(len(contexts)), helds):
            if any(c is ctx for c in drawn):
                _yield_point()
                draw_run(ctx, HeldCharts(col, ctx.run.sent, hold, row_cap, patches), (panel,))
    if not done_status and focus is not None:
        status()


def _name(panel: Any) -> str:
    return getattr(panel, "__name__", type(panel).__name__).rsplit(".", 1)[-1]


def hardneg_panel() -> Any:
    from .panels import hardneg

    return hardneg


def live_panel(state: DashState) -> None:
    """The fragment: train a chunk (when playing or asked to step), then draw the panels. Reruns every
    ``refresh`` seconds while playing; a widget change interrupts it between steps."""
    session = st.session_state
    every = float(session["refresh"]) if state.playing else None

    @st.fragment(run_every=every)
    def panel() -> None:
        state = get_state(st.session_state)
        if state.trainer is None:
            return
        pending, state.pending_steps = state.pending_steps, 0
        full_run, state.full_run = state.full_run, False
        fresh, state.fresh = state.fresh, False
        play_click, state.play_click = state.play_click, False
        refresh = float(session["refresh"])
        trace.event("frag_start", playing=state.playing, full_run=full_run, pending=pending, fresh=fresh)
        t0 = time.perf_counter()
        done = 0
        if any(not r.diverged for r in state.runs):
            if pending:
                done = runner.train_chunk(state, budget_s=60.0, max_steps=pending, between_steps=_yield_point)
            elif state.playing and full_run and not fresh and not play_click:
                done = runner.train_chunk(state, budget_s=0.0, max_steps=1)  # a widget changed: answer it fast
            elif fresh:
                pass  # new runs (the page just opened, or Reset): their first frame first, the timer trains next
            elif state.playing:
                # TRAIN_FRACTION of each refresh trains, the rest draws and leaves the browser time to render
                done = runner.train_chunk(state, budget_s=TRAIN_FRACTION * refresh, between_steps=_yield_point)
            runner.settle(state, _yield_point)  # an evaluation a click interrupted (metrics at the step shown)
        t_train = time.perf_counter() - t0
        trace.event("trained", steps=done)
        runner.measure_rate(state, done, refresh)
        runs = state.runs
        shared: dict = {}
        contexts = [PanelContext(state, session, run, wide=len(runs) == 1, shared=shared) for run in runs]
        for ctx in contexts:
            prepare(ctx, session.get("disk_split", "train"))
        trace.event("prepared")
        notes = st.container()  # always there: a warning that appears does not shift the charts below
        for run in runs:
            if run.diverged:
                notes.warning(stopped_warning(state, run))
        # while playing, a timer redraw updates a few charts in turn; the others stay drawn (see HeldCharts)
        timer = state.playing and not full_run and not pending and not fresh
        state.redraws += 1
        focus = scenarios.focus(session)
        if focus is None:
            status_row(state)
        # a scenario's panel first, the metrics under it (see draw_runs)
        patches: list = []
        fp = layout_fingerprint(state, session)  # a Play/Pause click changes nothing drawn: the charts drawn are kept
        draw_runs(state, contexts, timer, focus, status=(lambda: status_row(state)) if focus is not None else None,
                  patches=patches, fp=fp, keep=(play_click or not full_run) and not pending and not fresh)
        send_patches(st, patches)  # the charts of this timer redraw, updated in place (hidden, always there)
        refingerprint(state, fp, layout_fingerprint(state, session))
        a = contexts[0]
        split = shared.get("disk", {}).get("disk_split", "train")
        state.snapshot = {"config": a.trainer.config.to_dict(), "rows": list(a.run.rows), "history": list(a.trainer.history),
                          "sim": a.cache.get("sim"), "disk": a.cache.get(("disk", split))}
        t_draw = time.perf_counter() - t0 - t_train
        trace.event("frag_end", timer=timer)
        state.timing = dict(steps=done, train_s=t_train, draw_s=t_draw)
        st.caption(f"Last redraw: {done} step(s) in {t_train:.2f} s, then drawing in {t_draw:.2f} s "
                   f"({'playing, refresh every %g s' % refresh if state.playing else 'paused'}).")

    panel()


def main() -> None:
    """The page (one script run). ``st.set_page_config(**chestlab.dashboard.PAGE_CONFIG)`` is the
    caller's (``app.py``: before it waits for the warm-up).

    The sidebar is drawn *last*: its widgets' values are read from the session first (they are
    there before the script runs), so the plots go out first and the browser starts loading its
    plotting library (the largest part of the first frame) before the ~30 sidebar widgets."""
    _threads()
    session = st.session_state
    state = get_state(session)
    # a new session's first frame: what follows its first chart goes out once the browser has drawn
    # that chart (else the browser draws all the first frame's charts before it shows one: first.py)
    new = state.trainer is None and not state.error and not state.redraws
    with hold_after_first_chart(get_script_run_ctx(), on=new) as token:
        _page(state, session, token)


def _page(state: DashState, session: Any, token: Optional[str]) -> None:
    st.markdown(_CSS, unsafe_allow_html=True)
    preload_plotly(st, token)  # the browser loads its plotting library while the run is built and drawn
    _plugins()
    values.init(state, session)
    if not state.url_loaded:  # once per session: the link's settings, before any widget is drawn
        state.url_loaded = True
        state.url_problems = urlcodec.load_url(state, session, st.query_params.to_dict())
    # the widgets' values, each validated by the schema (the loss and dataset first: they decide what is shown)
    invalid = values.read(state, session, ["loss", "dataset"])
    invalid += values.read(state, session, [k for k in values.shown_keys(state.values) if k not in ("loss", "dataset")])
    cfg = values.config(state)
    urlcodec.sync_url(st.query_params, urlcodec.url_query(state, session))
    body(state, cfg, invalid)
    scenarios.draw(session, st.sidebar, on_change=_on_scenario)  # above the settings it sets
    draw_sidebar(state, session, st.sidebar, on_preset=_on_preset)


def _plugins() -> None:
    """The plug-ins of ``CHESTLAB_PLUGINS`` and the entry points (before the controls: their losses and
    datasets get widgets); one line naming them, one error line per module that cannot be imported."""
    names, errors = plugins.load_environment()
    if names:
        st.sidebar.caption(f"plug-ins: {', '.join(names)}")
    for line in errors:
        st.error(line)


def body(state: DashState, cfg: Any, invalid: list[str]) -> None:
    """Everything but the sidebar: header, controls row, warnings, the panels, share and export."""
    session = st.session_state
    trace.event("script", playing=state.playing)
    do_reset, state.want_reset = state.want_reset, False
    st.markdown(f"<h3 class='chestlab-title'>{TITLE}</h3>", unsafe_allow_html=True, help=INTRO)
    for p in state.url_problems:  # shown once, in the first run
        st.warning(f"Ignored a URL setting — {p}")
    state.url_problems = []
    scenarios.info(session, st)  # the lecture scenario's question and what to look at (collapsible)
    for p in invalid:
        st.warning(f"Not applied: {p}")

    comparing = bool(session.get("compare"))
    cfg_b, label_b, cmp_problem = compare.config_b(cfg, session) if comparing else (None, "", None)
    cmp = compare.value_b(session) if comparing else None
    if do_reset or (state.trainer is None and not state.error):
        with st.spinner("Building the model and data …"):
            runner.reset(state, cfg, cfg_b, label_b, cmp)
    elif comparing and cfg_b is not None and state.trainer is not None and state.built_cmp != cmp:
        runner.reset(state, cfg, cfg_b, label_b, cmp)  # rebuild both runs so they start from the same seed
    if (not comparing or cfg_b is None) and (state.run_b is not None or state.built_cmp is not None):
        state.drop_b()  # compare mode off, or B's value refused (cmp_problem says why)

    # -- controls ---------------------------------------------------------------------------------
    c1, c2, c3, c4 = st.columns([1.1, 1.1, 1.0, 5.2])
    c1.button("Pause" if state.playing else "Play", icon=":material/pause:" if state.playing else ":material/play_arrow:",
              on_click=_on_play, args=(not state.playing,), type="primary", key="btn_play", width="stretch",
              disabled=state.trainer is None)
    trace.event("button", label="Pause" if state.playing else "Play")
    c2.button(f"Step {session['step_n']}", icon=":material/skip_next:", on_click=_on_step, key="btn_step", width="stretch",
              disabled=state.trainer is None, help="train this many steps, then redraw (change n under Page)")
    c3.button("Reset", icon=":material/restart_alt:", on_click=_on_reset, key="btn_reset", width="stretch",
              help="new model, proxies and optimizer from the current settings and seed")
    compare.render(PanelContext(state, session), c4)
    if cmp_problem:
        st.warning(cmp_problem)
    elif comparing and state.error_b:
        st.warning(f"Run B not built ({label_b}): {state.error_b} — choose another value for B, or change run A's "
                   "settings and press Reset.")

    if state.error:
        st.error(f"The trainer could not be built with these settings. {state.error}  \n"
                 "Change the setting it names (or pick another dataset/backbone pair: `tree` needs `mlp`, "
                 "`shapes`/`digits` need `cnn`), then press Reset.")
        return

    # structural settings changed since the run was built
    changed = runner.changed_structural(state.run_a.built, cfg)
    if changed:
        sch = schema()
        desc = ", ".join(f"{k}: {format_value(sch[k], a)} → {format_value(sch[k], b)}" for k, (a, b) in changed.items())
        w1, w2 = st.columns([5, 1])
        w1.warning(f"**Needs reset** — structural settings changed ({desc}). The run keeps the old ones until you press Reset.")
        w2.button("Reset now", icon=":material/restart_alt:", on_click=_on_reset, key="btn_reset2", width="stretch")

    # live settings: to the trainers, except values that break a rule between settings
    for run in state.runs:
        target = cfg if run.name == "A" else cfg_b
        if target is None:
            continue
        _, refused = runner.apply_live(run, target)
        if refused:
            st.warning(f"Not applied: {refused}")
    texts = runner.problems(cfg, state.run_a) + runner.hints(cfg)
    if state.run_b is not None and cfg_b is not None:  # run B's rules, on the trainer B actually built
        texts += [f"Run B ({label_b}): {t}" for t in runner.problems(cfg_b, state.run_b) if t not in texts]
    for text in texts:
        st.warning(text)

    state.full_run = True  # the fragment trains only briefly in a full rerun: a widget change answers fast
    live_panel(state)
    box = lazy_expander(st, export.TITLE, "export_open")  # drawn only while open
    if box is not None:
        export.render(PanelContext(state, session, query=st.query_params.to_dict()), box)


# ------------------------------------------------------------------------------------------------
# warm-up (server start, see chestlab.dashboard.warm)
# ------------------------------------------------------------------------------------------------
def warm_up(should_stop: Any = None) -> bool:
    """Do once what the first page would do: build the default run, train a step, draw every
    panel's figure (imports plotly's validators) and serialise it as Streamlit does; the data caches
    and imports stay warm. Then build the default run once more and keep it, untrained
    (:func:`chestlab.dashboard.ready.keep`): the first session with the default settings takes it
    instead of building it. ``should_stop()`` is asked between the steps; returns False when it
    stopped early."""
    from . import ready as ready_runs
    from .panels import curves, disk, hardneg, similarity

    stop = should_stop or (lambda: False)
    _threads()
    state = DashState()
    cfg = BASE
    state.runs.append(runner.build(cfg, use_warm=False))
    if stop():
        return False
    runner.train_chunk(state, budget_s=0.0, max_steps=1)
    ctx = PanelContext(state, {}, state.runs[0])
    d = ctx.disk_data("train")
    for make in (lambda: similarity.figure(ctx), lambda: curves.figure(ctx), lambda: disk.figure(d)[0],
                 lambda: hardneg.figure(ctx, d, cfg.t, cfg.t_e)):
        if stop():
            return False
        fig = make()
        if fig is not None:
            fig.to_json()
    if stop():
        return False
    # then the default run once more, untrained, for the first session to take (runner.build)
    ready = runner.build(cfg, use_warm=False)
    ready_runs.keep(ready.trainer, torch.get_rng_state())
    return True
