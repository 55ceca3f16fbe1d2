"""Where a trainer's events go: the run folder's logs, its lock's heartbeat, and the history of
live settings changes.

A trainer with a run folder (rank 0) holds one :class:`Recorder`; every event it yields passes
:meth:`Recorder.emit` first, so ``events.jsonl``, ``steps.csv`` and ``eval.csv`` hold exactly what
the caller saw, and the lock is refreshed as the run goes (a live run's lock never looks stale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..settings import TrainConfig
from .events import Event, RunLogger, SettingsEvent
from .live import Changes
from .lock import RunLock
from .run_folder import write_config

__all__ = ["Recorder"]


class Recorder:
    """The logs of the run in ``out_dir`` (:class:`~chestlab.engine.events.RunLogger`; resuming at
    ``resume_step`` drops the records after it), ``lock``'s refresh, and ``settings_history``: the
    live changes ``[{"step": s, "changes": {key: [old, new]}}, ...]`` that ``config.json`` keeps."""

    def __init__(self, out_dir: Path, lock: Optional[RunLock], resume_step: Optional[int]) -> None:
        self.out_dir, self.lock = out_dir, lock
        self.logger = RunLogger(out_dir, resume_step=resume_step)
        self.settings_history: list[dict] = []

    def emit(self, ev: Event) -> Event:
        """Log ``ev`` (a failed write raises :class:`~chestlab.engine.checkpoint.WriteError`), refresh
        the lock; ``ev`` itself, for ``yield recorder.emit(ev)``."""
        self.logger.log(ev)
        if self.lock is not None:
            self.lock.refresh()
        return ev

    def settings(self, step: int, changes: Changes) -> None:
        """Record live ``changes`` made at ``step``: a ``settings`` event, and an entry of the history."""
        entry = {"step": step, "changes": {k: [old, new] for k, (old, new) in changes.items()}}
        self.settings_history.append(entry)
        self.emit(SettingsEvent(step, entry["changes"]))

    def config(self, config: TrainConfig, criterion: Any) -> None:
        """Write ``config.json``: ``config`` in force now, with the history of live changes."""
        write_config(self.out_dir, config, criterion, self.settings_history)
