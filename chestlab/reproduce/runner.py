"""Resumable runs and the ablation loop.

Every training is a run folder (``config.json``, ``events.jsonl``, ``checkpoint.pt``) plus a
``result.json`` written atomically when it finishes (:func:`train_run`). Re-running skips the runs
that have a ``result.json`` and resumes an interrupted run from its last checkpoint, so a crash costs
at most one run (or ``checkpoint_every`` steps of it). :func:`run_ablation` trains a grid that way and
rewrites its outputs after each run: ``ablation.csv`` (every run x space), ``ablation.md``
(:func:`ablation_markdown` of :func:`summarize`, the paper's Table 6/7 layout) and ``ablation.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .. import data as _data
from ..engine import EvalEvent, StepEvent, Trainer, TrainingDiverged
from ..engine.checkpoint import atomic_write_text
from ..interrupts import DeferredInterrupt, Interrupted
from ..viz import paper as viz_paper
from ..paper import ABLATION_ROWS, PAPER_R1
from ..settings import RECORDS, TrainConfig, machine_keys
from .grids import GRIDS, grid_configs

__all__ = ["RunMismatch", "train_run", "run_ablation", "summarize", "ablation_markdown", "write_ablation"]


# ------------------------------------------------------------------------------------------------
# resumable runs
# ------------------------------------------------------------------------------------------------
class RunMismatch(ValueError):
    """A run folder holds a finished run with other settings than the ones asked for."""


# Settings that may differ between the machine that trained and the one that resumes.
_MACHINE_KEYS = machine_keys()


def _comparable(cfg: dict) -> dict:
    d = {k: v for k, v in cfg.items() if k not in _MACHINE_KEYS and k not in RECORDS}
    return json.loads(json.dumps(d))  # tuples -> lists, as read back from JSON


def _write_json(path: Path, obj: Any) -> None:
    """JSON via a temporary file and a rename: a crash never leaves a half-written result."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


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
    trainer = Trainer(cfg, out_dir=run_dir, resume=resume, overwrite=not resume)  # the grid owns its folders
    try:
        return _train(trainer, cfg, run_dir, result_file, measure, desc, progress)
    finally:
        trainer.close()


def _train(trainer: Trainer, cfg: TrainConfig, run_dir: Path, result_file: Path,
           measure: Optional[Callable[[Trainer, Path], dict]], desc: str, progress: bool) -> dict:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc=desc or run_dir.name, unit="step", leave=False,
                   dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    final: Optional[dict] = None
    result: dict = {"config": cfg.to_dict(), "run_dir": str(run_dir)}
    stop = DeferredInterrupt()  # as the train CLI: the first Ctrl-C / SIGTERM ends the step, then stops
    try:
        with stop:
            for ev in trainer.run(should_stop=stop):
                if isinstance(ev, StepEvent) and bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
                elif isinstance(ev, EvalEvent) and ev.step == cfg.steps:
                    final = ev.metrics
        if stop.requested and trainer.step_count < cfg.steps:
            raise Interrupted(stop.signum)
    except TrainingDiverged as err:
        result.update(diverged=str(err), metrics={}, history=trainer.history)
    except KeyboardInterrupt:
        if trainer.consistent:  # else (stopped inside an optimizer update) the last checkpoint is kept
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
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "ablation.csv", buf.getvalue())
    summary = summarize(grid, results)
    steps = sorted({r.get("step") for r in results})
    md = ablation_markdown(grid, summary, seeds=sorted({r["seed"] for r in results}) or list(seeds),
                           steps="/".join(map(str, steps)), K_multi=GRIDS[grid].K_multi)
    (out / "ablation.md").write_text(md)
    dataset = results[0]["config"]["dataset"] if results else grid
    fig = viz_paper.ablation_bars(summary, title=f"Tables 6-7 ablation, grid {grid} ({dataset}, {'/'.join(map(str, steps))} "
                                      f"steps, {len({r['seed'] for r in results})} seed(s))")
    viz_paper.save(fig, out / "ablation", ("png",))
    return {"csv": out / "ablation.csv", "md": out / "ablation.md", "png": out / "ablation.png"}
