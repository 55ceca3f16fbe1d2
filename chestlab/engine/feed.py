"""The training batches, one per step.

The batch of step ``s`` depends only on (seed, rank, ``s``): the batch sampler (class-balanced
``M``-per-class, or uniform for a loss without labels) is re-seeded per step through
``set_epoch(s)``, one "epoch" being one batch. So a resumed run sees exactly the batches of an
uninterrupted one, and :meth:`StepFeed.batch` can hand out any step's batch again.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor

from . import build

__all__ = ["StepFeed"]


class _StepBatchSampler(torch.utils.data.Sampler):
    """The feed's per-step batches from ``start`` on, as a DataLoader batch sampler."""

    def __init__(self, feed: "StepFeed", start: int) -> None:
        self.feed, self.start = feed, start

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while True:
            yield self.feed.indices(step)
            step += 1


class StepFeed:
    """Batches of ``dataset`` drawn by ``sampler`` (a batch sampler with ``set_epoch``), on ``device``.

    An embedded dataset held in memory (one tensor, no per-item transform) is indexed directly;
    images are decoded and augmented by DataLoader workers, prefetched in step order (a loader is
    made again only when a step other than the next one is asked for)."""

    def __init__(self, dataset: Any, sampler: Any, device: torch.device) -> None:
        self.dataset, self.sampler, self.device = dataset, sampler, device
        self.labels: Tensor = dataset.labels
        self.in_memory = build.in_memory(dataset)
        self._loader_iter: Any = None
        self._loader_step = -1

    def indices(self, step: int) -> list[int]:
        """The dataset indices of the batch of ``step`` (a function of seed, rank and step)."""
        self.sampler.set_epoch(step)
        return next(iter(self.sampler))

    def batch(self, step: int, workers: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """Step ``step``'s batch on the device: images or features (B, ...), labels (B,) and the
        samples' dataset indices (B,); ``workers`` DataLoader processes for images."""
        idx = torch.as_tensor(self.indices(step))
        if self.in_memory:
            x, y = self.dataset.data[idx], self.labels[idx]
        else:
            if self._loader_iter is None or self._loader_step != step:
                loader = torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=_StepBatchSampler(self, step), num_workers=workers,
                    pin_memory=self.device.type == "cuda", persistent_workers=False,
                )
                self._loader_iter = iter(loader)
            x, y = next(self._loader_iter)
            self._loader_step = step + 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), idx.to(self.device)
