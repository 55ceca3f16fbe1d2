"""Evaluation of a model: embeddings of a split (in memory or through DataLoader workers), and
Recall@k / MAP@R in both spaces (H: x^H with the Poincaré distance, E: x^E with the Euclidean one),
query -> gallery for datasets that have those splits (In-shop)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch

from .. import metrics
from ..settings import ConfigError, TrainConfig
from .build import in_memory, load_split

__all__ = ["Evaluator"]


class Evaluator:
    """Embeds and scores the splits of ``cfg.dataset`` with ``model``; ``autocast()`` gives the
    trainer's AMP context. Splits other than train/test (query, gallery) are loaded on first use."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, device: torch.device, sets: dict[str, Any],
                 splits: tuple[str, ...], autocast: Callable[[], Any],
                 proxies: Optional[Callable[[], Optional[dict]]] = None) -> None:
        self.cfg, self.model, self.device, self.sets, self.splits, self.autocast = cfg, model, device, dict(sets), splits, autocast
        self.proxies = proxies
        self._hierarchies: dict[str, Any] = {}

    def hierarchy(self, split: str) -> Any:
        """The known class hierarchy of a split (``hierarchy_file`` or the dataset's own), or None
        when the dataset has none."""
        if split not in self._hierarchies:
            from ..hierarchy import hierarchy_of

            try:
                self._hierarchies[split] = hierarchy_of(self.split(split), file=self.cfg.hierarchy_file)
            except (ValueError, AttributeError, KeyError):
                if self.cfg.hierarchy_file:
                    raise
                self._hierarchies[split] = None
        return self._hierarchies[split]

    def check_hierarchy_file(self) -> None:
        """Read ``hierarchy_file`` for the train and test classes now: a missing, unreadable or
        incomplete file is a one-line ``ConfigError`` naming the setting, before any training."""
        for split in ("train", "test"):
            try:
                self.hierarchy(split)
            except (ValueError, OSError) as err:
                raise ConfigError(f"hierarchy_file = {self.cfg.hierarchy_file}: {err}") from None

    def hierarchy_scores(self, split: str, emb: dict, with_proxies: bool = True) -> dict:
        """``hierarchy_metrics`` of ``emb`` (see :mod:`chestlab.hierarchy`) as ``{split}/H/severity``, …
        (``{split}/S/cophenet`` by average linkage on each space's distance, ``{split}/S/lca_cophenet`` by
        HypHC's LCA decoding); the proxies' dendrograms (training classes) as ``proxies/H/cophenet``,
        ``proxies/E/lca_purity``, …"""
        from ..hierarchy import hierarchy_metrics

        hier = self.hierarchy(split)
        if hier is None:
            return {}
        proxies = self.proxies() if (with_proxies and self.proxies is not None) else None
        res = hierarchy_metrics(emb, hier, self.model.head.c, proxies=proxies,
                                proxy_hierarchy=self.hierarchy("train") if proxies is not None else None)
        return {(f"proxies/{k.replace('proxy_', '')}" if "proxy_" in k else f"{split}/{k}"): float(v) for k, v in res.items()}

    def split(self, name: str) -> Any:
        if name not in self.sets:
            if name not in ("query", "gallery"):
                raise ValueError(f"split = {name!r}: choose train, test (or query / gallery for In-shop)")
            self.sets[name] = load_split(self.cfg, name)
        return self.sets[name]

    @torch.no_grad()
    def embed(self, split: str = "test", max_n: Optional[int] = None, batch_size: int = 256) -> dict:
        """``{"x_e": (N, D_E), "x_h": (N, D_H), "labels": (N,), "super": (N,), "index": (N,)}`` on the
        CPU; ``max_n`` takes a fixed random subset (the same for every call)."""
        ds = self.split(split)
        n = len(ds)
        index = torch.arange(n)
        if max_n is not None and n > max_n:
            index = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + 17))[:max_n].sort().values
        was_training = self.model.training
        self.model.eval()
        if in_memory(ds):
            batches = ((ds.data[index[i : i + batch_size]], None) for i in range(0, len(index), batch_size))
        else:  # images from disk: decode in worker processes
            batches = torch.utils.data.DataLoader(
                torch.utils.data.Subset(ds, index.tolist()), batch_size=batch_size, num_workers=self.cfg.workers,
                pin_memory=self.device.type == "cuda",
            )
        xe, xh = [], []
        for x, _ in batches:
            with self.autocast():
                e, h = self.model(x.to(self.device, non_blocking=True))
            xe.append(e.float().cpu())
            xh.append(h.float().cpu())
        self.model.train(was_training)
        labels = ds.labels[index]
        sup = ds.super_labels[index] if hasattr(ds, "super_labels") else torch.zeros_like(labels)
        return {"x_e": torch.cat(xe), "x_h": torch.cat(xh), "labels": labels, "super": sup, "index": index}

    def evaluate(self, splits: Optional[tuple[str, ...]] = None, max_n: Optional[int] = None) -> tuple[dict, float]:
        """Recall@k and MAP@R in both spaces on ``splits`` -> ``({"test/H/R@1": .., ...}, seconds)``.
        For datasets with query/gallery splits, ``test`` is evaluated the conventional way."""
        cfg = self.cfg
        max_n = cfg.eval_max if max_n is None else max_n
        t0 = time.perf_counter()
        splits = splits or (("test", "train") if cfg.eval_train else ("test",))
        out: dict = {}
        for split in splits:
            query_gallery = split == "test" and "query" in self.splits
            emb = self.embed("query" if query_gallery else split, max_n)
            ref = self.embed("gallery", max_n) if query_gallery else None
            n = len(ref["labels"]) + 1 if ref is not None else len(emb["labels"])
            ks = tuple(k for k in cfg.ks if k < n)
            for space, key, metric, c in (("H", "x_h", "poincare", self.model.head.c), ("E", "x_e", "euclidean", None)):
                extra = {"reference": ref[key], "reference_labels": ref["labels"]} if ref is not None else {}
                res = metrics.retrieval_metrics(emb[key], emb["labels"], ks, metric, c, **extra)
                out.update({f"{split}/{space}/{k}": v for k, v in res.items()})
            if cfg.eval_hierarchy and not query_gallery:
                # the proxies' dendrogram does not depend on the split: decode it once per evaluation
                out.update(self.hierarchy_scores(split, emb, with_proxies="proxies/H/cophenet" not in out))
        return out, time.perf_counter() - t0
