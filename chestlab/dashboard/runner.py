"""The page's runs: building them, passing live settings, the rules between settings, and training
in time-boxed chunks.

- :func:`reset` builds run A (and B in compare mode) from a config; a build that fails is explained on
  the page (``state.error``), never raised.
- :func:`apply_live` passes the live settings of the sidebar to a running trainer
  (``Trainer.set``). Values that would break a rule between settings (:func:`chestlab.settings.check`,
  e.g. ``tau > 0`` with ``K = 1``) are held back; :func:`problems` says which, next to the rule.
- :func:`train_chunk` trains every run for a time budget or a number of steps; a run that diverges
  (or whose step fails) stops with one line that says why (:func:`explain`) and pauses the page; in
  compare mode the other run may go on.

The page shows no exception text: a failed build names the settings responsible and how to fix them
(:func:`build_error`); the exception itself goes to the server log (logger ``chestlab.dashboard``),
where an unexpected one is logged as an error.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from typing import Any, Optional

from chestlab.settings import GROUPS, ConfigError, Problem, SettingError, TrainConfig, check, live_keys, schema

from .state import DashState, Run

__all__ = ["pick_device", "n_parameters", "TINY_PARAMS", "structural", "changed_structural", "repair", "build", "reset", "apply_live", "problems", "hints",
           "train_chunk", "settle", "measure_rate", "eval_due", "explain", "stop", "finite", "remember", "build_error", "LOG"]

#: The server log of the page: the exceptions behind its one-line messages (an unexpected one as an error).
LOG = logging.getLogger("chestlab.dashboard")


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
def structural(cfg: TrainConfig) -> dict[str, Any]:
    """The settings of ``cfg`` a run cannot change while training (a change needs a new run)."""
    sch = schema()
    return {k: getattr(cfg, k) for k in cfg.keys() if not sch[k].live}


def changed_structural(built: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Structural settings that differ between a run (``built``) and the sidebar's ``cfg``: key ->
    (run's value, sidebar's value). Settings of a loss the other side does not use are left out
    (``loss`` itself says it)."""
    now = structural(cfg)
    return {k: (built[k], now[k]) for k in now if k in built and built[k] != now[k]}


def _errors(cfg: TrainConfig) -> list[Problem]:
    return [p for p in check(cfg) if p.level == "error"]


def repair(cfg: TrainConfig, keep: Optional[TrainConfig] = None) -> tuple[TrainConfig, dict[str, Any]]:
    """A config the trainer accepts, when ``cfg`` breaks a rule between settings: the *live* settings
    the broken rules name are changed, trying in turn 0 (a weight of 0 switches a term off: ``tau = 0``
    with ``K = 1``), the values of ``keep`` (the run being replaced: it keeps the values it had), and
    the defaults. Structural settings are never changed. Returns the config and the changes ({} when
    none were needed or none helped: building then fails and says why)."""
    if not _errors(cfg):
        return cfg, {}
    sch, live = schema(), live_keys()

    def involved(c: TrainConfig) -> list[str]:
        keys = set(c.keys())
        return [k for p in _errors(c) for k in p.keys if k in live and k in keys]

    def zeros(c: TrainConfig) -> dict[str, Any]:
        out = {}
        for k in involved(c):
            if sch[k].type in (int, float):
                try:
                    out[k] = sch[k].validate(0)
                except SettingError:
                    pass
        return out

    keys = involved(cfg)
    sources = [zeros(cfg)]
    if keep is not None:
        sources.append({k: getattr(keep, k) for k in keys if k in keep.keys()})
    sources.append({k: sch[k].default_value() for k in keys})
    for fix in sources:
        if not fix:
            continue
        fixed = cfg.replace(**fix)
        more = zeros(fixed) if _errors(fixed) else {}
        if more:
            fixed, fix = fixed.replace(**more), {**fix, **more}
        if not _errors(fixed):
            return fixed, {k: v for k, v in fix.items() if getattr(cfg, k) != v}
    return cfg, {}


