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
# tested on the **unseen** digits 5–9), then derive Recall@k and MAP@R and compute them in both spaces
# (E: $x^E$ with the Euclidean distance; H: $x^H$ with the Poincaré distance, Eq. 2). Spec: `shared/spec/chest.md`.

# %%
# %matplotlib inline
import torch
from ipywidgets import Dropdown, IntSlider, interact

from chestlab import figures, lessons, metrics, paper_figures, poincare
from chestlab.train import Trainer, TrainConfig

print("fast mode:", lessons.FAST)
# demo-digits with a batch of 5 classes x 6 samples: the train split has only 5 classes
cfg = TrainConfig.preset("demo-digits", batch_size=30, eval_every=0)
trainer = Trainer(cfg)
for _ in trainer.run(lessons.pick(400, 200)):
    pass
c = trainer.config.c
print({k: round(v, 3) for k, v in trainer.history[-1].items() if k.endswith("R@1") or "MAP" in k})

# %% [markdown]
# ## 1. The Poincaré disk (Fig. 2, left)
#
# $x^H$ lives in $D_H = 8$ dimensions. Two ways down to the disk, both in `chestlab.figures`:
# `project_to_disk` (log map to the tangent space at 0, PCA, exp map back: the origin stays the root and
# norms only shrink) and `umap_disk` (UMAP on the Poincaré distances with a hyperbolic output, as in the
# paper — nonlinear, so only neighbourhoods are meaningful). Colour = digit, marker = super-class
# (round / straight / curvy), stars = the proxies of the train classes.

# %%
n = lessons.pick(600, 300)
emb = {split: trainer.embed(split, max_n=n) for split in ("train", "test")}
P = trainer.proxies()["h"]  # (C, K, D_H)
tr = emb["train"]
xy = figures.project_to_disk(tr["x_h"], c)
pxy = figures.project_to_disk(P.reshape(-1, P.shape[-1]), c, fit_on=tr["x_h"])
figures.poincare_disk(xy, tr["labels"], tr["super"], pxy.reshape(P.shape[0], P.shape[1], 2), c=c, grid=True, circles=(2, 4),
                      class_names=trainer.train_set.classes, super_names=trainer.train_set.superclasses,
                      title="train digits, tangent PCA", height=450)

# %%
te = emb["test"]
uxy = figures.umap_disk(te["x_h"], c, seed=0)  # the first call compiles UMAP (~15 s)
figures.poincare_disk(uxy, te["labels"], te["super"], c=c, class_names=trainer.test_set.classes,
                      super_names=trainer.test_set.superclasses, title="unseen test digits (5–9), UMAP to the disk", height=450)

# %% [markdown]
# The train digits sit in clusters near the boundary, one direction per class with its proxies; the
# unseen digits also form groups, less cleanly — those are what retrieval on new classes relies on.
# (Hover over the points: the disk figures are interactive.)

# %% [markdown]
# ## 2. Retrieval examples (Fig. 2, right)
#
# Each test image queries all other test images; the nine nearest results are shown left to right,
# those of another digit framed in red (`lessons.retrieval_examples` + `paper_figures.retrieval_grid`).

# %%
tiles = (trainer.test_set.data[te["index"]][:, 0] * 0.5 + 0.5).clamp(0, 1).numpy()  # pixels in [-1, 1] -> [0, 1]


def show_retrieval(query=0, space="H"):
    q = [query, (query + 97) % len(tiles), (query + 211) % len(tiles)]
    if space == "H":
        ex = lessons.retrieval_examples(te["x_h"], te["labels"], tiles, q, metric="poincare", c=c)
    else:
        ex = lessons.retrieval_examples(te["x_e"], te["labels"], tiles, q, metric="euclidean")
    display(paper_figures.retrieval_grid(ex))
    wrong = sum(not ok for e in ex for _, ok in e["results"])
    print(f"space {space}: {wrong} of {sum(len(e['results']) for e in ex)} results of another digit")


interact(show_retrieval, query=IntSlider(value=0, min=0, max=len(tiles) - 1, continuous_update=False), space=Dropdown(options=["H", "E"]));

# %%
show_retrieval(query=5, space="E")  # the callback once more (CI runs it)

# %% [markdown]
# ## 3. Recall@k and MAP@R, derived and checked
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
import pandas as pd

table = {}
for split, e in emb.items():
    for space, key, metric in (("E", "x_e", "euclidean"), ("H", "x_h", "poincare")):
        table[(split, space)] = metrics.retrieval_metrics(e[key], e["labels"], ks=(1, 2, 4, 8), metric=metric, c=c if space == "H" else None)
pd.DataFrame(table).T.style.format("{:.3f}")

# %% [markdown]
# Train digits are retrieved almost perfectly; unseen digits much less well, in both spaces, and MAP@R is
# far below Recall@1 — a query usually finds *one* relative first but not *all* of them. The E and H
# numbers are close: on this small problem the geometry matters less than in the paper.

# %% [markdown]
# ## Exercises
#
# 1. Train with `dim_h=2`: the disk *is* then the embedding space (`project_to_disk(..., method="exact")`). How does test R@1 (H) change?
# 2. Why does Recall@k never decrease with $k$ while MAP@R can be low even when Recall@1 is high? Build a 6-item example.
# 3. Compute R@1 in H with the *cosine* of $\log_0 x^H$ instead of the Poincaré distance. Why is it almost the same here?
#
# <details><summary>Solution 1</summary>
#
# ```python
# t2 = Trainer(TrainConfig.preset("demo-digits", batch_size=30, dim_h=2, eval_every=0))
# for _ in t2.run(400): pass
# print(t2.history[-1]["test/H/R@1"])
# e2 = t2.embed("test")
# figures.poincare_disk(figures.project_to_disk(e2["x_h"], c, method="exact"), e2["labels"], c=c)
# ```
# Two dimensions are too few for five classes with several modes: R@1 usually drops.
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
# print(metrics.retrieval_metrics(v, te["labels"], ks=(1,), metric="cosine")["R@1"])
# ```
# The embeddings cluster near the boundary (clipped at the same radius), where the Poincaré distance
# between two points of equal norm is a monotone function of their angle.
# </details>
