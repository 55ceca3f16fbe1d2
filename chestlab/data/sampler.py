"""A class-balanced batch sampler: each batch holds ``batch_size / m`` classes, ``m`` samples each.

Proxy losses learn from every sample, but pair losses and the hard-negative analysis need several
positives per class inside a batch; this is the usual "M per class" sampler of metric learning.

    sampler = MPerClassSampler(train_ds.labels, m=4, batch_size=32, seed=0)
    loader = DataLoader(train_ds, batch_sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)   # new, reproducible batches every epoch
        for x, y in loader: ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["MPerClassSampler"]


class MPerClassSampler(Sampler[list[int]]):
    """Yield ``num_batches`` batches of dataset indices, ``m`` per class, classes distinct.

    * Classes are visited in shuffled rounds, so over an epoch every class appears about equally
      often; a batch never holds the same class twice.
    * Within a class, indices are drawn without replacement from a shuffled pool (refilled when
      exhausted).  A class with fewer than ``m`` samples gives all of them plus repeats drawn with
      replacement.
    * Batches are class-contiguous: ``[c1 x m, c2 x m, ...]``.
    * The batches depend only on ``(seed, epoch)``: iterating twice in the same epoch repeats them.

    Args:
        labels: ``(N,)`` integer labels (tensor, array, list), or a dataset with ``.labels``.
        m: samples per class in each batch.
        batch_size: samples per batch; must be a multiple of ``m``.
        num_batches: batches per epoch (``len(sampler)``); default ``N // batch_size`` (at least 1).
        seed: base seed (any int).  Ignored when ``generator`` is given.
        generator: a :class:`torch.Generator` to draw the base seed from (once, here).

    Raises:
        ValueError: ``batch_size`` is not a multiple of ``m``, or there are fewer than
            ``batch_size / m`` classes.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor | Any,
        m: int,
        batch_size: int,
        *,
        num_batches: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        if hasattr(labels, "labels"):  # a MetricDataset
            labels = labels.labels
        y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
        if y.size == 0:
            raise ValueError("MPerClassSampler needs at least one label, got none")
        if m < 1 or batch_size < 1:
            raise ValueError(f"m and batch_size must be >= 1, got m={m}, batch_size={batch_size}")
        if batch_size % m:
            lo, hi = max(m, batch_size - batch_size % m), batch_size - batch_size % m + m
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of m={m}; use batch_size={lo} or {hi} "
                f"(or an m that divides {batch_size})"
            )
        self.classes, inverse = np.unique(y, return_inverse=True)
        self.classes_per_batch = batch_size // m
        if len(self.classes) < self.classes_per_batch:
            raise ValueError(
                f"batch_size={batch_size} with m={m} needs {self.classes_per_batch} distinct classes "
                f"per batch but the labels have only {len(self.classes)}; use "
                f"batch_size <= {m * len(self.classes)} or a larger m"
            )
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        # Indices of each class, computed once: O(N) here, O(batch) per batch later.
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))
        self._members: list[np.ndarray] = np.split(order, bounds[:-1])
        self.m = m
        self.batch_size = batch_size
        self.num_batches = num_batches if num_batches is not None else max(1, len(y) // batch_size)
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch`` (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def _draw(self, rng: np.random.Generator, pools: list[list[int]], c: int) -> list[int]:
        members = self._members[c]
        if len(members) < self.m:  # too few: all of them, then repeats with replacement
            extra = rng.choice(members, self.m - len(members), replace=True)
            return rng.permutation(np.concatenate([members, extra])).tolist()
        if len(pools[c]) < self.m:  # refill; the few leftovers are dropped to avoid duplicates
            pools[c] = rng.permutation(members).tolist()
        out, pools[c] = pools[c][: self.m], pools[c][self.m :]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        mask = (1 << 64) - 1  # SeedSequence wants non-negative ints; any int seed/epoch is fine
        rng = np.random.default_rng([self.seed & mask, self.epoch & mask])
        n_classes, k = len(self.classes), self.classes_per_batch
        pools: list[list[int]] = [[] for _ in range(n_classes)]
        queue: list[int] = []
        for _ in range(self.num_batches):
            chosen: list[int] = []
            deferred: list[int] = []
            while len(chosen) < k:
                if not queue:
                    queue = rng.permutation(n_classes).tolist()
                c = queue.pop()
                # Across a round boundary a class could come twice: keep it for the next batch.
                (deferred if c in chosen else chosen).append(c)
            queue += deferred[::-1]
            yield [i for c in chosen for i in self._draw(rng, pools, c)]