#: ``device = auto`` on the page: a model with at most this many parameters trains on the CPU even
#: where a GPU is present. The embedded demos' models (``mlp``/``cnn`` backbones, 10^4–10^5
#: parameters) are launch-bound on a GPU: on an H200 the ``tree`` demo trained 64 steps/s (216
#: without the loss), slower than one core of a 2-core CPU (~90 steps/s). A real backbone
#: (a ViT, 5·10^6 parameters and more) goes to the GPU.
TINY_PARAMS = 2_000_000
#: backbones a demo model is built from: only these may be tiny (any other goes to the GPU unbuilt)
DEMO_BACKBONES = ("mlp", "cnn")


def pick_device(cfg: TrainConfig, n_params: Optional[int] = None, cuda: Optional[bool] = None) -> str:
    """The device the page builds ``cfg`` on: ``cfg.device`` unless it is ``auto``; for ``auto``:
    the CPU without CUDA, or for a model of at most :data:`TINY_PARAMS` parameters (``n_params``;
    None: not known yet, which a demo backbone counts as tiny until built); ``cuda`` otherwise.
    ``cuda``: whether CUDA is present (None: ask torch)."""
    if cfg.device != "auto":
        return cfg.device
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if not cuda:
        return "cpu"
    if cfg.backbone not in DEMO_BACKBONES:
        return "cuda"
    return "cpu" if n_params is None or n_params <= TINY_PARAMS else "cuda"


def n_parameters(tr: Any) -> int:
    """Trainable parameters of a trainer's model and loss (the proxies included)."""
    return sum(p.numel() for p in tr.system.parameters() if p.requires_grad)


def build(cfg: TrainConfig, name: str = "A", label: str = "", keep: Optional[TrainConfig] = None,
          use_warm: bool = True) -> Run:
    """A new run from ``cfg`` (:func:`repair` ed, keeping the live values of ``keep`` that ``cfg``
    cannot have), evaluated once at step 0 so the curves start from the untrained model. The
    server's warm-up keeps one such trainer of the default settings ready
    (:func:`chestlab.dashboard.ready.take`, ``use_warm``): the first build of that config takes it.
    ``device = auto`` builds on :func:`pick_device` 's device: a demo model is built on the CPU and
    moved to CUDA (rebuilt there) only when it has more than :data:`TINY_PARAMS` parameters."""
    from chestlab.engine import Trainer

    from . import ready

    fixed = repair(cfg, keep)[0]
    device = pick_device(fixed)
    want = fixed.replace(device=device) if device != fixed.device else fixed
    tr = ready.take(want) if use_warm else None  # the server's warm-up built this one already
    if tr is None:
        tr = Trainer(want)
        if fixed.device == "auto" and device == "cpu" and pick_device(fixed, n_parameters(tr)) != "cpu":
            tr = Trainer(fixed.replace(device="cuda"))  # not tiny after all: the GPU
        tr.evaluate()
    return Run(name=name, trainer=tr, built=structural(cfg), label=label)


def reset(state: DashState, cfg: TrainConfig, cfg_b: Optional[TrainConfig] = None, label_b: str = "",
          cmp: Optional[tuple[str, Any]] = None) -> None:
    """(Re)build run A — and run B from ``cfg_b`` in compare mode — from their configs and seed.
    A failure of A is kept in ``state.error`` (shown instead of the plots) and pauses the page; a
    failure of B in ``state.error_b`` (run A is drawn alone). Run B is never :func:`repair` ed away
    from the value it compares: a rule that value breaks is the reason B is not built."""
    keep = [r.trainer.config for r in state.runs]
    state.clear()
    try:
        state.runs.append(build(cfg, "A", keep=keep[0] if keep else None))
    except Exception as err:  # a bad combination is explained on the page, never raised
        state.runs = []
        state.error = build_error(cfg, err)
        state.playing = False
        return
    if cfg_b is None:
        return
    state.built_cmp = cmp  # also when B fails: the page does not rebuild until B's setting changes
    key = cmp[0] if cmp else None
    errs = _errors(cfg_b)
    fix = repair(cfg_b, keep[1] if len(keep) > 1 else None)[1] if errs else {}
    if errs and (not fix or key in fix):  # B would not be what it says it compares
        state.error_b = next((p for p in errs if key in p.keys), errs[0]).message
        return
    try:
        state.runs.append(build(cfg_b, "B", label_b, keep=keep[1] if len(keep) > 1 else None))
    except Exception as err:
        state.error_b = build_error(cfg_b, err)


