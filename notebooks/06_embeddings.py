# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Looking at the embeddings: the paper's Fig. 2 and retrieval metrics
#
# Fig. 2 of the CHEST paper shows a Poincaré-disk UMAP of the embeddings and retrieval examples.
# We redo both on the embedded `digits` data (8×8 scikit-learn digits: the model trains on 0–4 and is
# tested on the **unseen** digits 5–9), look at how far from the origin the embeddings sit, then
# derive Recall@k and MAP@R and compute them in both spaces (E: $x^E$ with the Euclidean distance;
# H: $x^H$ with the Poincaré distance, docs/maths.md, Eq. 2).
#
# **Learning objectives.** After this lesson you can
#
# 1. bring $D_H$-dimensional embeddings down to the Poincaré disk in two ways, and say what each keeps;
# 2. measure where the embeddings sit radially: the norms of the tangent vectors $W x^E + b$ *before*
#    clipping, and which points the clipping radius $r$ actually holds;
# 3. read retrieval examples like the paper's;
# 4. define Recall@k and MAP@R, check them against a direct implementation, and compare E and H;
# 5. compare the ball and the plane on a tree where theory favours the ball (the wide tree), over paired
#    seeds with standard errors: networks trained on its samples, and the tree's own nodes fitted directly.
#
# Notation: $c$ is the curvature, $r$ the clipping radius, $x^H = \exp_0(\mathrm{clip}_r(W x^E + b))$.
# Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown
from ipywidgets import Dropdown, IntSlider, fixed, interact

from chestlab import lessons, metrics, poincare, viz
from chestlab import tree_embedding
from chestlab.engine import Trainer
from chestlab.settings import TrainConfig
from chestlab.viz.style import COLORS, use_lecture_style

use_lecture_style()
print("fast mode:", lessons.FAST)
# demo-digits with a batch of 5 classes x 6 samples: the train split has only 5 classes
cfg = TrainConfig.preset("demo-digits", batch_size=30, eval_every=0)
trainer = Trainer(cfg)
for _ in trainer.run(lessons.pick(400, 150)):
    pass
c, r = trainer.config.c, trainer.config.r
print({k: round(v, 3) for k, v in trainer.history[-1].items() if k.endswith("R@1") or "MAP" in k})

# %% [markdown]
# ## 1. The Poincaré disk (Fig. 2, left)
#
# $x^H$ lives in $D_H = 8$ dimensions. Two ways down to the disk, both in `chestlab.viz.geometry`:
# `project_to_disk` (log map to the tangent space at 0, PCA, exp map back: the origin stays the root and
# norms only shrink) and `umap_disk` (UMAP on the Poincaré distances with a hyperbolic output, as in the
# paper — nonlinear, so only neighbourhoods are meaningful). Colour = digit, marker = super-class
# (round / straight / curvy), stars = the proxies of the train classes. Hover over the points: the disk
# figures are interactive.

# %%
n = lessons.pick(600, 300)
emb = {split: trainer.embed(split, max_n=n) for split in ("train", "test")}
P = trainer.proxies()["h"]  # (C, K, D_H)
tr = emb["train"]
xy = viz.geometry.project_to_disk(tr["x_h"], c)
pxy = viz.geometry.project_to_disk(P.reshape(-1, P.shape[-1]), c, fit_on=tr["x_h"])
fig = viz.disk.poincare_disk(xy, tr["labels"], tr["super"], pxy.reshape(P.shape[0], P.shape[1], 2), c=c, grid=True, circles=(2, 4),
                             class_names=trainer.train_set.classes, super_names=trainer.train_set.superclasses,
                             title="train digits (0–4), tangent PCA", height=560)
viz.disk.disk_legend(fig, trainer.train_set.classes, trainer.train_set.superclasses)  # which colour is which digit

# %%
te = emb["test"]
if lessons.FAST:  # fast mode skips UMAP, whose first call compiles for ~20 s: the tangent PCA instead
    uxy, how = viz.geometry.project_to_disk(te["x_h"], c), "tangent PCA (fast mode; full mode: UMAP)"
