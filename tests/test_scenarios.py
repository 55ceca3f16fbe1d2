"""The dashboard's lecture scenarios (chestlab.dashboard.scenarios): a catalogue of at least eight
guided experiments whose settings are valid (schema, rules between settings, run B's range), and
each opens from its link ``?scenario=NAME`` (AppTest) with its settings, compare mode, view and
info box; the sidebar's selectbox switches between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chestlab.dashboard import defaults, fields, scenarios, urlcodec, values, widgets
from chestlab.dashboard.compare import check_compare, compare_keys
from chestlab.dashboard.panels import similarity
from chestlab.dashboard.state import DashState
from chestlab.paper import LOSS_PRESETS, PRESETS
from chestlab.settings import TrainConfig, check, schema

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 90
NAMES = list(scenarios.SCENARIOS)


def test_the_temperature_collapse_has_a_scenario() -> None:
    sc = scenarios.SCENARIOS["temperature-collapse"]
    assert sc.panel == "disk" and scenarios.config(sc.name).t == pytest.approx(0.05) and sc.compare == ("t", 0.5)


def test_the_preset_box_follows_the_scenario_until_a_setting_changes() -> None:
    state, session = DashState(), {}
    values.init(state, session)
    scenarios.apply(state, session, "pair-ce-temperature")
    assert scenarios.shown_preset(state.values, session) == "Pairwise CE — hyperbolic"
    values.set_value(state, session, "t", 0.2)  # the scenario's own t changed by hand: no longer its preset
    assert scenarios.shown_preset(state.values, session) is None
    scenarios.apply(state, session, "euclidean-limit")  # no loss preset
    assert scenarios.shown_preset(state.values, session) is None


def test_the_catalogue() -> None:
    assert len(NAMES) >= 8
    for name, sc in scenarios.SCENARIOS.items():
        assert sc.name == name and name == name.lower() and " " not in name  # a URL name
        assert sc.title and sc.question.rstrip().endswith("?") and len(sc.look_at) > 40
        assert sc.base in PRESETS and (sc.loss_preset is None or sc.loss_preset in LOSS_PRESETS)
        assert sc.settings or sc.loss_preset or sc.compare  # it prepares something
    assert scenarios.find("EUCLIDEAN-limit") == "euclidean-limit"
    assert scenarios.find(scenarios.SCENARIOS["hier-on-tree"].title) == "hier-on-tree"
    assert scenarios.find("nope") is None


@pytest.mark.parametrize("name", NAMES)
def test_scenario_settings_are_valid(name: str) -> None:
    """Its config builds (every value in the schema's range), breaks no rule between settings, and
    run B's setting is one compare mode offers, with a value inside its range."""
    sc = scenarios.SCENARIOS[name]
    cfg = scenarios.config(name)
    assert isinstance(cfg, TrainConfig)
    errors = [p for p in check(cfg) if p.level == "error"]
    assert not errors, errors
    for key, value in sc.settings.items():
        assert getattr(cfg, key) == value
    for key, value in (LOSS_PRESETS[sc.loss_preset] if sc.loss_preset else {}).items():
        if value is not None and key not in sc.settings:  # the scenario's own settings win
            assert getattr(cfg, key) == value
    values = {k: getattr(cfg, k) for k in schema() if hasattr(cfg, k)}
    if sc.compare is not None:
        key, value = sc.compare
        assert key in compare_keys(values)
        check_compare(schema()[key], value)
        assert cfg.replace(**{key: value}) is not None
        assert getattr(cfg, key) != value  # run B differs from run A
    for key, value in sc.view.items():
        assert key in defaults.VIEW_DEFAULTS or key == similarity.VIEW_KEY
        if key == similarity.VIEW_KEY:
            assert value in similarity.VIEWS


def test_apply_resets_the_page_first_and_writes_the_link() -> None:
    state, session = DashState(), {}
    values.init(state, session)
    values.set_value(state, session, "gamma_h", 7.0)  # a change made before the scenario
    scenarios.apply(state, session, "margin-never-met")
    assert state.values["gamma_h"] == defaults.BASE.gamma_h and state.values["delta_h"] == 20.0
    assert session[fields.wkey("delta_h")] == 20.0
    assert session["compare"] and (session["cmp_key"], session["cmp_value"]) == ("delta_h", 1.0)
    assert session[similarity.VIEW_KEY] == similarity.VIEWS[1] and session[scenarios.KEY] == "margin-never-met"
    link = urlcodec.url_query(state, session)
    assert link["scenario"] == "margin-never-met" and link["delta_h"] == "20.0" and link["cmp"] == "delta_h:1"
    # a scenario without compare mode turns it off; a value moved back to the default stays in the link
    scenarios.apply(state, session, "h-only-fig3")
    state.values["eta_e"] = 1.0
    assert urlcodec.url_query(state, session)["eta_e"] == "1.0"
    assert urlcodec.load_url(state, session, {"scenario": "nope"})[0].startswith("`scenario=nope`")  # echoed in a code span, never as Markdown


# ------------------------------------------------------------------------------------------------
# the page (AppTest)
# ------------------------------------------------------------------------------------------------
def _run(at: Any) -> Any:
    at = at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _page(**query: str) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key in widgets.LAZY_SECTIONS:
        at.session_state[key] = True
    at.query_params.update(query)
    return at


@pytest.mark.parametrize("name", NAMES)
def test_each_scenario_opens_from_its_link(name: str) -> None:
    sc = scenarios.SCENARIOS[name]
    at = _run(_page(scenario=name))
    assert not at.error, [e.value for e in at.error]
    dash = at.session_state["dash"]
    cfg = dash.trainer.config
    want = scenarios.config(name)
    for key in sc.values(defaults.BASE):
        if key not in defaults.HIDDEN:
            assert getattr(cfg, key) == getattr(want, key), key
    assert at.selectbox(key="scenario").value == name
    info = " ".join(i.value for i in at.info)
    assert sc.title in info and sc.question[:40] in info and "Look at" in info
    if sc.compare is not None:
        key, value = sc.compare
        assert dash.trainer_b is not None and getattr(dash.trainer_b.config, key) == pytest.approx(value)
    else:
        assert dash.trainer_b is None
    for key, value in sc.view.items():
        assert at.session_state[key] == value
    assert at.query_params.get("scenario") in (name, [name])  # the link is written back
    # the panel "look at" names is drawn, for every run (compare mode: run A and run B), and drawn first
    words, prefix = scenarios.PANELS[sc.panel]
    assert sc.look_at.startswith(words), (sc.look_at[:40], words)
    at = _run(at.button(key="btn_step").click())  # the similarities exist from the first step on
    ids = [c.proto.id for c in at.get("plotly_chart")]
    runs = ("A", "B") if sc.compare is not None else ("A",)
    for run in runs:
        want = f"{prefix}_{run}" if (sc.compare is not None or sc.panel != "hardneg") else prefix
        assert any(i.endswith("-" + want) for i in ids), (want, ids)
    first = ids[0].rsplit("-", 1)[-1]
    assert first.startswith(prefix), (first, prefix)
    # the scenario box: collapsible, headed by the full title; run B in the paper's symbols
    assert any(sc.title in e.label for e in at.get("expander"))
    if sc.compare is not None:
        sym = schema()[sc.compare[0]].symbol or sc.compare[0]
        heads = " ".join(m.value for m in at.markdown)
        assert f"Run B: {sym} = {sc.compare[1]:g}" in heads, heads[:300]
    # a scenario that sets a loss preset: the preset box names it, not "none (settings changed)"
    if sc.loss_preset:
        assert at.selectbox(key="preset").value == sc.loss_preset


def test_link_settings_override_the_scenario_and_the_selectbox_switches() -> None:
    at = _run(_page(scenario="euclidean-limit", c="0.05"))
    assert at.session_state["dash"].trainer.config.c == pytest.approx(0.05)
    at.selectbox(key="scenario").set_value("clip-radius")
    _run(at)
    dash = at.session_state["dash"]
    assert dash.trainer.config.r == pytest.approx(0.5) and dash.trainer.config.c == defaults.BASE.c  # rebuilt, reset
    assert dash.trainer_b is not None and dash.trainer_b.config.r == pytest.approx(4.0)
    assert "What r controls" in " ".join(i.value for i in at.info)
    _run(at.button(key="btn_step").click())
    assert dash.trainer.step_count > 0
    at.selectbox(key="scenario").set_value(scenarios.NONE)
    _run(at)
    assert not [i for i in at.info if "Lecture scenario" in i.value]


def test_a_bad_scenario_link_is_reported() -> None:
    at = _run(_page(scenario="no-such-thing"))
    assert any("scenario=no-such-thing" in w.value for w in at.warning)
    assert at.session_state["dash"].trainer is not None


def test_sidebar_labels_are_short_and_name_their_scenario() -> None:
    """The sidebar's selectbox (a text input at 1280×720: it cuts what is longer) shows each scenario's
    short label; the scenario box keeps the full title; a link may name either."""
    for name, sc in scenarios.SCENARIOS.items():
        assert 0 < len(sc.label) <= scenarios.SHORT_MAX, (name, sc.label)
        assert scenarios.find(sc.label) == name and scenarios.find(sc.title) == name
        assert scenarios._label(name) == sc.label
        if len(sc.title) > scenarios.SHORT_MAX:  # a long title has a short label, and the two differ
            assert sc.short and sc.short != sc.title
    assert scenarios.SCENARIOS["margin-never-met"].title == "δ_H = 20: a margin that is never met"
