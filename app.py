"""chestlab dashboard: train a CHEST model live and watch hyperbolic metric learning react to every slider.

Run with ``make app`` (or ``streamlit run app.py``). The page only *drives* :class:`chestlab.train.Trainer`
(the one training engine) and draws with :mod:`chestlab.figures` (the same figures as the notebooks).

How it works
    * The trainer (model + optimizer + proxies) lives in ``st.session_state``.
    * The training loop runs in chunks inside ``st.fragment(run_every=refresh)``: every refresh the
      fragment trains for TRAIN_FRACTION of the refresh period, then redraws the plots; widgets stay responsive
      because a widget change interrupts the fragment between steps.
    * Live settings (``LIVE_KEYS``: c, r, gamma, lambda, delta, eta, tau, lr, ...) go to
      ``trainer.set(...)`` and apply at the next step; structural ones (dataset, backbone, D_H, K,
      batch size, loss, seed, device) need a new trainer: the page says so and offers Reset.
    * Every setting is mirrored in the URL's query parameters, so a link reopens the same experiment
      (``?c=0.1&delta_h=5&preset=H+only&play=1``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import streamlit as st
import torch

# torch.optim imports torch._dynamo (~1.5 s) the first time an optimizer is built; start that import
# now in the background, so it overlaps with drawing the sidebar (first plot sooner).
threading.Thread(target=lambda: __import__("torch._dynamo"), daemon=True).start()

from chestlab import figures
from chestlab.engine import Trainer, TrainingDiverged
from chestlab.settings import TrainConfig, live_keys, schema

HELP = {k: s.help for k, s in schema().items()}
LIVE_KEYS = live_keys()

# The demo models are tiny: one intra-op thread is ~10x faster than two on a 2-core machine, where the
# second thread competes with the Streamlit server (measured: 93 vs 10 steps/s on `tree`).
if not torch.cuda.is_available():
    torch.set_num_threads(1)

# ------------------------------------------------------------------------------------------------
# settings: one table drives the widgets, the URL and the config
# ------------------------------------------------------------------------------------------------
BASE = TrainConfig.preset("demo-tree", eval_every=50, eval_max=600)  # small eval: < 0.5 s UI block
BENCHMARKS = ("cub200", "cars196", "sop", "inshop", "cifar100")
#: Share of each refresh spent training; the rest draws and leaves the (shared) CPU to the browser.
TRAIN_FRACTION = 0.4
#: Default redraw period (s): the browser timer drifts, so a bit under 1 s keeps "at least once a second".
REFRESH_S = 0.8


@dataclass(frozen=True)
class Knob:
    """One setting: widget kind, range or options, and the label (with the paper's symbol)."""

    name: str
    label: str
    kind: str  # slider | select | radio | number | text
    lo: float = 0.0
    hi: float = 1.0
    step: float = 0.1
    options: tuple = ()
    group: str = "loss"

    @property
    def live(self) -> bool:
        return self.name in LIVE_KEYS

    def parse(self, text: str) -> Any:
        """A URL value -> a valid widget value; raises ValueError with the allowed range."""
        default = getattr(BASE, self.name)
        if self.kind in ("select", "radio"):
            for o in self.options:
                if str(o) == text:
                    return o
            raise ValueError(f"{self.name}={text!r}: choose one of {', '.join(map(str, self.options))}")
        if self.kind == "text":
            return text
        value = int(text) if isinstance(default, int) and not isinstance(default, bool) else float(text)
        if not (self.lo <= value <= self.hi):
            raise ValueError(f"{self.name}={text}: allowed range is {self.lo:g} to {self.hi:g}")
        return value


_LR = (1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
KNOBS: tuple[Knob, ...] = (
    # data and model (structural)
    Knob("dataset", "dataset", "select", options=("tree", "shapes", "digits") + BENCHMARKS, group="data"),
    Knob("data_root", "benchmark folder (data_root)", "text", group="data"),
    Knob("backbone", "backbone", "select", options=("mlp", "cnn", "vit_tiny_patch16_224", "vit_small_patch16_224"), group="data"),
    Knob("dim_h", "D_H — hyperbolic dimension", "select", options=(2, 3, 4, 8, 16, 32, 64, 128), group="data"),
    Knob("K", "K — proxies per class", "slider", 1, 10, 1, group="data"),
    Knob("batch_size", "batch size", "select", options=(16, 32, 48, 64, 96, 128), group="data"),
    Knob("loss", "loss", "radio", options=("chest", "pair_ce", "mix"), group="data"),
    Knob("seed", "seed", "number", 0, 10_000, 1, group="data"),
    Knob("device", "device", "select", options=("auto", "cpu", "cuda"), group="data"),
    # geometry (live)
    Knob("c", "c — curvature (0 = Euclidean limit)", "slider", 0.0, 2.0, 0.05, group="geometry"),
    Knob("r", "r — clipping radius", "slider", 0.1, 6.0, 0.1, group="geometry"),
    # CHEST loss (live)
    Knob("eta_h", "η_H — weight of L_H", "slider", 0.0, 2.0, 0.1),
    Knob("eta_e", "η_E — weight of L_E", "slider", 0.0, 2.0, 0.1),
    Knob("tau", "τ — weight of HypHC", "slider", 0.0, 2.0, 0.05),
    Knob("delta_h", "δ_H — hyperbolic margin", "slider", 0.0, 20.0, 0.5),
    Knob("delta_e", "δ_E — Euclidean margin", "slider", 0.0, 20.0, 0.5),
    Knob("gamma_h", "γ_H — soft-min temperature (H)", "slider", 0.1, 20.0, 0.1),
    Knob("gamma_e", "γ_E — soft-min temperature (E)", "slider", 0.1, 20.0, 0.1),
    Knob("lambda_h", "λ_H — logit scale (H)", "slider", 1.0, 64.0, 1.0),
    Knob("lambda_e", "λ_E — logit scale (E)", "slider", 1.0, 64.0, 1.0),
    Knob("gamma_hyp", "γ_hyp — HypHC temperature", "slider", 0.1, 5.0, 0.1),
    Knob("hyphc", "HypHC reading", "radio", options=("lca", "pairwise")),
    Knob("M", "M — HypHC triplets per step", "slider", 1, 256, 1),
    # pairwise CE / Mix (live)
    Knob("pair_space", "pairwise CE space", "radio", options=("sphere", "hyperbolic"), group="pair"),
    Knob("t", "t — pairwise CE temperature", "slider", 0.01, 1.0, 0.01, group="pair"),
    Knob("t_e", "t_E — Mix cosine temperature", "slider", 0.01, 1.0, 0.01, group="pair"),
    Knob("t_h", "t_H — Mix hyperbolic temperature", "slider", 0.01, 1.0, 0.01, group="pair"),
    Knob("mix_lam", "λ — Mix weight of −D_H", "slider", 0.0, 4.0, 0.1, group="pair"),
    # optimisation (live)
    Knob("lr", "learning rate (backbone + head)", "select", options=_LR, group="opt"),
    Knob("lr_proxy", "learning rate (proxies)", "select", options=_LR, group="opt"),
    Knob("eval_every", "evaluate every N steps", "slider", 10, 500, 10, group="opt"),
)
KNOB = {k.name: k for k in KNOBS}
STRUCTURAL = tuple(k.name for k in KNOBS if not k.live)

#: Loss presets: the ablation rows of Tables 6-7 (eta_H, eta_E, K, tau) and the hard-negative paper's
#: losses. ``K=None`` keeps the current K (at least 2, "Multi" means several proxies per class).
LOSS_PRESETS: dict[str, dict] = {
    "CHEST (paper)": dict(loss="chest", eta_h=1.0, eta_e=1.0, K=None, tau=0.5),
    "Hyperbolic only (H only)": dict(loss="chest", eta_h=1.0, eta_e=0.0, K=1, tau=0.0),
    "Euclidean only (E only)": dict(loss="chest", eta_h=0.0, eta_e=1.0, K=1, tau=0.0),
    "H+E": dict(loss="chest", eta_h=1.0, eta_e=1.0, K=1, tau=0.0),
    "H+Multi": dict(loss="chest", eta_h=1.0, eta_e=0.0, K=None, tau=0.0),
    "E+Multi": dict(loss="chest", eta_h=0.0, eta_e=1.0, K=None, tau=0.0),
    "H+E+Multi": dict(loss="chest", eta_h=1.0, eta_e=1.0, K=None, tau=0.0),
    "H+Multi+HypHC": dict(loss="chest", eta_h=1.0, eta_e=0.0, K=None, tau=0.5),
    "Pairwise CE — sphere": dict(loss="pair_ce", pair_space="sphere", t=0.1),
    "Pairwise CE — hyperbolic": dict(loss="pair_ce", pair_space="hyperbolic", t=0.2),
    "Mix (cos/t_E + λ(−D_H)/t_H)": dict(loss="mix", t_e=0.1, t_h=0.2, mix_lam=1.0),
}
#: Settings offered for the compare mode (run B = run A with one of these changed).
COMPARE_KEYS = ("eta_e", "eta_h", "tau", "c", "delta_h", "delta_e", "gamma_h", "r", "K", "dim_h", "lr")

ss = st.session_state


def _wkey(name: str) -> str:
    return f"w_{name}"


def _default(name: str) -> Any:
    v = getattr(BASE, name)
    return "" if v is None and name == "data_root" else v


# ------------------------------------------------------------------------------------------------
# session setup: defaults, then the URL (first run only), then loss presets
# ------------------------------------------------------------------------------------------------
def apply_preset(name: str) -> None:
    """Write a loss preset into the widgets (before they are drawn: safe in a callback)."""
    changes = dict(LOSS_PRESETS[name])
    if "K" in changes:
        k = changes.pop("K")
        ss[_wkey("K")] = k if k is not None else max(2, int(ss.get(_wkey("K"), 2)))
    for key, value in changes.items():
        ss[_wkey(key)] = value


def _on_preset() -> None:
    apply_preset(ss["preset"])


def init_session() -> list[str]:
    """Fill the widget state with defaults, overridden once per session by the URL. Returns the
    problems found in the URL (shown on the page, never raised)."""
    problems: list[str] = []
    for k in KNOBS:
        ss.setdefault(_wkey(k.name), _default(k.name))
    ss.setdefault("preset", "CHEST (paper)")
    view_defaults = dict(refresh=REFRESH_S, step_n=10, disk_split="train", disk_grid=False, disk_circles=True,
                         disk_view="fast projection", compare=False, cmp_key="eta_e", cmp_value=0.0, playing=False)
    for key, value in view_defaults.items():
        ss.setdefault(key, value)
    if ss.get("_url_loaded"):
        return problems
    ss["_url_loaded"] = True
    qp = st.query_params.to_dict()
    if "preset" in qp:
        if qp["preset"] in LOSS_PRESETS:
            ss["preset"] = qp["preset"]
            apply_preset(qp["preset"])
        else:
            problems.append(f"preset={qp['preset']!r}: choose one of {', '.join(LOSS_PRESETS)}")
    for key, text in qp.items():
        if key in KNOB:
            try:
                ss[_wkey(key)] = KNOB[key].parse(text)
            except ValueError as err:
                problems.append(str(err))
    if "cmp" in qp:
        key, _, val = qp["cmp"].partition(":")
        try:
            if key not in COMPARE_KEYS:
                raise ValueError(f"cmp={qp['cmp']!r}: the setting must be one of {', '.join(COMPARE_KEYS)}")
            ss["compare"], ss["cmp_key"], ss["cmp_value"] = True, key, float(val)
        except ValueError as err:
            problems.append(str(err))
    if qp.get("play") in ("1", "true"):
        ss["playing"] = True
    return problems


def current_settings() -> dict:
    return {k.name: ss[_wkey(k.name)] for k in KNOBS}


def settings_to_config(values: dict) -> TrainConfig:
    v = dict(values)
    v["data_root"] = v.get("data_root") or None
    return BASE.replace(**v)  # an impossible pair (e.g. cnn on tree) is explained when the trainer is built


def sync_url(values: dict) -> None:
    """Mirror the settings that differ from the defaults into the URL (a shareable link)."""
    want = {k: str(v) for k, v in values.items() if v != _default(k)}
    if ss.get("compare"):
        want["cmp"] = f"{ss['cmp_key']}:{ss['cmp_value']:g}"
    if st.query_params.to_dict() != want:
        st.query_params.from_dict(want)


# ------------------------------------------------------------------------------------------------
# the trainers
# ------------------------------------------------------------------------------------------------
def effective_live(cfg: TrainConfig) -> tuple[dict, list[str]]:
    """Live settings to pass to the trainer, with impossible combinations neutralised and explained."""
    notes = []
    live = {k: getattr(cfg, k) for k in LIVE_KEYS if hasattr(cfg, k)}
    if cfg.loss == "chest" and cfg.tau > 0 and cfg.K < 2:
        live["tau"] = 0.0
        notes.append(f"τ = {cfg.tau:g} needs K ≥ 2: HypHC (Eq. 9) compares two proxies of one class, and with K = 1 "
                     "there is only one. τ is treated as 0 — raise K (then Reset) or set τ = 0.")
    if cfg.loss == "chest" and cfg.eta_h == 0 and cfg.eta_e == 0 and live["tau"] == 0:
        notes.append("η_H = η_E = τ = 0: the loss (Eq. 10) is identically 0, there is nothing to train. Raise η_H or η_E.")
    if cfg.loss == "chest" and cfg.eta_h == 0 and cfg.eta_e == 0 and live["tau"] > 0:
        notes.append("η_H = η_E = 0: only the HypHC term trains, and it moves the proxies only (the data are not in it).")
    if cfg.loss != "chest":
        notes.append(f"loss = {cfg.loss}: there are no proxies, so the CHEST sliders (η, δ, γ, λ, τ) do nothing; "
                     "the similarity histograms need the CHEST loss.")
    return live, notes


def trainable(cfg: TrainConfig, live: dict) -> bool:
    return not (cfg.loss == "chest" and cfg.eta_h == 0 and cfg.eta_e == 0 and live["tau"] == 0)


def _build(cfg: TrainConfig) -> Trainer:
    """A new trainer, evaluated once at step 0 so the curves start from the untrained model."""
    cfg0 = cfg.replace(tau=0.0) if (cfg.loss == "chest" and cfg.K < 2) else cfg
    tr = Trainer(cfg0)
    tr.evaluate()
    return tr


def reset(cfg: TrainConfig) -> None:
    """(Re)build run A — and run B in compare mode — from the current settings and seed."""
    ss["error"] = ss["diverged"] = None
    ss["rows"], ss["rows_b"] = [], []
    ss["umap"] = None
    ss["rate"] = ss["rate_wall"] = 0.0
    ss["_tick"] = None
    ss["built"] = {k: getattr(cfg, k) for k in STRUCTURAL + ("data_root",)}
    ss["trainer"] = ss["trainer_b"] = None
    try:
        ss["trainer"] = _build(cfg)
        if ss.get("compare"):
            ss["trainer_b"] = _build(compare_config(cfg))
            ss["built_cmp"] = (ss["cmp_key"], ss["cmp_value"])
    except Exception as err:  # a bad combination is shown on the page, never raised
        ss["error"] = f"{type(err).__name__}: {err}"
        ss["playing"] = False


def compare_config(cfg: TrainConfig) -> TrainConfig:
    key, value = ss["cmp_key"], ss["cmp_value"]
    default = getattr(cfg, key)
    value = int(value) if isinstance(default, int) and not isinstance(default, bool) else float(value)
    changes = {key: value}
    if key == "K" and value < 2:
        changes["tau"] = 0.0
    return cfg.replace(**changes)


def _on_reset() -> None:
    ss["_want_reset"] = True


def _on_play() -> None:
    ss["playing"] = not ss["playing"]


def _on_step() -> None:
    ss["pending_steps"] = int(ss["step_n"])


def _eval_due(tr: Trainer) -> bool:
    every = tr.config.eval_every
    return bool(every) and tr.step_count % every == 0


def _one_step(tr: Trainer, rows: list) -> None:
    ev = tr.train_step()
    rows.append({"step": ev.step, "loss": ev.loss, **ev.components, "grad_norm": ev.grad_norm})
    if _eval_due(tr):
        tr.evaluate()


def train_chunk(budget_s: float, max_steps: Optional[int] = None) -> int:
    """Train A (and B) for up to ``budget_s`` seconds or ``max_steps`` steps; returns steps done.
    Divergence pauses the run and becomes a warning on the page."""
    tr, trb = ss["trainer"], ss.get("trainer_b")
    t0 = time.perf_counter()
    done = 0
    try:
        while (max_steps is None or done < max_steps) and (time.perf_counter() - t0 < budget_s or done == 0):
            _one_step(tr, ss["rows"])
            if trb is not None:
                _one_step(trb, ss["rows_b"])
            done += 1
            if max_steps is not None and done >= max_steps:
                break
    except TrainingDiverged as err:
        ss["diverged"] = str(err)
        ss["playing"] = False
    except Exception as err:  # e.g. a value the loss rejects: explain, do not crash the page
        ss["diverged"] = f"{type(err).__name__}: {err}"
        ss["playing"] = False
    dt = time.perf_counter() - t0
    if done and dt > 0:
        ss["rate"] = done / dt if not ss.get("rate") else 0.7 * ss["rate"] + 0.3 * done / dt
    return done


# ------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------
def _disk_data(tr: Trainer, split: str, n: int = 600) -> dict:
    emb = tr.embed(split, n)
    c = float(tr.config.c)
    xy = figures.project_to_disk(emb["x_h"], c)
    prox = tr.proxies() if split == "train" else None
    pxy = None
    if prox is not None:
        ph = prox["h"]
        pxy = figures.project_to_disk(ph.reshape(-1, ph.shape[-1]), c, fit_on=emb["x_h"]).reshape(ph.shape[0], ph.shape[1], 2)
    names = getattr(tr.train_set if split == "train" else tr.test_set, "classes", None)
    sup_names = getattr(tr.train_set, "superclasses", None)
    return dict(xy=xy, labels=emb["labels"].numpy(), super=emb["super"].numpy(), pxy=pxy, c=c,
                x_h=emb["x_h"], dim_h=emb["x_h"].shape[1], names=list(names) if names is not None else None,
                super_names=list(sup_names) if sup_names is not None else None, step=tr.step_count)


def disk_figure(d: dict, umap: Optional[dict] = None, key: str = "disk") -> tuple[Any, str]:
    if umap is not None:
        xy, pxy, label = umap["xy"], umap["pxy"], figures.projection_label(d["dim_h"], "umap") + f" (step {umap['step']})"
        labels, sup = umap["labels"], umap["super"]
    else:
        xy, pxy, label = d["xy"], d["pxy"], figures.projection_label(d["dim_h"])
        labels, sup = d["labels"], d["super"]
    fig = figures.poincare_disk(
        xy, labels, sup, pxy, c=d["c"] if d["c"] > 0 else 0.0, grid=ss["disk_grid"],
        circles=(1.0, 2.0, 3.0) if ss["disk_circles"] else (), class_names=d["names"], super_names=d["super_names"],
        uirevision=key, height=470,
    )
    return fig, label


def metric_line(tr: Trainer) -> dict:
    last = tr.history[-1] if tr.history else {}
    return {k: last.get(k) for k in ("test/H/R@1", "test/E/R@1", "test/H/MAP@R", "test/E/MAP@R")}


def _fmt(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:.3f}"


def status_row(tr: Trainer, label: str = "") -> None:
    rows = ss["rows"] if tr is ss["trainer"] else ss["rows_b"]
    m = metric_line(tr)
    cols = st.columns(6)
    cols[0].metric(f"step{label}", tr.step_count)
    rate = ss.get("rate_wall") or ss.get("rate")  # wall-clock rate of the last play, else of the last Step
    cols[1].metric("steps / s", f"{rate:.0f}" if rate else "—",
                   help="optimizer steps per wall-clock second while playing, drawing included "
                        "(before any play: the speed of the last Step)")
    cols[2].metric("loss", _fmt(rows[-1]["loss"] if rows else None))
    cols[3].metric("R@1 H (unseen)", _fmt(m["test/H/R@1"]), help="Recall@1 on the test classes (never trained on), Poincaré distance")
    cols[4].metric("R@1 E (unseen)", _fmt(m["test/E/R@1"]), help="Recall@1 on the test classes, Euclidean distance on x^E")
    cols[5].metric("device", str(tr.device), help="auto = CUDA when present; torch threads: %d" % torch.get_num_threads())


def hardneg_figure(tr: Trainer, d: dict) -> Any:
    """Weights over negatives of the current model's features (one anchor), sphere vs hyperbolic."""
    c = float(tr.config.c)
    import chestlab.poincare as P

    v = P.logmap0(d["x_h"][:96].double(), c) if c > 0 else d["x_h"][:96].double()
    c_values = sorted({round(c, 3), 0.1, 1.0} - {0.0}) or [0.5]
    return figures.hard_negative_weights_figure(c_values, tr.config.t, t_sphere=tr.config.t_e, v=v,
                                                labels=d["labels"][:96], uirevision="hardneg")


def run_umap(tr: Trainer, d: dict, box: Any) -> None:
    """UMAP with hyperboloid output, in a thread so a progress bar can move (numba compiles at first)."""
    result: dict = {}
    ph = d["pxy"]
    prox = tr.proxies()["h"] if (d["pxy"] is not None) else None

    def work() -> None:
        try:
            out = figures.umap_disk(d["x_h"], d["c"] if d["c"] > 0 else 1.0, seed=tr.config.seed,
                                    fit_on_proxies=None if prox is None else prox.reshape(-1, prox.shape[-1]))
            result["out"] = out
        except Exception as err:  # shown, not raised
            result["err"] = f"{type(err).__name__}: {err}"

    th = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    th.start()
    bar = box.progress(0.0, text="UMAP: building the neighbour graph …")
    while th.is_alive():
        el = time.perf_counter() - t0
        bar.progress(min(0.95, el / 30.0), text=f"UMAP with hyperboloid output: {el:.0f} s (the first run compiles numba, ~20-40 s)")
        time.sleep(0.25)
    bar.empty()
    if "err" in result:
        ss["umap"] = None
        box.warning(f"UMAP failed: {result['err']}")
        return
    out = result["out"]
    xy, pxy = (out if isinstance(out, tuple) else (out, None))
    if pxy is not None and ph is not None:
        pxy = pxy.reshape(ph.shape)
    ss["umap"] = dict(xy=xy, pxy=pxy, labels=d["labels"], super=d["super"], step=tr.step_count, split=ss["disk_split"])


# ------------------------------------------------------------------------------------------------
# downloads: callables run only when clicked, on snapshots (never on the live trainer)
# ------------------------------------------------------------------------------------------------
def downloads(holder: dict) -> None:
    """Download buttons. ``holder["snap"]`` is replaced by the fragment at every redraw, and the
    callables read it only when clicked (on Streamlit's download thread), so a click exports the
    latest snapshot -- never the live trainer, which may be mid-step."""

    def snap() -> dict:
        return holder.get("snap") or {"config": {}, "rows": [], "history": [], "sim": None, "disk": None}

    def cfg_json() -> str:
        return json.dumps(snap()["config"], indent=2)

    def metrics_csv() -> str:
        import pandas as pd  # only when clicked (0.6 s import)

        s = snap()
        rows = s["rows"] + s["history"]
        if not rows:
            return "step\n"
        df = pd.DataFrame(rows).sort_values("step", kind="stable")
        return df.groupby("step", as_index=False).first().to_csv(index=False)

    def sim_fig(mpl: bool) -> Any:
        s = snap()
        if s.get("sim") is None:
            raise RuntimeError("no training step yet")
        f = figures.similarity_histogram_mpl if mpl else figures.similarity_histogram
        return f(s["sim"], s["config"].get("delta_h"), s["config"].get("delta_e"))

    def disk_fig(mpl: bool) -> Any:
        d = snap()["disk"]
        if mpl:
            return figures.poincare_disk_mpl(d["xy"], d["labels"], d["super"], d["pxy"], c=d["c"], circles=(1, 2, 3),
                                             title=figures.projection_label(d["dim_h"]))
        return figures.poincare_disk(d["xy"], d["labels"], d["super"], d["pxy"], c=d["c"], circles=(1, 2, 3),
                                     title=figures.projection_label(d["dim_h"]), class_names=d["names"])

    def curves_fig(mpl: bool) -> Any:
        s = snap()
        return (figures.training_curves_mpl if mpl else figures.training_curves)(s["rows"] + s["history"])

    def html(fn: Callable[[bool], Any]) -> Callable[[], str]:
        return lambda: fn(False).to_html(include_plotlyjs=True, full_html=True)  # offline: plotly.js inlined

    def png(fn: Callable[[bool], Any]) -> Callable[[], bytes]:
        return lambda: figures.to_png(fn(True))

    a, b = st.columns(2)
    a.download_button("config (JSON)", cfg_json, "chestlab_config.json", "application/json", on_click="ignore",
                      key="dl_cfg", help="TrainConfig.from_dict(json.load(open(...))) rebuilds it; "
                                         "python -m chestlab.train --set key=value accepts its entries")
    b.download_button("metrics (CSV)", metrics_csv, "chestlab_metrics.csv", "text/csv", on_click="ignore", key="dl_csv",
                      help="one row per step: loss components, and Recall@k / MAP@R where evaluated")
    cols = st.columns(3)
    for col, (name, fn, fname) in zip(cols, (("similarity histograms", sim_fig, "similarity"),
                                             ("Poincaré disk", disk_fig, "disk"), ("training curves", curves_fig, "curves"))):
        col.download_button(f"{name} (HTML)", html(fn), f"{fname}.html", "text/html", on_click="ignore", key=f"dl_{fname}_html")
        col.download_button(f"{name} (PNG)", png(fn), f"{fname}.png", "image/png", on_click="ignore", key=f"dl_{fname}_png")


# ------------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------------
def sidebar_widget(k: Knob, container: Any = None) -> None:
    box = container or st.sidebar
    key = _wkey(k.name)
    helptext = HELP.get(k.name, "")
    if k.name == "eval_every":
        helptext = HELP["eval_every"] + " (the page evaluates on ≤ 600 samples per split to stay responsive)"
    if k.kind == "slider":
        box.slider(k.label, min_value=type(getattr(BASE, k.name))(k.lo), max_value=type(getattr(BASE, k.name))(k.hi),
                   step=type(getattr(BASE, k.name))(k.step), key=key, help=helptext)
    elif k.kind == "select":
        box.selectbox(k.label, k.options, key=key, help=helptext,
                      format_func=(lambda x: f"{x:g}") if k.name.startswith("lr") else str)
    elif k.kind == "radio":
        box.radio(k.label, k.options, key=key, help=helptext, horizontal=True)
    elif k.kind == "number":
        box.number_input(k.label, min_value=int(k.lo), max_value=int(k.hi), step=1, key=key, help=helptext)
    elif k.kind == "text":
        box.text_input(k.label, key=key, help=helptext, placeholder="/data (folder with CUB_200_2011/, …)")


def build_sidebar() -> None:
    sb = st.sidebar
    sb.header("Settings")
    sb.selectbox("Loss preset", list(LOSS_PRESETS), key="preset", on_change=_on_preset,
                 help="Ablation rows of Tables 6–7 (η_H, η_E, K, τ) and the hard-negative paper's losses. "
                      "Sets the sliders below; K and loss are structural (then press Reset).")
    with sb.expander("Data and model — need Reset", expanded=False):
        for k in KNOBS:
            if k.group == "data" and (k.name != "data_root" or ss[_wkey("dataset")] in BENCHMARKS):
                sidebar_widget(k, st)
    with sb.expander("Geometry — live", expanded=True):
        for k in KNOBS:
            if k.group == "geometry":
                sidebar_widget(k, st)
    with sb.expander("CHEST loss (Eq. 5–10) — live", expanded=True):
        for k in KNOBS:
            if k.group == "loss":
                sidebar_widget(k, st)
    with sb.expander("Pairwise CE / Mix (hard-negative paper) — live", expanded=False):
        for k in KNOBS:
            if k.group == "pair":
                sidebar_widget(k, st)
    with sb.expander("Optimisation — live", expanded=False):
        for k in KNOBS:
            if k.group == "opt":
                sidebar_widget(k, st)
    with sb.expander("Page", expanded=False):
        st.slider("refresh every (s)", 0.4, 3.0, step=0.1, key="refresh",
                  help=f"plots redraw this often while playing; {TRAIN_FRACTION:.0%} of the time trains")
        st.slider("steps per ‘Step’ click", 1, 200, key="step_n")


def main() -> None:
    st.set_page_config(page_title="chestlab — live CHEST training", layout="wide", page_icon="🌀")
    st.markdown("<style>div.block-container{padding-top:1.2rem;} [data-testid='stMetricValue']{font-size:1.4rem;}</style>",
                unsafe_allow_html=True)
    url_problems = init_session()
    if ss.pop("_want_reset", False):
        ss["_do_reset"] = True
    build_sidebar()
    values = current_settings()
    try:
        cfg = settings_to_config(values)
    except ValueError as err:
        st.error(f"Invalid settings: {err}")
        return
    sync_url(values)

    st.markdown("## chestlab · hyperbolic + Euclidean metric learning, live")
    st.caption("CHEST (Combined Hyperbolic and Euclidean Soft Triple) trains class proxies in two spaces at once: "
               "the Poincaré ball (curvature −c) and ordinary Euclidean space. Press Play, then move any slider "
               "on the left — the next training step uses it. The (?) next to each control gives the paper's symbol and value.")
    for p in url_problems:
        st.warning(f"Ignored a URL setting — {p}")

    want_reset = ss.pop("_do_reset", False)
    if want_reset or (ss.get("trainer") is None and not ss.get("error")):
        with st.spinner("Building the model and data …"):
            reset(cfg)
    # compare settings changed: rebuild both runs so they start from the same seed
    if ss.get("compare") and ss.get("trainer") is not None and (ss.get("trainer_b") is None or ss.get("built_cmp") != (ss["cmp_key"], ss["cmp_value"])):
        reset(cfg)
    if not ss.get("compare") and ss.get("trainer_b") is not None:
        ss["trainer_b"], ss["rows_b"] = None, []

    # -- controls ---------------------------------------------------------------------------------
    c1, c2, c3, c4, c5 = st.columns([1.1, 1.1, 1.0, 2.2, 3.0])
    c1.button("Pause" if ss["playing"] else "Play", icon=":material/pause:" if ss["playing"] else ":material/play_arrow:",
              on_click=_on_play, type="primary", key="btn_play",
              width="stretch", disabled=ss.get("trainer") is None)
    c2.button(f"Step {ss['step_n']}", icon=":material/skip_next:", on_click=_on_step, key="btn_step", width="stretch",
              disabled=ss.get("trainer") is None, help="train this many steps, then redraw (change n under Page)")
    c3.button("Reset", icon=":material/restart_alt:", on_click=_on_reset, key="btn_reset", width="stretch",
              help="new model, proxies and optimizer from the current settings and seed")
    c4.toggle("Compare two runs", key="compare", help="run B = run A with one setting changed, same seed and batches")
    if ss["compare"]:
        cc1, cc2 = c5.columns(2)
        cc1.selectbox("B changes", COMPARE_KEYS, key="cmp_key", help="the one setting run B changes (e.g. η_E = 0: without L_E)")
        cc2.number_input(f"B: {ss['cmp_key']} =", key="cmp_value", step=0.1, min_value=0.0, format="%.4g")

    if ss.get("error"):
        st.error(f"The trainer could not be built with these settings. {ss['error']}  \n"
                 "Change the setting it names (or pick another dataset/backbone pair: `tree` needs `mlp`, "
                 "`shapes`/`digits` need `cnn`), then press Reset.")
        return
    tr: Trainer = ss["trainer"]

    # structural settings changed since the trainer was built
    changed = {k: (ss["built"].get(k), getattr(cfg, k)) for k in STRUCTURAL + ("data_root",) if ss["built"].get(k) != getattr(cfg, k)}
    if changed:
        desc = ", ".join(f"{k}: {a} → {b}" for k, (a, b) in changed.items())
        w1, w2 = st.columns([5, 1])
        w1.warning(f"**Needs reset** — structural settings changed ({desc}). The run keeps the old ones until you press Reset.")
        w2.button("Reset now", icon=":material/restart_alt:", on_click=_on_reset, key="btn_reset2", width="stretch")

    live, notes = effective_live(cfg)
    for note in notes:
        st.warning(note)
    for t in filter(None, (tr, ss.get("trainer_b"))):
        mine = dict(live)
        if t is ss.get("trainer_b"):
            key = ss["cmp_key"]
            if key in LIVE_KEYS:
                mine[key] = getattr(compare_config(cfg), key)
        if t.proxies() is None or t.criterion.K < 2:
            mine["tau"] = 0.0 if t.config.loss == "chest" else mine["tau"]
        diff = {k: v for k, v in mine.items() if getattr(t.config, k) != v}
        if diff:
            try:
                t.set(**diff)
            except ValueError as err:
                st.warning(f"Not applied: {err}")
    can_train = trainable(cfg, live)

    ss["_full_run"] = True  # the fragment trains only briefly in a full rerun: a widget change answers fast
    live_panel(can_train)
    with st.expander("Share and export"):
        st.markdown("**Share:** the address bar holds every setting that differs from the defaults — copy it "
                    "(add `&play=1` to start playing on open).")
        st.code("?" + "&".join(f"{k}={v}" for k, v in st.query_params.to_dict().items()) if st.query_params else "(defaults)")
        downloads(ss.setdefault("snap_holder", {}))


def live_panel(can_train: bool) -> None:
    """The fragment: train a chunk (when playing or asked to step), then draw. Reruns every
    ``refresh`` seconds while playing; a widget change interrupts it between steps."""
    every = float(ss["refresh"]) if ss["playing"] and can_train else None

    @st.fragment(run_every=every)
    def panel() -> None:
        tr: Trainer = ss["trainer"]
        trb: Optional[Trainer] = ss.get("trainer_b")
        pending = ss.pop("pending_steps", 0)
        full_run = ss.pop("_full_run", False)
        t0 = time.perf_counter()
        done = 0
        if can_train and not ss.get("diverged"):
            if pending:
                done = train_chunk(budget_s=60.0, max_steps=pending)
            elif ss["playing"] and full_run:
                done = train_chunk(budget_s=0.0, max_steps=1)  # a widget changed: answer it fast
            elif ss["playing"]:
                # TRAIN_FRACTION of each refresh trains, the rest draws and leaves the browser time to
                # render; a widget change preempts the loop between steps (each step touches
                # st.session_state, a Streamlit yield point)
                done = train_chunk(budget_s=TRAIN_FRACTION * float(ss["refresh"]))
        t_train = time.perf_counter() - t0
        # wall-clock step rate while playing: steps between redraws / time between redraws (training +
        # drawing + idle), what the target "steps/s while the plots refresh" means
        now, step = time.perf_counter(), ss["trainer"].step_count
        last = ss.get("_tick")
        if ss["playing"] and done and last is not None and 0 < now - last[0] < 5 * float(ss["refresh"]):
            r = (step - last[1]) / (now - last[0])
            ss["rate_wall"] = r if not ss.get("rate_wall") else 0.6 * ss["rate_wall"] + 0.4 * r
        ss["_tick"] = (now, step)
        if ss.get("diverged"):
            st.warning(f"⚠ Training stopped. {ss['diverged']}  \nChange the setting it suggests, then press Reset.")
            if ss["playing"]:
                ss["playing"] = False
        status_row(tr)
        snap: dict = {"config": tr.config.to_dict(), "rows": list(ss["rows"]), "history": list(tr.history)}
        runs = [("A", tr, ss["rows"])] + ([("B", trb, ss["rows_b"])] if trb is not None else [])
        cols = st.columns(len(runs)) if len(runs) > 1 else [st.container()]
        for (name, t, rows), col in zip(runs, cols):
            with col:
                if len(runs) > 1:
                    desc = "settings as in the sidebar" if name == "A" else f"{ss['cmp_key']} = {ss['cmp_value']:g}, everything else as A"
                    st.markdown(f"#### Run {name}: {desc}")
                    if name == "B":
                        mb = metric_line(t)
                        st.caption(f"step {t.step_count} · R@1 H {_fmt(mb['test/H/R@1'])} · R@1 E {_fmt(mb['test/E/R@1'])}")
                draw_run(name, t, rows, snap, wide=len(runs) == 1)
        ss.setdefault("snap_holder", {})["snap"] = snap
        t_draw = time.perf_counter() - t0 - t_train
        ss["timing"] = dict(steps=done, train_s=t_train, draw_s=t_draw)
        st.caption(f"Last redraw: {done} step(s) in {t_train:.2f} s, then drawing in {t_draw:.2f} s "
                   f"({'playing, refresh every %g s' % ss['refresh'] if ss['playing'] else 'paused'}).")

    panel()


def draw_run(name: str, tr: Trainer, rows: list, snap: dict, wide: bool) -> None:
    cfg = tr.config
    sim = tr.similarities() if (tr.last_output is not None and tr.criterion is not None) else None
    d = _disk_data(tr, ss["disk_split"])
    if name == "A":
        snap["sim"], snap["disk"] = sim, d
    left, right = st.columns([3, 2]) if wide else (st.container(), st.container())
    with left:
        st.markdown("**Similarities of the current batch** — positive class vs negative classes (paper Fig. 3)")
        if sim is None:
            st.info("Press Play or Step: the histograms show the last training batch." if tr.criterion is not None
                    else "The pairwise / Mix losses have no proxies: no class similarities to show.")
        else:
            st.plotly_chart(figures.similarity_histogram(sim, cfg.delta_h, cfg.delta_e, uirevision=f"sim{name}"),
                            key=f"sim_{name}", config={"displaylogo": False})
            st.caption("Learning pulls the blue (own class) to the right of the dashed line: the margin δ of Eq. 7 "
                       "asks S(x, own class) − δ to beat every other class.")
        st.markdown("**Loss and retrieval** — solid: unseen test classes, dashed: training classes")
        st.plotly_chart(figures.training_curves(rows + tr.history, uirevision=f"cur{name}"), key=f"cur_{name}",
                        config={"displaylogo": False})
    with right:
        st.markdown("**The Poincaré disk** — colour = class, shape = super-class, ★ = proxies")
        if name == "A" and ss.pop("_umap_requested", False):
            run_umap(tr, d, st.container())  # progress bar here; then show it (the radio is drawn below)
            if ss.get("umap"):
                ss["disk_view"] = "UMAP"
        umap = ss.get("umap") if (name == "A" and ss["disk_view"] == "UMAP" and ss.get("umap")) else None
        if umap is not None and umap.get("split") != ss["disk_split"]:
            umap = None  # computed on the other split: show the live projection instead
        fig, label = disk_figure(d, umap, key=f"disk{name}")
        st.plotly_chart(fig, key=f"disk_{name}", config={"displaylogo": False})
        st.caption(label + (f" · c = {d['c']:g}: boundary radius 1/√c = {1 / math.sqrt(d['c']):.2f}" if d["c"] > 0
                            else " · c = 0: the Euclidean plane (no boundary)"))
        if name == "A":
            o1, o2 = st.columns([3, 2])
            o1.radio("points", ("train", "test"), key="disk_split", horizontal=True,
                     help="train classes (with their proxies) or the unseen test classes")
            o2.toggle("geodesics", key="disk_grid", help="geodesics: diameters and the arcs orthogonal to them")
            o2.toggle("D_H circles", key="disk_circles", help="points at Poincaré distance 1, 2, 3 from the origin")
            u1, u2 = st.columns([1, 1])
            u1.radio("view", ("fast projection", "UMAP"), key="disk_view", horizontal=True)
            u2.button("Compute UMAP", key="btn_umap", on_click=lambda: ss.__setitem__("_umap_requested", True),
                      help="UMAP of the Poincaré distances with hyperboloid output, mapped to the disk "
                           "(seconds; the first time ~20 s to compile; training waits meanwhile)")
            if ss["disk_view"] == "UMAP" and not ss.get("umap"):
                st.caption("No UMAP yet: press Compute UMAP.")
    if name == "A" and wide:
        with st.expander("Hard negatives — where the gradient goes (hard-negative paper, Fig. 3)", expanded=True):
            st.plotly_chart(hardneg_figure(tr, d), key="hardneg", config={"displaylogo": False})
            st.caption(f"For one anchor of the current model, the weight w of each negative in the pairwise cross-entropy "
                       f"gradient, negatives sorted by distance (1 = hardest). Temperature t = {cfg.t:g} (hyperbolic), "
                       f"t_E = {cfg.t_e:g} (sphere); move t, t_E or c to see the weights concentrate on hard negatives.")


main()
