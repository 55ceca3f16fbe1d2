"""Issue 19 item 2: a Pause (or Play) click answers fast because it changes nothing drawn.

* A redraw that is not a timer redraw (a click: Pause, Play, Step; a widget) holds every chart the
  browser already shows at this step under the same layout (:func:`chestlab.dashboard.page.chart_turns`
  with the page's :func:`~chestlab.dashboard.page.layout_fingerprint`), updates the others in place,
  and draws anew (a new element, mounted from scratch) only after a widget change.
* A chart held in a redraw costs no figure: the panels ask the page before they build
  (:func:`chestlab.dashboard.panels.chart.holds` / ``chart``); figure builds are counted per redraw.

Checked with the real panels on real runs (compare mode: two runs), drawn into a recording box
through :class:`~chestlab.dashboard.page.HeldCharts`, as the page's fragment does."""

from __future__ import annotations

from typing import Any

import pytest

from chestlab.dashboard import page, runner, values
from chestlab.dashboard import panels as P
from chestlab.dashboard.defaults import CHART_UPDATES
from chestlab.dashboard.panels import curves, disk, hardneg, hierarchy, similarity
from chestlab.dashboard.state import DashState
from test_dashboard import Box, small


@pytest.fixture()
def builds(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure a panel builds, as the chart key's prefix (held ones excluded: disk/level strip
    return an empty figure when told the chart is held)."""
    log: list = []

    def counted(name: str, fn: Any, held_kw: bool = False) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            if not (held_kw and k.get("held")):
                log.append(name)
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(similarity, "figure", counted("sim", similarity.figure))
    monkeypatch.setattr(curves, "figure", counted("cur", curves.figure))
    monkeypatch.setattr(disk, "figure", counted("disk", disk.figure, held_kw=True))
    monkeypatch.setattr(disk, "level_figure", counted("levels", disk.level_figure, held_kw=True))
    monkeypatch.setattr(hardneg, "figure", counted("hardneg", hardneg.figure))
    monkeypatch.setattr(hierarchy, "figures", counted("hier", hierarchy.figures))
    return log


@pytest.fixture(scope="module")
def runs() -> list:
    a, b = runner.build(small()), runner.build(small(eta_e=0.0))
    b.name = "B"
    return [a, b]


def _redraw(state: DashState, session: dict, timer: bool, keep: bool = True) -> tuple[dict, list]:
    """One redraw of the fragment's panels (compare mode), as ``page.live_panel`` does: the
    figures sent per (run, key) and the in-place updates queued."""
    fp = page.layout_fingerprint(state, session)
    state.redraws += 1
    patches: list = []
    sent: dict = {}
    shared: dict = {}
    for run in state.runs:
        ctx = P.PanelContext(state, session, run, wide=False, shared=shared)
        page.prepare(ctx, "train")
        box = Box(session)
        P.draw_run(ctx, page.HeldCharts(box, run.sent, page.chart_turns(state, run, timer, fp, keep), None, patches))
        sent.update({(run.name, k): f for k, f in box.figures().items()})
    page.refingerprint(state, fp, page.layout_fingerprint(state, session))
    return sent, patches


def _step(state: DashState) -> None:
    runner.train_chunk(state, budget_s=0.0, max_steps=1)


def test_a_click_that_changes_nothing_holds_every_chart_and_builds_no_figure(runs: list, builds: list) -> None:
    state = DashState(runs=runs)
    session: dict = {}
    values.init(state, session)
    _step(state)
    first, patches = _redraw(state, session, timer=False)  # the page opens: every chart drawn
    n = len(first)
    assert n >= 8 and patches == [] and len(builds) >= n - 1  # (a run's two hierarchy charts: one build)
    builds.clear()
    # Play, then Pause (the button's reruns), same step: every chart held, none built, none patched
    for click in ("btn_play", "btn_play"):
        session[click] = True
        again, patches = _redraw(state, session, timer=False, keep=True)
        session[click] = False
        assert builds == [] and patches == []
        assert all(again[k] is first[k] for k in first)  # the mounted figures: same elements, charts kept
    # playing: a timer redraw after a step updates CHART_UPDATES charts in place and builds only those
    _step(state)
    timer, patches = _redraw(state, session, timer=True)
    assert len(patches) == CHART_UPDATES and 1 <= len(builds) <= CHART_UPDATES
    assert all(timer[k] is first[k] for k in first)
    builds.clear()
    # Pause at this step: the charts updated at it are held, the others updated in place -- none mounted anew
    paused, patches = _redraw(state, session, timer=False)
    assert all(paused[k] is first[k] for k in first)
    assert len(patches) == n - CHART_UPDATES and builds and len(builds) <= n - CHART_UPDATES
    builds.clear()
    paused, patches = _redraw(state, session, timer=False)  # and again (the fragment's queued timer run)
    assert builds == [] and patches == []
    # a widget change (another layout, maybe): every chart drawn anew
    session["disk_grid"] = not session.get("disk_grid", False)
    changed, patches = _redraw(state, session, timer=False, keep=False)
    assert patches == [] and len(builds) >= n - 2
    assert all(changed[k] is not first[k] for k in first)
    builds.clear()
    # then Pause again: kept (drawn under this layout, at this step)
    again, patches = _redraw(state, session, timer=False, keep=True)
    assert builds == [] and patches == [] and all(again[k] is changed[k] for k in changed)
    # a view changed, and the rerun claims to be a click: the charts drawn under the other view are drawn anew
    session["disk_grid"] = not session["disk_grid"]
    again, patches = _redraw(state, session, timer=False, keep=True)
    # (the hierarchy figures are cached per step: drawn anew, they are the same objects)
    assert patches == [] and all(again[k] is not changed[k] for k in changed if not k[1].startswith("hier"))
    fp = page.layout_fingerprint(state, session)
    assert all(r.mounted[k] == fp for r in state.runs for k in r.sent)


def test_the_layout_fingerprint_ignores_buttons_and_sees_views_and_runs(runs: list) -> None:
    state = DashState(runs=runs)
    session: dict = {"compare": True, "btn_play": False}
    fp = page.layout_fingerprint(state, session)
    session["btn_play"] = True
    assert page.layout_fingerprint(state, session) == fp
    session[similarity.VIEW_KEY] = similarity.VIEWS[1]
    fp2 = page.layout_fingerprint(state, session)
    assert fp2 != fp
    assert page.layout_fingerprint(DashState(runs=runs[:1]), session) != fp2  # compare mode off: one run
    b = runs[1]
    old = b.trainer.config
    try:
        b.trainer.config = old.replace(lr=old.lr * 2)  # a live setting changed
        assert page.layout_fingerprint(state, session) != fp2
    finally:
        b.trainer.config = old


def test_a_held_chart_is_sent_without_a_figure_and_a_drawn_one_needs_one() -> None:
    from chestlab.dashboard.panels.chart import chart, holds

    class Rec:
        def __init__(self) -> None:
            self.sent: dict = {}

        def plotly_chart(self, fig: Any, key: Any = None, **k: Any) -> None:
            self.sent[key] = fig

    rec, mounted = Rec(), {}
    made: list = []
    chart(page.HeldCharts(rec, mounted, hold=True), lambda: made.append(1) or "fig1", key="k")  # never drawn: drawn
    assert made == [1] and rec.sent["k"] == "fig1"
    box = page.HeldCharts(rec, mounted, hold=True)
    assert holds(box, "k") and not holds(rec, "k") and not holds(Box({}), "k")
    chart(box, lambda: made.append(2) or "fig2", key="k")
    assert made == [1] and rec.sent["k"] == "fig1"  # held: not built, the mounted figure sent
    with pytest.raises(ValueError):
        page.HeldCharts(rec, {}, hold=False).plotly_chart(None, key="new")


def test_a_kept_redraw_holds_own_charts_and_updates_a_plugins_chart() -> None:
    """Kept (Pause, or the fragment's own rerun while paused), same step and layout: the built-in
    charts are held; a plug-in's chart, whose widgets the fingerprint does not know, is updated in
    place (never left stale); not kept (a widget's full rerun): drawn anew."""
    from chestlab.dashboard.state import Run

    class Tr:
        step_count, history = 5, []

    state, run = DashState(), Run("A", Tr())
    fp = 123
    turns = page.chart_turns(state, run, timer=False, fp=fp)
    for key in ("cur_A", "myplugin_A"):
        run.sent[key] = object()
        turns.record(key, "draw")
    again = page.chart_turns(state, run, timer=False, fp=fp, keep=True)
    assert again("cur_A") == "hold" and again("myplugin_A") == "patch"
    widget = page.chart_turns(state, run, timer=False, fp=fp, keep=False)
    assert widget("cur_A") == "draw" and widget("myplugin_A") == "draw"
    other = page.chart_turns(state, run, timer=False, fp=fp + 1, keep=True)  # another layout
    assert other("cur_A") == "draw"


def test_the_server_does_not_collect_garbage_after_every_script_run() -> None:
    """A Play/Pause click ends a script run; Streamlit's ``runner.postScriptGC`` then ran
    ``gc.collect(2)``, which held the GIL for 0.15–0.35 s while the click's new script thread waited
    to send the button (bench_app --trace: 'on_play' → 'script' 0.27–0.40 s in 3 of 11 clicks).
    The page's config turns it off, and keeps fast reruns on."""
    import tomllib
    from pathlib import Path

    cfg = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert cfg["runner"]["postScriptGC"] is False and cfg["runner"]["fastReruns"] is True
