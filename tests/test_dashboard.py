"""The dashboard package (``chestlab.dashboard``) piece by piece, without a Streamlit server: each
panel's ``render`` into a recording fake container, the sidebar generated from the settings schema
(with a plug-in loss registered here), every value validated by the schema, URL parsing, the runner's
rules. The page as a whole (AppTest, headless Chromium) is in ``test_app.py``; one AppTest here runs
the page with the plug-in loss.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

from chestlab.dashboard import defaults, fields, presets, runner, urlcodec, values, warm, widgets
from chestlab.dashboard import panels as P
from chestlab.dashboard.compare import compare_keys
from chestlab.dashboard.panels import compare, curves, disk, export, hardneg, similarity
from chestlab.dashboard.state import DashState, Run, get_state
from chestlab.losses import Loss, LossOutput, list_losses, register_loss
from chestlab.settings import GROUPS, SettingError, TrainConfig, schema, setting
from test_settings_namespaces import spring  # noqa: F401  (the plug-in loss fixture: spring.c, spring.t)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


# ------------------------------------------------------------------------------------------------
# a plug-in loss: its settings must show up in the sidebar, the URL and the config by themselves
# ------------------------------------------------------------------------------------------------
PLUGIN = "test_dash_loss"

if PLUGIN not in list_losses():

    @register_loss(PLUGIN)
    class _DashTestLoss(Loss):
        """Pull each embedding towards the batch mean of its class (a tiny centre loss)."""

        @dataclass
        class Settings:
            dash_pull: float = setting(1.0, group="loss", live=True, low=0, symbol="ρ", help="weight of the pull")
            dash_mode: str = setting("mean", group="loss", live=True, choices=("mean", "sum"), help="how to reduce")
            dash_width: int = setting(3, group="loss", low=1, high=9, ui={"lo": 1, "hi": 9, "step": 1}, help="a structural integer")

        parts = ("pull",)

        def forward(self, x_e: torch.Tensor, x_h: torch.Tensor, labels: torch.Tensor) -> LossOutput:
            onehot = torch.nn.functional.one_hot(labels).float()
            means = (onehot.T @ x_e) / onehot.sum(0).clamp(min=1)[:, None]
            err = (x_e - means[labels]).pow(2).sum(1)
            pull = err.mean() if self.settings.dash_mode == "mean" else err.sum()
            total = self.settings.dash_pull * pull
            return LossOutput(total, {"pull": pull.detach()})


# ------------------------------------------------------------------------------------------------
# a container that records what a panel draws
# ------------------------------------------------------------------------------------------------
class Box:
    """Stands for ``st`` / a Streamlit container: records every call (in one log shared by the boxes
    it hands out) and answers widgets with the session's value (else a default)."""

    def __init__(self, session: Optional[dict] = None, log: Optional[list] = None, path: str = "") -> None:
        self.session = session if session is not None else {}
        self.log = log if log is not None else []
        self.path = path

    def _child(self, name: str) -> "Box":
        return Box(self.session, self.log, f"{self.path}/{name}")

    def _rec(self, method: str, args: tuple, kwargs: dict) -> None:
        self.log.append((self.path, method, args, kwargs))

    # layout
    def columns(self, spec: Any, **kw: Any) -> list["Box"]:
        self._rec("columns", (spec,), kw)
        n = spec if isinstance(spec, int) else len(spec)
        return [self._child(f"col{i}") for i in range(n)]

    def container(self, **kw: Any) -> "Box":
        self._rec("container", (), kw)
        return self._child("container")

    def expander(self, label: str, **kw: Any) -> "Box":
        self._rec("expander", (label,), kw)
        child = self._child(f"expander:{label}")
        if kw.get("on_change") == "rerun":  # a lazy expander: open as the session says
            child.open = bool(self.session.get(kw.get("key"), kw.get("expanded", False)))
        return child

    def progress(self, *a: Any, **kw: Any) -> "Box":
        self._rec("progress", a, kw)
        return self._child("progress")

    def empty(self) -> None:
        self._rec("empty", (), {})

    def __enter__(self) -> "Box":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    # widgets: the session's value, else the widget's default
    def _widget(self, method: str, label: str, default: Any, kw: dict) -> Any:
        self._rec(method, (label,), kw)
        key = kw.get("key")
        return self.session[key] if key in self.session else default

    def slider(self, label: str, min_value: Any = None, max_value: Any = None, **kw: Any) -> Any:
        return self._widget("slider", label, min_value, dict(kw, min_value=min_value, max_value=max_value))

    def selectbox(self, label: str, options: Any, **kw: Any) -> Any:
        return self._widget("selectbox", label, list(options)[0], dict(kw, options=list(options)))

    def radio(self, label: str, options: Any, **kw: Any) -> Any:
        return self._widget("radio", label, list(options)[0], dict(kw, options=list(options)))

    def toggle(self, label: str, **kw: Any) -> Any:
        return self._widget("toggle", label, False, kw)

    def number_input(self, label: str, **kw: Any) -> Any:
        return self._widget("number_input", label, kw.get("min_value") or 0, kw)

    def text_input(self, label: str, **kw: Any) -> Any:
        return self._widget("text_input", label, "", kw)

    def button(self, label: str, **kw: Any) -> bool:
        self._rec("button", (label,), kw)
        return False

    def download_button(self, label: str, data: Any, *a: Any, **kw: Any) -> bool:
        self._rec("download_button", (label, data) + a, kw)
        return False

    def __getattr__(self, name: str) -> Any:  # markdown, caption, info, warning, error, plotly_chart, header, …
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*a: Any, **kw: Any) -> None:
            self._rec(name, a, kw)

        return call

    # reading the log
    def calls(self, method: str) -> list[tuple]:
        return [(args, kw) for _, m, args, kw in self.log if m == method]

    def keys(self, method: Optional[str] = None) -> list[str]:
        return [kw.get("key") for _, m, _, kw in self.log if (method is None or m == method) and kw.get("key")]

    def figures(self) -> dict[str, Any]:
        return {kw["key"]: args[0] for args, kw in self.calls("plotly_chart")}

    def text(self) -> str:
        return " ".join(str(a[0]) for _, m, a, _ in self.log if m in ("markdown", "caption", "info", "warning", "error") and a)


def small(**kw: Any) -> TrainConfig:
    return defaults.BASE.replace(eval_every=0, eval_max=200, **kw)


@pytest.fixture(scope="module")
def run_a() -> Run:
    """A chest run, one step trained (so it has similarities)."""
    run = runner.build(small())
    state = DashState(runs=[run])
    runner.train_chunk(state, budget_s=0.0, max_steps=1)
    return run


