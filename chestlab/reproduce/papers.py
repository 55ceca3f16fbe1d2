"""The papers' figure commands: the CHEST paper's Fig. 3 (:func:`fig3`) and Fig. 2 (:func:`fig2`),
the hard-negative paper's Figs. 2-3 (:func:`hardneg_fig2`, :func:`hardneg_fig3`), and :func:`tables`
(Tables 2-5 layout for trained runs). Each training is a resumable run (:func:`.runner.train_run`);
what they measure is drawn by :mod:`chestlab.viz.paper`.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .. import data as _data
from .. import metrics, poincare
from ..engine import Trainer
from ..evaluate import evaluate_run, format_table
from ..settings import TrainConfig, parse_assignments
from ..viz import geometry
from ..viz import paper as viz_paper
from .runner import train_run

__all__ = ["fig3", "fig2", "hardneg_fig2", "hardneg_fig3", "tables",
           "HARDNEG_T", "HARDNEG_C", "HARDNEG_T_FULL", "HARDNEG_C_FULL"]


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _preset_config(preset: str, data_root: Optional[str], sets: Sequence[str], **kw: Any) -> TrainConfig:
    overrides = parse_assignments(sets)
    if data_root is not None:
        kw["data_root"] = data_root
    cfg = TrainConfig.preset(preset, **{**kw, **overrides})
    if not _data.dataset_info(cfg.dataset).embedded:
        try:
            _data.load_dataset(cfg.dataset, "train", data_root=cfg.data_root)
        except _data.DatasetError as err:
            raise FileNotFoundError(f"--preset {preset} needs the {cfg.dataset} files (--data-root). {err}") from None
    return cfg


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
    fig = viz_paper.similarity_histograms(panels, bins=bins)
    paths = viz_paper.save(fig, out / "fig3", ("png", "pdf"))
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
        disk = {s: geometry.umap_disk(e["x_h"], c, seed=seed) for s, e in emb.items()}
    elif projection == "tangent_pca":
        disk = {s: geometry.project_to_disk(e["x_h"], c, "tangent_pca") for s, e in emb.items()}
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
        f = viz_paper.disk_with_queries(disk[split], emb[split]["labels"], emb[split]["super"], c=c,
                                            query_index=q_idx if split == "test" else (),
                                            title=f"{tr.config.dataset} {split}: x^H, {how}")
        paths += viz_paper.save(f, out / f"fig2_disk_{split}", ("png", "pdf"))
    paths += viz_paper.save(viz_paper.retrieval_grid(examples), out / "fig2_retrieval", ("png", "pdf"))
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
    fig = viz_paper.hardneg_recall_over_t(curves, title=f"pairwise CE on {TrainConfig.preset(preset).dataset}")
    return viz_paper.save(fig, out / "hardneg_fig2", ("png", "pdf")) + [out / "hardneg_fig2.csv"]


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
    fig = viz_paper.hardneg_weights(v, t_sphere=t_sphere, t=t, c_values=cs, labels=labels, title=source)
    return viz_paper.save(fig, out / "hardneg_fig3", ("png", "pdf"))


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
