"""Hierarchy experiments: does the ball keep the hierarchy better than the plane at low dimension
(``dims``), and what do HIER and the unsupervised method add (``hier``)?

Both train through :func:`chestlab.reproduce.runner.train_run` (resumable run folders, one
``result.json`` each) and score every run with Recall@1, super-class Recall@1, mistake severity (mean
LCA height of a wrong top-1 neighbour in the known hierarchy; lower is better) and the cophenetic
correlation of the dendrogram of the class means (:mod:`chestlab.hierarchy`: average linkage on the
space's own distance, the same method in both spaces), on the unseen test classes.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..engine import Trainer
from ..interrupts import Interrupted
from ..settings import TrainConfig
from ..viz.reproduce import dims_figure
from .runner import train_run

__all__ = ["DIMS", "DIMS_DATASETS", "SPACE_ARMS", "DIM_PRESETS", "HIER_RUNS", "dims", "hier", "summary_table", "paired_differences",
           "default_jobs"]

#: Embedding dimensions of ``dims`` and the presets (with CPU-sized steps) it trains on; the other
#: entries are settings for both spaces' runs (``wide``: the preset's 4-wide backbone output would cap
#: every D at 4, so both spaces get the 64-wide one of ``tree``; ``wide4``: the preset as it is, for D = 4).
DIMS: tuple[int, ...] = (2, 4, 8, 16, 64)
#: The datasets ``dims`` trains on by default (``wide`` on request: 256 classes, a longer run).
DIMS_DATASETS: tuple[str, ...] = ("tree", "shapes")
DIM_PRESETS: dict[str, dict[str, Any]] = {
    "tree": dict(preset="demo-tree", steps=400),
    "wide": dict(preset="demo-tree-wide", steps=600, dim_e=64),
    "wide4": dict(preset="demo-tree-wide", steps=600),
    "shapes": dict(preset="demo-shapes", steps=120),
}
#: The trainings of ``hier``: name -> (preset, extra settings); "untrained" evaluates step 0.
HIER_RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "untrained": ("demo-tree", {}),
    "CHEST": ("demo-tree", {}),
    "CHEST + HIER": ("demo-tree-hier", {}),
    "unsupervised": ("demo-tree-unsup", {}),
}
METRICS = ("R@1", "super_R@1", "severity", "cophenet")
#: Column titles of the tables: (title, scale, format).
_COLUMNS = {"R@1": ("R@1 (%)", 100, ".1f"), "super_R@1": ("super-class R@1 (%)", 100, ".1f"),
            "severity": ("mistake severity ↓", 1, ".2f"), "cophenet": ("cophenetic corr. ↑", 1, ".2f")}
_EVAL = dict(eval_every=0, eval_train=False, eval_max=None, eval_hierarchy=True)


def _space_metrics(result: dict, space: str) -> dict[str, float]:
    m = result.get("metrics", {})
    return {k: float(m.get(f"test/{space}/{k}", math.nan)) for k in METRICS}


def default_jobs() -> int:
    """Runs trained at once: one per CPU core (each with one torch thread), at most 4; 1 on a GPU."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(4, os.cpu_count() or 1))


_STOPPED = False  # in a worker of the pool: a run was interrupted, so it starts no other


def _train_one(cfg: TrainConfig, run_dir: Path, desc: str, progress: bool) -> dict:
    global _STOPPED
    import torch

    if _STOPPED:  # a run queued before the interrupt reached this worker
        raise Interrupted(signal.SIGTERM)
    torch.set_num_threads(1)  # a worker of a pool: one thread per run, one run per core
    try:
        return train_run(cfg, run_dir, desc=desc, progress=progress)
    except KeyboardInterrupt:
        _STOPPED = True
        raise