#: Where building a run can fail (a function of :mod:`chestlab.engine`): what it builds, and the
#: setting groups that decide it.
_PHASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "create_datasets": ("making the data", ("data",)),
    "create_model": ("building the model", ("model", "geometry")),
    "create_criterion": ("building the loss", ("loss", "geometry", "model")),
    "create_optimizer": ("building the optimizer", ("optim",)),
    "evaluate": ("evaluating the new run", ("schedule", "data", "model")),
}


def _phase(err: BaseException) -> tuple[str, tuple[str, ...]]:
    """The part of building a run where ``err`` arose: the first frame of :mod:`chestlab.engine` (or of
    this module) that is, or calls, one of :data:`_PHASES`."""
    for frame in traceback.extract_tb(err.__traceback__):
        if "chestlab" not in frame.filename or not ("engine" in frame.filename or frame.filename == __file__):
            continue
        for name, phase in _PHASES.items():
            if frame.name == name or f"{name}(" in (frame.line or ""):
                return phase
    return "building the run", GROUPS


def _trouble(err: BaseException, n: int) -> tuple[str, str]:
    """What went wrong and the fix, in words for ``n`` settings (never the exception's own text)."""
    text, it = str(err).lower(), "it" if n == 1 else "them"
    if isinstance(err, MemoryError) or any(w in text for w in ("alloc", "out of memory", "not enough memory")):
        return ("needs" if n == 1 else "need") + " more memory than this machine has", f"lower {it}"
    if isinstance(err, OverflowError) or "nan or inf" in text or "overflow" in text:
        return ("makes" if n == 1 else "make") + " values overflow to inf or NaN", f"lower {it}"
    if isinstance(err, OSError):
        return ("names" if n == 1 else "name") + " a file or folder that cannot be used", f"change {it}"
    return ("is a value" if n == 1 else "are values") + " the run cannot be built with", f"change {it}"


#: At most this many seconds go into finding which setting broke a build (:func:`_culprits`).
CULPRIT_BUDGET_S = 8.0


def _culprits(cfg: TrainConfig, candidates: list[str]) -> list[str]:
    """The first of ``candidates`` that, set back to the page's default alone, lets the run build
    (``[]`` when none does within :data:`CULPRIT_BUDGET_S`): the setting responsible, found by
    trying rather than guessed from where the exception arose (``proxy_std = 1e300`` breaks the
    first evaluation, not the building of the loss)."""
    from .defaults import BASE

    t0 = time.perf_counter()
    for k in candidates:
        if time.perf_counter() - t0 > CULPRIT_BUDGET_S:
            break
        try:
            build(cfg.replace(**{k: getattr(BASE, k)}))
        except Exception:  # still broken (or this default breaks a rule): not this one
            continue
        return [k]
    return []


