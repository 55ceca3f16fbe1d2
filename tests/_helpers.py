"""Small helpers shared by the test modules (random points in the ball, seeded generators)."""

from __future__ import annotations

import math

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
