"""Where and how a trainer computes: its device, its place among DistributedDataParallel processes,
torch's CPU threads, and mixed precision (AMP).

:func:`place` runs before the run folder is touched, so a bad ``device`` writes nothing;
:func:`wrap_ddp` and :func:`amp` run once the model and loss exist. Nothing here draws random
numbers: where these calls sit in a trainer's set-up does not change its batches or weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..settings import TrainConfig
from . import build

__all__ = ["Placement", "place", "wrap_ddp", "amp"]


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
    On the CPU it sets torch's intra-op threads to ``cfg.threads`` (0: all cores but one, so a
    dashboard's UI keeps a core: spinning threads that compete with it slow small models 10x)."""
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = build.resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
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
