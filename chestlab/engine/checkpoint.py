"""Checkpoints: the whole state of a run (model, loss with its sampler, optimizer, AMP scaler, RNG,
history, settings) written atomically — a temporary file in the same folder, then a rename — so an
interrupt never leaves a half-written file, and a failed write (a full disk) leaves no temporary
file but a :class:`WriteError` that names the file.

A checkpoint holds only tensors, numbers, strings and plain containers (:func:`plain`), and is read
with ``torch.load(weights_only=True)``: a file that needs anything else (a crafted pickle, or a
checkpoint of an older chestlab that stored objects) is refused, never unpickled, so loading a run
folder cannot run code."""

from __future__ import annotations

import os
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

__all__ = ["atomic_save", "atomic_write", "atomic_write_text", "WriteError", "CHECKPOINT", "load_state", "plain"]

#: The checkpoint's file name in a run folder.
CHECKPOINT = "checkpoint.pt"
VERSION = 1


class WriteError(OSError):
    """A file could not be written (a full disk, a file-size limit, no permission): its temporary
    file is removed and ``path`` still holds its previous content."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path


def atomic_write(path: Union[str, Path], write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then ``os.replace``: never a half-written
    file. When the write fails the temporary file is removed; a failure of the disk (``OSError``, or
    a ``RuntimeError`` of torch's C++ writer: "iostream error", "unexpected pos") becomes a
    :class:`WriteError` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, WriteError):
            raise
        if isinstance(err, OSError):
            raise WriteError(path, err.strerror or str(err)) from None
        if isinstance(err, RuntimeError):  # torch.save of plain data fails at run time only on a write
            raise WriteError(path, "the disk refused the write (is it full, or is there a file-size limit?)") from None
        raise


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """``text`` written to ``path`` by :func:`atomic_write`."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to ``path`` by :func:`atomic_write`: never a half-written file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def plain(obj: Any, where: str = "state") -> Any:
    """``obj`` in the types ``torch.load(weights_only=True)`` reads: tensors, ``None``, bools, ints,
    floats, strings, and lists, tuples and dicts (a state dict's ``OrderedDict`` with its
    ``_metadata``) of them. NumPy scalars and arrays become Python
    numbers and tensors, paths strings; anything else is a ``TypeError`` naming where it sits (a bug
    to fix where that object is stored, not something to pickle)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        out = {plain(k, where): plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
        if not isinstance(obj, OrderedDict):
            return out
        # a module's state dict: keep its class and the per-module versions load_state_dict reads
        ordered = OrderedDict(out)
        if getattr(obj, "_metadata", None) is not None:
            ordered._metadata = plain(obj._metadata, f"{where}._metadata")  # type: ignore[attr-defined]
        return ordered
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"checkpoint: {where} is a {type(obj).__name__}, which a safe load (weights_only=True) "
                    "cannot read; store it as tensors, numbers, strings, lists or dicts")


def load_state(path: Union[str, Path]) -> dict:
    """A checkpoint's state dict, with a one-line error for a missing, truncated, foreign or unsafe
    file. Read with ``weights_only=True``: nothing in the file is run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has not saved a checkpoint yet")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise ValueError(f"{path} is not a readable chestlab checkpoint (UnpicklingError); train again without --resume") from None
        raise ValueError(f"{path} holds Python objects that a safe load refuses (a checkpoint of an older chestlab, or a "
                         "crafted file); it was not loaded: retrain the run (train again without --resume)") from None
    except Exception as err:  # truncated, zero-byte, random bytes ...
        raise ValueError(f"{path} is not a readable chestlab checkpoint ({type(err).__name__}); train again without --resume") from None
    if not isinstance(state, dict) or not {"step", "config", "system", "optimizer"} <= set(state):
        raise ValueError(f"{path} is not a chestlab checkpoint (no step/config/system/optimizer); train again without --resume")
    return state


def state_of(trainer: Any) -> dict:
    """Everything a resumed run needs to continue exactly as an uninterrupted one, in plain types."""
    return plain({
        "step": trainer.step_count,
        "config": trainer.config.to_dict(),
        "system": trainer.system.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": trainer.history,
        "pending_eval": trainer.pending_eval,
        "version": VERSION,
    })


def restore(trainer: Any, state: dict) -> None:
    """Load ``state`` (from :func:`state_of`) into ``trainer``: weights, proxies, sampler, optimizer,
    scaler, RNG, history, and the live settings the run had."""
    trainer.system.load_state_dict(state["system"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    trainer.step_count = int(state["step"])
    trainer.history = list(state.get("history", []))
    trainer.pending_eval = bool(state.get("pending_eval", False))
    from ..settings import live_keys

    live = {k: v for k, v in state["config"].items() if k in live_keys() and k != "steps"}
    trainer.set(**{k: tuple(v) if isinstance(v, list) else v for k, v in live.items()})
