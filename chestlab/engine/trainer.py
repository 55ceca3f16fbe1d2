"""The one training loop of chestlab: the CLI, the dashboard, the notebooks and the reproduction
scripts all drive :class:`Trainer`.

A trainer is built from a :class:`~chestlab.settings.TrainConfig` by the builders of
:mod:`chestlab.engine.build`. ``trainer.run()`` yields typed events (step, eval, similarity,
checkpoint) that callers plot or log; ``trainer.set(c=0.1, delta_h=5, ...)`` changes live settings
between steps, while structural ones (dataset, backbone, ``K``, dimensions) need a new trainer.
"""

from __future__ import annotations

import json
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import data, models, plugins, poincare
from ..losses import Loss, LossOutput
from ..settings import ConfigError, TrainConfig, live_keys, machine_keys
from . import build, checkpoint
from .evaluator import Evaluator
from .events import (
    RUN_FILES,
    CheckpointEvent,
    EvalEvent,
    Event,
    RunLogger,
    SettingsEvent,
    SimilarityEvent,
    StepEvent,
    TrainingDiverged,
)
from .lock import RunLock

__all__ = ["Trainer"]


def _first_missing(folder: Optional[Path]) -> Optional[Path]:
    """The outermost folder of ``folder``'s path that does not exist yet (None when it exists)."""
    if folder is None or folder.exists():
        return None
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def _remove_empty(folder: Optional[Path], top: Optional[Path]) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty (what a failed start made)."""
    if folder is None or top is None:
        return
    for d in (folder, *folder.parents):
        try:
            d.rmdir()
        except OSError:
            return
        if d == top:
            return


class _StepBatchSampler(torch.utils.data.Sampler):
    """The trainer's per-step batches from ``start`` on, as a DataLoader batch sampler."""

    def __init__(self, trainer: "Trainer", start: int) -> None:
        self.trainer, self.start = trainer, start

    def __iter__(self):
        step = self.start
        while True:
            yield self.trainer.step_indices(step)
            step += 1


