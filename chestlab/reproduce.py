"""Reproduce the CHEST paper's ablations (Tables 6-7) and figures, and the hard-negative paper's
Figs. 2-3, with the one training engine (:class:`chestlab.train.Trainer`).

    python -m chestlab.reproduce ablation --grid toy                       # CPU, ~5-10 min
    python -m chestlab.reproduce ablation --grid cars196 --data-root /data # one GPU, see docs/reproduce.md
    python -m chestlab.reproduce fig3                                      # Fig. 3 histograms
    python -m chestlab.reproduce fig2 --run runs/shapes                    # Fig. 2 disk + retrieval
    python -m chestlab.reproduce hardneg-fig2 [--full]                     # R@1 over t, sphere vs c
    python -m chestlab.reproduce hardneg-fig3                              # w_ik over sorted negatives
    python -m chestlab.reproduce tables runs/tree                          # Tables 2-5 layout

Every training is a run folder (``config.json``, ``events.jsonl``, ``checkpoint.pt``) plus a
``result.json`` written atomically when it finishes. Re-running a command skips the runs that have a
``result.json`` and resumes an interrupted run from its last checkpoint, so a crash costs at most
one run (or ``checkpoint_every`` steps of it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from . import data as _data
from . import metrics, paper_figures, poincare
from .evaluate import evaluate_run, format_table
from .engine import EvalEvent, StepEvent, Trainer, TrainingDiverged
from .paper import ABLATION_ROWS, PAPER_R1, TRAININGS, AblationRow
from .settings import TrainConfig, parse_assignments

__all__ = [
    "AblationRow",
    "ABLATION_ROWS",
    "GRIDS",
    "PAPER_R1",
    "GridSpec",
    "RunMismatch",
    "grid_configs",
    "run_ablation",
    "summarize",
    "ablation_markdown",
    "train_run",
    "main",
]


# ------------------------------------------------------------------------------------------------
# the ablation grid (Tables 6 and 7; spec "Ablation grids to reproduce")
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridSpec:
    """Where a grid runs: a preset (Table 1 settings for the real ones), ``K`` of the Multi rows and
    settings changed for every run of the grid."""

    preset: str
    K_multi: int
    overrides: tuple[tuple[str, Any], ...] = ()
    checkpoint_every: int = 0
    description: str = ""


GRIDS: dict[str, GridSpec] = {
    # tree: hierarchical classes, 150+ steps/s on one CPU thread, so 8 trainings x 3 seeds fit in
    # minutes. K = 10 and the rest of Table 6's structure, at the demo-tree scale (D_E 64, D_H 16).
    "toy": GridSpec("demo-tree", 10, (("steps", 1500), ("eval_every", 250), ("eval_train", False), ("eval_max", None)),
                    description="embedded `tree` data (32 train / 32 unseen test classes), MLP, CPU"),
    # Table 1 settings via the presets (ViT-S/16, D = 384, paper's margins); checkpoints so that
    # a crash in a 30000-step In-shop run costs at most 1000 steps.
    "cars196": GridSpec("cars196", 10, checkpoint_every=1000, description="Cars196, ViT-S/16 (Table 6)"),
    "inshop": GridSpec("inshop", 2, checkpoint_every=1000, description="In-shop, ViT-S/16 (Table 7)"),
}


@dataclass
class PlannedRun:
    training: str
    seed: int
    run_id: str
    config: TrainConfig


def grid_configs(grid: str, seeds: Sequence[int] = (0, 1, 2), *, steps: Optional[int] = None,
                 data_root: Optional[str] = None, trainings: Optional[Sequence[str]] = None,
                 overrides: Optional[dict] = None) -> list[PlannedRun]:
    """The trainings of ``grid`` (all 8, or the named ones) for each seed, as configs."""
    if grid not in GRIDS:
        raise ValueError(f"--grid {grid!r}: choose one of {', '.join(GRIDS)}")
    spec = GRIDS[grid]
    wanted = list(TRAININGS if not trainings else trainings)
    unknown = [t for t in wanted if t not in TRAININGS]
    if unknown:
        raise ValueError(f"unknown training(s) {unknown}: choose from {', '.join(TRAININGS)}")
    first = {r.training: r for r in ABLATION_ROWS}
    plans = []
    for seed in seeds:
        for name in TRAININGS:
            if name not in wanted:
                continue
            row = first[name]
            kw = dict(spec.overrides)
            kw.update(row.settings(spec.K_multi), seed=int(seed), checkpoint_every=spec.checkpoint_every)
            if data_root is not None:
                kw["data_root"] = data_root
            kw.update(overrides or {})
            if steps is not None:
                kw["steps"] = steps
            plans.append(PlannedRun(name, int(seed), f"{row.slug}_seed{seed}", TrainConfig.preset(spec.preset, **kw)))
    return plans


# ------------------------------------------------------------------------------------------------
# resumable runs
# ------------------------------------------------------------------------------------------------
class RunMismatch(ValueError):
    """A run folder holds a finished run with other settings than the ones asked for."""


# Settings that may differ between the machine that trained and the one that resumes.
_MACHINE_KEYS = frozenset({"device", "workers", "threads", "data_root", "amp"})


def _comparable(cfg: dict) -> dict:
    d = {k: v for k, v in cfg.items() if k not in _MACHINE_KEYS}
    return json.loads(json.dumps(d))  # tuples -> lists, as read back from JSON


def _write_json(path: Path, obj: Any) -> None:
    """JSON via a temporary file and a rename: a crash never leaves a half-written result."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def _check_same(run_dir: Path, cfg: TrainConfig, what: str) -> None:
    stored = json.loads((run_dir / what).read_text())
    stored = stored.get("config", stored)
    a, b = _comparable(stored), _comparable(cfg.to_dict())
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise RunMismatch(
            f"{run_dir} holds a run with other settings ({', '.join(f'{k}: {a.get(k)!r} there, {b.get(k)!r} now' for k in diff[:6])}). "
            "Use another --out folder, or delete that run folder to redo it."
        )


