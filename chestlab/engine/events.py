"""The typed events a training run yields, the error it raises when it diverges, and the logger that
writes them to a run folder (``events.jsonl`` and one CSV per numeric kind)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["StepEvent", "EvalEvent", "SimilarityEvent", "CheckpointEvent", "Event", "TrainingDiverged", "RunLogger"]


@dataclass
class StepEvent:
    step: int
    loss: float
    components: dict  # the loss's named parts, e.g. {"l_h": .., "l_e": .., "l_hyphc": ..} (unweighted)
    lrs: dict  # {"backbone": .., "head": .., "proxies": ..}
    step_time: float  # seconds, forward + backward + update
    grad_norm: float
    kind: str = "step"


@dataclass
class EvalEvent:
    step: int
    metrics: dict  # {"test/H/R@1": .., "test/E/MAP@R": .., "train/H/R@1": ..}
    eval_time: float
    kind: str = "eval"


@dataclass
class SimilarityEvent:
    """The batch's data-class similarities split by class (the paper's Fig. 3): for each sample the
    similarity to its own class (positive) and to every other class (negative)."""

    step: int
    h_pos: Optional[np.ndarray]
    h_neg: Optional[np.ndarray]
    e_pos: Optional[np.ndarray]
    e_neg: Optional[np.ndarray]
    kind: str = "similarity"


@dataclass
class CheckpointEvent:
    step: int
    path: str
    kind: str = "checkpoint"


Event = Union[StepEvent, EvalEvent, SimilarityEvent, CheckpointEvent]


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf; the model is left at its last good state."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


class RunLogger:
    """``events.jsonl`` (every event) and one CSV per numeric event kind (``steps.csv``, ``eval.csv``)."""

    def __init__(self, out_dir: Path, resume_step: Optional[int] = None) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = out_dir / "events.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.jsonl.exists():
            self.jsonl.unlink()
            for f in out_dir.glob("*.csv"):
                f.unlink()

    def _truncate(self, step: int) -> None:
        """Drop records written after the checkpoint we resume from (they will be redone)."""
        if self.jsonl.exists():
            keep = [ln for ln in self.jsonl.read_text().splitlines() if json.loads(ln).get("step", 0) <= step]
            self.jsonl.write_text("".join(ln + "\n" for ln in keep))
        for f in self.out_dir.glob("*.csv"):
            with open(f, newline="") as fh:
                rows = list(csv.DictReader(fh))
            fields = list(rows[0].keys()) if rows else None
            rows = [r for r in rows if int(r["step"]) <= step]
            with open(f, "w", newline="") as fh:
                if fields:
                    w = csv.DictWriter(fh, fieldnames=fields)
                    w.writeheader()
                    w.writerows(rows)

    @staticmethod
    def flatten(event: Event) -> dict:
        row: dict = {"step": event.step}
        if isinstance(event, StepEvent):
            row.update(loss=event.loss, step_time=event.step_time, grad_norm=event.grad_norm)
            row.update(event.components)
            row.update({f"lr/{k}": v for k, v in event.lrs.items()})
        elif isinstance(event, EvalEvent):
            row.update(event.metrics)
            row["eval_time"] = event.eval_time
        return row

    def log(self, event: Event) -> None:
        if isinstance(event, SimilarityEvent):
            return
        rec = {"kind": event.kind, **(self.flatten(event) if not isinstance(event, CheckpointEvent) else {"step": event.step, "path": event.path})}
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if isinstance(event, (StepEvent, EvalEvent)):
            row = self.flatten(event)
            f = self.out_dir / ("steps.csv" if isinstance(event, StepEvent) else "eval.csv")
            new = not f.exists() or f.stat().st_size == 0
            with open(f, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