class Trainer:
    """Builds data, model, loss and optimizer from a :class:`TrainConfig` and trains step by step.

    ``out_dir`` (optional) receives ``config.json``, ``events.jsonl``, ``steps.csv``, ``eval.csv`` and
    ``checkpoint.pt`` (rank 0 only); a folder that holds another run is refused unless ``overwrite``
    (which deletes only those files). ``resume=True`` continues from ``out_dir/checkpoint.pt``: the
    run's structural settings must equal ``config``'s; live settings that differ are applied after
    the checkpoint is loaded and recorded (a ``settings`` event, and ``history`` in config.json).

    The trainer holds the folder's lock (:class:`~chestlab.engine.lock.RunLock`) until :meth:`close`
    (or until it is garbage-collected): a second trainer on the same folder is refused. A trainer
    that cannot be built (a bad device, an unreadable ``hierarchy_file``, an interrupt) leaves
    nothing behind: a folder it made is removed again and its lock released.
    """

    def __init__(self, config: TrainConfig, out_dir: Optional[Union[str, Path]] = None, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.config = cfg = config
        build.validate(cfg)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = build.resolve_device(cfg.device)  # before the run folder: a bad device writes nothing
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads if cfg.threads > 0 else max(1, (os.cpu_count() or 2) - 1))
        self._lock: Optional[RunLock] = None
        self.saved_step: Optional[int] = None  # the step of the last checkpoint written (or resumed from)
        made = _first_missing(self.out_dir)
        try:
            self._setup(self._prepare_out_dir(resume, overwrite))
        except BaseException:
            self.close()
            _remove_empty(self.out_dir, made)
            raise
        if self._lock is not None:  # a trainer dropped without close() frees its folder too
            weakref.finalize(self, self._lock.release)

    def _setup(self, state: Optional[dict]) -> None:
        """Datasets, model, loss, optimizer and evaluator; the checkpoint's ``state`` when resuming."""
        cfg = self.config
        torch.manual_seed(cfg.seed)

        sets = build.create_datasets(cfg)
        self.train_set, self.test_set = sets.train, sets.test
        self._train_labels = self.train_set.labels
        # one batch per "epoch" = per step: the batch of step s depends only on (seed, rank, s), so a
        # resumed run sees exactly the batches of an uninterrupted one
        self._in_memory = build.in_memory(self.train_set)

        self.model: models.CHESTModel = build.create_model(cfg, sets.input_shape)
        if cfg.pretrain_steps and state is None:  # a resumed run's checkpoint holds the pretrained weights
            from .pretrain import pretrain

            pretrain(self.model, cfg)
        self.criterion: Loss = build.create_criterion(cfg, self.model, self.train_set.num_classes)
        self._batches = build.create_batch_sampler(cfg, self._train_labels, self.rank, supervised=self.criterion.supervised)
        self.system = build.System(self.model, self.criterion).to(self.device)
        self._ddp: nn.Module = self.system
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = nn.parallel.DistributedDataParallel(self.system, device_ids=ids)
        self.optimizer = build.create_optimizer(cfg, self.model, self.criterion)
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if (self.use_amp and torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.evaluator = Evaluator(cfg, self.model, self.device, {"train": self.train_set, "test": self.test_set},
                                   sets.splits, self.autocast, proxies=self.proxies)
        if cfg.hierarchy_file:  # read it now, not at the first evaluation after training
            self.evaluator.check_hierarchy_file()

        self.step_count = 0
        self.last_output: Optional[LossOutput] = None
        self._last_labels: Optional[Tensor] = None
        self.history: list[dict] = []
        self.settings_history: list[dict] = []
        self.pending_eval = False  # an evaluation due at step_count that an interrupt cut short
        self.consistent = True  # False after an interrupt inside the optimizer update
        self._loader_iter = None
        self._loader_step = -1
        self.logger = None
        changes: dict = {}
        if state is not None:
            changes = self._resume_from(state)
        if self.out_dir is not None and self.rank == 0:
            self.logger = RunLogger(self.out_dir, resume_step=self.step_count if state is not None else None)
            if changes:
                self._record_settings(changes)
            self._write_config()

    # -- run folder -------------------------------------------------------------------------------
    def _prepare_out_dir(self, resume: bool, overwrite: bool) -> Optional[dict]:
        """Check ``out_dir`` before anything is built; the checkpoint's state when resuming."""
        out = self.out_dir
        if out is None:
            if resume:
                raise ConfigError("--resume needs --out RUN: the folder of the run to continue")
            return None
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder; choose a folder for the run")
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".chestlab-write-test{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise ConfigError(f"--out {out} cannot be written ({err.strerror or err}); choose a folder you can write to") from None
        if self.rank == 0:
            self._lock = RunLock(out).acquire()
        if resume:
            plugins.load_recorded_file(out / "config.json")  # what the run used (a plug-in's rules, ...)
            return checkpoint.load_state(out / checkpoint.CHECKPOINT)
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found and not overwrite and self.rank == 0:
            raise ConfigError(f"--out {out} holds another run ({', '.join(found)}); continue it with --resume, choose "
                              "another folder, or pass --overwrite to replace that run (other files are kept)")
        if self.rank == 0:
            for name in found:
                (out / name).unlink()
        return None

    def _resume_from(self, state: dict) -> dict:
        """Load the checkpoint; refuse structural differences; apply and return live changes."""
        try:
            stored = TrainConfig.from_dict(state["config"])
        except ValueError as err:
            raise ConfigError(f"{self.out_dir / checkpoint.CHECKPOINT} holds settings this version cannot use ({err})") from None
        mine = self.config
        keys = dict.fromkeys([*stored.keys(), *mine.keys()])
        differ = {k: (getattr(stored, k), getattr(mine, k)) for k in keys if getattr(stored, k) != getattr(mine, k)}
        structural = {k: v for k, v in differ.items() if k not in live_keys() and k not in machine_keys()}
        if structural:
            k, (old, new) = next(iter(structural.items()))
            more = f" (and {', '.join(list(structural)[1:])})" if len(structural) > 1 else ""
            raise ConfigError(f"--resume: {k} = {new} but the run was trained with {k} = {old}{more}; structural "
                              "settings cannot change on resume: drop that --set, or start a new run with another --out")
        if mine.steps < int(state["step"]):
            raise ConfigError(f"--resume: steps = {mine.steps} is below the checkpoint's step {state['step']}; "
                              f"ask for steps >= {state['step']}")
        target = mine
        self.config = stored.replace(**{k: getattr(mine, k) for k in machine_keys()})
        checkpoint.restore(self, state)
        self.saved_step = self.step_count
        changes = {k: (old, new) for k, (old, new) in differ.items() if k in live_keys()}
        if changes:
            self.set(**{k: new for k, (old, new) in changes.items()})
        self.config = target
        self.evaluator.cfg = target
        return changes

    def _record_settings(self, changes: dict) -> None:
        entry = {"step": self.step_count, "changes": {k: [old, new] for k, (old, new) in changes.items()}}
        self.settings_history.append(entry)
        self._emit(SettingsEvent(self.step_count, entry["changes"]))

    def _write_config(self) -> None:
        """config.json: the settings in force now, and the history of live changes (atomic)."""
        d = self.config.to_dict()
        used = plugins.recorded(type(self.criterion).__module__)
        if used:  # loaded again by evaluate, --resume, reproduce
            d["plugins"] = used
        if self.settings_history:
            d["history"] = self.settings_history
        checkpoint.atomic_write_text(self.out_dir / "config.json", json.dumps(d, indent=2, default=str))

    def autocast(self):
        """The AMP context of this run (a no-op on the CPU)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    # -- live settings ----------------------------------------------------------------------------
    def set(self, **changes: Any) -> None:
        """Change live settings (see :func:`chestlab.settings.live_keys`); they apply from the next
        step on. Every value is validated first; a rejected call changes nothing."""
        structural = sorted(set(changes) - live_keys())
        if structural:
            raise ValueError(f"{structural} cannot change during training: build a new Trainer (structural settings)")
        new = self.config.replace(**changes)
        build.validate(new)
        own = {k: v for k, v in changes.items() if k in self.criterion.hparams()}
        if own:
            self.criterion.set(**own)
        if "c" in changes:
            self.model.head.c = new.c
        if "r" in changes:
            self.model.head.r = new.r
        if new.euclid_space == "auto":  # the loss's rule (CHEST: Sec. 4.4) follows its settings live
            space = build.euclid_space(new)
            self.model.euclid_space = space
            if hasattr(self.criterion, "euclid_space"):
                self.criterion.euclid_space = space
        build.apply_optim_settings(self.optimizer, new, self.criterion)
        old = self.config
        self.config = new
        self.evaluator.cfg = new
        if self.logger is not None:
            diff = {k: (getattr(old, k), v) for k, v in changes.items() if getattr(old, k) != v}
            if diff:
                self._record_settings(diff)
                self._write_config()

    # -- data ---------------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """Step ``step``'s training batch on the trainer's device: images or features (B, ...),
        labels (B,) and the samples' dataset indices (B,) -- the batch ``train_step`` uses there."""
        idx = torch.as_tensor(self.step_indices(step))
        if self._in_memory:
            x, y = self.train_set.data[idx], self._train_labels[idx]
        else:
            # images: decoded and augmented by DataLoader workers, prefetched in step order
            if self._loader_iter is None or self._loader_step != step:
                loader = torch.utils.data.DataLoader(
                    self.train_set, batch_sampler=_StepBatchSampler(self, step), num_workers=self.config.workers,
                    pin_memory=self.device.type == "cuda", persistent_workers=False,
                )
                self._loader_iter = iter(loader)
            x, y = next(self._loader_iter)
            self._loader_step = step + 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), idx.to(self.device)

    def step_indices(self, step: int) -> list[int]:
        """The training-set indices of the batch of ``step`` (a function of seed, rank and step)."""
        self._batches.set_epoch(step)
        return next(iter(self._batches))

    # -- one step -------------------------------------------------------------------------------------
    def _rng_states(self) -> list:
        gens = [m.generator for m in self.criterion.modules() if isinstance(getattr(m, "generator", None), torch.Generator)]
        return [torch.get_rng_state(), [(g, g.get_state()) for g in gens]]

    def train_step(self) -> StepEvent:
        """One optimizer step. An exception before the update (an interrupt, a corrupt image) leaves
        the trainer exactly as it was, samplers included, so a checkpoint saved then resumes exactly."""
        snapshot = self._rng_states()
        try:
            return self._train_step()
        except BaseException:
            if self.consistent:
                torch.set_rng_state(snapshot[0])
                for g, st in snapshot[1]:
                    g.set_state(st)
            raise

    def _train_step(self) -> StepEvent:
        cfg = self.config
        t0 = time.perf_counter()
        x, y, idx = self.batch(self.step_count)
        self.criterion.before_step(self.step_count, self)
        self.system.train()
        with self.autocast(), poincare.checks(False):
            out = self._ddp(x, y, idx if self.criterion.needs_index else None)
        loss = out.total
        if not torch.isfinite(loss):
            raise TrainingDiverged(self.step_count, self._diagnose(f"the loss became {float(loss.detach())}", out))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = cfg.grad_clip if cfg.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self.step_count, self._diagnose(f"the gradient norm became {float(grad_norm)}", out))
        self.consistent = False  # an interrupt inside the update would leave some parameters updated
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.step_count += 1
        self.consistent = True
        self.last_output = out
        self._last_labels = y
        return StepEvent(
            step=self.step_count,
            loss=float(loss.detach()),
            components={k: float(v.detach()) for k, v in out.parts.items()},
            lrs={g["name"]: g["lr"] for g in self.optimizer.param_groups},
            step_time=time.perf_counter() - t0,
            grad_norm=float(grad_norm),
        )

    def _diagnose(self, what: str, out: LossOutput) -> str:
        cfg = self.config
        edge = 1 - math.tanh(math.sqrt(cfg.c) * cfg.r) if cfg.c > 0 and math.isfinite(cfg.r) else 0.0
        causes = []
        if cfg.c > 0 and (not math.isfinite(cfg.r) or edge < 1e-4):
            causes.append(
                f"with c = {cfg.c:g} and r = {cfg.r:g} embeddings reach {1 - edge:.7f} of the ball's radius, where "
                f"float32 cannot resolve distances: lower r (paper 2.3) or c"
            )
        if max(cfg.lr, cfg.lr_proxy) > 1e-1:
            causes.append(f"the learning rates (lr = {cfg.lr:g}, lr_proxy = {cfg.lr_proxy:g}) may be too large")
        if (loss_hint := self.criterion.divergence_hint(cfg)):  # the loss's own likely cause (CHEST: lambda * delta)
            causes.append(loss_hint)
        parts = ", ".join(f"{k} = {float(v.detach()):.4g}" for k, v in out.parts.items())
        hint = "; ".join(causes) or "lower the learning rates, c or r, or enable grad_clip"
        return (
            f"training diverged at step {self.step_count + 1}: {what} ({parts}). Likely cause: {hint}. "
            f"The model was left at step {self.step_count}" + (" and the last checkpoint is kept." if self.out_dir else ".")
        )

    # -- evaluation -----------------------------------------------------------------------------------
    @property
    def _info_splits(self) -> tuple[str, ...]:
        return self.evaluator.splits

    def embed(self, split: str = "test", max_n: Optional[int] = None, batch_size: int = 256) -> dict:
        """Embeddings of a split: ``{"x_e": (N, D_E), "x_h": (N, D_H), "labels": (N,), "super": (N,),
        "index": (N,)}`` on the CPU; ``max_n`` takes a fixed random subset (same for every call)."""
        return self.evaluator.embed(split, max_n, batch_size)

    def evaluate(self, splits: Optional[tuple[str, ...]] = None) -> EvalEvent:
        """Recall@k and MAP@R in both spaces (E: x_e, Euclidean; H: x_h, Poincaré) on the given splits.
        For In-shop, ``test`` is evaluated the conventional way: queries retrieve from the gallery."""
        self.system.eval()
        self.pending_eval = splits is None  # a scheduled evaluation: redone on resume if cut short
        out, seconds = self.evaluator.evaluate(splits)
        ev = EvalEvent(self.step_count, out, seconds)
        self.history.append({"step": self.step_count, **out})
        self.pending_eval = False
        return ev

    def similarities(self) -> Optional[SimilarityEvent]:
        """The last batch's S_H / S_E to its own class (positive) and the other classes (negative);
        None for a loss that computes no class similarities."""
        out, y = self.last_output, self._last_labels
        if out is None or y is None:
            raise RuntimeError("no step has run yet: call train_step() first")
        s_h, s_e = out.extras.get("s_h"), out.extras.get("s_e")
        if s_h is None and s_e is None:
            return None

        def split(S: Optional[Tensor]):
            if S is None:
                return None, None
            S = S.detach().float().cpu()
            yy = y.cpu()
            pos = S.gather(1, yy[:, None]).squeeze(1)
            mask = torch.ones_like(S, dtype=torch.bool)
            mask[torch.arange(len(yy)), yy] = False
            return pos.numpy(), S[mask].numpy()

        h_pos, h_neg = split(s_h)
        e_pos, e_neg = split(s_e)
        return SimilarityEvent(self.step_count, h_pos, h_neg, e_pos, e_neg)

    def proxies(self) -> Optional[dict]:
        """Current proxies: ``{"h": (C, K, D_H), "e": (C, K, D_E)}`` on the CPU, or None without proxies."""
        return self.criterion.proxy_points()

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, steps: Optional[int] = None, *, similarity_every: int = 0, eval_at_end: bool = True,
            should_stop: Optional[Any] = None) -> Iterator[Event]:
        """Train ``steps`` more steps (default: up to ``config.steps``), yielding a :class:`StepEvent`
        per step, an :class:`EvalEvent` every ``eval_every`` steps and (``eval_at_end``) at the end, a
        :class:`SimilarityEvent` every ``similarity_every`` steps, and :class:`CheckpointEvent` s.
        The dashboard runs short chunks with ``eval_at_end=False`` so only the schedule evaluates.
        ``should_stop()`` is asked after each step's evaluation and checkpoint: True ends the run there
        (the CLI's first Ctrl-C), so an interrupt never splits a step from its evaluation."""
        cfg = self.config
        end = self.step_count + steps if steps is not None else cfg.steps
        if self.pending_eval:  # an interrupt cut this step's evaluation short: do it first
            yield self._emit(self.evaluate())
        while self.step_count < end:
            ev = self.train_step()
            yield self._emit(ev)
            s = self.step_count
            if similarity_every and s % similarity_every == 0:
                sim = self.similarities()
                if sim is not None:
                    yield sim
            if (self.config.eval_every and s % self.config.eval_every == 0) or (eval_at_end and s == end):
                yield self._emit(self.evaluate())
            if self.out_dir is not None and ((cfg.checkpoint_every and s % cfg.checkpoint_every == 0) or s == end):
                yield self._emit(self.save_checkpoint())
            if should_stop is not None and should_stop() and self.step_count < end:
                return

    def _emit(self, ev: Event) -> Event:
        if self.logger is not None:
            self.logger.log(ev)
        if self._lock is not None:
            self._lock.refresh()
        return ev

    def close(self) -> None:
        """Release the run folder's lock (the trainer may still be read, e.g. evaluated; another
        trainer may now write into the folder)."""
        if self._lock is not None:
            self._lock.release()

    # -- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return checkpoint.state_of(self)

    def save_checkpoint(self, path: Optional[Union[str, Path]] = None) -> CheckpointEvent:
        """Write ``checkpoint.pt`` atomically (temp file + rename); rank 0 only."""
        path = Path(path) if path is not None else (self.out_dir / checkpoint.CHECKPOINT if self.out_dir else None)
        if path is None:
            raise ValueError("no path: give save_checkpoint(path) or build the Trainer with out_dir")
        if self.rank == 0:
            checkpoint.atomic_save(self.state_dict(), path)
            self.saved_step = self.step_count
        return CheckpointEvent(self.step_count, str(path))

    def load_checkpoint(self, path: Union[str, Path]) -> None:
        checkpoint.restore(self, checkpoint.load_state(path))

    @classmethod
    def from_run(cls, run_dir: Union[str, Path], **overrides: Any) -> "Trainer":
        """Rebuild a trainer from a run folder (``config.json`` + ``checkpoint.pt``)."""
        run_dir = Path(run_dir)
        cfg_file = run_dir / "config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"{cfg_file} not found: is {run_dir} a chestlab run folder (made by --out)?")
        try:
            stored = json.loads(cfg_file.read_text())
        except ValueError:
            raise ConfigError(f"{cfg_file} is not valid JSON; it was not written by chestlab (or was edited)") from None
        plugins.load_recorded(stored, run_dir)
        cfg = TrainConfig.from_dict(stored)
        state = checkpoint.load_state(run_dir / checkpoint.CHECKPOINT)
        tr = cls(cfg.replace(**{k: v for k, v in overrides.items() if k in machine_keys()}))
        tr.out_dir = run_dir
        checkpoint.restore(tr, state)
        live = {k: v for k, v in overrides.items() if k not in machine_keys()}
        if live:  # after the checkpoint's own live settings, so the caller's win (e.g. eval_max)
            tr.set(**live)
        return tr
