"""The run folder around a trainer (``--out RUN``): the checks made before anything is built, the
clean-up after a start that failed, and ``config.json``.

A folder holds one run: its files are :data:`~chestlab.engine.events.RUN_FILES`, the only ones a
trainer ever deletes or rewrites, and its lock (:class:`~chestlab.engine.lock.RunLock`) admits one
writer at a time. Rank 0 alone writes; the other ranks of a DDP run only read the checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from .. import plugins
from ..settings import ConfigError, TrainConfig
from . import checkpoint
from .events import RUN_FILES
from .lock import RunLock

__all__ = ["first_missing", "remove_empty", "prepare", "write_config"]


def first_missing(folder: Optional[Path]) -> Optional[Path]:
    """The outermost folder of ``folder``'s path that does not exist yet (None when it exists):
    what a failed start must remove again."""
    if folder is None or folder.exists():
        return None
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def remove_empty(folder: Optional[Path], top: Optional[Path]) -> None:
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


def prepare(out: Optional[Path], rank: int, resume: bool, overwrite: bool) -> tuple[Optional[RunLock], Optional[dict]]:
    """Check ``out`` before anything is built: ``(lock, state)``.

    ``lock``: the folder's lock, held by rank 0 (None without a folder, or on other ranks).
    ``state``: the checkpoint's state dict when resuming (the plug-ins the run used are loaded first,
    so its loss can be rebuilt), else None; a fresh run in a folder that holds another run is refused
    unless ``overwrite``, which deletes that run's files and no other. A refusal releases the lock."""
    if out is None:
        if resume:
            raise ConfigError("--resume needs --out RUN: the folder of the run to continue")
        return None, None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".chestlab-write-test{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {out} cannot be written ({err.strerror or err}); choose a folder you can write to") from None
    lock = RunLock(out).acquire() if rank == 0 else None
    try:
        if resume:
            plugins.load_recorded_file(out / "config.json")  # what the run used (a plug-in's rules, ...)
            return lock, checkpoint.load_state(out / checkpoint.CHECKPOINT)
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found and not overwrite and rank == 0:
            raise ConfigError(f"--out {out} holds another run ({', '.join(found)}); continue it with --resume, choose "
                              "another folder, or pass --overwrite to replace that run (other files are kept)")
        if rank == 0:
            for name in found:
                (out / name).unlink()
        return lock, None
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def write_config(out: Path, config: TrainConfig, criterion: Any, history: list[dict]) -> None:
    """``config.json`` (atomic): the settings in force now, the plug-ins the loss came from (loaded
    again by evaluate, --resume, reproduce) and ``history``, the live changes ``[{"step": s,
    "changes": {key: [old, new]}}, ...]``."""
    d = config.to_dict()
    used = plugins.recorded(type(criterion).__module__)
    if used:
        d["plugins"] = used
    if history:
        d["history"] = history
    checkpoint.atomic_write_text(out / "config.json", json.dumps(d, indent=2, default=str))
