"""The one training loop of chestlab: the CLI, the dashboard, the notebooks and the reproduction
scripts all drive :class:`Trainer`.

A trainer is built from a :class:`~chestlab.settings.TrainConfig` by the builders of
:mod:`chestlab.engine.build`. ``trainer.run()`` yields typed events (step, eval, similarity,
checkpoint) that callers plot or log; ``trainer.set(c=0.1, delta_h=5, ...)`` changes live settings
between steps, while structural ones (dataset, backbone, ``K``, dimensions) need a new trainer.

This module holds the loop (:meth:`Trainer.train_step`, :meth:`Trainer.run`); its parts live beside
it: device, DDP and AMP set-up (:mod:`.device`), the per-step batches (:mod:`.feed`), live settings
(:mod:`.live`), the run folder and ``config.json`` (:mod:`.run_folder`), resuming (:mod:`.resume`),
where events go (:mod:`.record`) and what a step reports besides its loss (:mod:`.reports`).
"""

from __future__ import annotations

import math
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from .. import models, poincare
from ..losses import Loss, LossOutput
from ..settings import TrainConfig, machine_keys
from . import build, checkpoint, device, live, reports, resume, run_folder
from .evaluator import Evaluator
from .events import CheckpointEvent, EvalEvent, Event, SimilarityEvent, StepEvent, TrainingDiverged
from .feed import StepFeed
from .lock import RunLock
from .record import Recorder

__all__ = ["Trainer"]


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
        self.out_dir = Path(out_dir) if out_dir is not None else None
        where = device.place(cfg)  # before the run folder: a bad device writes nothing
        self.device, self.distributed, self.rank, self.world = where.device, where.distributed, where.rank, where.world
        self._lock: Optional[RunLock] = None
        self.saved_step: Optional[int] = None  # the step of the last checkpoint written (or resumed from)
        made = run_folder.first_missing(self.out_dir)
        try:
            self._lock, state = run_folder.prepare(self.out_dir, self.rank, resume, overwrite)
            self._setup(state, where)
        except BaseException:
            self.close()
            run_folder.remove_empty(self.out_dir, made)
            raise
        if self._lock is not None:  # a trainer dropped without close() frees its folder too
            weakref.finalize(self, self._lock.release)

    def _setup(self, state: Optional[dict], where: device.Placement) -> None:
        """Datasets, model, loss, optimizer and evaluator; the checkpoint's ``state`` when resuming."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        sets = build.create_datasets(cfg)
        self.train_set, self.test_set = sets.train, sets.test
        self.model: models.CHESTModel = build.create_model(cfg, sets.input_shape)
        if cfg.pretrain_steps and state is None:  # a resumed run's checkpoint holds the pretrained weights
            from .pretrain import pretrain

            pretrain(self.model, cfg)
        self.criterion: Loss = build.create_criterion(cfg, self.model, self.train_set.num_classes)
        self._batches = build.create_batch_sampler(cfg, self.train_set.labels, self.rank, supervised=self.criterion.supervised)
        self._feed = StepFeed(self.train_set, self._batches, self.device)
        self.system = build.System(self.model, self.criterion).to(self.device)
        self._ddp: nn.Module = device.wrap_ddp(self.system, where)
        self.optimizer = build.create_optimizer(cfg, self.model, self.criterion)
        self.use_amp, self.amp_dtype, self.scaler = device.amp(cfg, self.device)
        self.evaluator = Evaluator(cfg, self.model, self.device, {"train": self.train_set, "test": self.test_set},
                                   sets.splits, self.autocast, proxies=self.proxies)
        if cfg.hierarchy_file:  # read it now, not at the first evaluation after training
            self.evaluator.check_hierarchy_file()
        self.step_count = 0
        self.last_output: Optional[LossOutput] = None
        self._last_labels: Optional[Tensor] = None
        self.history: list[dict] = []
        self.pending_eval = False  # an evaluation due at step_count that an interrupt cut short
        self.consistent = True  # False after an interrupt inside the optimizer update
        self._recorder: Optional[Recorder] = None  # rank 0 of a run with a folder
        changes = resume.resume_into(self, state) if state is not None else {}
        if self.out_dir is not None and self.rank == 0:
            self._recorder = Recorder(self.out_dir, self._lock, self.step_count if state is not None else None)
            if changes:
                self._recorder.settings(self.step_count, changes)
            self._recorder.config(self.config, self.criterion)

    def autocast(self) -> Any:
        """The AMP context of this run (a no-op on the CPU)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    def set(self, **changes: Any) -> None:
        """Change live settings (see :func:`chestlab.settings.live_keys`, :mod:`.live`); they apply
        from the next step on. Every value is validated first; a rejected call changes nothing."""
        new = live.checked(self.config, changes)
        live.apply(new, changes, self.model, self.criterion, self.optimizer)
        old, self.config = self.config, new
        self.evaluator.cfg = new
        diff = live.differences(old, changes)
        if self._recorder is not None and diff:
            self._recorder.settings(self.step_count, diff)
            self._recorder.config(self.config, self.criterion)

    @property
    def settings_history(self) -> list[dict]:
        """The live changes recorded in the run folder: ``[{"step": s, "changes": {key: [old, new]}}]``."""
        return self._recorder.settings_history if self._recorder is not None else []

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """Step ``step``'s training batch on the trainer's device: images or features (B, ...),
        labels (B,) and the samples' dataset indices (B,) -- the batch ``train_step`` uses there."""
        return self._feed.batch(step, self.config.workers)

    def step_indices(self, step: int) -> list[int]:
        """The training-set indices of the batch of ``step`` (a function of seed, rank and step)."""
        return self._feed.indices(step)

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
            raise self._diverged(f"the loss became {float(loss.detach())}", out)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = cfg.grad_clip if cfg.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise self._diverged(f"the gradient norm became {float(grad_norm)}", out)
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

    def _diverged(self, what: str, out: LossOutput) -> TrainingDiverged:
        """The error for ``what`` went non-finite in this step, with its diagnosis (:mod:`.reports`)."""
        kept = self.out_dir is not None
        return TrainingDiverged(self.step_count, reports.diagnose(self.config, self.step_count, what, out, kept))

    # -- evaluation -----------------------------------------------------------------------------------
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
        if self.last_output is None or self._last_labels is None:
            raise RuntimeError("no step has run yet: call train_step() first")
        return reports.similarity_event(self.step_count, self.last_output, self._last_labels)

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
        return self._recorder.emit(ev) if self._recorder is not None else ev

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
        """Rebuild a trainer from a run folder (``config.json`` + ``checkpoint.pt``); ``overrides``:
        machine settings (device, ...) before it is built, live ones after its checkpoint."""
        cfg, state = resume.load_run(run_dir)
        tr = cls(cfg.replace(**{k: v for k, v in overrides.items() if k in machine_keys()}))
        tr.out_dir = Path(run_dir)
        checkpoint.restore(tr, state)
        live_changes = {k: v for k, v in overrides.items() if k not in machine_keys()}
        if live_changes:  # after the checkpoint's own live settings, so the caller's win (e.g. eval_max)
            tr.set(**live_changes)
        return tr