else:  # UMAP takes about half a minute of CPU: full mode reads the disk coordinates computed once from this very
    # network and subset (chestlab/assets/results/lesson06_umap_disk.json; `python -m chestlab.results regenerate
    # lesson06_umap_disk` recomputes them), after checking that the network and the samples are the same
    RECOMPUTE = False  # True: run UMAP here: viz.geometry.umap_disk(te["x_h"], c, seed=0)
    from chestlab import results as stored

    if RECOMPUTE:
        uxy = viz.geometry.umap_disk(te["x_h"], c, seed=0)
    else:
        shipped = stored.load("lesson06_umap_disk")
        same = (torch.equal(te["index"].cpu(), torch.as_tensor(shipped["index"]))
                and math.isclose(float(poincare.dist0(te["x_h"].double(), c).mean()), shipped["mean_dist0"], rel_tol=1e-3))
        if same:
            uxy = np.asarray(shipped["xy"])
        else:  # another CPU or thread count sums in another order, and training amplifies it: this network differs
            print("this network is not the one the shipped UMAP was computed from: running UMAP here (about half a minute)")
            uxy = viz.geometry.umap_disk(te["x_h"], c, seed=0)
    how = "UMAP to the disk"
fig = viz.disk.poincare_disk(uxy, te["labels"], te["super"], c=c, class_names=trainer.test_set.classes,
                             super_names=trainer.test_set.superclasses, title=f"unseen test digits (5–9), {how}", height=560)
viz.disk.disk_legend(fig, trainer.test_set.classes, trainer.test_set.superclasses)

# %% [markdown]
# The train digits form one tight cluster per class near the boundary. The proxies (stars, projected
# with the same PCA) mostly lie nearer the origin, because this projection shrinks norms, and not all
# in their class's direction: a 2-D view of 8 dimensions can put a proxy next to another class. The unseen digits are far more mixed — as their lower Recall@1 says — with
# only a few groups of a single digit: those are what retrieval on new classes relies on. Both
# pictures are projections: the first shrinks norms, the second keeps only neighbourhoods.

# %% [markdown]
# ## 2. How far from the origin? Tangent norms before clipping
#
# The head computes a tangent vector $v = W x^E + b$, clips it to norm $\le r$ and maps it into the ball,
# where it lands at $d_H(0, x^H) = 2\min(\|v\|, r)$. All points with $\|v\| \ge r$ end on one sphere;
# the others keep their own radius. Which are which?

# %%
head = trainer.model.head
norms = {}
for split, e in emb.items():
    with torch.no_grad():
        v = head.tangent(e["x_e"])
    norms[split] = v.norm(dim=-1).numpy()
    lessons.verify(f"{split}: d_H(0, x^H) = 2 min(‖v‖, r)", poincare.dist0(e["x_h"].double(), c),
                   2 * np.minimum(norms[split], r), rtol=1e-4, atol=1e-4)
summary = pd.DataFrame({f"{split} digits": {"min ‖v‖": v_.min(), "median ‖v‖": np.median(v_), "max ‖v‖": v_.max(),
                                            "clipped (‖v‖ ≥ r)": f"{np.mean(v_ >= r):.1%}"} for split, v_ in norms.items()}).T
display(summary)

fig, ax = plt.subplots(figsize=(12, 4.8))
edges = np.linspace(0, max(v_.max() for v_ in norms.values()) * 1.02, 50)
for (split, v_), color in zip(norms.items(), ("#7f7f7f", "#6a51a3")):
    ax.hist(v_, bins=edges, color=color, alpha=0.55, label=f"{split} digits ({np.mean(v_ >= r):.1%} clipped)")
ax.axvline(r, color="k", ls="--", lw=2, label=f"clipping radius r = {r}")
ax.set(xlabel=r"tangent norm $\|W x^E + b\|$ before clipping", ylabel="embeddings",
       title="which embeddings the clipping holds at the radius")
ax.legend(loc="upper right")
plt.show()