def _train_all(plan: Sequence[tuple[TrainConfig, Path, str]], jobs: int, progress: bool) -> list[dict]:
    """``train_run`` for each (config, folder, label) of ``plan``, results in plan order; with
    ``jobs > 1`` in that many processes (spawned: each run is seeded and single-threaded, so the
    results do not depend on ``jobs``), one progress bar over the runs."""
    if jobs <= 1 or len(plan) <= 1:
        return [train_run(cfg, d, desc=desc, progress=progress) for cfg, d, desc in plan]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(min(jobs, len(plan)), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, cfg, d, desc, False) for cfg, d, desc in plan]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), desc=f"runs ({jobs} at once)", unit="run", dynamic_ncols=True, file=sys.stderr)
        try:
            for f in as_completed(futures):
                f.result()  # a failed run stops the lot now, with its own error
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt as err:
            for f in futures:  # start no other run
                f.cancel()
            if getattr(err, "signum", None) == signal.SIGTERM:  # sent to this process alone: pass it on, so
                for child in mp.active_children():  # each run checkpoints after its step, then stops
                    child.terminate()
            raise
        finally:
            if bar is not None:
                bar.close()
        return [f.result() for f in futures]


#: The two arms of an H-vs-E comparison at one head width D_H (with ``tau = 0``): "H only" (η_E = 0, scored
#: with d_H on x^H) and "E only" (η_H = 0, scored with d_E on x^E = the head's ``W f + b``, the Sec. 4.4
#: rule), so the two differ only in ``exp_0 ∘ clip_r`` and the distance. :func:`dims` and
#: :func:`chestlab.lessons.space_runs` train these.
SPACE_ARMS: dict[str, dict[str, Any]] = {"H": dict(eta_e=0.0, eta_h=1.0),
                                         "E": dict(eta_h=0.0, eta_e=1.0, euclid_space="head")}


def dims(out: Path, *, datasets: Sequence[str] = DIMS_DATASETS, dims: Sequence[int] = DIMS,
         seeds: Sequence[int] = (0, 1, 2), steps: Optional[int] = None, progress: bool = True,
         jobs: int = 1) -> list[dict]:
    """H vs E at dimension D, like with like: "H only" (η_E = 0, scored with d_H on x^H) against
    "E only" (η_H = 0, scored with d_E on x^E), both with the same network, proxies, head width
    D_H = D and budget -- the E run's L_E and x^E live on the head's ``W f + b`` (``euclid_space =
    head``, the Sec. 4.4 rule), so the two differ only in ``exp_0 ∘ clip_r`` and the distance -- for
    each dataset, D and seed (the seed fixes the data, the initialisation and the batches of both).
    Returns one row per (dataset, D, space, seed) and writes ``dims.csv``, ``dims.md`` (mean ± std per
    space, then the paired differences H − E ± their standard error over seeds) and ``dims.png``.
    ``jobs``: runs trained at once (processes), >= 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs = {jobs!r}: the number of runs trained at once must be an integer >= 1")
    plan, keys = [], []
    for ds in datasets:
        spec = dict(DIM_PRESETS[ds])
        preset, budget = spec.pop("preset"), spec.pop("steps")
        for d in dims:
            for seed in seeds:
                for space, kw in SPACE_ARMS.items():
                    cfg = TrainConfig.preset(preset, **_EVAL, **spec, **kw, dim_h=d, tau=0.0, seed=seed,
                                             steps=steps or budget)
                    plan.append((cfg, Path(out) / ds / f"{space}_D{d}_seed{seed}", f"{ds} {space} D={d} s{seed}"))
                    keys.append((ds, d, space, seed))
    rows = [{"dataset": ds, "D": d, "space": space, "seed": seed, **_space_metrics(res, space)}
            for (ds, d, space, seed), res in zip(keys, _train_all(plan, jobs, progress))]
    _write(Path(out), "dims", rows, ("dataset", "D", "space"), paired=("dataset", "D"))
    dims_figure(summary_table(rows, ("dataset", "D", "space")), METRICS).savefig(Path(out) / "dims.png", dpi=150)
    return rows


def hier(out: Path, *, seeds: Sequence[int] = (0, 1, 2), steps: Optional[int] = None, progress: bool = True) -> list[dict]:
    """Untrained vs CHEST vs CHEST + HIER vs the unsupervised method on ``tree``, in both spaces.
    Writes ``hier.csv``, ``hier.md`` and returns one row per (run, space, seed)."""
    rows = []
    for name, (preset, kw) in HIER_RUNS.items():
        for seed in seeds:
            cfg = TrainConfig.preset(preset, **_EVAL, **kw, seed=seed, **({"steps": steps} if steps else {}))
            if name == "untrained":
                tr = Trainer(cfg)
                res = {"metrics": tr.evaluate(("test",)).metrics}
            else:
                res = train_run(cfg, Path(out) / f"{name.replace(' + ', '_').replace(' ', '_')}_seed{seed}",
                                desc=f"{name} s{seed}", progress=progress)
            for space in ("H", "E"):
                rows.append({"run": name, "space": space, "seed": seed, **_space_metrics(res, space)})
    _write(Path(out), "hier", rows, ("run", "space"))
    return rows


def summary_table(rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """Mean and sample std over seeds of each metric, per group of ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        row = dict(zip(keys, key), n=len(rs))
        for m in METRICS:
            v = np.array([r[m] for r in rs], dtype=float)
            v = v[np.isfinite(v)]
            row[m] = float(v.mean()) if v.size else math.nan
            row[f"{m} std"] = float(v.std(ddof=1)) if v.size > 1 else math.nan
        out.append(row)
    return out


