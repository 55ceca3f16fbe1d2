"""Where and how a trainer computes: its device, its place among DistributedDataParallel processes,
torch's CPU threads and malloc settings, and mixed precision (AMP).

:func:`place` runs before the run folder is touched, so a bad ``device`` writes nothing;
:func:`wrap_ddp` and :func:`amp` run once the model and loss exist. Nothing here draws random
numbers: where these calls sit in a trainer's set-up does not change its batches or weights.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from ..settings import TrainConfig
from . import build

__all__ = ["Placement", "place", "wrap_ddp", "amp", "keep_freed_memory"]

#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: what :func:`keep_freed_memory` set, or why not (None: not called yet)
MALLOC_TUNED: Optional[str] = None


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> str:
    r"""Make glibc's ``malloc`` keep the memory a training step frees for the next step (process-wide;
    Linux with glibc only, a no-op elsewhere): tensors up to ``mmap_threshold`` bytes come from the
    heap instead of fresh ``mmap`` s, and the heap is returned to the system only when more than
    ``trim_threshold`` bytes are free at its top. :func:`place` calls it when a trainer starts (not
    an import: a library changes no process setting until it trains), unless the environment sets
    ``CHESTLAB_MALLOC=default``; returns what it did.

    Why: torch's CPU tensors come straight from ``malloc``. By default glibc hands the freed
    temporaries of a step back to the kernel (trimming the heap top; ``mmap`` for blocks beyond its
    dynamic threshold, always above 32 MiB), so the next step touches fresh pages: measured on a
    shared 2-core VM, ~2,100 page faults per CUB step (~8 MiB) and ~44,000 per SOP step, a quarter of
    the step's CPU time at CUB scale (84 → 62 ms/step, 1 thread; benchmarks/README.md). The memory
    is kept, not grown: the resident set stays at the step's peak between steps (what a training
    loop reaches anyway at its next step)."""
    global MALLOC_TUNED
    if os.environ.get("CHESTLAB_MALLOC", "").strip().lower() == "default":
        MALLOC_TUNED = "off (CHESTLAB_MALLOC=default)"
        return MALLOC_TUNED
    if not sys.platform.startswith("linux"):
        MALLOC_TUNED = f"not applicable ({sys.platform})"
        return MALLOC_TUNED
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        ok = False
    MALLOC_TUNED = (f"on (mmap threshold {mmap_threshold >> 20} MiB, trim threshold {trim_threshold >> 20} MiB)"
                    if ok else "not applicable (no glibc mallopt)")
    return MALLOC_TUNED


@dataclass(frozen=True)
class Placement:
    """Where a trainer runs: ``device``; under ``torch.distributed`` (``distributed``) it is process
    ``rank`` of ``world`` (each draws its own batches; rank 0 alone writes the run folder)."""

    device: torch.device
    distributed: bool = False
    rank: int = 0
    world: int = 1


def place(cfg: TrainConfig) -> Placement:
    """The device of ``cfg.device`` (``auto``: CUDA when present), the process's DDP rank and world.

    Under DDP each process takes the GPU its launcher names (``LOCAL_RANK``) and makes it current.
    It keeps freed memory in the process (:func:`keep_freed_memory`). On the CPU it sets torch's intra-op threads to ``cfg.threads`` (0: all cores but one, so a
    dashboard's UI keeps a core: spinning threads that compete with it slow small models 10x)."""
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = build.resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    keep_freed_memory()  # the CPU tensors of every step (on a GPU too: batches, metrics)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads if cfg.threads > 0 else max(1, (os.cpu_count() or 2) - 1))
    return Placement(device, distributed, rank, world)


def wrap_ddp(system: nn.Module, where: Placement) -> nn.Module:
    """What the training step calls: ``system`` itself, or under DDP its
    :class:`~torch.nn.parallel.DistributedDataParallel` wrapper (gradients averaged over the ranks
    in ``backward``; the proxies are parameters of ``system``, so they stay in sync too)."""
    if not where.distributed:
        return system
    ids = [where.device.index] if where.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(system, device_ids=ids)


def amp(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype, torch.amp.GradScaler]:
    """Mixed precision for ``cfg.amp`` on ``device``: ``(enabled, dtype, scaler)``.

    Only CUDA uses AMP (on the CPU it stays off: float32 throughout). The autocast dtype is bfloat16
    where the GPU supports it, else float16; only float16 needs loss scaling, so the
    :class:`~torch.amp.GradScaler` is enabled for float16 alone (disabled, it passes values through
    and its state still travels with the checkpoint)."""
    enabled = bool(cfg.amp and device.type == "cuda")
    dtype = torch.bfloat16 if (enabled and torch.cuda.is_bf16_supported()) else torch.float16
    return enabled, dtype, torch.amp.GradScaler("cuda", enabled=enabled and dtype == torch.float16)