def ctx_of(run: Optional[Run], session: Optional[dict] = None, **kw: Any) -> P.PanelContext:
    state = DashState(runs=[run] if run is not None else [])
    values.init(state, session if session is not None else {})
    return P.PanelContext(state, session if session is not None else {}, run, **kw)


# ------------------------------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------------------------------
def test_session_state_is_one_typed_object() -> None:
    session: dict = {}
    state = get_state(session)
    assert isinstance(state, DashState) and session["dash"] is state and get_state(session) is state
    assert state.trainer is None and state.trainer_b is None and state.rows == [] and not state.playing
    a, b = Run("A", trainer="ta", rows=[{"step": 1}]), Run("B", trainer="tb")
    state.runs = [a, b]
    assert (state.trainer, state.trainer_b, state.rows, state.run_b) == ("ta", "tb", [{"step": 1}], b)
    state.drop_b()
    assert state.trainer_b is None and state.run_a is a
    state.diverged, state.umap = "boom", {"xy": 1}
    state.clear()
    assert state.runs == [] and state.diverged is None and state.umap is None
    session["dash"] = object()  # e.g. left by an older version of the module
    assert isinstance(get_state(session), DashState)


# ------------------------------------------------------------------------------------------------
# panels, rendered into a recording container
# ------------------------------------------------------------------------------------------------
def test_every_panel_module_has_the_interface() -> None:
    for panel in P.RUN_PANELS + P.PAGE_PANELS:
        assert isinstance(panel.TITLE, str) and panel.TITLE
        assert panel.SLOT in ("left", "right", "below", "page")
        assert callable(panel.render)
    assert [p.__name__.rsplit(".", 1)[1] for p in P.RUN_PANELS] == ["similarity", "curves", "disk", "hardneg", "hierarchy"]


def test_similarity_panel_before_a_step_and_after() -> None:
    fresh = runner.build(small())
    box = Box()
    similarity.render(ctx_of(fresh), box)
    assert not box.calls("plotly_chart") and "Press Play or Step" in box.text()


def test_similarity_panel_draws_fig3(run_a: Run) -> None:
    box = Box()
    similarity.render(ctx_of(run_a), box)
    figs = box.figures()
    assert list(figs) == ["sim_A"]
    fig = figs["sim_A"]
    assert len(fig.data) >= 4 and sum(len(t.x) for t in fig.data if t.type == "histogram") > 0
    assert "margin δ" in box.text()


def test_curves_panel(run_a: Run) -> None:
    box = Box()
    curves.render(ctx_of(run_a), box)
    fig = box.figures()["cur_A"]
    assert any(t.name and "total" in t.name for t in fig.data)  # the loss per step
    # the run's loss names the total and its parts; a regulariser gets the log axis right of the loss
    assert fig.data[0].name.startswith("total L = η_H L_H + η_E L_E + τ L_HypHC")
    hyphc = [t for t in fig.data if t.name.startswith("L_HypHC")]
    assert (run_a.trainer.config.tau > 0) == bool(hyphc)
    for t in hyphc:
        assert fig.layout["yaxis" + t.yaxis[1:]].type == "log" and "log axis right of the loss" in box.text()


def test_disk_panel_draws_the_disk_and_run_as_controls(run_a: Run) -> None:
    session = {"disk_grid": True}
    box = Box(session)
    ctx = ctx_of(run_a, session)
    disk.render(ctx, box)
    assert list(box.figures()) == ["disk_A", "levels_A"]  # the disk, then its level strip
    assert {"disk_split", "disk_grid", "disk_circles", "disk_view", "btn_umap"} <= set(box.keys())
    assert ctx.shared["disk"]["disk_grid"] is True and ctx.shared["disk"]["disk_split"] == "train"
    d = ctx.cache[("disk", "train")]
    assert d["xy"].shape[1] == 2 and d["pxy"].shape[:2] == (run_a.trainer.train_set.num_classes, 2)  # K = 2 proxies
    # run B (compare mode) uses A's options and draws no controls of its own
    box_b = Box(session)
    ctx_b = P.PanelContext(ctx.state, session, Run("B", run_a.trainer), wide=False, shared=ctx.shared)
    disk.render(ctx_b, box_b)
    assert list(box_b.figures()) == ["disk_B", "levels_B"] and not box_b.keys("radio")


def test_disk_panel_draws_the_hierarchy_and_its_level_strip() -> None:
    """The page's default run (the tree, its super-classes "branch A-D"): a node per super-class at the
    gyro-midpoint of its classes' proxies, the root at the nodes' midpoint (geoopt's midpoint as the
    oracle), and a level strip whose points are the mean d_H(0, .) per level at each drawn step."""
    import geoopt.manifolds.stereographic.math as gm

    from chestlab.viz.geometry import project_to_disk
    from chestlab.viz.style import super_color

    run = runner.build(small())
    state = DashState(runs=[run])
    tr, c = run.trainer, float(run.trainer.config.c)
    k = torch.tensor(-c, dtype=torch.float64)
    steps = []
    for _ in range(2):  # two drawn steps: two points per line of the strip
        runner.train_chunk(state, budget_s=0.0, max_steps=1)
        box = Box()
        disk.render(ctx_of(run), box)
        steps.append(tr.step_count)
    figs = box.figures()
    prox = tr.proxies()["h"].double()
    cs = np.asarray(tr.train_set.class_to_super)
    nodes = torch.stack([gm.weighted_midpoint(prox[torch.as_tensor(cs == s)].reshape(-1, prox.shape[-1]), k=k, reducedim=[0])
                         for s in range(4)])
    root = gm.weighted_midpoint(nodes, k=k, reducedim=[0])
    emb = tr.embed("train", 600)
    node = next(t for t in figs["disk_A"].data if t.name == "super-class nodes")
    np.testing.assert_allclose(np.column_stack([node.x, node.y]), project_to_disk(nodes, c, fit_on=emb["x_h"]), atol=1e-6)
    assert list(node.marker.color) == [super_color(s) for s in range(4)] and list(node.customdata) == list("ABCD")
    sq = next(t for t in figs["disk_A"].data if t.name == "root" and t.x[0] is not None)
    np.testing.assert_allclose([sq.x[0], sq.y[0]], project_to_disk(root[None], c, fit_on=emb["x_h"])[0], atol=1e-6)
    entries = [t.name for t in figs["disk_A"].data if list(t.x) == [None]]
    assert entries[:4] == ["branch A", "branch B", "branch C", "branch D"]
    d0 = lambda x: float(gm.dist0(torch.as_tensor(x, dtype=torch.float64), k=k).mean())  # noqa: E731
    want = {"root": d0(root[None]), "super-classes": d0(nodes), "classes (proxies)": d0(prox.reshape(-1, prox.shape[-1])),
            "samples": d0(emb["x_h"])}
    strip = figs["levels_A"]
    assert {t.name for t in strip.data} == set(want)
    for t in strip.data:
        assert list(t.x) == steps and t.y[-1] == pytest.approx(want[t.name], rel=1e-5)
    assert "gyro-midpoint" in box.text()