# %% [markdown]
# The tangent norms vary widely. Nearly all **train** digits are beyond $r$: clipping puts them on one
# sphere, $d_H(0, x^H) = 2r$. Of the **unseen** digits a smaller share is, and the rest lie inside, at
# their own radii, some close to the origin. So “all embeddings sit at the clipping radius” is true for
# the classes the model was trained on, not for new ones.

# %% [markdown]
# ## 3. Retrieval examples (Fig. 2, right)
#
# Each test image queries all other test images; the nine nearest results are shown left to right,
# nearest first. The query sits on the left in an amber frame; results of another digit are framed in
# red and their digit is written below (`lessons.retrieval_examples` + `viz.paper.retrieval_figure`).

# %%
tiles = 1 - (trainer.test_set.data[te["index"]][:, 0] * 0.5 + 0.5).clamp(0, 1).numpy()  # dark ink on white


def show_retrieval(query=0, space="H", queries=None):
    q = list(queries) if queries is not None else [query, (query + 97) % len(tiles), (query + 211) % len(tiles)]
    if space == "H":
        ex = lessons.retrieval_examples(te["x_h"], te["labels"], tiles, q, metric="poincare", c=c)
    else:
        ex = lessons.retrieval_examples(te["x_e"], te["labels"], tiles, q, metric="euclidean")
    wrong = sum(not ok for e in ex for _, ok in e["results"])
    fig = viz.paper.retrieval_figure(ex, class_names=trainer.test_set.classes,
                                     title=f"space {space}: {wrong} of {sum(len(e['results']) for e in ex)} results of another digit")
    display(fig)


interact(show_retrieval, query=IntSlider(value=0, min=0, max=len(tiles) - 1, continuous_update=False),
         space=Dropdown(options=["H", "E"]), queries=fixed(None));

# %% [markdown]
# Three queries picked by their index can mislead: queries 0, 97 and 211 may all be among the hard
# ones. The next cell picks **representative** queries by a rule fixed in advance: with $p$ = the Recall@1
# of these test digits in the space shown, $k = \operatorname{round}(3p)$ of the three queries have a correct
# nearest result and $3 - k$ a wrong one; within each group, the queries whose share of wrong results among
# their nine is nearest the group's median, lowest index first. So the rows show the share of correct
# top-1 results the metric reports, and typical rows rather than the best or the worst.

# %%
def representative(space, n_queries=3, k_results=9):
    """Queries whose top-1 correctness matches Recall@1 (round(n·R@1) correct), each typical of its group."""
    x = te["x_h"].double() if space == "H" else te["x_e"].double()
    d = poincare.pairwise_dist(x, x, c) if space == "H" else torch.cdist(x, x)
    d.fill_diagonal_(math.inf)  # a query is not its own result
    nn_idx = d.topk(k_results, largest=False).indices
    same = (te["labels"][nn_idx] == te["labels"][:, None]).double()  # (N, 9) result of the query's digit?
    top1, wrong = same[:, 0].bool(), 1 - same.mean(1)
    r1 = float(top1.double().mean())
    k = round(n_queries * r1)
    picks = []
    for group, count in ((top1, k), (~top1, n_queries - k)):
        idx = torch.nonzero(group).flatten()
        if count == 0 or len(idx) == 0:
            continue
        gap = (wrong[idx] - wrong[idx].median()).abs()
        picks += idx[torch.argsort(gap * 1e6 + idx.double())[:count]].tolist()  # nearest the median, lowest index first
    return picks, r1, top1, wrong


chosen = {}
for space in ("H", "E"):
    picks, r1_space, top1, wrong = representative(space)
    chosen[space] = picks
    print(f"space {space}: Recall@1 of these {len(top1)} test digits = {r1_space:.2f} (the run's test R@1: "
          f"{trainer.history[-1][f'test/{space}/R@1']:.2f});  queries {picks}: {int(top1[picks].sum())} of {len(picks)} top-1 correct, "
          f"{float(9 * wrong[picks].sum()):.0f} of {9 * len(picks)} results of another digit (all queries: {9 * float(wrong.mean()):.1f} of 9 on average)")
    assert int(top1[picks].sum()) == round(3 * r1_space)