def paired_differences(rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """H − E paired by seed, per group of ``keys`` (e.g. dataset and D): for each metric the mean
    difference over the seeds where both spaces have a value, its standard error (sample std /
    sqrt(n)), and ``n``. Positive means the ball is higher (better for R@1, super-class R@1 and the
    cophenetic correlation; worse for the mistake severity)."""
    pairs: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        pairs.setdefault(tuple(r[k] for k in keys), {}).setdefault(r["seed"], {})[r["space"]] = r
    out = []
    for key, by_seed in pairs.items():
        row = dict(zip(keys, key))
        for m in METRICS:
            d = np.array([s["H"][m] - s["E"][m] for s in by_seed.values() if "H" in s and "E" in s], dtype=float)
            d = d[np.isfinite(d)]
            row[m] = float(d.mean()) if d.size else math.nan
            row[f"{m} se"] = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
            row[f"{m} n"] = int(d.size)
        out.append(row)
    return out


def _markdown(summary: Sequence[dict], keys: Sequence[str], spread: str) -> list[str]:
    """A markdown table of ``summary`` rows: the ``keys`` columns, then each metric as mean ± ``spread``."""
    lines = ["| " + " | ".join(keys) + " | " + " | ".join(_COLUMNS[m][0] for m in METRICS) + " |",
             "|" + "---|" * (len(keys) + len(METRICS))]
    for s in summary:
        cells = []
        for m in METRICS:
            _, scale, fmt = _COLUMNS[m]
            if not math.isfinite(s[m]):
                cells.append("—")
                continue
            sd = f" ± {scale * s[f'{m} {spread}']:{fmt}}" if math.isfinite(s[f"{m} {spread}"]) else ""
            cells.append(f"{scale * s[m]:{'+' if spread == 'se' else ''}{fmt}}{sd}")
        lines.append("| " + " | ".join(str(s[k]) for k in keys) + " | " + " | ".join(cells) + " |")
    return lines


def _write(out: Path, stem: str, rows: Sequence[dict], keys: Sequence[str], paired: Optional[Sequence[str]] = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{stem}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = _markdown(summary_table(rows, keys), keys, "std")
    if paired is not None:
        diffs = paired_differences(rows, paired)
        with open(out / f"{stem}_paired.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(diffs[0]))
            w.writeheader()
            w.writerows(diffs)
        n = sorted({d[f"{m} n"] for d in diffs for m in METRICS})
        lines += ["", f"Paired by seed, H − E (mean ± standard error over {'/'.join(map(str, n))} seeds; positive = "
                      "the ball higher, which is worse only for the mistake severity):", ""]
        lines += _markdown(diffs, paired, "se")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