def train_run(cfg: TrainConfig, run_dir: Path, *, measure: Optional[Callable[[Trainer, Path], dict]] = None,
              desc: str = "", progress: bool = True) -> dict:
    """Train ``cfg`` in ``run_dir`` unless it already finished there; return its ``result.json``.

    ``result.json`` holds the config, the final test metrics (``"test/H/R@1"``, ...), the eval
    history, the training time and what ``measure(trainer, run_dir)`` returned. An unfinished run with
    a checkpoint of the same config is resumed from it. ``result["skipped"]`` says it was not trained
    now. A diverged run is a finished run with ``result["diverged"]`` (its message) and no metrics.
    """
    run_dir = Path(run_dir)
    result_file = run_dir / "result.json"
    if result_file.exists():
        _check_same(run_dir, cfg, "result.json")
        return {**json.loads(result_file.read_text()), "skipped": True}
    resume = (run_dir / "checkpoint.pt").exists() and (run_dir / "config.json").exists()
    if resume:
        _check_same(run_dir, cfg, "config.json")
    trainer = Trainer(cfg, out_dir=run_dir, resume=resume)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc=desc or run_dir.name, unit="step", leave=False,
                   dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    final: Optional[dict] = None
    result: dict = {"config": cfg.to_dict(), "run_dir": str(run_dir)}
    try:
        for ev in trainer.run():
            if isinstance(ev, StepEvent) and bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
            elif isinstance(ev, EvalEvent) and ev.step == cfg.steps:
                final = ev.metrics
    except TrainingDiverged as err:
        result.update(diverged=str(err), metrics={}, history=trainer.history)
    except KeyboardInterrupt:
        trainer.save_checkpoint()  # the next call resumes here
        raise
    finally:
        if bar is not None:
            bar.close()
    if "diverged" not in result:
        if final is None:  # resumed from a checkpoint already at the last step
            final = trainer.evaluate(("test",)).metrics
        result.update(metrics={k: v for k, v in final.items() if k.startswith("test/")}, history=trainer.history)
        if measure is not None:
            result.update(measure(trainer, run_dir))
    result["train_seconds"] = round(time.perf_counter() - t0, 2)
    result["step"] = trainer.step_count
    _write_json(result_file, result)
    return {**result, "skipped": False}


# ------------------------------------------------------------------------------------------------
# ablation: run, summarise, write
# ------------------------------------------------------------------------------------------------
def _check_data(grid: str, data_root: Optional[str]) -> None:
    """Fail before any training when a real grid's files are missing, saying what and how to fix."""
    dataset = TrainConfig.preset(GRIDS[grid].preset).dataset
    if _data.dataset_info(dataset).embedded:
        return
    try:
        _data.load_dataset(dataset, "train", data_root=data_root)
    except _data.DatasetError as err:
        how = ("" if data_root is not None else
               "no --data-root was given (nor CHESTLAB_DATA_ROOT), so ./data was searched. ")
        raise FileNotFoundError(
            f"--grid {grid} trains on the {dataset} benchmark, which is not embedded: pass --data-root DIR, the folder "
            f"holding it (docs/reproduce.md lists the expected files). {how}{err}"
        ) from None