# %%
show_retrieval(space="H", queries=chosen["H"])  # the callback, with the representative queries of the ball

# %%
show_retrieval(space="E", queries=chosen["E"])  # ... and of the Euclidean space

# %% [markdown]
# ## 4. Recall@k and MAP@R, derived and checked
#
# Every item is a query; the others are the database. With $R$ = the number of *other* items of the
# query's class and $\mathrm{rel}(i) = 1$ if the $i$-th neighbour shares the class:
#
# * **Recall@k** = fraction of queries with at least one same-class item among the $k$ nearest;
# * **MAP@R** (Musgrave et al. 2020) = mean over queries of $\frac1R\sum_{i=1}^R P@i\cdot\mathrm{rel}(i)$ — it
#   rewards ranking *all* $R$ relatives first, not just one, so it is much stricter than Recall@1.
#
# A direct implementation from the definitions, against `chestlab.metrics`:

# %%
def brute_force(D, labels, k):
    D = D.clone().fill_diagonal_(float("inf"))
    order = D.argsort(1)
    rel = (labels[order] == labels[:, None]).double()[:, :-1]
    R = (labels[None] == labels[:, None]).sum(1) - 1
    recall = (rel[:, :k].sum(1) > 0).double().mean()
    prec = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    mask = torch.arange(rel.shape[1])[None] < R[:, None]
    map_r = ((prec * rel * mask).sum(1) / R).mean()
    return float(recall), float(map_r)


xh, lab = te["x_h"][:200].double(), te["labels"][:200]
r_k, m_r = brute_force(poincare.pairwise_dist(xh, xh, c), lab, k=4)
res = metrics.retrieval_metrics(xh, lab, ks=(4,), metric="poincare", c=c)
lessons.verify("Recall@4 (H) == definition", res["R@4"], r_k)
lessons.verify("MAP@R (H) == definition", res["MAP@R"], m_r)

# %% [markdown]
# Now the table in both spaces, on the unseen test digits and on the train digits:

# %%
table = {}
for split, e in emb.items():
    for space, key, metric in (("E", "x_e", "euclidean"), ("H", "x_h", "poincare")):
        table[(split, space)] = metrics.retrieval_metrics(e[key], e["labels"], ks=(1, 2, 4, 8), metric=metric, c=c if space == "H" else None)
pd.DataFrame(table).T.style.format("{:.3f}")

# %% [markdown]
# Train digits are retrieved almost perfectly; unseen digits much less well, in both spaces, and MAP@R is
# far below Recall@1 — a query usually finds *one* relative first but not *all* of them. This table is one
# network scored in its two spaces, one seed: it cannot say which space is better (lesson 05 showed that
# another seed moves R@1 by a few points). The next section compares the spaces properly.

# %% [markdown]
# ## 5. The ball against the plane, over five paired seeds
#
# Why a ball at all? Nickel & Kiela (2017) find that "Poincaré embeddings outperform Euclidean embeddings
# significantly on data with latent hierarchies, both in terms of representation capacity and in terms of
# generalization ability", and the CHEST paper motivates its hyperbolic head the same way ("hyperbolic space
# is attractive for DML because it can represent complex structures like tree structures"). Theory says
# where to look (Sarkar 2011; Sala et al. 2018): a tree with many leaves for a small dimension and equal
# edge lengths, so that the number of nodes within a distance grows exponentially — room the ball has
# and $\mathbb R^D$ lacks (lesson 00 measures that room and embeds such a tree directly).
#
# The **wide tree** (preset `demo-tree-wide`) is such a data set: the `tree` data of lesson 00 with branching
# 4×4×4×4 (256 leaf classes, half of them unseen at test time) and equal edge lengths, at $D_H = D_E = 4$.
# For each of 5 seeds we train two networks that differ only in the space: **H only** (CHEST's hyperbolic
# terms alone, $\eta_E = 0$, scored with $d_H$ on $x^H$) and **E only** ($\eta_H = 0$, scored with $d_E$ on $x^E$) —
# same network and head, steps, batches and seed (`lessons.space_runs`, the arms of `python -m chestlab.reproduce dims`:
# E only scores $x^E$ = the head's $W f + b$, so the two differ only in $\exp_0 \circ \mathrm{clip}_r$ and the distance). The
# scores: Recall@1 and MAP@R (section 4), Recall@1 of the super-class, the mistake severity (how far up the
# tree the wrong nearest neighbour branches off; lower is better), and two scores of the tree decoded
# from the class means (`chestlab.hierarchy`): its cophenetic correlation with the true tree and its
# dendrogram purity. Each row pairs the two networks of a seed: $\Delta$ = H − E, with its standard error.