def build_error(cfg: TrainConfig, err: BaseException) -> str:
    """Why a run could not be built, in one line that names the settings responsible and how to fix
    them. The schema's and the rules' own lines (:class:`SettingError`, :class:`ConfigError`) are
    shown as they are; any other exception goes to the server log (:data:`LOG`) and is attributed
    to the setting that, set back to the page's default, lets the run build (:func:`_culprits`),
    else to the settings of the part being built (data, model, loss, optimizer, first evaluation)
    that differ from the page's defaults."""
    from chestlab.data import DatasetError, available_datasets, dataset_info

    from .defaults import BASE
    from .fields import format_value
    from .text import escape, literal, refusal

    if isinstance(err, SettingError):
        return refusal(err)
    if isinstance(err, ConfigError):
        return escape(str(err))
    LOG.warning("a run could not be built", exc_info=err)
    if isinstance(err, DatasetError):  # its message names the server's folders: not for the page
        embedded = ", ".join(n for n in available_datasets() if dataset_info(n).embedded)
        return (f"dataset = {cfg.dataset}: its files are missing or damaged on this server, and the page cannot "
                f"set data_root; choose one of {embedded}, or train it on the command line "
                f"(python -m chestlab.train --set dataset={cfg.dataset} --set data_root=FOLDER)")
    doing, groups = _phase(err)
    sch = schema()
    changed = [k for k in cfg.keys() if getattr(cfg, k) != getattr(BASE, k, None)]
    near = [k for k in changed if sch[k].group in groups]  # the settings of the part that failed first
    names = _culprits(cfg, near + [k for k in changed if k not in near]) or near or changed
    if not names:
        LOG.error("the page's default settings could not be built", exc_info=err)
        return f"{doing} failed with the page's default settings (details in the server log); press Reset"
    own = _own_line(err, names)
    if own is not None:  # chestlab's own one-line refusal, naming the setting: the best words for it
        return f"{doing} failed: {own}"
    shown = ", ".join(f"{k} = {literal(format_value(sch[k], getattr(cfg, k)))}" for k in names)
    defaults = ", ".join(f"{k} = {format_value(sch[k], getattr(BASE, k))}" for k in names)
    trouble, fix = _trouble(err, len(names))
    return f"{doing} failed: {shown} {trouble}; {fix}, or set {'it' if len(names) == 1 else 'them'} back to the page's default ({defaults})"


def _own_line(err: BaseException, names: list[str]) -> Optional[str]:
    """``err``'s message, Markdown-escaped, when chestlab itself raised it as a one-line
    ``ValueError`` that names one of ``names`` (``backbone 'cnn' needs images ...; use 'mlp'``);
    None for anything else (a library's exception, a numerical check that names no setting)."""
    from .text import escape

    frames = traceback.extract_tb(err.__traceback__)
    text = str(err)
    if type(err) is not ValueError or not frames or "chestlab" not in frames[-1].filename or "\n" in text:
        return None
    if not any(re.search(rf"\b{re.escape(k)}\b", text) for k in names):
        return None
    return escape(text)


# ------------------------------------------------------------------------------------------------
# live settings and rules
# ------------------------------------------------------------------------------------------------
def apply_live(run: Run, cfg: TrainConfig, override: Optional[dict[str, Any]] = None) -> tuple[set[str], Optional[str]]:
    """Pass the live settings of ``cfg`` (and ``override``: run B's changed setting) that differ from
    the run's to its trainer. Values that would break a rule between settings are held back.
    Returns (held-back keys, the trainer's refusal or None)."""
    tr = run.trainer
    live = live_keys()
    want = {k: getattr(cfg, k) for k in tr.config.keys() if k in live and getattr(tr.config, k) != getattr(cfg, k)}
    for k, v in (override or {}).items():
        if k in live and k in tr.config.keys():
            if getattr(tr.config, k) != v:
                want[k] = v
            else:
                want.pop(k, None)
    if not want:
        return set(), None
    held = {k for p in _errors(tr.config.replace(**want)) for k in p.keys if k in want}
    apply = {k: v for k, v in want.items() if k not in held}
    if not apply:
        return held, None
    try:
        with run.lock:  # not in the middle of another script thread's step (see Run.lock)
            tr.set(**apply)
    except SettingError as err:  # refused whole: nothing changed
        from .text import refusal

        return held, refusal(err)
    except ValueError as err:
        return held, " ".join(str(err).split())
    return held, None


