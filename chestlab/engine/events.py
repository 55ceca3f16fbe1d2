"""The typed events a training run yields, the error it raises when it diverges, and the logger that
writes them to a run folder (``events.jsonl`` and one CSV per numeric kind)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .checkpoint import WriteError, atomic_write_text

__all__ = ["StepEvent", "EvalEvent", "SimilarityEvent", "CheckpointEvent", "SettingsEvent", "Event", "TrainingDiverged",
           "RunLogger", "RUN_FILES", "read_events"]


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


@dataclass
class SettingsEvent:
    """Live settings changed (``Trainer.set``, or ``--set`` on ``--resume``): ``{key: [old, new]}``."""

    step: int
    changes: dict
    kind: str = "settings"


Event = Union[StepEvent, EvalEvent, SimilarityEvent, CheckpointEvent, SettingsEvent]

#: The files a run writes into its folder (and the only ones it ever deletes or rewrites).
RUN_FILES: tuple[str, ...] = ("config.json", "events.jsonl", "steps.csv", "eval.csv", "checkpoint.pt")


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf; the model is left at its last good state."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


def read_events(path: Path) -> list[dict]:
    """The records of ``events.jsonl``. A last line cut short by a kill is dropped (it will be
    redone); a damaged line elsewhere raises ``ValueError`` naming the file and the line."""
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for i, ln in enumerate(lines):
        try:
            out.append(json.loads(ln))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {i + 1} is not JSON: the run folder was edited or damaged; "
                             "start a new run with another --out") from None
    return out


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """A CSV file's header and rows (cells beyond the header, from a damaged file, are dropped)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [{k: v for k, v in r.items() if k is not None} for r in reader]
        return list(reader.fieldnames or []), rows


def _csv_text(fields: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    if fields:
        w = csv.DictWriter(buf, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


class RunLogger:
    """``events.jsonl`` (every event) and one CSV per numeric event kind (``steps.csv``, ``eval.csv``).
    It writes, truncates and deletes only its own files (:data:`RUN_FILES`): a folder's other files
    are never touched. A CSV row goes under its file's header, column by column: a row with columns
    the header lacks (an evaluation setting turned on when a run is resumed) first rewrites the file
    with the union of both (earlier rows keep their values, their new cells are empty); a row
    without some of the header's columns leaves those cells empty."""

    CSV = {"step": "steps.csv", "eval": "eval.csv"}

    def __init__(self, out_dir: Path, resume_step: Optional[int] = None) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = out_dir / "events.jsonl"
        self._headers: dict[str, list[str]] = {}
        if resume_step is not None:
            self._truncate(resume_step)
        else:
            for name in ("events.jsonl", *self.CSV.values()):
                (out_dir / name).unlink(missing_ok=True)

    def _truncate(self, step: int) -> None:
        """Drop records written after the checkpoint we resume from (they will be redone)."""
        keep = [rec for rec in read_events(self.jsonl) if rec.get("step", 0) <= step]
        atomic_write_text(self.jsonl, "".join(json.dumps(rec) + "\n" for rec in keep))
        for name in self.CSV.values():
            f = self.out_dir / name
            if not f.exists():
                continue
            fields, rows = _read_csv(f)
            rows = [r for r in rows if (r.get("step") or "").isdigit() and int(r["step"]) <= step]
            atomic_write_text(f, _csv_text(fields, rows))

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
        elif isinstance(event, CheckpointEvent):
            row["path"] = event.path
        elif isinstance(event, SettingsEvent):
            row["changes"] = event.changes
        return row

    def log(self, event: Event) -> None:
        """Append ``event`` to ``events.jsonl`` and its CSV; a failed write (a full disk) raises
        :class:`~chestlab.engine.checkpoint.WriteError` (a line cut short is dropped on resume)."""
        if isinstance(event, SimilarityEvent):
            return
        rec = {"kind": event.kind, **self.flatten(event)}
        path = self.jsonl
        try:
            with open(path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            if event.kind in self.CSV:
                path = self.out_dir / self.CSV[event.kind]
                self._append_csv(path, self.flatten(event))
        except WriteError:
            raise
        except OSError as err:
            raise WriteError(path, err.strerror or str(err)) from None

    def _append_csv(self, f: Path, row: dict) -> None:
        header = self._headers.get(f.name)
        if header is None and f.exists() and f.stat().st_size:
            header = _read_csv(f)[0]
        if header:
            new = [k for k in row if k not in header]
            if new:  # rewrite under the union header before appending
                header = header + new
                atomic_write_text(f, _csv_text(header, _read_csv(f)[1]))
        fresh = not header
        header = header or list(row)
        with open(f, "w" if fresh else "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=header, restval="")
            if fresh:
                w.writeheader()
            w.writerow(row)
        self._headers[f.name] = header
