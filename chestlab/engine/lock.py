"""The lock of a run folder: one training writes into a folder at a time.

``RunLock(folder).acquire()`` creates ``folder/.chestlab.lock`` atomically (``O_CREAT | O_EXCL``)
holding the writer's host, process id and a token; a second writer finds it and is refused with one
line that names the holder. A lock is *stale*, and taken over, when its process is gone (same host),
when it belongs to this very process (an earlier trainer of it that was not closed), or when it
was not refreshed for :data:`STALE_AFTER` seconds (another host, where the process cannot be
asked): the holder refreshes it (:meth:`RunLock.refresh`) as it trains. :meth:`RunLock.release`
removes the file only while it still holds this lock's token.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Optional

from ..settings import ConfigError

__all__ = ["RunLock", "LOCK", "STALE_AFTER"]

#: The lock's file name in a run folder.
LOCK = ".chestlab.lock"
#: A lock of another host not refreshed for this long (seconds) is stale: its run is taken for dead.
STALE_AFTER = 3600.0
_REFRESH_EVERY = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


class RunLock:
    """The lock of run folder ``folder`` for this process (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self.token = uuid.uuid4().hex
        self.held = False
        self._refreshed = 0.0

    def _holder(self) -> Optional[dict]:
        """The lock file's content, ``{}`` when unreadable (half written), None when there is none."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            rec = json.loads(text)
        except ValueError:
            return {}
        return rec if isinstance(rec, dict) else {}

    def _stale(self, rec: dict) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return True
        if rec.get("host") == socket.gethostname() and isinstance(rec.get("pid"), int):
            return rec["pid"] == os.getpid() or not _alive(rec["pid"])
        return age > STALE_AFTER or (not rec and age > 10.0)  # unreadable and not being written now

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`ConfigError` naming the run that holds it."""
        rec = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile: try again
                if not self._stale(holder):
                    who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
                    raise ConfigError(
                        f"--out {self.path.parent} is in use by another training ({who}); wait for it to finish or "
                        f"choose another --out (if no run uses it, delete {self.path})") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(rec))
            self.held = True
            self._refreshed = time.monotonic()
            return self
        raise ConfigError(f"--out {self.path.parent}: cannot take its lock {self.path}; another training keeps taking it")

    def refresh(self) -> None:
        """Tell other hosts this run is alive (at most once a minute; a failure is not an error)."""
        if self.held and time.monotonic() - self._refreshed > _REFRESH_EVERY:
            self._refreshed = time.monotonic()
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        """Remove the lock file if it is still this lock's (nothing else is touched)."""
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder and holder.get("token") == self.token:
            try:
                self.path.unlink()
            except OSError:
                pass