def problems(cfg: TrainConfig, run: Optional[Run] = None) -> list[str]:
    """The rules between settings that are broken, one line each, with what the page does about it:
    first those of the trainer actually built with the sidebar's live values (its loss may differ
    from the sidebar's until Reset: its rules are the ones that decide what trains now; the values
    that break them are held back by :func:`apply_live`), then those of the sidebar's ``cfg`` (what
    Reset builds)."""
    out = []
    seen = set()
    live = live_keys()
    tr = run.trainer if run is not None else None

    def kept(p: Problem) -> str:
        # the live values that break an error rule are held back: the run keeps its own until fixed
        ks = [k for k in p.keys if k in live and tr is not None and k in tr.config.keys()
              and getattr(tr.config, k) != getattr(cfg, k)]
        return " — the run keeps " + ", ".join(f"{k} = {_fmt(getattr(tr.config, k))}" for k in ks) + " until then." if ks else ""

    if tr is not None:
        wanted = tr.config.replace(**{k: getattr(cfg, k) for k in tr.config.keys() if k in live})
        for p in check(wanted):
            seen.add(p.message)
            out.append(p.message + (kept(p) if p.level == "error" else ""))
    for p in check(cfg):
        if p.message in seen:
            continue
        text = p.message
        if p.level == "error":
            note = kept(p)
            if not note:
                fix = repair(cfg, tr.config if tr is not None else None)[1]
                note = (" — the run is built with " + ", ".join(f"{k} = {_fmt(v)}" for k, v in fix.items()) + " until then."
                        if fix else " — Reset cannot build a run until this is fixed.")
            text += note
        out.append(text)
    return out


def hints(cfg: TrainConfig) -> list[str]:
    """Teaching notes about a valid but telling combination (not rule violations)."""
    from chestlab.losses import get_loss

    return list(get_loss(cfg.loss).hints(cfg))  # the loss's own notes (CHEST: only the HypHC term trains)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def eval_due(tr: Any) -> bool:
    every = tr.config.eval_every
    return bool(every) and tr.step_count % every == 0


def _one_step(run: Run, evaluate: bool = True) -> None:
    """One training step of ``run``; the evaluation due at it is done now (``evaluate``) or owed
    (``run.eval_owed``: :func:`settle` does it)."""
    with run.lock:  # another script thread may be finishing its step on this run (see Run.lock)
        if run.diverged:  # it stopped the run meanwhile
            return
        tr = run.trainer
        ev = tr.train_step()
        run.rows.append({"step": ev.step, "loss": ev.loss, **ev.components, "grad_norm": ev.grad_norm})
        if eval_due(tr):
            run.eval_owed = True
            if evaluate:
                tr.evaluate()
                run.eval_owed = False


def finite(tr: Any) -> bool:
    """All parameters of the trainer's model and loss are finite (a huge learning rate can leave
    them NaN/inf after an update whose loss was still finite)."""
    import torch

    return all(bool(torch.isfinite(v).all()) for v in _tensors(tr).values())


def _tensors(tr: Any) -> dict:
    """The floating-point tensors of the model and loss: parameters and buffers (a normalisation
    layer's running statistics go NaN too)."""
    import torch

    return {k: v for k, v in tr.system.state_dict().items() if torch.is_tensor(v) and v.is_floating_point()}


def explain(run: Run, err: BaseException) -> str:
    """Why a run stopped, in one line that says what to change (never a bare exception text for
    the cases a setting causes)."""
    from chestlab.engine import TrainingDiverged

    tr = run.trainer
    cfg = tr.config
    if isinstance(err, TrainingDiverged):  # carries the trainer's diagnosis
        return str(err)
    if isinstance(err, RuntimeError) and "does not require grad" in str(err):
        # the loss of the trainer actually built does not depend on any parameter (every term off)
        sch = schema()
        off = [k for k in cfg.keys() if sch[k].section == cfg.loss and sch[k].live and sch[k].type is float
               and getattr(cfg, k) == 0]
        which = ", ".join(f"{k} = 0" for k in off) or "these settings"
        return (f"nothing to train at step {tr.step_count + 1}: with {which} the {cfg.loss} loss does not depend on "
                f"any trainable parameter; set one of {', '.join(off) or 'its weights'} > 0")
    if not finite(tr) or "NaN or inf" in str(err) or "outside the Poincaré ball" in str(err):
        # the library's own checks of non-finite values and of points that left the ball
        big = max(cfg.lr, cfg.lr_proxy) > 0.1
        hint = (f"the learning rates (lr = {cfg.lr:g}, lr_proxy = {cfg.lr_proxy:g}) are too large; lower them" if big
                else "lower the learning rates, weight_decay, c or r, or set grad_clip")
        return (f"training diverged by step {tr.step_count}: the model's parameters or embeddings became NaN, inf "
                f"or left the ball. Likely cause: {hint}")
    # unexpected: the exception goes to the server log as an error (tests/test_dashboard_fuzz.py flags these)
    LOG.error("run %s stopped at step %d by an unexpected error", run.name, tr.step_count, exc_info=err)
    return f"an unexpected error stopped it at step {tr.step_count} (details in the server log); press Reset"


