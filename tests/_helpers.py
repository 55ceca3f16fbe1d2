"""Small helpers shared by the test modules (random points in the ball, seeded generators)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ball_points(n: int, d: int, c: float, seed: int, max_rel: float = 0.95, dtype: torch.dtype = F64) -> torch.Tensor:
    """(n, d) points with sqrt(c)|x| uniform in [0, max_rel] (plain Gaussians for c = 0)."""
    g = gen(seed)
    u = torch.randn(n, d, generator=g, dtype=dtype)
    if c == 0:
        return u
    u = u / u.norm(dim=-1, keepdim=True)
    return u * torch.rand(n, 1, generator=g, dtype=dtype) * max_rel / math.sqrt(c)


def run_records(run: Path) -> list[dict]:
    """A run folder's step and eval events (events.jsonl), timings dropped: what must be equal,
    bit for bit, between a resumed run and an uninterrupted one."""
    out = []
    for ln in (Path(run) / "events.jsonl").read_text().splitlines():
        rec = json.loads(ln)
        if rec["kind"] in ("step", "eval"):
            out.append({k: v for k, v in rec.items() if k not in ("step_time", "eval_time")})
    return out


def stopped_and_resumed(trainer_cls, cfg, stop_at: int, run: Path) -> list[dict]:
    """Train ``cfg`` for ``stop_at`` steps in ``run``, resume it to ``cfg.steps``; its records."""
    list(trainer_cls(cfg.replace(steps=stop_at), out_dir=run).run())
    list(trainer_cls(cfg, out_dir=run, resume=True).run())
    return run_records(run)