# %%
from chestlab import results as stored

wide_steps = lessons.pick(400, 60)
t0 = time.perf_counter()
# runs, _ = lessons.space_runs("demo-tree-wide", 4, range(5), wide_steps, eval_max=lessons.pick(4000, 1500)): 10 networks,
# minutes of CPU. Full mode reads their scores from chestlab/assets/results/lesson06_wide_spaces.json, computed once by
# this very call (`python -m chestlab.results regenerate lesson06_wide_spaces`); fast mode trains its short version here.
RECOMPUTE = False  # True: train the 10 networks now instead of reading them
runs = pd.DataFrame(stored.load("lesson06_wide_spaces", recompute=RECOMPUTE))
how = "trained now" if lessons.FAST or RECOMPUTE else "read from the shipped study"
print(f"10 networks × {wide_steps} steps ({how}: {time.perf_counter() - t0:.0f} s)")
wide_metrics = [m for m in ("R@1", "MAP@R", "super_R@1", "severity", "cophenet", "purity") if m in runs]
wide_table = lessons.paired_table(runs, wide_metrics)
display(wide_table.style.format({"H": "{:.3f}", "E": "{:.3f}", "Δ": "{:+.3f}", "s.e.": "{:.3f}"}).hide(axis="index"))
display(Markdown("Read in this run (|Δ| against twice its standard error):\n\n" + lessons.paired_verdict(wide_table)))

# %%
fig, axs = plt.subplots(1, len(wide_metrics), figsize=(3.2 * len(wide_metrics), 4.8))
for ax, m in zip(axs, wide_metrics):
    pair = runs.pivot(index="seed", columns="space", values=m)
    delta = pair["H"] - pair["E"]
    ax.axhline(0, color="k", lw=1)
    ax.scatter(np.zeros(len(delta)), delta, color="0.35", s=40, zorder=3, label="one seed")
    ax.errorbar([0.25], [delta.mean()], yerr=[2 * delta.std(ddof=1) / np.sqrt(len(delta))], color=COLORS["H"], marker="D",
                ms=10, capsize=8, lw=2.5, label="mean ± 2 s.e.")
    ax.set(xlim=(-0.4, 0.6), xticks=[], title=m + (" ↓" if m == "severity" else ""))