def test_disk_panel_umap_request_uses_a_progress_bar(run_a: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from chestlab.viz import geometry

    def fake_umap(x_h: Any, c: float, seed: int = 0, fit_on_proxies: Any = None) -> Any:
        xy = np.zeros((len(x_h), 2))
        return (xy, np.zeros((len(fit_on_proxies), 2))) if fit_on_proxies is not None else xy

    monkeypatch.setattr(geometry, "umap_disk", fake_umap)
    session: dict = {}
    ctx = ctx_of(run_a, session)
    ctx.state.umap_requested = True
    box = Box(session)
    disk.render(ctx, box)
    assert box.calls("progress") and ctx.state.umap is not None and session["disk_view"] == "UMAP"
    assert "UMAP" in box.text() and not ctx.state.umap_requested


def test_hard_negative_panel(run_a: Run) -> None:
    session: dict = {}
    box = Box(session)
    ctx = ctx_of(run_a, session)
    assert hardneg.available(ctx) and not hardneg.available(P.PanelContext(ctx.state, session, Run("B", None), wide=False))
    hardneg.render(ctx, box)
    fig = box.figures()["hardneg"]
    c = run_a.trainer.config.c
    assert len(fig.data) == 1 + len(sorted({round(c, 3), 0.1, 1.0} - {0.0}))  # sphere + one curve per curvature
    # chest has no t / t_e: the panel offers its own sliders, made from the schema's settings
    assert set(box.keys("slider")) == {"hn_t", "hn_t_e"}
    assert session["hn_t"] == schema()["t"].default


def test_export_panel_and_its_downloads(run_a: Run) -> None:
    ctx = ctx_of(run_a, query={"delta_h": "5.0"})
    box = Box()
    export.render(ctx, box)
    assert set(box.keys("download_button")) == {"dl_cfg", "dl_csv", "dl_similarity_html", "dl_similarity_png",
                                                "dl_disk_html", "dl_disk_png", "dl_curves_html", "dl_curves_png"}
    assert "?delta_h=5.0" in box.text()
    tr = run_a.trainer
    snap = {"config": tr.config.to_dict(), "rows": list(run_a.rows), "history": list(tr.history),
            "sim": tr.similarities(), "disk": disk.data(tr, "train")}
    ctx.state.snapshot = snap
    data = {args[0]: args[1] for args, _ in box.calls("download_button")}
    assert TrainConfig.from_dict(json.loads(data["config (JSON)"]())) == tr.config
    assert data["metrics (CSV)"]().startswith("step,")
    assert "<html>" in data["training curves (HTML)"]()[:200].lower()
    with pytest.raises(RuntimeError, match="no similarities"):
        export.similarity_figure(dict(snap, sim=None), False)


def test_compare_panel_and_run_b_validated_by_the_schema() -> None:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    box = Box(session)
    compare.render(P.PanelContext(state, session), box)
    assert box.keys() == ["compare"]  # off: only the toggle
    session.update(compare=True, cmp_key="not_a_numeric_setting")
    box = Box(session)
    compare.render(P.PanelContext(state, session), box)
    (args, kw), = box.calls("selectbox")
    assert kw["options"] == compare_keys(state.values) and kw["options"][:3] == ["eta_e", "eta_h", "tau"]
    assert session["cmp_key"] == "eta_e"  # an unknown key falls back to the first offered
    cfg = values.config(state)
    session.update(cmp_key="eta_e", cmp_value=0.0)
    cfg_b, label, problem = compare.config_b(cfg, session)
    assert cfg_b.eta_e == 0.0 and cfg_b.eta_h == cfg.eta_h and label.startswith("η_E = 0") and problem is None
    session.update(cmp_key="K", cmp_value=3.0)
    assert compare.config_b(cfg, session)[0].K == 3
    session.update(cmp_key="K", cmp_value=2.5)
    cfg_b, _, problem = compare.config_b(cfg, session)
    assert cfg_b is None and "K = 2.5" in problem and "integer" in problem


def test_draw_run_lays_the_panels_out(run_a: Run) -> None:
    session: dict = {}
    box = Box(session)
    P.draw_run(ctx_of(run_a, session), box)
    assert box.calls("columns")[0][0] == ([3, 2],)
    assert set(box.figures()) == {"sim_A", "cur_A", "disk_A", "levels_A", "hardneg", "hier_A"}
    # in compare mode a run is one column, and the wide hard-negative figure is left out
    box = Box(session)
    P.draw_run(P.PanelContext(DashState(runs=[run_a]), session, Run("B", run_a.trainer, rows=run_a.rows), wide=False), box)
    assert set(box.figures()) == {"sim_B", "cur_B", "disk_B", "levels_B", "hier_B"}


@pytest.mark.parametrize("loss", ["pair_ce", "mix", PLUGIN])
def test_panels_for_losses_without_proxies_or_similarities(loss: str) -> None:
    run = runner.build(small(loss=loss))
    state = DashState(runs=[run])
    runner.train_chunk(state, budget_s=0.0, max_steps=2)
    assert state.diverged is None and run.trainer.proxies() is None and run.trainer.similarities() is None
    session: dict = {}
    box = Box(session)
    ctx = P.PanelContext(state, session, run)
    P.draw_run(ctx, box)
    assert set(box.figures()) == {"cur_A", "disk_A", "levels_A", "hardneg", "hier_A"}  # no histograms: explained instead
    assert "computes no class similarities" in box.text()
    assert ctx.cache[("disk", "train")]["pxy"] is None
    own = set(box.keys("slider"))  # the run's own temperatures are used where its loss has them
    assert own == {"pair_ce": {"hn_t_e"}, "mix": {"hn_t"}, PLUGIN: {"hn_t", "hn_t_e"}}[loss]


# ------------------------------------------------------------------------------------------------
# controls generated from the schema
# ------------------------------------------------------------------------------------------------
def test_widget_kinds_come_from_the_declarations() -> None:
    sch = schema()
    kinds = {k: fields.widget_kind(s) for k, s in sch.items()}
    assert kinds["c"] == kinds["delta_h"] == kinds["K"] == "slider"
    assert kinds["dim_h"] == kinds["device"] == kinds["lr"] == kinds["dataset"] == kinds["batch_size"] == "select"
    assert kinds["hyphc"] == kinds["pair_space"] == kinds["loss"] == kinds["euclid_space"] == "radio"
    assert kinds["pretrained"] == kinds["amp"] == "toggle"
    assert kinds["seed"] == kinds["m_per_class"] == kinds["proxy_std"] == "number"
    assert kinds["ks"] == kinds["data_options"] == kinds["data_root"] == kinds["dim_e"] == kinds["grad_clip"] == "text"
    assert kinds["dash_pull"] == "number" and kinds["dash_mode"] == "radio" and kinds["dash_width"] == "slider"


def test_every_widget_range_and_option_is_allowed_by_the_schema() -> None:
    for name, s in schema().items():
        cast = int if s.type is int else float
        if fields.widget_kind(s) == "slider":
            for end in ("lo", "hi"):
                s.validate(cast(s.ui[end]))
        for option in s.ui.get("options", ()):
            s.validate(option)
        if name not in defaults.HIDDEN:  # the page's default is valid for its own widget
            fields.from_widget(s, fields.to_widget(s, getattr(defaults.BASE, name)))


def test_sidebar_shows_the_core_groups_and_only_the_chosen_loss() -> None:
    core = values.shown_keys({"loss": "chest"})
    assert {"delta_h", "tau", "K", "c", "lr", "dataset"} <= set(core) and not {"t", "t_e", "dash_pull"} & set(core)
    assert not set(defaults.HIDDEN) & set(core)
    assert "data_root" not in values.shown_keys({"loss": "chest", "dataset": "cub200"})  # a path: never on the page
    pair = values.shown_keys({"loss": "pair_ce"})
    assert "t" in pair and "pair_space" in pair and "delta_h" not in pair
    plug = values.shown_keys({"loss": PLUGIN})
    assert {"dash_pull", "dash_mode", "dash_width"} <= set(plug) and "delta_h" not in plug
    assert set(core) - set(defaults.BASE.replace(loss="chest").keys()) == set()


@pytest.mark.parametrize("loss", ["chest", PLUGIN])
def test_draw_sidebar_generates_one_widget_per_setting(loss: str) -> None:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    state.values["loss"] = loss
    sch = schema()
    shown = values.shown_keys(state.values)
    # closed sections are lazy: their widgets are not drawn (their values stay in state.values)
    sb = Box(session)
    widgets.draw_sidebar(state, session, sb)
    drawn = {kw["key"] for _, m, a, kw in sb.log if kw.get("key", "").startswith("w_")}
    lazy = {fields.wkey(k) for k in shown if sch[k].group in ("data", "model", "run", "optim", "schedule")}
    assert drawn == {fields.wkey(k) for k in shown} - lazy and "w_dataset" not in drawn and "w_c" in drawn
    assert {fields.wkey(k) for k in shown} <= set(session)  # every widget has its value ready
    # all sections open
    session.update({k: True for k in widgets.LAZY_SECTIONS})
    sb = Box(session)
    widgets.draw_sidebar(state, session, sb)
    drawn_widgets = {kw["key"]: (m, a, kw) for _, m, a, kw in sb.log if kw.get("key", "").startswith("w_")}
    assert set(drawn_widgets) == {fields.wkey(k) for k in shown}
    for k in shown:
        method, args, kw = drawn_widgets[fields.wkey(k)]
        s = sch[k]
        assert args[0].endswith(s.label)  # label = Setting.label ("⟳ " marks a structural one in a live section)
        assert s.allowed() in kw["help"] and s.help[1:] in kw["help"]
        assert method == {"slider": "slider", "select": "selectbox", "radio": "radio", "toggle": "toggle",
                          "number": "number_input", "text": "text_input"}[fields.widget_kind(s)]
    loss_radio = drawn_widgets["w_loss"][2]
    assert loss_radio["options"] == list_losses() and PLUGIN in loss_radio["options"]  # the registered losses
    expanders = [a[0] for a, _ in sb.calls("expander")]
    assert any(t.startswith(f"Loss: {loss} — live") for t in expanders) and expanders[-1] == "Page"
    # every setting group is in one section of the sidebar
    assert sorted(g for _, groups, _ in widgets.SIDEBAR for g in groups) == sorted(GROUPS)
    if loss == PLUGIN:
        assert drawn_widgets["w_dash_width"][2]["max_value"] == 9 and "w_delta_h" not in drawn_widgets


def test_read_validates_every_value_with_the_schema() -> None:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    keys = values.shown_keys(state.values)
    values.ensure_widgets(state, session, keys)
    assert session["w_ks"] == "1,2,4,8" and session["w_dim_e"] == "64"  # text inputs hold text
    session.update(w_tau=-1.0, w_ks="1,x", w_dim_e="none", w_proxy_std=0.0, w_delta_h=5.0, w_seed=3)
    problems = values.read(state, session, keys)
    assert len(problems) == 3, problems  # tau < 0, ks not integers, proxy_std must be > 0
    text = "\n".join(problems)
    assert "tau = -1" in text and "tau >= 0" in text and "the page keeps tau = 0.5" in text
    assert "ks = `1,x`" in text and "proxy_std > 0" in text
    assert all("\n" not in p for p in problems)  # one line each
    assert state.values["tau"] == 0.5 and state.values["ks"] == (1, 2, 4, 8)  # the last valid values are kept
    assert state.values["delta_h"] == 5.0 and state.values["seed"] == 3 and state.values["dim_e"] is None
    cfg = values.config(state)
    assert cfg.delta_h == 5.0 and cfg.dim_e is None and cfg.tau == 0.5


def test_a_widget_keeps_its_value_while_its_loss_is_not_chosen() -> None:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    values.set_value(state, session, "delta_h", 7.0)
    state.values["loss"] = "mix"
    del session["w_delta_h"]  # Streamlit drops the state of a widget not drawn in a run
    state.values["loss"] = "chest"
    values.ensure_widgets(state, session, values.shown_keys(state.values))
    assert session["w_delta_h"] == 7.0


def test_page_options_survive_a_closed_section() -> None:
    state = DashState()
    session: dict = {"sb_page": True}
    values.init(state, session)
    session["step_n"] = 25
    widgets.draw_sidebar(state, session, Box(session))
    for key in ("step_n", "refresh", "w_K"):  # the section closes: Streamlit drops its widgets' state
        del session[key]
    session["sb_page"] = False
    values.init(state, session)
    widgets.draw_sidebar(state, session, Box(session))
    assert session["step_n"] == 25 and session["refresh"] == defaults.REFRESH_S and session["w_K"] == 2


def test_presets_write_values_and_widgets() -> None:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    values.set_value(state, session, "K", 5)
    presets.apply_preset(state, session, "H+Multi")
    assert state.values["eta_e"] == 0.0 and session["w_eta_e"] == 0.0 and state.values["K"] == 5  # K=None keeps K ≥ 2
    presets.apply_preset(state, session, "Hyperbolic only (H only)")
    assert state.values["K"] == 1 and state.values["tau"] == 0.0
    from chestlab.paper import LOSS_PRESETS

    mix = next(name for name, p in LOSS_PRESETS.items() if p.get("loss") == "mix")
    presets.apply_preset(state, session, mix)
    assert state.values["loss"] == "mix" and session["w_t_e"] == LOSS_PRESETS[mix]["t_e"]


def test_preset_box_names_the_preset_the_settings_follow() -> None:
    """The box shows the chosen preset while the settings follow it, another one they follow, or
    "none" — never "CHEST (paper)" for a page that trains chest_hier (a link's loss=chest_hier did that)."""
    state = DashState()
    session: dict = {}
    values.init(state, session)
    assert presets.matching_preset(state.values, "CHEST (paper)") == "CHEST (paper)"  # the page's defaults
    presets.apply_preset(state, session, "H+E+Multi")
    assert presets.matching_preset(state.values, "H+E+Multi") == "H+E+Multi"
    assert presets.matching_preset(state.values, "CHEST (paper)") == "H+E+Multi"  # tau = 0: not CHEST any more
    values.set_value(state, session, "eta_e", 0.5)
    assert presets.matching_preset(state.values, "H+E+Multi") == presets.NO_PRESET
    presets.apply_preset(state, session, "CHEST (paper)")
    values.set_value(state, session, "loss", "chest_hier")
    assert presets.matching_preset(state.values, "CHEST (paper)") in (presets.NO_PRESET, "CHEST + HIER")
    values.set_value(state, session, "K", 1)  # K=None presets need K >= 2
    assert presets.matching_preset(state.values, None) == presets.NO_PRESET
    before = dict(state.values)
    presets.apply_preset(state, session, presets.NO_PRESET)  # choosing "none" changes nothing
    assert state.values == before


# ------------------------------------------------------------------------------------------------
# the URL
# ------------------------------------------------------------------------------------------------
def _load(query: dict) -> tuple[DashState, dict, list[str]]:
    state = DashState()
    session: dict = {}
    values.init(state, session)
    return state, session, urlcodec.load_url(state, session, query)


def test_url_sets_values_through_the_schema() -> None:
    state, session, problems = _load({"delta_h": "5", "loss": "mix", "t_e": "0.3", "ks": "1,5", "dim_e": "none",
                                      "preset": "H+Multi", "cmp": "c:0.25", "play": "1"})
    assert problems == []
    v = state.values
    assert v["delta_h"] == 5.0 and v["loss"] == "mix" and v["t_e"] == 0.3 and v["ks"] == (1, 5) and v["dim_e"] is None
    assert v["eta_e"] == 0.0  # the preset
    assert session["w_ks"] == "1,5" and session["compare"] and session["cmp_key"] == "c" and state.playing


def test_bad_url_values_are_one_line_each_naming_key_value_and_range() -> None:
    _, _, problems = _load({"c": "-3", "dim_h": "7", "K": "abc", "r": "99", "hyphc": "tree", "foo": "1", "steps": "5",
                            "preset": "nope", "cmp": "bogus:1"})
    text = {p.split(":", 1)[0].strip("`"): p for p in problems}  # the link's text is shown in a code span
    assert len(problems) == 9 and all("\n" not in p for p in problems)
    assert text["c=-3"] == "`c=-3`: out of range; allowed: c >= 0 and c <= 1e+30, a number"
    assert "2, 3, 4, 8" in text["dim_h=7"]  # the page's options
    assert "integer" in text["K=abc"] and "0.1 to 6 on this page" in text["r=99"] and "lca, pairwise" in text["hyphc=tree"]
    assert "not a setting" in text["foo=1"] and "until you press Pause" in text["steps=5"]
    assert "CHEST (paper)" in text["preset=nope"] and "eta_e" in text["cmp=bogus"]
    _, _, problems = _load({"proxy_std": "1e300"})  # it overflowed the proxies; now refused up front, named
    assert problems == ["`proxy_std=1e300`: out of range; allowed: proxy_std > 0 and proxy_std <= 1e+30, a number"], problems
    _, _, problems = _load({"cmp": "K:2.5"})
    assert len(problems) == 1 and problems[0].startswith("`cmp=K:2.5`") and "integer" in problems[0]
    _, _, problems = _load({"cmp": "K:3", "loss": PLUGIN, "dash_pull": "-1", "dash_width": "12"})
    assert any(p.startswith("`cmp=K:3`") and "dash_pull" in p for p in problems)  # K is chest's: not offered
    assert any(p.startswith("`dash_pull=-1`") and "dash_pull >= 0" in p for p in problems)
    assert any(p.startswith("`dash_width=12`") for p in problems)


def test_url_round_trip_for_every_setting_the_sidebar_shows() -> None:
    """Each shown setting, moved off its default, is written into the URL and read back equal (for
    every registered loss: their controls come from the schema alone)."""
    sch = schema()
    for loss in list_losses():
        state = DashState()
        session: dict = {}
        values.init(state, session)
        values.set_value(state, session, "loss", loss)
        for k in values.shown_keys(state.values):
            s, old = sch[k], state.values[k]
            kind = fields.widget_kind(s)
            if kind in ("select", "radio"):
                new = next((o for o in reversed(fields.options_of(s)) if o != old), old)
            elif kind == "slider":
                new = s.ui["hi"]
            elif kind == "toggle":
                new = not old
            elif s.type is tuple:
                new = tuple(v + 1 for v in old) if old else (2,)
            elif s.type is dict:
                new = {"depth": 3}
            elif s.type in (int, float):
                new = (old or 1) * 2
            else:  # free text (weights): stays
                continue
            if k in ("loss", "dataset"):  # the loss is chosen above; another dataset needs files
                continue
            try:
                values.set_value(state, session, k, new)
            except SettingError:  # e.g. twice the default is above the setting's range: keep the default
                pass
        query = urlcodec.url_query(state, session)
        assert "loss" not in query or query["loss"] == loss
        state2, _, problems = _load(query)
        assert problems == [], problems
        for k in values.shown_keys(state.values):
            assert state2.values[k] == state.values[k], (loss, k)


def test_url_codec_treats_a_dotted_setting_name_as_one_opaque_key(spring) -> None:
    """A section-qualified setting (a plug-in loss ``spring`` declares ``c`` and ``t``, names the core
    curvature and pair_ce's temperature use: keys ``spring.c``, ``spring.t``) is one URL parameter like
    any other: written by url_query under its full name, read back by load_url, offered to compare mode
    (``cmp=spring.c:4``) and given its own widget; the flat ``c`` stays the curvature; an unknown dotted
    name is refused."""
    name = "spring.c"
    assert name in schema() and schema()["c"].section == "geometry"
    state = DashState()
    session: dict = {}
    values.init(state, session)
    values.set_value(state, session, "loss", "spring")
    assert name in values.shown_keys(state.values) and name in compare_keys(state.values)
    assert state.values[name] == 2.0  # the page's default: the setting's own
    values.set_value(state, session, name, 2.5)
    assert session["w_spring.c"] == 2.5
    session.update(compare=True, cmp_key=name, cmp_value=4.0)
    query = urlcodec.url_query(state, session)
    assert query[name] == "2.5" and query["cmp"] == "spring.c:4" and query["loss"] == "spring"
    assert not any(k in ("spring", "margin") or k.startswith("spring[") for k in query)  # never split
    state2, session2, problems = _load(query)
    assert problems == []
    assert state2.values[name] == 2.5 and session2["w_spring.c"] == 2.5 and state2.values["c"] == state.values["c"]
    assert (session2["compare"], session2["cmp_key"], session2["cmp_value"]) == (True, name, 4.0)
    assert values.config(state2).to_dict()[name] == 2.5  # it reaches the run's config under the same name
    _, _, problems = _load({"spring.nope": "1", "loss": "spring", name: "11"})
    assert problems[0] == "`spring.nope=1`: not a setting (see python -m chestlab.train --help)"
    assert problems[1].startswith("`spring.c=11`: out of range") and len(problems) == 2


# ------------------------------------------------------------------------------------------------
# runner: rules between settings, live settings, training
# ------------------------------------------------------------------------------------------------
def test_repair_changes_live_settings_only() -> None:
    cfg = small(K=1, tau=0.5)
    fixed, fix = runner.repair(cfg)
    assert fix == {"tau": 0.0} and fixed.K == 1
    zero = small(eta_h=0.0, eta_e=0.0, tau=0.0)
    fixed, fix = runner.repair(zero, keep=small(eta_h=0.5, eta_e=0.0, tau=0.0))
    assert fix == {"eta_h": 0.5}  # the run being replaced keeps its value
    fixed, fix = runner.repair(zero)
    assert fixed.eta_h == 1.0 and fixed.eta_e == 1.0 and fix  # else the defaults
    bad = small(m_per_class=100, batch_size=64)  # structural only: cannot be repaired
    assert runner.repair(bad) == (bad, {})


def test_apply_live_holds_back_values_that_break_a_rule(run_a: Run) -> None:
    run = runner.build(small())
    tr = run.trainer
    held, refused = runner.apply_live(run, small(eta_h=0.0, eta_e=0.0, tau=0.0, c=0.25))
    assert held == {"eta_h", "eta_e", "tau"} and refused is None
    assert tr.config.c == 0.25 and tr.config.eta_h == 1.0  # the rest was applied
    msgs = runner.problems(small(eta_h=0.0, eta_e=0.0, tau=0.0), run)
    assert len(msgs) == 1 and "nothing trains" in msgs[0] and "the run keeps eta_h = 1, eta_e = 1, tau = 0.5" in msgs[0]
    # a structural change of the sidebar is not passed (it needs Reset) and is listed as changed
    assert runner.apply_live(run, small(K=3, c=0.25)) == (set(), None)
    assert runner.changed_structural(run.built, small(K=3)) == {"K": (2, 3)}
    assert runner.changed_structural(run.built, small(loss="mix")) == {"loss": ("chest", "mix")}


def test_problems_say_what_the_page_does() -> None:
    tau_k = runner.problems(small(K=1, tau=0.5))
    assert len(tau_k) == 1 and "needs K >= 2" in tau_k[0] and "the run is built with tau = 0" in tau_k[0]
    batch = runner.problems(small(m_per_class=100))
    assert "Reset cannot build" in batch[0]
    assert runner.hints(small(eta_h=0.0, eta_e=0.0, tau=0.5))


def test_reset_explains_a_failed_build() -> None:
    state = DashState(playing=True)
    runner.reset(state, small(backbone="cnn"))
    assert state.trainer is None and state.error and not state.playing
    runner.reset(state, small(), small(eta_e=0.0), "eta_e = 0", ("eta_e", 0.0))
    assert state.error is None and state.trainer_b.config.eta_e == 0.0 and state.built_cmp == ("eta_e", 0.0)
    assert state.trainer.history and state.trainer.history[0]["step"] == 0  # evaluated at step 0


def test_train_chunk_steps_every_run_and_pauses_on_divergence() -> None:
    from chestlab.engine import TrainingDiverged

    a, b = runner.build(small()), runner.build(small(eta_e=0.0), "B")
    state = DashState(runs=[a, b], playing=True)
    assert runner.train_chunk(state, budget_s=10.0, max_steps=3) == 3
    assert a.trainer.step_count == b.trainer.step_count == 3 and len(a.rows) == len(b.rows) == 3
    assert {"step", "loss", "grad_norm", "l_h"} <= set(a.rows[-1]) and state.rate > 0

    def boom() -> None:
        raise TrainingDiverged(3, "training diverged at step 4: the loss became nan. Likely cause: lower r")

    b.trainer.train_step = boom
    assert runner.train_chunk(state, budget_s=10.0) == 1  # A did its step; B stopped
    assert "lower r" in state.diverged and "run B" in state.diverged and not state.playing
    assert "lower r" in b.diverged and a.diverged is None and a.trainer.step_count == 4
    # B stopped: Step and Play train run A alone
    state.playing = True
    assert runner.train_chunk(state, budget_s=10.0, max_steps=2) == 2
    assert a.trainer.step_count == 6 and b.trainer.step_count == 3 and state.playing


def test_figures_with_titles_leave_room_for_the_mode_bar(run_a) -> None:
    """The histogram and dendrogram figures have titles over their right-hand panel, where plotly's
    mode bar sits: they are drawn with MODEBAR_PX more top margin, once however often they are drawn."""
    session: dict = {}
    ctx = ctx_of(run_a, session)
    base = similarity.figure(ctx).layout.margin.t
    tops = []
    for _ in range(2):
        box = Box(session)
        P.draw_run(ctx, box)
        figs = box.figures()
        assert figs["sim_A"].layout.margin.t == base + P.MODEBAR_PX
        tops.append(figs["hier_A"].layout.margin.t)
    assert tops[0] == tops[1] >= P.MODEBAR_PX + 20  # the dendrogram figure is cached: not grown at each redraw
    again = P.modebar_room(P.modebar_room(figs["hier_A"]))
    assert again.layout.margin.t == figs["hier_A"].layout.margin.t


def test_two_script_threads_never_train_one_run_at_once() -> None:
    """With ``runner.fastReruns`` a click starts a new script thread while the old one is still in a
    training step (it stops at its next yield point). Both then trained the same model: a backward
    met weights an optimizer step of the other thread had changed ("modified by an inplace
    operation", seen after Play/Pause clicks). Each run's steps and redraw computations hold its lock."""
    import threading

    from chestlab.dashboard.page import prepare

    run = runner.build(small())
    state = DashState(runs=[run])
    errors: list = []

    def work() -> None:
        try:
            for _ in range(40):
                runner.train_chunk(state, budget_s=0.0, max_steps=1)
                prepare(P.PanelContext(state, {}, run), "train")
        except BaseException as err:  # pragma: no cover - the failure this test is for
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and run.diverged is None and state.diverged is None, run.diverged or errors
    assert run.trainer.step_count == 120 and len(run.rows) == 120


# ------------------------------------------------------------------------------------------------
# the page with the plug-in loss (AppTest), the entry point, the first frame's imports
# ------------------------------------------------------------------------------------------------
def test_page_trains_a_plugin_loss_from_a_link() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"loss": PLUGIN, "dash_pull": "0.5", "dash_mode": "sum"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    state = at.session_state["dash"]
    assert state.trainer.config.loss == PLUGIN and state.trainer.config.dash_pull == 0.5
    assert at.number_input(key="w_dash_pull").value == 0.5 and at.radio(key="w_dash_mode").value == "sum"
    assert at.slider(key="w_dash_width").value == 3
    at.number_input(key="w_dash_pull").set_value(2.0)
    at.button(key="btn_step").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert state.trainer.step_count == 10 and state.trainer.config.dash_pull == 2.0  # live
    assert any("computes no class similarities" in i.value for i in at.info)
    charts = {c.key for c in at.get("plotly_chart")}
    assert {"cur_A", "disk_A", "hardneg"} <= charts and "sim_A" not in charts  # no histograms without proxies
    at.slider(key="w_dash_width").set_value(5).run()
    assert any("Needs reset" in w.value and "dash_width" in w.value for w in at.warning)


def test_closed_sections_are_not_sent_and_keep_their_values() -> None:
    """The first frame carries only the open sidebar sections; a setting of a closed one still
    comes from the link, is validated, builds the run and shows when its section opens."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"batch_size": "32", "lr": "0.01"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    keys = {w.key for w in list(at.selectbox) + list(at.slider)}
    assert "w_c" in keys and "w_batch_size" not in keys and "w_lr" not in keys
    state = at.session_state["dash"]
    assert state.trainer.config.batch_size == 32 and state.trainer.config.lr == 0.01
    at.session_state["sb_data"] = True
    at.run()
    assert at.selectbox(key="w_batch_size").value == 32
    at.selectbox(key="w_batch_size").set_value(48).run()
    assert any("Needs reset" in w.value and "batch_size: 32 → 48" in w.value for w in at.warning)
    assert at.query_params.get("batch_size") in ("48", ["48"])


def test_streamlit_run_serves_app_py_warmed_up() -> None:
    """``streamlit run app.py`` finds the st.App of app.py (its lifespan warms the server up); every
    session runs app.py as its page."""
    from streamlit.web.server import app_discovery

    found = app_discovery.discover_asgi_app(APP)
    assert found.is_asgi_app and found.import_string == "app:app"
    tree = ast.parse(APP.read_text())
    assert "warm" in APP.read_text() and any(isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "App" for n in ast.walk(tree))
    assert warm.wait(0.0)  # never started in this process: nothing to wait for


def test_warm_up_builds_and_draws_the_default_run() -> None:
    from chestlab.dashboard import page

    assert page.warm_up() is True
    assert page.warm_up(should_stop=lambda: True) is False  # a page arrived: stop after the build


def test_first_frame_imports_no_umap_matplotlib_or_pandas() -> None:
    """What the first frame does not need is imported lazily (UMAP on request, matplotlib and pandas
    for the downloads): checked in a fresh process."""
    code = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP)!r}, default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["dash"].trainer is not None
        heavy = [m for m in ("umap", "numba", "pynndescent", "matplotlib", "pandas") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout


# ------------------------------------------------------------------------------------------------
# issue 12 §5: held charts, stopped runs
# ------------------------------------------------------------------------------------------------
def test_held_charts_resend_the_last_figure(run_a: Run) -> None:
    """A held run re-sends the figure it sent last under each key (same figure -> same Streamlit
    element id -> the browser keeps the drawn chart instead of mounting a new, blank one)."""
    from chestlab.dashboard.page import HeldCharts

    session: dict = {}
    sent: dict = {}
    box = Box(session)
    P.draw_run(ctx_of(run_a, session), HeldCharts(box, sent, hold=False))
    first = box.figures()
    assert set(sent) == set(first) and {"cur_A", "disk_A"} <= set(sent)
    runner.train_chunk(DashState(runs=[run_a]), budget_s=0.0, max_steps=1)
    box = Box(session)
    P.draw_run(ctx_of(run_a, session), HeldCharts(box, sent, hold=True))
    assert all(box.figures()[k] is first[k] for k in first)  # the very same figures
    box = Box(session)
    P.draw_run(ctx_of(run_a, session), HeldCharts(box, sent, hold=False))
    assert all(box.figures()[k] is not first[k] for k in ("cur_A", "disk_A"))


def test_a_run_whose_embeddings_overflow_stops_and_draws_its_last_good_state() -> None:
    """Parameters an update left non-finite: the redraw catches it before drawing (prepare), stops
    the run with a divergence line (not the raw ValueError), puts its last good parameters back,
    and every panel draws."""
    import torch

    from chestlab.dashboard.page import prepare, stopped_warning

    run = runner.build(small())
    state = DashState(runs=[run])
    runner.train_chunk(state, budget_s=0.0, max_steps=1)
    session: dict = {}
    prepare(ctx_of(run, session), "train")  # a good redraw: remembered
    assert run.good and run.good_state
    with torch.no_grad():
        next(iter(run.trainer.model.parameters())).fill_(float("nan"))
    ctx = ctx_of(run, session)
    ctx.state = state
    prepare(ctx, "train")
    assert run.diverged and "diverged" in run.diverged and "ValueError" not in run.diverged
    assert state.diverged and not state.playing and runner.finite(run.trainer)
    assert "Training stopped" in stopped_warning(state, run)
    box = Box(session)
    P.draw_run(ctx, box)
    assert {"cur_A", "disk_A"} <= set(box.figures())
    assert runner.train_chunk(state, budget_s=0.0, max_steps=1) == 0  # a stopped run trains no more


# ------------------------------------------------------------------------------------------------
# panels never raise; build errors name the setting (issue 17)
# ------------------------------------------------------------------------------------------------
#: an exception's class name or internals on the page (what a one-line message must not show)
RAW_TEXT = ("Error:", "Exception", "Traceback", "Errno", "enforce fail", "alloc_cpu", "sequence by non-int")


def test_a_stopped_run_whose_c_changed_still_draws_every_panel() -> None:
    """weight_decay 1e12 diverges at step 3; moving c then (1.15) changed the trainer's c while the
    stopped run draws its last good embeddings, made at the old c: the hard-negative panel mapped
    them with the new c ("56 point(s) lie outside the Poincaré ball", uncaught). It uses the c the
    points were made with."""
    from chestlab.dashboard.page import prepare

    run = runner.build(small(weight_decay=1e12))
    state = DashState(runs=[run])
    session: dict = {}
    prepare(ctx_of(run, session), "train")
    runner.train_chunk(state, budget_s=60.0, max_steps=5)
    assert run.diverged and "diverged" in run.diverged
    runner.apply_live(run, small(weight_decay=1e12, c=1.15))
    assert run.trainer.config.c == 1.15
    ctx = ctx_of(run, session)
    ctx.state = state
    prepare(ctx, "train")
    box = Box(session)
    P.draw_run(ctx, box)
    assert {"hardneg", "disk_A"} <= set(box.figures()) and not box.calls("warning")


def test_compare_mode_with_a_diverged_run_b_draws_both_disks() -> None:
    """Compare mode, run B diverged (weight_decay 1e12: its parameters go NaN): the disk panel raised
    "v contains NaN or inf" for B. B draws its last good disk (also when the split changes to one it
    never computed), A goes on training and drawing, and nothing says more than why B stopped."""
    from chestlab.dashboard.page import prepare

    a, b = runner.build(small()), runner.build(small(weight_decay=1e12), "B")
    state = DashState(runs=[a, b], playing=True)
    session: dict = {}
    values.init(state, session)
    for split in ("train", "train", "train", "test"):  # it diverges at step 2; then a split it never drew
        runner.train_chunk(state, budget_s=60.0, max_steps=1)
        shared: dict = {}
        boxes = []
        for run in (a, b):
            ctx = P.PanelContext(state, session, run, wide=False, shared=shared)
            prepare(ctx, split)
            box = Box(session)
            P.draw_run(ctx, box, panels=(disk,))  # raises nothing
            boxes.append(box)
        assert {"disk_A"} <= set(boxes[0].figures()) and not boxes[0].calls("warning")
        assert "disk_B" in boxes[1].figures()
        for (line,), _ in boxes[1].calls("warning"):  # at most why B stopped, in one line
            assert b.diverged and b.diverged.rstrip(".") in line and not any(t in line for t in RAW_TEXT)
    assert b.diverged and "diverged" in b.diverged and a.diverged is None
    assert a.trainer.step_count == 4 > b.trainer.step_count


def test_a_panel_that_fails_says_why_in_one_line_and_never_raises(run_a: Run, caplog: pytest.LogCaptureFixture) -> None:
    """An invalid state (the library's NaN/inf check) stops the run with its reason, shown in the
    panel's place; any other failure is one line there and an error in the server log."""
    import types

    def failing(exc: Exception) -> Any:
        return types.SimpleNamespace(TITLE="Broken — a test panel", SLOT="left", __name__="broken",
                                     render=lambda ctx, box: (_ for _ in ()).throw(exc))

    run = runner.build(small())
    state = DashState(runs=[run])
    runner.train_chunk(state, budget_s=0.0, max_steps=1)
    runner.remember(run)
    ctx = ctx_of(run)
    ctx.state = state
    box = Box()
    with caplog.at_level("ERROR", logger="chestlab.dashboard"):
        P.draw_run(ctx, box, panels=(failing(KeyError("internal")), curves))
    (bug,), _ = box.calls("warning")[0]
    assert "Broken: cannot be drawn" in bug and "server log" in bug and "KeyError" not in bug
    assert "cur_A" in box.figures() and not run.diverged  # the other panels draw; a bug stops nothing
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
    box = Box()
    nan = ValueError("v contains NaN or inf in 1024 of its 1024 entries; check the inputs")
    P.draw_run(ctx, box, panels=(failing(nan), curves))
    (line,), _ = box.calls("warning")[0]
    assert run.diverged and "diverged" in run.diverged and not state.playing
    assert line.startswith("⚠ Broken: cannot draw run A") and run.diverged.rstrip(".") in line
    assert not any(t in line for t in RAW_TEXT) and "cur_A" in box.figures()


@pytest.mark.parametrize("case", ["memory", "oserror", "typeerror", "dataset", "own"])
def test_a_failed_build_names_the_settings_responsible_and_how_to_fix_them(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the exception's name or internals: the settings of the part that failed which differ
    from the page's defaults, and what to do (the exception goes to the server log)."""
    from chestlab.engine import build as engine_build

    def raising(exc: Exception) -> Any:
        def fn(*a: Any, **k: Any) -> Any:
            raise exc
        return fn

    if case == "memory":
        monkeypatch.setattr(engine_build, "create_model", raising(RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 4 GB")))
        cfg, want = small(dim_h=64, lr=0.5), ["building the model failed", "dim_h = `64`", "memory", "lower it"]
    elif case == "oserror":
        monkeypatch.setattr(engine_build, "create_datasets", raising(OSError(36, "File name too long", "a" * 300)))
        cfg, want = small(data_options={"depth": 3}, lr=0.5), ["making the data failed", "data_options", "file or folder"]
    elif case == "typeerror":
        monkeypatch.setattr(engine_build, "create_datasets", raising(TypeError("can't multiply sequence by non-int of type 'str'")))
        cfg, want = small(data_options={"depth": 3}), ["making the data failed", "data_options = `{\"depth\":3}`"]
    elif case == "dataset":  # the reader's message lists the server's folders: not shown
        cfg, want = small(dataset="cub200", backbone="cnn"), ["dataset = cub200", "choose one of tree, shapes, digits"]
    else:  # chestlab's own one-line refusal naming the setting responsible: shown, escaped
        cfg, want = small(backbone="cnn"), ["building the model failed: backbone 'cnn' needs images", "use 'mlp'"]
    state = DashState(playing=True)
    runner.reset(state, cfg)
    assert state.trainer is None and not state.playing and state.error
    assert all(w in state.error for w in want), state.error
    assert not any(t in state.error for t in RAW_TEXT) and "\n" not in state.error and "aaaa" not in state.error
    if case == "memory":
        assert "lr" not in state.error  # only the model's settings: lr is not the model's


def test_every_presets_learning_rate_is_offered_by_the_page() -> None:
    """A preset (and a scenario built on it) never opens with "Not applied: lr = …": its learning rate is
    one of the page's options."""
    from chestlab.paper import PRESETS

    opts = fields.options_of(schema()["lr"])
    missing = {name: p["lr"] for name, p in PRESETS.items() if "lr" in p and p["lr"] not in opts}
    assert not missing, f"presets whose lr the page cannot show: {missing}"
