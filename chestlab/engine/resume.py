"""Continuing a run from its checkpoint: ``--resume`` (:func:`resume_into`) and
:meth:`Trainer.from_run <chestlab.engine.trainer.Trainer.from_run>` (:func:`load_run`).

A resumed run continues exactly as an uninterrupted one would (the checkpoint holds weights,
optimizer, scaler, RNG and history: :mod:`.checkpoint`). The settings asked for now are compared
with the run's: structural ones must be equal, machine ones (device, threads, ...) are taken as
asked, and live ones that differ are applied after the checkpoint and returned, to be recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

from .. import plugins
from ..settings import ConfigError, TrainConfig, live_keys, machine_keys
from . import checkpoint
from .live import Changes

__all__ = ["compare", "resume_into", "load_run"]


def compare(stored: TrainConfig, mine: TrainConfig, step: int) -> Changes:
    """The live settings that differ between the run's ``stored`` settings and ``mine``
    (``{key: (stored, mine)}``); a ``ConfigError`` for a structural difference or for ``mine.steps``
    below the checkpoint's ``step``."""
    keys = dict.fromkeys([*stored.keys(), *mine.keys()])
    differ = {k: (getattr(stored, k), getattr(mine, k)) for k in keys if getattr(stored, k) != getattr(mine, k)}
    structural = {k: v for k, v in differ.items() if k not in live_keys() and k not in machine_keys()}
    if structural:
        k, (old, new) = next(iter(structural.items()))
        more = f" (and {', '.join(list(structural)[1:])})" if len(structural) > 1 else ""
        raise ConfigError(f"--resume: {k} = {new} but the run was trained with {k} = {old}{more}; structural "
                          "settings cannot change on resume: drop that --set, or start a new run with another --out")
    if mine.steps < step:
        raise ConfigError(f"--resume: steps = {mine.steps} is below the checkpoint's step {step}; ask for steps >= {step}")
    return {k: (old, new) for k, (old, new) in differ.items() if k in live_keys()}


def resume_into(trainer: Any, state: dict) -> Changes:
    """Load the checkpoint ``state`` into a freshly built ``trainer`` under the run's own settings
    (the machine's taken from ``trainer.config``), then apply the live settings of
    ``trainer.config`` that differ; returns those changes. ``trainer.config`` ends as asked."""
    try:
        stored = TrainConfig.from_dict(state["config"])
    except ValueError as err:
        raise ConfigError(f"{trainer.out_dir / checkpoint.CHECKPOINT} holds settings this version cannot use ({err})") from None
    mine = trainer.config
    changes = compare(stored, mine, int(state["step"]))
    trainer.config = stored.replace(**{k: getattr(mine, k) for k in machine_keys()})
    checkpoint.restore(trainer, state)
    trainer.saved_step = trainer.step_count
    if changes:
        trainer.set(**{k: new for k, (old, new) in changes.items()})
    trainer.config = mine
    trainer.evaluator.cfg = mine
    return changes


def load_run(run_dir: Union[str, Path]) -> tuple[TrainConfig, dict]:
    """A run folder's settings (``config.json``, with the plug-ins it records loaded) and its
    checkpoint's state; one-line errors for a folder that is not a run or a damaged file."""
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{cfg_file} not found: is {run_dir} a chestlab run folder (made by --out)?")
    try:
        stored = json.loads(cfg_file.read_text())
    except ValueError:
        raise ConfigError(f"{cfg_file} is not valid JSON; it was not written by chestlab (or was edited)") from None
    plugins.load_recorded(stored, run_dir)
    return TrainConfig.from_dict(stored), checkpoint.load_state(run_dir / checkpoint.CHECKPOINT)