axs[0].set_ylabel("H only − E only (same seed)")
fig.legend(*axs[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=12)
fig.suptitle(f"wide tree, D = 4: the ball minus the plane, seed by seed ({wide_steps} steps; above 0: H higher)")
fig.tight_layout(rect=(0, 0.08, 1, 1))

# %% [markdown]
# What the full run shows (400 steps, 5 paired seeds; fast mode's 60 steps are too short to read): on the wide
# tree at $D = 4$ the **plane retrieves better on every retrieval score**. R@1 0.158 for E only against 0.121 for H only
# (H − E = −0.037 ± 0.014, H higher in 1 of 5 seeds), MAP@R −0.014 ± 0.004, super-class R@1 −0.045 ± 0.021, the
# mistake severity +0.059 ± 0.024 (H's mistakes branch off higher up); the trees decoded from the class means
# do not differ beyond two standard errors (cophenetic correlation −0.006 ± 0.010, purity −0.018 ± 0.013). All these scores are low in
# both spaces (128 unseen leaf classes, 400 steps), and the sign is the opposite of the one theory predicts
# for this tree. This run does not show which part of the pipeline loses the ball's advantage (the
# backbone both heads share, the clipping at $r$, the loss's scales, the number of steps).
#
# The networks above must *find* the tree from samples. How much room does each space have for the tree
# itself? Lesson 00 (section 3) fits one point per node of a tree directly, with Nickel & Kiela's loss and
# Riemannian SGD (`chestlab.tree_embedding`), the same method, initial points, steps and seeds in the disk and
# the plane. Here the same fit for the wide tree's own 341 nodes (root, 4, 16, 64, 256) at the networks'
# $D = 4$, five seeds, learning rate 0.03 in both spaces (of 0.03, 0.1 and 0.3, the one with the lowest final
# loss in both spaces in a 500-step fit of seed 0). Scores as in lesson 00: the mean average precision
# (MAP) of the reconstruction of the ancestor relation (1 = every node has all its ancestors and descendants
# nearer than every other node) and the average distortion against the tree metric (0 = perfect).

# %%
wide_tree = tree_embedding.Tree.complete((4, 4, 4, 4))
direct_steps = lessons.pick(300, 30)
t0 = time.perf_counter()
# direct = tree_embedding.dimension_sweep(wide_tree, (4,), range(5), steps=direct_steps, lrs=(0.03,)), read in full mode
# from lesson06_wide_tree_fits.json (`python -m chestlab.results regenerate lesson06_wide_tree_fits`); fast mode fits here
direct = pd.DataFrame(stored.load("lesson06_wide_tree_fits", recompute=RECOMPUTE))
print(f"{wide_tree.n} nodes, 10 fits × {direct_steps} steps ({how.replace('trained', 'fitted')}: {time.perf_counter() - t0:.0f} s)")
direct_table = lessons.paired_table(direct, ["MAP", "distortion"], a="disk", b="plane", by=["D"])
display(direct_table.style.format({"disk": "{:.3f}", "plane": "{:.3f}", "Δ": "{:+.3f}", "s.e.": "{:.3f}"}).hide(axis="index"))
display(Markdown(lessons.paired_verdict(direct_table, a="disk", b="plane", lower_is_better=("distortion",), by=["D"])))

# %% [markdown]
# The tree itself has the room theory promises. At $D = 4$ the disk reconstructs the wide tree's ancestor
# relation with MAP 0.957 and the plane with 0.527: disk − plane = +0.430 ± 0.004, in all 5 seeds; the average
# distortion is 0.164 against 0.220 (−0.056 ± 0.002, lower for the disk in all 5 seeds). So both statements hold,
# each shown by a cell: a 4-D ball holds this 341-node tree far better than $\mathbb R^4$, and yet the networks
# above, trained on its samples with the same budget in both spaces, retrieve better in the plane. A
# better space for the tree does not by itself make a better embedding network.

# %% [markdown]
# ## 6. Implement it yourself
#
# Write, in plain torch (no `chestlab` inside), both metrics of section 4 from an $N \times N$ distance matrix
# `dist` and the labels `labels` `(N,)`, leave-one-out (every item is a query, the others are the database):
#
# * `my_recall_at_k(dist, labels, k)`: Recall@k, the fraction of queries with a same-class item among their $k$ nearest;
# * `my_map_at_r(dist, labels)`: MAP@R, the mean over queries of $\frac1R\sum_{i=1}^R P@i\cdot\mathrm{rel}(i)$.
#
# As in `chestlab.metrics`, a query whose class has no other item ($R = 0$) can never be answered: skip it in
# both. For exercise 2, also build your 6-item example as points `ex2_x` `(6, D)` with labels `ex2_labels`
# (with distinct distances from each query, so that no tie decides the ranking).
#
# The cell below holds a reference solution, **collapsed**: write your own version into it (or in a new
# cell above the check) before you expand it. Then run the checks: the library ranks the points itself, in
# $d_H$ (`poincare.pairwise_dist`, Eq. 2) and in $d_E$; your functions get the distance matrices.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_recall_at_k(dist, labels, k):
    d = dist.clone().fill_diagonal_(float("inf"))  # leave the query out
    nn = d.argsort(dim=1)[:, :k]  # its k nearest others
    R = (labels[:, None] == labels[None, :]).sum(1) - 1  # the other items of its class
    hit = (labels[nn] == labels[:, None]).any(1)
    return hit[R > 0].double().mean()  # lone queries (R = 0) skipped


def my_map_at_r(dist, labels):
    n = dist.shape[0]
    d = dist.clone().fill_diagonal_(float("inf"))
    order = d.argsort(dim=1)[:, : n - 1]  # the n − 1 others, nearest first
    rel = (labels[order] == labels[:, None]).double()  # rel(i)
    R = rel.sum(1)
    i = torch.arange(1, n, dtype=torch.float64)
    prec = rel.cumsum(1) / i  # P@i
    ap = (prec * rel * (i[None] <= R[:, None])).sum(1) / R.clamp_min(1)  # only the first R ranks count
    return ap[R > 0].mean()


# exercise 2: every nearest neighbour is a relative, every second one is not
ex2_x = torch.tensor([[9, 9], [7, 6], [8, 1], [3, 8], [0, 1], [1, 9]], dtype=torch.float64)
ex2_labels = torch.tensor([0, 0, 0, 1, 1, 1])


# %%
gen = torch.Generator().manual_seed(6)
x_t = poincare.expmap0(0.8 * torch.randn(40, 3, generator=gen, dtype=torch.float64), c)  # 40 points in the ball
lab_t = torch.randint(0, 6, (40,), generator=gen)
lab_t[-1] = 99  # one lone query, which both metrics must skip
d_h, d_e = poincare.pairwise_dist(x_t, x_t, c), torch.cdist(x_t, x_t)
for space, dist, kw in (("H", d_h, dict(metric="poincare", c=c)), ("E", d_e, dict(metric="euclidean"))):
    lib = metrics.retrieval_metrics(x_t, lab_t, ks=(1, 2, 4), **kw)
    for k in (1, 2, 4):
        lessons.verify(f"my_recall_at_k == metrics  (R@{k}, {space})", my_recall_at_k(dist, lab_t, k), lib[f"R@{k}"])
    lessons.verify(f"my_map_at_r == metrics  (MAP@R, {space})", my_map_at_r(dist, lab_t), lib["MAP@R"])

# %% [markdown]
# Exercise 2 checks itself: the cell below asserts your `ex2_x`, `ex2_labels` (if you defined them) with the
# library, and with your functions.

# %%
if "ex2_x" in globals():
    ex2 = metrics.retrieval_metrics(ex2_x, ex2_labels, ks=(1,), metric="euclidean")
    assert len(ex2_labels) == 6 and ex2_labels.unique(return_counts=True)[1].min() >= 2, "6 items, no lone query"
    assert ex2["R@1"] == 1.0, f"R@1 = {ex2['R@1']}: some query's nearest neighbour is of another class"
    assert ex2["MAP@R"] < ex2["R@1"], f"MAP@R = {ex2['MAP@R']}: as high as R@1, the example shows no difference"
    lessons.verify("exercise 2: my functions agree with the library", [my_recall_at_k(torch.cdist(ex2_x, ex2_x), ex2_labels, 1),
                   my_map_at_r(torch.cdist(ex2_x, ex2_x), ex2_labels)], [ex2["R@1"], ex2["MAP@R"]])
    print(f"✓ exercise 2: R@1 = {ex2['R@1']:.2f}, MAP@R = {ex2['MAP@R']:.2f}")

# %% [markdown]
# ## Summary
#
# * Two projections to the disk: tangent PCA (keeps the root and shrinks norms) and UMAP with a
#   hyperbolic output (keeps neighbourhoods only). Neither shows distances faithfully.
# * $d_H(0, x^H) = 2\min(\|W x^E + b\|, r)$. The tangent norms vary widely; nearly all train embeddings
#   are clipped onto the sphere of radius $2r$, a smaller share of the unseen ones.
# * Retrieval examples show what Recall@1 counts; MAP@R asks for *all* relatives first and is much
#   lower than Recall@1 on unseen classes.
# * On the wide tree at $D = 4$, over 5 paired seeds: fitted directly, the ball reconstructs the tree far better
#   than the plane (MAP 0.957 vs 0.527, +0.430 ± 0.004); the networks trained on its samples retrieve better in the
#   plane (R@1 0.121 vs 0.158, −0.037 ± 0.014; every retrieval score favours the plane, the decoded trees are level).

# %% [markdown]
# ## Exercises
#
# 1. Train with `dim_h=2`: the disk *is* then the embedding space (`project_to_disk(..., method="exact")`). How does test R@1 (H) change?
# 2. Why does Recall@k never decrease with $k$ while MAP@R can be low even when Recall@1 is high? Build a 6-item example. (Section 6 checks it: define it as `ex2_x`, `ex2_labels`.)
# 3. Compute R@1 in H with the *cosine* of $\log_0 x^H$ instead of the Poincaré distance and compare it with the Poincaré R@1. On which points must the two rank neighbours identically, and where can they differ?
#
# <details><summary>Solution 1</summary>
#
# ```python
# t2 = Trainer(TrainConfig.preset("demo-digits", batch_size=30, dim_h=2, eval_every=0))
# for _ in t2.run(400): pass
# print(t2.history[-1]["test/H/R@1"], "vs", trainer.history[-1]["test/H/R@1"], "with D_H = 8")
# e2 = t2.embed("test")
# viz.disk.poincare_disk(viz.geometry.project_to_disk(e2["x_h"], c, method="exact"), e2["labels"], c=c)
# ```
# Compare the two numbers (in our full-mode run R@1 fell by more than ten points with $D_H = 2$): two
# dimensions leave room for only a circle of directions, which the five training classes and the
# unseen ones must share.
# </details>
#
# <details><summary>Solution 2</summary>
#
# Recall@k asks for *one* relative among the top $k$, a condition that can only become easier. Labels
# `[0, 0, 0, 1, 1, 1]` where each item's nearest neighbour is a relative but the other relative comes after
# all other-class items: R@1 = 1, yet $\frac1R\sum P@i\,\mathrm{rel}(i) = \frac12(1 + 0) = 0.5$.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# v = poincare.logmap0(te["x_h"], c)
# print("cosine   ", metrics.retrieval_metrics(v, te["labels"], ks=(1,), metric="cosine")["R@1"])
# print("Poincaré ", metrics.retrieval_metrics(te["x_h"], te["labels"], ks=(1,), metric="poincare", c=c)["R@1"])
# on = norms["test"] >= r  # the clipped ones only: all at one radius
# print("clipped only: cosine", metrics.retrieval_metrics(v[on], te["labels"][on], ks=(1,), metric="cosine")["R@1"],
#       "Poincaré", metrics.retrieval_metrics(te["x_h"][on], te["labels"][on], ks=(1,), metric="poincare", c=c)["R@1"])
# ```
# By the hyperbolic law of cosines, two points at $d_H(0, \cdot) = 2s$ and $2t$ with angle $\theta$ are at
# $\cosh(\sqrt c d_H) = \cosh(2\sqrt c s)\cosh(2\sqrt c t) - \sinh(2\sqrt c s)\sinh(2\sqrt c t)\cos\theta$. Among points
# at one radius ($s = t$) this is a monotone function of $\theta$, so the Poincaré ranking *is* the cosine
# ranking: on the clipped points the two R@1 agree exactly. Section 2 shows that not all points are
# clipped — the tangent norms of the unseen digits vary widely, and about two thirds of them are below $r$ —
# and between points at different radii the distance depends on both radii as well as on the angle,
# so there the two rankings can differ, and the two R@1 on all points need not be equal.
# </details>