def remember(run: Run) -> None:
    """Keep the run's parameters as its last good state (cheap: the page's models are small)."""
    run.good_state = {k: v.detach().clone() for k, v in _tensors(run.trainer).items()}


def stop(state: DashState, run: Run, why: str) -> None:
    """Stop ``run`` (it trains no more until Reset) and pause the page. Its parameters go back to
    the last good state (an update may have left them NaN/inf, or finite but so large that the
    embeddings overflow), so every panel draws that state instead of failing."""
    if run.good_state is not None:
        import torch

        with run.lock, torch.no_grad():
            now = _tensors(run.trainer)  # views of the live tensors: copied into in place
            for k, good in run.good_state.items():
                if k in now and now[k].shape == good.shape:
                    now[k].copy_(good)
    run.diverged = why
    state.diverged = why if len(state.runs) < 2 else f"run {run.name}: {why}"
    state.playing = False


def train_chunk(state: DashState, budget_s: float, max_steps: Optional[int] = None,
                between_steps: Any = None) -> int:
    """Train every run that has not stopped for up to ``budget_s`` seconds (at least one step) or
    ``max_steps`` steps; returns the steps done. A run whose step fails (divergence, nothing to
    train, …) stops with :func:`explain` 's line in ``run.diverged`` (and ``state.diverged``) and
    pauses the page; in compare mode the other run trains on at the next Play or Step.

    ``between_steps()`` is called after each step of all runs (A then B: they stay in lock-step) and
    between the runs' evaluations: the page passes a Streamlit yield point there, so a click
    interrupts the chunk within one step or one evaluation (Streamlit's control-flow exceptions are
    ``BaseException`` s and pass through). An evaluation due at a step is done after every run has
    taken it (``run.eval_owed``); one an interruption left undone is done first by the next chunk or
    by :func:`settle`."""
    t0 = time.perf_counter()
    done = 0
    settle(state, between_steps)
    while (max_steps is None or done < max_steps) and (time.perf_counter() - t0 < budget_s or done == 0):
        active = [r for r in state.runs if not r.diverged]
        if not active:
            break
        failed = False
        for run in active:
            try:
                _one_step(run, evaluate=False)
            except Exception as err:  # explained on the page, never raised
                stop(state, run, explain(run, err))
                failed = True
        if any(not r.diverged for r in active):
            done += 1  # the other run of compare mode did this step
        if failed:
            break
        if between_steps is not None:
            between_steps()
        settle(state, between_steps)
    dt = time.perf_counter() - t0
    if done and dt > 0:
        state.rate = done / dt if not state.rate else 0.7 * state.rate + 0.3 * done / dt
    return done


def settle(state: DashState, between_steps: Any = None) -> None:
    """Do the evaluations the runs owe (due at their last step, not done yet: :func:`train_chunk`
    was interrupted between them), one run at a time, ``between_steps()`` after each."""
    for run in state.runs:
        if run.eval_owed and not run.diverged:
            try:
                with run.lock:
                    if run.eval_owed and not run.diverged:
                        run.trainer.evaluate()
            except Exception as err:
                stop(state, run, explain(run, err))
            run.eval_owed = False
            if between_steps is not None:
                between_steps()


def measure_rate(state: DashState, done: int, refresh: float) -> None:
    """Wall-clock steps/s while playing: steps between redraws / time between redraws (training,
    drawing and idle time: what "steps/s while the plots refresh" means)."""
    now, step = time.perf_counter(), state.trainer.step_count
    last = state.tick
    if state.playing and done and last is not None and 0 < now - last[0] < 5 * refresh:
        r = (step - last[1]) / (now - last[0])
        state.rate_wall = r if not state.rate_wall else 0.6 * state.rate_wall + 0.4 * r
    state.tick = (now, step)