def run_ablation(grid: str, out: Path, seeds: Sequence[int] = (0, 1, 2), *, steps: Optional[int] = None,
                 data_root: Optional[str] = None, trainings: Optional[Sequence[str]] = None,
                 overrides: Optional[dict] = None, progress: bool = True) -> list[dict]:
    """Train (or skip, when finished) every planned run of ``grid`` into ``out/runs/<run_id>`` and
    rewrite ``ablation.csv``, ``ablation.md`` and ``ablation.png`` after each run, so the outputs are
    always those of the finished runs. Returns the results (one per run)."""
    out = Path(out)
    _check_data(grid, data_root)
    plans = grid_configs(grid, seeds, steps=steps, data_root=data_root, trainings=trainings, overrides=overrides)
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plans), desc=f"ablation {grid}", unit="run", dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    try:
        for plan in plans:
            res = train_run(plan.config, out / "runs" / plan.run_id, desc=plan.run_id, progress=progress)
            res.update(training=plan.training, seed=plan.seed, run_id=plan.run_id)
            results.append(res)
            write_ablation(grid, out, results, seeds=seeds)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(last=f"{plan.run_id}{' (done before)' if res['skipped'] else ''}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    trained = sum(not r["skipped"] for r in results)
    if progress:
        print(f"{trained} run(s) trained, {len(results) - trained} finished before; {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    return results


def _csv_rows(grid: str, results: Sequence[dict]) -> list[dict]:
    """One row per run x space (both spaces of every run; ``table_row`` names the paper's row)."""
    rows = []
    paper = PAPER_R1.get(grid)
    for res in results:
        cfg = res["config"]
        for space in ("H", "E"):
            table = [(i, r) for i, r in enumerate(ABLATION_ROWS) if r.training == res["training"] and r.space == space]
            row = {
                "grid": grid, "training": res["training"], "space": space,
                "table_row": table[0][1].name if table else "", "seed": res["seed"],
                "eta_h": cfg["eta_h"], "eta_e": cfg["eta_e"], "K": cfg["K"], "tau": cfg["tau"], "steps": res.get("step"),
                "dataset": cfg["dataset"], "train_seconds": res.get("train_seconds"), "diverged": bool(res.get("diverged")),
            }
            for key, value in sorted(res.get("metrics", {}).items()):
                _, sp, metric = key.split("/", 2)
                if sp == space:
                    row[metric] = value
            row["paper_R@1"] = paper[table[0][0]] / 100 if (paper and table) else ""
            row["run_dir"] = res["run_dir"]
            rows.append(row)
    return rows


def summarize(grid: str, results: Sequence[dict], metric: str = "R@1") -> list[dict]:
    """Per table row: ``mean``, ``std`` (sample std over seeds, NaN with one seed), ``n`` seeds and the
    paper's value (fraction) where known; MAP@R alongside."""
    paper = PAPER_R1.get(grid)
    out = []
    for i, row in enumerate(ABLATION_ROWS):
        vals, maps, diverged = [], [], 0
        for res in results:
            if res["training"] != row.training:
                continue
            if res.get("diverged"):
                diverged += 1
                continue
            vals.append(res["metrics"][f"test/{row.space}/{metric}"])
            maps.append(res["metrics"][f"test/{row.space}/MAP@R"])
        n = len(vals)
        out.append({
            "name": row.name, "losses": row.losses, "space": row.space, "eta_h": row.eta_h, "eta_e": row.eta_e,
            "multi": row.multi, "tau": row.tau, "n": n, "diverged": diverged,
            "mean": float(np.mean(vals)) if n else math.nan, "std": float(np.std(vals, ddof=1)) if n > 1 else math.nan,
            "map_mean": float(np.mean(maps)) if n else math.nan, "map_std": float(np.std(maps, ddof=1)) if n > 1 else math.nan,
            "paper": paper[i] / 100 if paper else None,
        })
    return out


def _pm(mean: float, std: float, n: int) -> str:
    if not n:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if n > 1 else "")


def ablation_markdown(grid: str, summary: Sequence[dict], *, seeds: Sequence[int], steps: Any, K_multi: int) -> str:
    """The paper's Table 6/7 layout (Losses, Space, eta_H, eta_E, K, tau, R@1) with mean ± std over
    seeds in percent, MAP@R, and the paper's R@1 for the real grids."""
    spec = GRIDS[grid]
    paper = grid in PAPER_R1
    head = "| Losses | Space | η_H | η_E | K | τ | R@1 (ours) | MAP@R (ours) |" + (" R@1 (paper) |" if paper else "")
    lines = [
        f"Ablation `{grid}`: {spec.description}; {steps} steps; seeds {', '.join(map(str, seeds))}; "
        "mean ± std over seeds (sample std), percent.",
        "",
        head,
        "|---|---|---|---|---|---|---|---|" + ("---|" if paper else ""),
    ]
    for s in summary:
        k = K_multi if s["multi"] else 1
        cells = [s["losses"], s["space"], f"{s['eta_h']:g}", f"{s['eta_e']:g}", str(k), f"{s['tau']:.1f}",
                 _pm(s["mean"], s["std"], s["n"]) + (f" ({s['diverged']} diverged)" if s["diverged"] else ""),
                 _pm(s["map_mean"], s["map_std"], s["n"])]
        if paper:
            cells.append(f"{100 * s['paper']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_ablation(grid: str, out: Path, results: Sequence[dict], *, seeds: Sequence[int]) -> dict[str, Path]:
    """``ablation.csv`` (every run x space), ``ablation.md`` (Table 6/7 layout), ``ablation.png``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = _csv_rows(grid, results)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    tmp = out / f".ablation.csv.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "ablation.csv")
    summary = summarize(grid, results)
    steps = sorted({r.get("step") for r in results})
    md = ablation_markdown(grid, summary, seeds=sorted({r["seed"] for r in results}) or list(seeds),
                           steps="/".join(map(str, steps)), K_multi=GRIDS[grid].K_multi)
    (out / "ablation.md").write_text(md)
    dataset = results[0]["config"]["dataset"] if results else grid
    fig = paper_figures.ablation_bars(summary, title=f"Tables 6-7 ablation, grid {grid} ({dataset}, {'/'.join(map(str, steps))} "
                                      f"steps, {len({r['seed'] for r in results})} seed(s))")
    paper_figures.save(fig, out / "ablation", ("png",))
    return {"csv": out / "ablation.csv", "md": out / "ablation.md", "png": out / "ablation.png"}


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _preset_config(preset: str, data_root: Optional[str], sets: Sequence[str], **kw: Any) -> TrainConfig:
    overrides = _parse_sets(sets)
    if data_root is not None:
        kw["data_root"] = data_root
    cfg = TrainConfig.preset(preset, **{**kw, **overrides})
    if not _data.dataset_info(cfg.dataset).embedded:
        try:
            _data.load_dataset(cfg.dataset, "train", data_root=cfg.data_root)
        except _data.DatasetError as err:
            raise FileNotFoundError(f"--preset {preset} needs the {cfg.dataset} files (--data-root). {err}") from None
    return cfg


def _parse_sets(sets: Sequence[str]) -> dict:
    return parse_assignments(sets)


def fig3(out: Path, *, preset: str = "demo-tree", steps: int = 1800, seed: int = 0, data_root: Optional[str] = None,
         sets: Sequence[str] = (), bins: int = 50, progress: bool = True) -> list[Path]:
    """The CHEST paper's Fig. 3: ``S_H`` of the batch at step ``steps`` to its positive class vs the
    negative classes, for "Hyperbolic" (eta_E = 0) and "Hyperbolic + Euclidean" (K = 1, tau = 0)."""
    panels, lines = [], []
    for slug, title, eta_e in (("h", "without $L_E$ (Hyperbolic)", 0.0), ("h_e", "with $L_E$ (Hyperbolic + Euclidean)", 1.0)):
        cfg = _preset_config(preset, data_root, sets, eta_h=1.0, eta_e=eta_e, K=1, tau=0.0, steps=steps, seed=seed,
                             eval_every=0, eval_train=False)

        def measure(tr: Trainer, run_dir: Path) -> dict:
            sim = tr.similarities()  # the last training batch, at step `steps` (Fig. 3's data)
            np.savez(run_dir / "similarity.npz", h_pos=sim.h_pos, h_neg=sim.h_neg)
            return {"similarity_step": sim.step}

        res = train_run(cfg, out / "runs" / f"fig3_{slug}_seed{seed}", measure=measure, desc=f"fig3 {slug}", progress=progress)
        if res.get("diverged"):
            raise RuntimeError(f"fig3: the {slug} run diverged: {res['diverged']}")
        sims = np.load(Path(res["run_dir"]) / "similarity.npz")
        panels.append((f"{title}\nstep {res['similarity_step']}, test R@1(H) {100 * res['metrics']['test/H/R@1']:.1f}",
                       sims["h_pos"], sims["h_neg"]))
        lines.append(f"{slug}: median S_H positive {np.median(sims['h_pos']):.3f}, negative {np.median(sims['h_neg']):.3f}, "
                     f"test R@1 H {100 * res['metrics']['test/H/R@1']:.1f} E {100 * res['metrics']['test/E/R@1']:.1f}")
    fig = paper_figures.similarity_histograms(panels, bins=bins)
    paths = paper_figures.save(fig, out / "fig3", ("png", "pdf"))
    (out / "fig3.txt").write_text("\n".join(lines) + "\n")
    if progress:
        print("\n".join(lines))
    return paths


def _tile(ds: Any, i: int) -> Any:
    """What a sample looks like: an image in [0, 1] (H, W[, 3]) or, for vectors, its class name."""
    if isinstance(ds, _data.ImageListDataset):  # images on disk: the raw file, not the normalised tensor
        from PIL import Image

        with Image.open(ds.paths[i]) as im:
            im = im.convert("RGB")
            im.thumbnail((96, 96))
            return np.asarray(im, dtype=np.float32) / 255
    if isinstance(ds, _data.ArrayImageDataset):
        return np.asarray(ds.images[i], dtype=np.float32) / 255
    x = getattr(ds, "data", None)
    if x is not None and x.dim() == 4:
        img = x[i].float()
        img = ds.denormalise(img) if hasattr(ds, "denormalise") else (img - img.min()) / (img.max() - img.min() + 1e-9)
        img = img.permute(1, 2, 0).numpy()
        return img[..., 0] if img.shape[-1] == 1 else img
    return str(ds.classes[int(ds.labels[i])])


def fig2(out: Path, *, run: Optional[Path] = None, preset: str = "demo-shapes", steps: Optional[int] = None, seed: int = 0,
         data_root: Optional[str] = None, sets: Sequence[str] = (), max_n: int = 2000, queries: int = 4, top: int = 19,
         projection: str = "umap", progress: bool = True) -> list[Path]:
    """The CHEST paper's Fig. 2: train and test ``x^H`` in the Poincaré disk (UMAP with a hyperbolic
    output metric, as the paper; or ``tangent_pca``) with the queries circled, and ``queries``
    retrieval examples (query + ``top`` nearest test samples by Poincaré distance), wrong ones in red."""
    from . import figures

    if run is not None:
        tr = Trainer.from_run(run, **({"data_root": data_root} if data_root else {}))
    else:
        kw = {"seed": seed, "eval_every": 0, "eval_train": False}
        if steps is not None:
            kw["steps"] = steps
        cfg = _preset_config(preset, data_root, sets, **kw)
        run_dir = out / "runs" / f"fig2_{preset}_seed{seed}"
        res = train_run(cfg, run_dir, desc="fig2", progress=progress)
        if res.get("diverged"):
            raise RuntimeError(f"fig2: the run diverged: {res['diverged']}")
        tr = Trainer.from_run(run_dir)
    c = float(tr.model.head.c)
    emb = {split: tr.embed(split, max_n) for split in ("train", "test")}
    if projection == "umap":
        if progress:
            print("fig2: UMAP with hyperboloid output (first call compiles numba, ~1 min) ...", file=sys.stderr)
        disk = {s: figures.umap_disk(e["x_h"], c, seed=seed) for s, e in emb.items()}
    elif projection == "tangent_pca":
        disk = {s: figures.project_to_disk(e["x_h"], c, "tangent_pca") for s, e in emb.items()}
    else:
        raise ValueError(f"--projection {projection!r}: choose umap or tangent_pca")
    how = "UMAP with hyperbolic output" if projection == "umap" else "tangent-space PCA"
    test = emb["test"]
    n = len(test["labels"])
    top = min(top, n - 1)
    q_idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:queries].tolist()
    d = poincare.pairwise_dist(test["x_h"][q_idx], test["x_h"], c)
    d[torch.arange(len(q_idx)), torch.tensor(q_idx)] = math.inf  # a query does not retrieve itself
    ds = tr.test_set
    examples = []
    for row, qi in enumerate(q_idx):
        nn_idx = torch.argsort(d[row])[:top].tolist()
        gi = int(test["index"][qi])
        examples.append({
            "query": _tile(ds, gi),
            "results": [(_tile(ds, int(test["index"][j])), bool(test["labels"][j] == test["labels"][qi])) for j in nn_idx],
        })
    paths = []
    for split in ("train", "test"):
        f = paper_figures.disk_with_queries(disk[split], emb[split]["labels"], emb[split]["super"], c=c,
                                            query_index=q_idx if split == "test" else (),
                                            title=f"{tr.config.dataset} {split}: x^H, {how}")
        paths += paper_figures.save(f, out / f"fig2_disk_{split}", ("png", "pdf"))
    paths += paper_figures.save(paper_figures.retrieval_grid(examples), out / "fig2_retrieval", ("png", "pdf"))
    return paths


def _recall1(tr: Trainer, geometry: str) -> float:
    """Test Recall@1 in the geometry the pairwise cross-entropy was trained in: cosine on ``x^E``
    (sphere) or the Poincaré distance on ``x^H`` (hyperbolic); In-shop retrieves from the gallery."""
    key, metric, c = ("x_e", "cosine", None) if geometry == "sphere" else ("x_h", "poincare", float(tr.model.head.c))
    max_n = tr.config.eval_max
    if "query" in _data.dataset_info(tr.config.dataset).splits:
        q, g = tr.embed("query", max_n), tr.embed("gallery", max_n)
        res = metrics.retrieval_metrics(q[key], q["labels"], (1,), metric, c, reference=g[key], reference_labels=g["labels"])
    else:
        e = tr.embed("test", max_n)
        res = metrics.retrieval_metrics(e[key], e["labels"], (1,), metric, c)
    return float(res["R@1"])


HARDNEG_T = (0.05, 0.1, 0.2, 0.5)
HARDNEG_C = (0.01, 0.1, 0.5)
HARDNEG_T_FULL = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
HARDNEG_C_FULL = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


def hardneg_fig2(out: Path, *, preset: str = "demo-tree", ts: Sequence[float] = HARDNEG_T, cs: Sequence[float] = HARDNEG_C,
                 seeds: Sequence[int] = (0,), steps: Optional[int] = None, data_root: Optional[str] = None,
                 sets: Sequence[str] = (), progress: bool = True) -> list[Path]:
    """The hard-negative paper's Fig. 2: test Recall@1 of the pairwise cross-entropy (``loss=pair_ce``)
    over the temperature ``t``, on the sphere (cosine of ``x^E``) and in the Poincaré ball at each
    curvature ``c`` (``-D_H`` of ``x^H``). One resumable run per (geometry, t, seed)."""
    kw: dict = {"loss": "pair_ce", "eval_every": 0, "eval_train": False}
    if preset == "demo-tree":  # the same dimension for both geometries, as Hyp-ViT's heads
        kw.update(dim_e=16, dim_h=16, steps=300)
    if steps is not None:
        kw["steps"] = steps
    geoms = [("sphere", None)] + [(f"hyperbolic c = {c:g}", float(c)) for c in cs]
    plans = [(g, c, float(t), s) for g, c in geoms for t in ts for s in seeds]
    rows, curves = [], {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plans), desc="hardneg-fig2", unit="run", dynamic_ncols=True, file=sys.stderr)
    for label, c, t, s in plans:
        space = "sphere" if c is None else "hyperbolic"
        cfg = _preset_config(preset, data_root, sets, **kw, pair_space=space, t=t, seed=s, **({"c": c} if c is not None else {}))
        slug = "sphere" if c is None else f"hyp_c{c:g}"
        res = train_run(cfg, out / "runs" / f"{slug}_t{t:g}_seed{s}", desc=f"{slug} t={t:g}", progress=progress,
                        measure=lambda tr, _d, g=space: {"R@1": _recall1(tr, g)})
        r1 = math.nan if res.get("diverged") else res["R@1"]
        rows.append({"geometry": label, "c": "" if c is None else c, "t": t, "seed": s, "R@1": r1, "diverged": bool(res.get("diverged"))})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for label, _ in geoms:
        pts = []
        for t in ts:
            v = np.array([r["R@1"] for r in rows if r["geometry"] == label and r["t"] == float(t)], dtype=float)
            v = v[np.isfinite(v)]
            if v.size:
                pts.append((float(t), float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0))
        curves[label] = pts
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "hardneg_fig2.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = ["| t | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for t in ts:
        cells = []
        for label in curves:
            p = [m for tt, m, _ in curves[label] if tt == float(t)]
            cells.append(f"{100 * p[0]:.1f}" if p else "–")
        md.append(f"| {t:g} | " + " | ".join(cells) + " |")
    (out / "hardneg_fig2.md").write_text("Test Recall@1 (%), mean over seeds\n\n" + "\n".join(md) + "\n")
    if progress:
        print("\n".join(md))
    fig = paper_figures.hardneg_recall_over_t(curves, title=f"pairwise CE on {TrainConfig.preset(preset).dataset}")
    return paper_figures.save(fig, out / "hardneg_fig2", ("png", "pdf")) + [out / "hardneg_fig2.csv"]


def hardneg_fig3(out: Path, *, run: Optional[Path] = None, preset: str = "demo-tree", steps: int = 300, seed: int = 0,
                 random: bool = False, n: int = 64, t_sphere: float = 0.1, t: float = 0.2, cs: Sequence[float] = HARDNEG_C,
                 data_root: Optional[str] = None, sets: Sequence[str] = (), progress: bool = True) -> list[Path]:
    """The hard-negative paper's Fig. 3: ``w_ik`` over one anchor's negatives sorted by distance, sphere
    vs hyperbolic (several ``c``), on a batch of ``n`` test samples of a trained model (``--run``, or a
    short pair_ce run trained here), or on Gaussian features (``random``). The same tangent features
    ``log_0(x^H)`` feed every geometry, so the curves differ by geometry and temperature only."""
    labels = None
    if random:
        v = torch.randn(n, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        source = f"{n} Gaussian vectors (no model)"
    else:
        if run is not None:
            tr = Trainer.from_run(run, **({"data_root": data_root} if data_root else {}))
        else:
            cfg = _preset_config(preset, data_root, sets, loss="pair_ce", pair_space="hyperbolic", t=t, steps=steps, seed=seed,
                                 eval_every=0, eval_train=False)
            run_dir = out / "runs" / f"hardneg_fig3_{preset}_seed{seed}"
            train_run(cfg, run_dir, desc="hardneg-fig3", progress=progress)
            tr = Trainer.from_run(run_dir)
        # a batch like the training ones: classes with several samples each, anchor 0's positives removed
        e = tr.embed("test", None)
        g = torch.Generator().manual_seed(seed)
        classes = torch.unique(e["labels"])[torch.randperm(len(torch.unique(e["labels"])), generator=g)]
        per = 4
        take = torch.cat([torch.nonzero(e["labels"] == k).flatten()[:per] for k in classes[: max(2, n // per)]])[:n]
        v = poincare.logmap0(e["x_h"][take].double(), float(tr.model.head.c))
        labels = e["labels"][take]
        source = f"{len(take)} test samples of {tr.config.dataset} ({'run ' + str(run) if run else f'pair_ce, {tr.step_count} steps'})"
    fig = paper_figures.hardneg_weights(v, t_sphere=t_sphere, t=t, c_values=cs, labels=labels, title=source)
    return paper_figures.save(fig, out / "hardneg_fig3", ("png", "pdf"))


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def tables(run_dir: Path, *, split: str = "test", device: Optional[str] = None, max_n: Optional[int] = None) -> str:
    """Recall@k and MAP@R in both spaces, Tables 2-5 layout (:func:`chestlab.evaluate.format_table`),
    for a run folder or for every run of an ablation / figure folder (``DIR/runs/*``)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        dirs = [run_dir]
    else:
        dirs = sorted(p.parent for p in run_dir.glob("runs/*/checkpoint.pt"))
        if not dirs:
            raise FileNotFoundError(f"{run_dir} is neither a run folder (config.json + checkpoint.pt) nor a folder "
                                    "with runs/*/checkpoint.pt; give a folder made by chestlab.train --out or by this script")
    parts = []
    for d in dirs:
        res = evaluate_run(str(d), split, device, max_n)
        parts.append((f"{d.name}\n\n" if len(dirs) > 1 else "") + format_table(res))
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="python -m chestlab.reproduce", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, out: str, preset: Optional[str] = None) -> None:
        sp.add_argument("--out", default=out, help=f"output folder (default {out})")
        sp.add_argument("--data-root", help="folder holding a real benchmark (not needed for embedded data)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        if preset is not None:
            sp.add_argument("--preset", default=preset, help=f"training preset (default {preset}); see chestlab.train --help")
            sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training setting")

    rows = "\n".join(f"  {r.name:<15} {r.losses:<32} eta_h={r.eta_h:g} eta_e={r.eta_e:g} "
                     f"K={'K' if r.multi else 1} tau={r.tau:g} space={r.space}" for r in ABLATION_ROWS)
    a = sub.add_parser("ablation", formatter_class=fmt, help="Tables 6-7: the eleven rows x seeds",
                       description="Train the 8 trainings behind the 11 rows of Tables 6-7 for each seed, evaluate "
                       "each in its space(s), and write OUT/ablation.csv (every run x space), OUT/ablation.md "
                       "(the paper's layout, mean ± std) and OUT/ablation.png. Finished runs are skipped: re-run the "
                       "same command after a crash or Ctrl-C.",
                       epilog=f"rows (K = 10 for toy and cars196, 2 for inshop):\n{rows}\n\ntrainings for --only: "
                       f"{', '.join(TRAININGS)}")
    common(a, "runs/ablation-GRID")
    a.add_argument("--grid", required=True, choices=sorted(GRIDS), help="toy (embedded tree, CPU) | cars196 | inshop")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    a.add_argument("--steps", type=int, help="optimizer steps per run (default: the grid's: toy 1500, Table 1 otherwise)")
    a.add_argument("--only", nargs="+", metavar="TRAINING", help="run only these trainings (e.g. H CHEST)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training setting in every run")

    f3 = sub.add_parser("fig3", formatter_class=fmt, help="Fig. 3: S_H histograms without / with L_E",
                        description=fig3.__doc__)
    common(f3, "runs/fig3", "demo-tree")
    f3.add_argument("--steps", type=int, default=1800, help="the step of the histogram (paper: 1800 on Cars196)")
    f3.add_argument("--seed", type=int, default=0)
    f3.add_argument("--bins", type=int, default=50)

    f2 = sub.add_parser("fig2", formatter_class=fmt, help="Fig. 2: Poincaré-disk UMAP + retrieval examples",
                        description=fig2.__doc__)
    common(f2, "runs/fig2", "demo-shapes")
    f2.add_argument("--run", type=Path, help="use this trained run folder instead of training one")
    f2.add_argument("--steps", type=int, help="training steps when no --run (default: the preset's)")
    f2.add_argument("--seed", type=int, default=0)
    f2.add_argument("--max-n", type=int, default=2000, help="samples per split in the disk (default 2000)")
    f2.add_argument("--queries", type=int, default=4, help="retrieval examples (paper 4)")
    f2.add_argument("--top", type=int, default=19, help="results per query (paper 19)")
    f2.add_argument("--projection", default="umap", choices=["umap", "tangent_pca"],
                    help="umap: UMAP with hyperboloid output, as the paper (slow the first time); tangent_pca: fast, linear")

    h2 = sub.add_parser("hardneg-fig2", formatter_class=fmt, help="hard-negative paper Fig. 2: R@1 over t, sphere vs c",
                        description=hardneg_fig2.__doc__ + "\n\nThe paper's exact t and c values did not survive in "
                        "our copy of its text; the defaults are our choice (see docs/reproduce.md).")
    common(h2, "runs/hardneg-fig2", "demo-tree")
    h2.add_argument("--full", action="store_true",
                    help=f"the full sweep: t in {HARDNEG_T_FULL}, c in {HARDNEG_C_FULL}, seeds 0 1 2 (GPU with real presets)")
    h2.add_argument("--t", type=float, nargs="+", help=f"temperatures (default {HARDNEG_T})")
    h2.add_argument("--c", type=float, nargs="+", help=f"curvatures (default {HARDNEG_C})")
    h2.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0; --full: 0 1 2)")
    h2.add_argument("--steps", type=int, help="steps per run (default 300 on demo-tree, else the preset's)")

    h3 = sub.add_parser("hardneg-fig3", formatter_class=fmt, help="hard-negative paper Fig. 3: w_ik over sorted negatives",
                        description=hardneg_fig3.__doc__)
    common(h3, "runs/hardneg-fig3", "demo-tree")
    h3.add_argument("--run", type=Path, help="take the batch from this trained run folder")
    h3.add_argument("--random", action="store_true", help="Gaussian features, no model")
    h3.add_argument("--steps", type=int, default=300, help="steps of the pair_ce run trained when no --run (default 300)")
    h3.add_argument("--seed", type=int, default=0)
    h3.add_argument("--n", type=int, default=64, help="batch size (default 64)")
    h3.add_argument("--t-sphere", type=float, default=0.1, help="temperature on the sphere (default 0.1)")
    h3.add_argument("--t", type=float, default=0.2, help="temperature in the ball (default 0.2)")
    h3.add_argument("--c", type=float, nargs="+", default=list(HARDNEG_C), help=f"curvatures (default {HARDNEG_C})")

    tb = sub.add_parser("tables", formatter_class=fmt, help="Tables 2-5 layout for a run (or every run of a folder)",
                        description=tables.__doc__)
    tb.add_argument("run_dir", type=Path, help="a run folder, or an output folder of this script")
    tb.add_argument("--split", default="test", help="test (unseen classes; In-shop: query -> gallery) or train")
    tb.add_argument("--device", help="auto | cpu | cuda")
    tb.add_argument("--max-n", type=int, help="evaluate at most this many samples")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not getattr(args, "quiet", False)
    try:
        if args.command == "ablation":
            out = Path(args.out.replace("GRID", args.grid))
            t0 = time.perf_counter()
            results = run_ablation(args.grid, out, args.seeds, steps=args.steps, data_root=args.data_root,
                                   trainings=args.only, overrides=_parse_sets(args.set), progress=progress)
            print((out / "ablation.md").read_text())
            print(f"{len(results)} runs in {out} ({time.perf_counter() - t0:.0f} s): ablation.csv, ablation.md, ablation.png")
        elif args.command == "fig3":
            paths = fig3(Path(args.out), preset=args.preset, steps=args.steps, seed=args.seed, data_root=args.data_root,
                         sets=args.set, bins=args.bins, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "fig2":
            paths = fig2(Path(args.out), run=args.run, preset=args.preset, steps=args.steps, seed=args.seed,
                         data_root=args.data_root, sets=args.set, max_n=args.max_n, queries=args.queries, top=args.top,
                         projection=args.projection, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "hardneg-fig2":
            ts = args.t or (HARDNEG_T_FULL if args.full else HARDNEG_T)
            cs = args.c or (HARDNEG_C_FULL if args.full else HARDNEG_C)
            seeds = args.seeds or ([0, 1, 2] if args.full else [0])
            paths = hardneg_fig2(Path(args.out), preset=args.preset, ts=ts, cs=cs, seeds=seeds, steps=args.steps,
                                 data_root=args.data_root, sets=args.set, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "hardneg-fig3":
            paths = hardneg_fig3(Path(args.out), run=args.run, preset=args.preset, steps=args.steps, seed=args.seed,
                                 random=args.random, n=args.n, t_sphere=args.t_sphere, t=args.t, cs=args.c,
                                 data_root=args.data_root, sets=args.set, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "tables":
            print(tables(args.run_dir, split=args.split, device=args.device, max_n=args.max_n))
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved and the current one checkpointed; re-run the same command to "
              "continue where it stopped.", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
