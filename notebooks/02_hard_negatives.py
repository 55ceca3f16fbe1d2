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
# # 02 · Hard negatives: what temperature and geometry do to a contrastive loss
#
# Yue, Lin, Yamada and Zhang (*Understanding Hyperbolic Metric Learning through Hard Negative
# Sampling*, “the hard-negative paper” below) ask why hyperbolic embeddings trained with the
# **pairwise cross-entropy** did well. Their tool: the loss's gradient is a weighted sum over triplets,
# and the weights $w$ depend on the temperature *and* on the geometry. Their conclusion (Sec. 5):
# *“the performance boost attributed to hyperbolic space primarily arises from parameter tuning of
# [the temperature] $t$ in the pairwise cross-entropy loss.”* We derive the gradient, measure what $t$ and
# the curvature $c$ do to $w$, reproduce their temperature × curvature sweep (their Fig. 2) at toy scale
# and compare, redraw their Fig. 3, and derive what their *Mix* loss really does.
#
# **Learning objectives.** After this lesson you can
#
# 1. derive the gradient of the pairwise cross-entropy as a sum over triplets weighted by a softmax
#    $w_{ik}$, and check it against autograd;
# 2. say what $t$ and $c$ do to the concentration of $w$ — in particular that for features on the clipping
#    shell a larger $c$ spreads the weight over *more* negatives, and that $c$ has no fixed direction in general;
# 3. read a temperature × curvature sweep and state what the hard-negative paper concludes, and where
#    our runs agree and disagree;
# 4. derive that the Mix loss weights a negative by the product $w^E (w^H)^{\beta}$ — a soft AND, not a union;
# 5. implement the weights yourself.
#
# The Poincaré distance $d_H$ is the CHEST paper's Eq. 2, as stated in `docs/maths.md` (docs/maths.md,
# Eq. 2), whose notation we use; $c > 0$ is always the curvature. Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from ipywidgets import FloatSlider, interact

from chestlab import gradients, lessons, losses, poincare
from chestlab.reproduce import HARDNEG_C, HARDNEG_T, hardneg_fig2
from chestlab.train import Trainer, TrainConfig
from chestlab.viz.style import COLORS, use_lecture_style

use_lecture_style()
f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. The pairwise cross-entropy
#
# For an anchor $x_i$, a positive $x_j$ (same class) and every other sample $k\ne i$ of the batch,
#
# $$ L_i = -\log\frac{e^{s_{ij}/t}}{\sum_{k\ne i} e^{s_{ik}/t}}, \qquad s = \cos \text{ (sphere)} \quad\text{or}\quad s = -d_H \text{ (ball, Eq. 2)}. $$
#
# `losses.pair_ce_loss` averages $L_i$ over all positive pairs of the batch. With one positive pair
# $(0, 1)$ the loss is the mean of $L_0$ and $L_1$ — written out here from `pair_similarity`:

# %%
c, t = 0.5, 0.2
z = poincare.expmap0(torch.randn(8, 4, **f64), c)
labels = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])


def L_anchor(zi, others, j, t, c):
    """L_i with the candidates `others` (every k != i, the positive at index j)."""
    s = losses.pair_similarity(zi[None], others, c)[0]
    return -torch.log_softmax(s / t, 0)[j]


L0 = L_anchor(z[0], z[1:], 0, t, c)
L1 = L_anchor(z[1], torch.cat([z[:1], z[2:]]), 0, t, c)
lessons.verify("pair_ce_loss == mean(L_0, L_1)", losses.pair_ce_loss(z, labels, t, c=c), (L0 + L1) / 2)

# %% [markdown]
# ## 2. The gradient, by hand
#
# Write $L_i = -s_{ij}/t + \log\sum_{k\ne i} e^{s_{ik}/t}$ and differentiate with respect to the anchor $x_i$:
#
# $$ \frac{\partial L_i}{\partial x_i} = -\frac1t\frac{\partial s_{ij}}{\partial x_i} + \frac1t\sum_{k\ne i}
# \underbrace{\frac{e^{s_{ik}/t}}{\sum_{l\ne i} e^{s_{il}/t}}}_{w_{ik}}\frac{\partial s_{ik}}{\partial x_i}
# = \frac1t\sum_{k\ne i} w_{ik}\Big(\frac{\partial s_{ik}}{\partial x_i} - \frac{\partial s_{ij}}{\partial x_i}\Big), $$
#
# using $\sum_k w_{ik} = 1$. Each term is a **triplet** $(i, j, k)$: move towards the positive, away
# from negative $k$, with weight $w_{ik}$ — a softmax of the similarities, so the negatives most
# similar to the anchor (the *hard* ones) dominate. For the pieces: $\partial\cos(x,y)/\partial x =
# (\hat y - \cos(x,y)\,\hat x)/\|x\|$ and the Poincaré distance gradient of `gradients.dist_grad`.

# %%
anchor, others = z[0].clone().requires_grad_(True), z[1:]
for name, cc in (("sphere", None), ("ball", c)):
    L = L_anchor(anchor, others, 0, t, cc)
    (auto,) = torch.autograd.grad(L, anchor)
    lessons.verify(f"{name}: hand-derived ∂L_i/∂z == autograd", gradients.pair_ce_anchor_grad(anchor.detach(), others, 0, t, cc), auto)
    s = losses.pair_similarity(anchor.detach()[None], others, cc)[0]
    lessons.verify(f"{name}: w == softmax(s/t)", losses.hard_negative_weights(anchor.detach(), others, t, cc), torch.softmax(s / t, 0))

y = poincare.expmap0(torch.randn(5, 4, **f64), c)
x = z[:5].clone().requires_grad_(True)
(auto,) = torch.autograd.grad(poincare.dist(x, y, c).sum(), x)
lessons.verify("dist_grad (closed form) == autograd of Eq. 2", gradients.dist_grad(x.detach(), y, c), auto)
(auto,) = torch.autograd.grad(torch.cosine_similarity(x, y, -1).sum(), x)
lessons.verify("cosine_grad == autograd", gradients.cosine_grad(x.detach(), y), auto)

# %% [markdown]
# ## 3. What temperature and curvature do to $w$
#
# We summarise how concentrated the weights are by the **effective number of negatives**
# $n_{\text{eff}} = 1/\sum_k w_{ik}^2$ (1: all weight on one negative; $N$: uniform), averaged over anchors. The features:
# 64 Gaussian vectors $v$ in 16 dimensions, seen on the sphere ($\cos$ of $v$) or in the ball.
#
# **Temperature.** $w = \operatorname{softmax}(s/t)$: lowering $t$ sharpens it, in either geometry.
#
# **Curvature, at a fixed clipping radius.** The kit's head clips before $\exp_0$, so every point lies
# within $d_H(0,x)\le 2r$ and every distance is at most $4r$, *for every $c$* (lesson 00). Within that budget,
# two points at depth $2r$ an angle $\theta$ apart are at $\cosh(\sqrt c\, d_H) = 1 + 2\sinh^2(2\sqrt c r)\sin^2(\theta/2)$: as $\sqrt c\,r$ grows,
# $d_H\to 4r$ for all but small angles — the negatives all look equally far, the softmax flattens, and
# $n_{\text{eff}}$ **grows**. Without clipping, $c$ also moves the points (their depth $2\|v\|$ is fixed, but the
# geometry around them changes) and the effect has no simple direction. Measured:

# %%
v = torch.randn(64, 16, generator=torch.Generator().manual_seed(1), **f64)


def mean_effective_n(z, t, c=None, labels=None):
    """1 / sum_k w_ik^2, averaged over anchors i; the candidates: every other sample, or (with labels)
    every sample of another class."""
    same = torch.eye(len(z), dtype=torch.bool) if labels is None else labels[:, None] == labels[None, :]
    s = (losses.pair_similarity(z, z, c) / t).masked_fill(same, -torch.inf)
    w = torch.softmax(s, 1)
    return float((1 / (w**2).sum(1)).mean())


def ball(v, c, r=2.3):
    return poincare.expmap0(poincare.clip_features(v, r), c)


zb = ball(v, 0.5)
w_row = torch.softmax(-poincare.dist(zb[0], zb[1:], 0.5) / 0.2, 0)  # anchor 0's weights, c = 0.5, t = 0.2
_, w0 = gradients.anchor_negative_weights(poincare.clip_features(v, 2.3), 0.2, 0.5)  # the same, sorted by distance
lessons.verify("anchor 0: softmax(−d_H/t) == gradients.anchor_negative_weights", torch.sort(w_row).values, np.sort(w0))
cs = np.logspace(-2, math.log10(4), 13)
fig, axs = plt.subplots(1, 2, figsize=(15, 5.5), sharey=True)
for t_, shade in ((0.1, "#74c476"), (0.2, COLORS["H"])):  # the ball in shades of its colour, H
    clipped = [mean_effective_n(ball(v, cc), t_, cc) for cc in cs]
    unclipped = [mean_effective_n(poincare.expmap0(v, cc), t_, cc) for cc in cs]
    axs[0].plot(cs, clipped, marker="o", color=shade, label=f"t = {t_}")
    axs[1].plot(cs, unclipped, marker="o", color=shade, label=f"t = {t_}")
    rises = lambda y: bool(np.all(np.diff(y) > -1e-3 * np.asarray(y[:-1])))  # noqa: E731  (non-decreasing, to 0.1 %)
    print(f"t = {t_}: n_eff clipped at r = 2.3: c = 0.01 → {clipped[0]:.1f}, c = 1 → {clipped[10]:.1f}, c = 4 → {clipped[-1]:.1f} "
          f"(non-decreasing: {rises(clipped)});  unclipped: {unclipped[0]:.1f}, min {min(unclipped):.1f}, max {max(unclipped):.1f} "
          f"(non-decreasing: {rises(unclipped)}, non-increasing: {rises(unclipped[::-1])})")
for ts_ in (0.05, 0.1):
    axs[0].axhline(mean_effective_n(v, ts_), color="0.5", ls=":", lw=1.5)
axs[0].text(0.011, mean_effective_n(v, 0.1) * 1.08, "sphere, t = 0.05 and 0.1 (dotted)", color="0.4", fontsize=12)
axs[0].set(xscale="log", yscale="log", xlabel="curvature c", ylabel="effective number of negatives", title="clipped at r = 2.3 (the kit's head)")
axs[1].set(xscale="log", xlabel="curvature c", title="not clipped (norms 2.7 … 6.0)")
for ax in axs:
    ax.legend(loc="upper left")
fig.tight_layout()

# %% [markdown]
# So “larger $c$ concentrates the weights” is not what happens for features on the clipping shell: there a
# larger $c$ selects **more** negatives at the same $t$ (at $t = 0.2$: 2.5 at $c = 0.01$, 32 at $c = 4$); only a lower $t$
# concentrates them. Without clipping the curve goes down and up again — and these deep features are so
# concentrated ($n_{\text{eff}}\approx 1$–2.5) that $c$ hardly matters. An exact way to see why there is no general rule:
# by lesson 00, $(c, t)$ on features $v$ is the same as $(1, \sqrt c\,t)$ on features $\sqrt c\,v$ (clipped at $\sqrt c\,r$). Raising $c$
# scales the features *and* the temperature by $\sqrt c$; in a flat region the two cancel (the flat left part of
# both panels); what is left is curvature, whose effect depends on where the features sit. Play with $t$,
# $c$ and $r$ for one anchor (its negatives sorted by distance, hardest first):

# %%
def show_weights(t=0.2, c=0.5, r=2.3, t_sphere=0.1):
    d_s, w_s = gradients.anchor_negative_weights(v, t_sphere, None)
    d_h, w_h = gradients.anchor_negative_weights(poincare.clip_features(v, r), t, c)
    fig, ax = plt.subplots(figsize=(12, 5))
    k = np.arange(1, len(w_s) + 1)
    ax.semilogy(k, w_s, marker="o", ms=4, color=COLORS["E"], label=f"sphere, t = {t_sphere:g}:  n_eff = {1 / (w_s**2).sum():.1f}")
    ax.semilogy(k, w_h, marker="o", ms=4, color=COLORS["H"], label=f"ball, c = {c:g}, r = {r:g}, t = {t:g}:  n_eff = {1 / (w_h**2).sum():.1f}")
    ax.axhline(1 / len(w_s), color="0.5", ls=":", label="uniform 1/N")
    ax.set(xlabel="negatives of anchor 0, sorted by distance (1 = hardest)", ylabel="weight $w_{ik}$", ylim=(1e-12, 2))
    ax.legend(loc="lower left")
    plt.show()


sl = dict(continuous_update=False)
interact(show_weights, t=FloatSlider(value=0.2, min=0.02, max=1, step=0.02, **sl), c=FloatSlider(value=0.5, min=0.01, max=4, step=0.01, **sl),
         r=FloatSlider(value=2.3, min=0.5, max=8, step=0.1, **sl), t_sphere=FloatSlider(value=0.1, min=0.01, max=1, step=0.01, **sl));

# %%
show_weights(t=0.2, c=2.0, r=2.3, t_sphere=0.1)  # the callback, called directly (a run without widgets draws it too)

# %% [markdown]
# ## 4. The paper's Fig. 3, on trained embeddings
#
# The hard-negative paper plots $w$ for one anchor of a converged model, sphere with $t = 0.1$ against
# hyperbolic with $t = 0.2$ (their best temperatures), and reports hard-negative weights up to $0.46$ in
# the ball. Here: two small models trained with the pairwise cross-entropy on the `tree` data
# (`Trainer`, `loss="pair_ce"`), one per geometry, and the weights over a test batch's negatives
# (sphere orange and ball green, `COLORS["E"]` and `COLORS["H"]`, as in every figure of the kit; red and blue
# stay reserved for the positive and the negative classes of the paper's Fig. 3 — the figure's cell checks that).

# %%
steps = lessons.pick(400, 120)
runs = {}
for space, temp in (("sphere", 0.1), ("hyperbolic", 0.2)):
    tr = Trainer(TrainConfig.preset("demo-tree", loss="pair_ce", pair_space=space, t=temp, eval_every=0, eval_train=False))
    for _ in tr.run(steps):
        pass
    runs[space] = (tr, temp)
    print(f"{space:<10} t = {temp}: test R@1 (E / H) = {tr.history[-1]['test/E/R@1']:.3f} / {tr.history[-1]['test/H/R@1']:.3f}")

# %%
rgb = {k: np.array([int(COLORS[k][i:i + 2], 16) for i in (1, 3, 5)]) for k in ("H", "E", "pos", "neg")}
gaps = {(a, b): float(np.linalg.norm(rgb[a] - rgb[b])) for a in rgb for b in rgb if a < b}
print("RGB distance between the kit's fixed colours (0–441): " + ",  ".join(f"{a}–{b} {g:.0f}" for (a, b), g in gaps.items()))
assert min(g for pair, g in gaps.items() if "H" in pair) > 100, "the ball (H), the plane (E) and Fig. 3's positive / negative classes need four distinct colours"
fig, ax = plt.subplots(figsize=(12, 5))
for space, (tr, temp) in runs.items():
    emb = tr.embed("test", max_n=128)
    if space == "sphere":
        d, w = gradients.anchor_negative_weights(emb["x_e"], temp, None, labels=emb["labels"])
    else:
        d, w = gradients.anchor_negative_weights(poincare.logmap0(emb["x_h"].double(), tr.config.c), temp, tr.config.c, labels=emb["labels"])
    ax.semilogy(range(1, len(w) + 1), w, marker="o", ms=4, color=COLORS["E" if space == "sphere" else "H"],
                label=f"{space}, t = {temp} (max w = {w.max():.2f})")
ax.set(xlabel="negatives sorted by distance to the anchor (1 = hardest)", ylabel="$w_{ik}$",
       title="the hard-negative paper's Fig. 3, redrawn on the tree data")
ax.legend(loc="upper right");

# %% [markdown]
# Read it critically: it is one anchor of one batch (change `anchor=` in `gradients.anchor_negative_weights`
# and the picture changes), the models are tiny, and the *normalisation* differs — on the sphere the
# similarities live in $[-1, 1]$, in the ball in $[-4r, 0]$ (lesson 01), so the two temperatures are
# not comparable numbers. What is robust is the shape: a few negatives carry most of the weight.
#
# Which regime do trained features live in? The tangent features $\log_0 x^H$ of the hyperbolic model,
# re-embedded at other $c$ with the same $r$, with the true negatives (other classes) as candidates:

# %%
tr_h = runs["hyperbolic"][0]
v_trained = poincare.logmap0(tr_h.embed("test", max_n=128)["x_h"].double(), tr_h.config.c)
print(f"‖log_0 x^H‖: max {float(v_trained.norm(dim=-1).max()):.2f} ≤ r = {tr_h.config.r}")
lab_trained = tr_h.embed("test", max_n=128)["labels"]
print("mean n_eff at t = 0.2:  " + ",  ".join(f"c = {cc:g}: {mean_effective_n(ball(v_trained, cc), 0.2, cc, lab_trained):.1f}"
                                              for cc in (0.01, 0.1, 0.5, 1.0, 2.0, 4.0)))

# %% [markdown]
# This model's features stay well **inside** the clipping radius (the pairwise cross-entropy does not push
# them out), and there $c$ has no fixed direction either: in the full run
# $n_{\text{eff}}$ falls from 6.0 at $c = 0.01$ to 4.7 at $c = 1$ and rises again to 6.5 at $c = 4$. The one knob with a fixed
# effect on $w$ is the temperature.
#
# Does the CHEST loss push them out? On this data, yes — but that is a measurement, not a rule: the
# cell trains CHEST on the same `tree` data and counts the embeddings on the clipping shell
# ($\|Wx^E + b\| \ge r$) of the training classes and of the unseen test classes. (Lesson 06 does the same on
# the digits, where only about a third of the unseen-class embeddings are clipped.)

# %%
tr_chest = Trainer(TrainConfig.preset("demo-tree", eval_every=0, eval_train=False))
for _ in tr_chest.run(steps):
    pass
for split in ("train", "test"):
    e = tr_chest.embed(split, max_n=512)
    with torch.no_grad():
        v_norm = tr_chest.model.head.tangent(e["x_e"]).norm(dim=-1)
    print(f"CHEST on tree, {split:<5} classes: {float((v_norm >= tr_chest.config.r).double().mean()):.1%} of {len(v_norm)} "
          f"embeddings on the clipping shell (‖v‖ ≥ r = {tr_chest.config.r})")

# %% [markdown]
# ## 5. The paper's Fig. 2: does the geometry matter, or the temperature?
#
# The paper's evidence is a sweep: test Recall@1 of the pairwise cross-entropy over the temperature $t$,
# on the sphere and in the ball at several curvatures (ViT backbones on CUB, Cars, SOP). What they
# report (Sec. 4.3): the sphere is *“governed by temperature … the smaller the temperature, the better
# the performance”*; the ball depends on both $t$ and $c$ and does best near $t = 0.2$; *“the Euclidean
# embedding model performs comparably, and sometimes even better, than the hyperbolic embedding
# method when the temperature parameter is small”*. Hence their conclusion, quoted at the top: the
# gain comes mainly from tuning $t$.
#
# `chestlab.reproduce.hardneg_fig2` (also `python -m chestlab.reproduce hardneg-fig2`) runs the same sweep
# on the `tree` data with a small MLP, 16 dimensions for both geometries, one run per (geometry, $t$,
# seed). The full sweep — 4 temperatures × (sphere + 3 curvatures) × 3 seeds, 48 runs — takes a few
# minutes on a laptop CPU; its results ship with the kit (`chestlab/assets/results/`), so the lesson only
# reads them. Fast mode runs a tiny sweep whose numbers mean nothing.

# %%
ts, cs_sweep, seeds = lessons.pick((HARDNEG_T, HARDNEG_C, (0, 1, 2)), ((0.05, 0.2), (0.1,), (0,)))
# 48 runs take about 6 minutes: full mode reads the sweep shipped in chestlab/assets/results/, computed by
# hardneg_fig2(out, ts=ts, cs=cs_sweep, seeds=seeds) (`python -m chestlab.results regenerate lesson02_hardneg_sweep`
# recomputes it); fast mode runs its tiny version (60 steps) here.
from chestlab import results

RECOMPUTE = False  # True: run the 48 runs now (minutes) instead of reading them
sweep = pd.DataFrame(results.load("lesson02_hardneg_sweep", recompute=RECOMPUTE)).astype({"R@1": float})
assert sorted(sweep["t"].unique()) == sorted(ts) and sorted(sweep["seed"].unique()) == sorted(seeds)
sweep["R@1"] *= 100
table = sweep.pivot_table(index="t", columns="geometry", values="R@1", aggfunc="mean")
std = sweep.groupby(["t", "geometry"])["R@1"].std().unstack().reindex(columns=table.columns)  # NaN with one seed

fig, ax = plt.subplots(figsize=(14, 5.5))
shades = iter(("#a1d99b", "#74c476", COLORS["H"], "#00441b"))  # the ball at each c, in shades of H
for i, geom in enumerate(table.columns):
    is_sphere = geom == "sphere"
    style = dict(color=COLORS["E"], ls="--", marker="s") if is_sphere else dict(color=next(shades), marker="o")
    dodge = 1.03 ** (i - (len(table.columns) - 1) / 2)  # spread the error bars a little along t
    ax.errorbar(table.index * dodge, table[geom], yerr=std[geom].fillna(0), capsize=4, ms=8, lw=2.5, label=geom, **style)
ax.set(xscale="log", xlabel="temperature t", ylabel="test Recall@1 (%), unseen classes",
       title=f"the t × c sweep on the tree data: mean ± std over {len(seeds)} seed(s)")
ax.set_xticks(list(table.index), [f"{x:g}" for x in table.index])
ax.minorticks_off()
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
plt.show()

per_seed = sweep.pivot_table(index=["t", "seed"], columns="geometry", values="R@1")
hyp = [g for g in per_seed.columns if g != "sphere"]
for t_ in ts:
    diff = per_seed.loc[t_][hyp].sub(per_seed.loc[t_]["sphere"], axis=0)
    print(f"t = {t_:<5g} sphere {table.loc[t_, 'sphere']:5.1f};  ball (any c) − sphere, same seed: "
          f"{diff.values.min():+5.1f} … {diff.values.max():+5.1f} points;  spread over c: {np.ptp(table.loc[t_, hyp].values):.1f}")
spread = std.stack()  # std of R@1 over the seeds, per (t, geometry)
if len(seeds) > 1:
    print(f"seed spread: std of R@1 over {len(seeds)} seeds, per (t, geometry): {spread.min():.1f} … {spread.max():.1f} points "
          f"(median {spread.median():.1f})")
else:
    print("one seed: no seed spread to show (the full run has 3 seeds)")

# %% [markdown]
# **Where our full sweep agrees and disagrees with the paper** (numbers from the full run; 3 seeds, toy
# data, a 300-step MLP — not ViTs on image benchmarks):
#
# * *Disagrees*: the sphere does **not** improve as $t$ falls: 89.6 at $t = 0.05$, 91.3 at $t = 0.2$, 90.4 at $t = 0.5$ —
#   flat within the seed spread (the std of R@1 over the 3 seeds is 1.3–4.0 points, median 2.1: the cell's
#   last line).
# * *Disagrees*: at small temperature the ball is **better** than the sphere, not comparable: at $t = 0.05$
#   and $0.1$ it wins by 1–4.5 points in every seed and at every $c$. At $t\ge 0.2$ the two are within noise.
# * *Agrees, in a stronger form*: **the curvature hardly matters.** $c = 0.01$ — where the reachable region
#   is practically flat ($\sqrt c\,r = 0.23$, lesson 00) — does as well as $c = 0.5$ at every $t$ (spread over $c$ ≤ 1.5
#   points). So what beats the sphere here is not hyperbolic geometry: it is a (nearly Euclidean)
#   *distance* between clipped, unnormalised features instead of the cosine of normalised ones — in line
#   with the paper's doubt that the gain is due to the hyperbolic geometry, but not with its claim that
#   tuning $t$ alone closes the gap.
#
# ## 6. Mix: two geometries in one softmax — a product, not a union
#
# The paper's *Mix* loss fuses the logits of the two geometries,
# $\ell_{ik} = s^E_{ik}/t_E + \beta\,s^H_{ik}/t_H$ with $s^E = \cos(x^E_i, x^E_k)$, $s^H = -d_H(x^H_i, x^H_k)$
# ($\beta$ is the setting `mix_lam`). Its gradient weights are, as in section 2, $w^{Mix}_{ik} = \operatorname{softmax}_k(\ell_{ik})$.
# Write each exponential with the single-geometry weights $w^E_{ik} = e^{s^E_{ik}/t_E}/Z_E$ and $w^H_{ik} = e^{s^H_{ik}/t_H}/Z_H$:
#
# $$ e^{\ell_{ik}} = e^{s^E_{ik}/t_E}\,\big(e^{s^H_{ik}/t_H}\big)^{\beta} = Z_E Z_H^{\beta}\; w^E_{ik}\,(w^H_{ik})^{\beta}
# \quad\Longrightarrow\quad
# w^{Mix}_{ik} = \frac{w^E_{ik}\,(w^H_{ik})^{\beta}}{\sum_l w^E_{il}\,(w^H_{il})^{\beta}}, $$
#
# since $Z_E$, $Z_H$ do not depend on $k$. The weights **multiply**: a negative keeps a large Mix weight only
# if it is hard on the sphere *and* in the ball — a soft AND (a product of experts). A negative that is
# hard in one geometry only is suppressed by the other; a union (say $\max(w^E, w^H)$) would keep it.
# Three hand-made negatives and 20 easy ones show the difference:

# %%
s_e = torch.tensor([0.9, 0.3, 0.7] + [0.0] * 20, **f64)  # cosines:      A hard on the sphere, C second
s_h = torch.tensor([-4.0, -1.0, -1.5] + [-6.0] * 20, **f64)  # −d_H:      B hard in the ball, C second
t_e, t_h, beta = 0.1, 0.2, 1.0
w_e, w_h = torch.softmax(s_e / t_e, 0), torch.softmax(s_h / t_h, 0)
w_mix = torch.softmax(s_e / t_e + beta * s_h / t_h, 0)
union = torch.maximum(w_e, w_h) / torch.maximum(w_e, w_h).sum()
lessons.verify("w_mix == w_E · w_H^β, renormalised", w_mix, w_e * w_h**beta / (w_e * w_h**beta).sum())
print("negative        w_E     w_H     w_mix   max(w_E, w_H) renormalised")
for k, name in enumerate(("A (sphere)", "B (ball)", "C (both)")):
    print(f"{name:<12} {float(w_e[k]):7.3f} {float(w_h[k]):7.3f} {float(w_mix[k]):7.3f} {float(union[k]):9.3f}")
print(f"hardest: sphere {'ABC'[int(w_e.argmax())]}, ball {'ABC'[int(w_h.argmax())]}, Mix {'ABC'[int(w_mix.argmax())]}")

# %% [markdown]
# C is the hardest negative of neither geometry, yet Mix gives it most of the weight, while A and B —
# each the hardest of one geometry — get little: A nothing, B less than a fifth. On a model trained with the Mix loss
# (`loss="mix"`, $t_E = 0.1$, $t_H = 0.2$, $\beta = 1$), how often is Mix's hardest negative the sphere's, the ball's?

# %%
tr_mix = Trainer(TrainConfig.preset("demo-tree", loss="mix", eval_every=0, eval_train=False))
for _ in tr_mix.run(steps):
    pass
emb = tr_mix.embed("test", max_n=128)
ze, zh, lab = emb["x_e"].double(), emb["x_h"].double(), emb["labels"]
c_mix, cfg = tr_mix.config.c, tr_mix.config
top = []
for a in range(len(lab)):
    neg = lab != lab[a]
    we = losses.hard_negative_weights(ze[a], ze[neg], cfg.t_e)
    wh = losses.hard_negative_weights(zh[a], zh[neg], cfg.t_h, c_mix)
    wm = torch.softmax(losses.pair_similarity(ze[a:a + 1], ze[neg])[0] / cfg.t_e + cfg.mix_lam * losses.pair_similarity(zh[a:a + 1], zh[neg], c_mix)[0] / cfg.t_h, 0)
    if a == 0:
        lessons.verify("trained features: w_mix == w_E · w_H^β, renormalised", wm, we * wh**cfg.mix_lam / (we * wh**cfg.mix_lam).sum(), rtol=1e-6)
    top.append((int(we.argmax()), int(wh.argmax()), int(wm.argmax())))
top = np.array(top)
print(f"Mix ({steps} steps): test R@1 E {tr_mix.history[-1]['test/E/R@1']:.3f}, H {tr_mix.history[-1]['test/H/R@1']:.3f}")
print(f"over {len(top)} anchors: sphere and ball agree on the hardest negative in {100 * np.mean(top[:, 0] == top[:, 1]):.0f} %; "
      f"Mix picks the sphere's in {100 * np.mean(top[:, 2] == top[:, 0]):.0f} %, the ball's in {100 * np.mean(top[:, 2] == top[:, 1]):.0f} %, "
      f"neither in {100 * np.mean((top[:, 2] != top[:, 0]) & (top[:, 2] != top[:, 1])):.0f} %")


# %% [markdown]
# On this model the two geometries agree on the hardest negative for most anchors; where they disagree,
# Mix mostly follows the ball, whose weights are the sharper ones here (compare $n_{\text{eff}}$ below):
# the product is dominated by its sharper factor. Move $\beta$ to hand the selection from one geometry to
# the other.

# %%
def show_mix(beta=1.0, t_e=0.1, t_h=0.2, anchor=0):
    neg = lab != lab[anchor]
    we = losses.hard_negative_weights(ze[anchor], ze[neg], t_e)
    wh = losses.hard_negative_weights(zh[anchor], zh[neg], t_h, c_mix)
    wm = we * wh**beta / (we * wh**beta).sum()
    order = torch.argsort(-wm)
    fig, ax = plt.subplots(figsize=(12, 5))
    k = np.arange(1, len(wm) + 1)
    for name, ww, color in (("sphere only, $w^E$", we, COLORS["E"]), ("ball only, $w^H$", wh, COLORS["H"]), (f"Mix, β = {beta:g}", wm, "k")):
        ax.semilogy(k, ww[order], marker="o", ms=4, color=color, label=f"{name}: n_eff = {float(1 / (ww**2).sum()):.1f}")
    ax.set(xlabel=f"negatives of anchor {anchor}, sorted by their Mix weight", ylabel="weight", ylim=(1e-10, 2))
    ax.legend(loc="lower left")
    plt.show()


interact(show_mix, beta=FloatSlider(value=1, min=0, max=3, step=0.1, description="β", **sl),
         t_e=FloatSlider(value=0.1, min=0.02, max=1, step=0.02, **sl), t_h=FloatSlider(value=0.2, min=0.02, max=1, step=0.02, **sl),
         anchor=(0, len(lab) - 1, 1));

# %%
show_mix(beta=1.0)  # the callback, called directly (a run without widgets draws it too)

# %% [markdown]
# ## 7. Implement it yourself
#
# Write, in plain torch (no `chestlab` inside):
#
# * `my_hard_negative_weights(anchor, others, t, c=None)`: the weights $w_{ik}$ of section 2 for one anchor
#   `(D,)` and its candidates `(N, D)`, with $s = \cos$ when `c is None` and $s = -d_H$ (Eq. 2) otherwise;
# * `my_mix_weights(anchor_e, others_e, anchor_h, others_h, t_e, t_h, beta, c)`: the Mix weights of section 6.
#
# The cell below holds a reference solution, **collapsed**: write your own version into it (or in a new
# cell above the check) before you expand it. Then run the check.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_hard_negative_weights(anchor, others, t, c=None):
    if c is None:
        s = (others @ anchor) / (others.norm(dim=-1) * anchor.norm())
    else:
        xy = others @ anchor
        x2, y2 = anchor.pow(2).sum(), others.pow(2).sum(-1)
        u = (others - anchor).norm(dim=-1) / torch.sqrt(1 - 2 * c * xy + c**2 * x2 * y2)  # ‖(−x) ⊕ y‖
        s = -2 / c**0.5 * torch.atanh(c**0.5 * u)
    return torch.softmax(s / t, 0)


def my_mix_weights(anchor_e, others_e, anchor_h, others_h, t_e, t_h, beta, c):
    w = my_hard_negative_weights(anchor_e, others_e, t_e) * my_hard_negative_weights(anchor_h, others_h, t_h, c) ** beta
    return w / w.sum()


# %%
g = torch.Generator().manual_seed(5)
a_e, o_e = torch.randn(8, generator=g, **f64), torch.randn(30, 8, generator=g, **f64)
a_h, o_h = ball(torch.randn(4, generator=g, **f64), 0.5), ball(torch.randn(30, 4, generator=g, **f64), 0.5)
lessons.verify("my_hard_negative_weights (sphere) == losses'", my_hard_negative_weights(a_e, o_e, 0.1), losses.hard_negative_weights(a_e, o_e, 0.1))
lessons.verify("my_hard_negative_weights (ball) == losses'", my_hard_negative_weights(a_h, o_h, 0.2, 0.5), losses.hard_negative_weights(a_h, o_h, 0.2, c=0.5), rtol=1e-8)
mix_logits = losses.pair_similarity(a_e[None], o_e)[0] / 0.1 + 1.5 * losses.pair_similarity(a_h[None], o_h, 0.5)[0] / 0.2
lessons.verify("my_mix_weights == softmax of the Mix logits", my_mix_weights(a_e, o_e, a_h, o_h, 0.1, 0.2, 1.5, 0.5), torch.softmax(mix_logits, 0), rtol=1e-8)

# %% [markdown]
# **Check your answers to exercises 1 and 2** (at the end). Define `ex1_grad(s, t, j)` — your formula for
# $\partial L_i/\partial s_{ik}$, all $k$ at once, from the similarities `s` `(N,)` with the positive at index `j` — and
# `ex2_t_sphere`, your sphere temperature, in a new cell above this one, and run the cell below. It compares
# your gradient with autograd of $L_i$ on the sphere and in the ball, and measures $n_{\text{eff}}$ at your $t_S$ with
# section 3's `mean_effective_n`. Exercise 3 compares training runs: its answer is a reading of seed noise, with no check.

# %%


def _fmt(t):  # a few numbers of a tensor, for the messages
    t = torch.as_tensor(t).detach().flatten()
    return "[" + ", ".join(f"{float(v):.4g}" for v in t[:4]) + (", …]" if len(t) > 4 else "]")


def check_exercises(ex1_grad=None, ex2_t_sphere=None):
    """Compare your answers to exercises 1 and 2 with autograd and with section 3's n_eff; raise AssertionError if one is off."""
    if ex1_grad is None:
        print("exercise 1: define ex1_grad(s, t, j) and run this cell again")
    else:
        gen = torch.Generator().manual_seed(2)
        for geometry, cc in (("sphere", None), ("ball", 0.5)):
            pts = poincare.expmap0(torch.randn(9, 4, generator=gen, **f64), 0.5)
            for t_, j in ((0.2, 0), (0.05, 3)):
                s_ = losses.pair_similarity(pts[0][None], pts[1:], cc)[0].requires_grad_(True)
                (want,) = torch.autograd.grad(-torch.log_softmax(s_ / t_, 0)[j], s_)  # L_i of section 1, positive at j
                yours = torch.as_tensor(ex1_grad(s_.detach(), t_, j))
                assert yours.shape == want.shape and torch.allclose(yours, want, rtol=1e-8, atol=1e-10), (
                    f"exercise 1 ({geometry}, t = {t_}, positive at {j}): your ∂L/∂s = {_fmt(yours)}, autograd gives "
                    f"{_fmt(want)} — expected w/t for the negatives and (w_j − 1)/t for the positive, w = softmax(s/t)")
        print("✓ exercise 1: your ∂L_i/∂s == autograd (sphere and ball, two temperatures)")
    if ex2_t_sphere is None:
        print("exercise 2: define ex2_t_sphere and run this cell again")
    else:
        target = mean_effective_n(ball(v, 0.5), 0.2, 0.5)
        yours = mean_effective_n(v, ex2_t_sphere)
        assert abs(yours / target - 1) < 0.01, (
            f"exercise 2: at your t_S = {ex2_t_sphere:.4g} the sphere's mean n_eff is {yours:.2f}, expected the ball's {target:.2f} "
            f"(c = 0.5, t = 0.2, section 3's features) within 1 %: n_eff grows with t_S, so t_S must be "
            f"{'larger' if yours < target else 'smaller'}")
        print(f"✓ exercise 2: t_S = {ex2_t_sphere:.4g} gives n_eff {yours:.2f} on the sphere, {target:.2f} in the ball")


check_exercises(globals().get("ex1_grad"), globals().get("ex2_t_sphere"))
lessons.refuses(check_exercises, dict(ex1_grad=lambda s, t, j: torch.softmax(s / t, 0) / t), dict(ex2_t_sphere=0.2))  # the check does fail on a wrong answer (the positive's −1/t forgotten; the ball's own t)

# %% [markdown]
# ## Summary
#
# * The gradient of the pairwise cross-entropy is a sum over triplets $(i, j, k)$ weighted by
#   $w_{ik} = \operatorname{softmax}_k(s_{ik}/t)$: the hard negatives dominate, the more so the lower $t$.
# * At a fixed clipping radius $r$, all distances live in $[0, 4r]$ for every $c$. For features on the clipping
#   shell a larger $c$ makes most distances close to $4r$ and so spreads $w$ over **more** negatives. The
#   CHEST loss puts (nearly) all the `tree` embeddings there, unseen classes included (section 4), but not every
#   embedding on every data set: on lesson 06's digits only about a third of the unseen-class embeddings
#   are clipped, the rest keep their own radius; for features inside the ball, or unclipped, $c$ has no fixed direction.
#   Only $t$ has one.
# * The hard-negative paper concludes that the gain of hyperbolic embeddings comes mainly from tuning
#   $t$. In our toy sweep of its Fig. 2 the curvature indeed hardly matters ($c = 0.01$, nearly flat, is as
#   good as $c = 0.5$), but the ball beats the sphere at small $t$ and the sphere does not improve as $t$ falls.
# * Mix adds logits, so it multiplies weights: $w^{Mix}\propto w^E (w^H)^{\beta}$ — a soft AND of the two
#   geometries' hard negatives, not a union of the two pools.

# %% [markdown]
# ## Exercises
#
# 1. Show that $\partial L_i/\partial s_{ik} = w_{ik}/t$ for $k\ne j$ and $(w_{ij}-1)/t$ for the positive, and check it
#    with autograd on `L_anchor` (differentiate with respect to the similarities). (Section 7 checks your formula:
#    define `ex1_grad(s, t, j)`, the gradient for similarities `s` `(N,)` with the positive at index `j`.)
# 2. On the clipped features of section 3 ($r = 2.3$), at $c = 0.5$ and $t = 0.2$: which sphere temperature $t_S$
#    gives the same mean effective number of negatives? Before bisecting, check on a grid that the
#    sphere's $n_{\text{eff}}$ is monotone in $t_S$ and that the target lies inside its range; make your bisection
#    refuse to run otherwise. (Section 7 checks your answer: `ex2_t_sphere`.)
# 3. Train the Mix loss with $\beta = 0.5$ and $2$ (`TrainConfig.preset("demo-tree", loss="mix", mix_lam=...)`) and
#    compare the test R@1 with section 6's run. Is the order stable across seeds?
#
# <details><summary>Solution 1</summary>
#
# $L_i = -s_{ij}/t + \log\sum_k e^{s_{ik}/t}$, so $\partial L_i/\partial s_{ik} = w_{ik}/t - \mathbb 1[k=j]/t$.
# ```python
# def ex1_grad(s, t, j):
#     w = torch.softmax(s / t, 0)
#     return (w - torch.nn.functional.one_hot(torch.tensor(j), len(s)).to(s.dtype)) / t
#
#
# s = losses.pair_similarity(z[0][None], z[1:], 0.5)[0].requires_grad_(True)  # section 1's anchor, c = 0.5
# g, = torch.autograd.grad(-torch.log_softmax(s / 0.2, 0)[0], s)  # L_anchor's L_0 (t = 0.2), positive at 0
# lessons.verify("dL/ds", g, ex1_grad(s.detach(), 0.2, 0))
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# target = mean_effective_n(ball(v, 0.5), 0.2, 0.5)
# grid = np.logspace(-2, 0, 60)
# vals = np.array([mean_effective_n(v, ts) for ts in grid])
# assert np.all(np.diff(vals) > 0), "n_eff is not monotone in t_S on this grid: bisection would be unsafe"
# assert vals[0] < target < vals[-1], f"target {target:.1f} outside the reachable range {vals[0]:.1f} … {vals[-1]:.1f}"
# lo, hi = grid[0], grid[-1]
# for _ in range(50):
#     mid = (lo * hi) ** 0.5
#     lo, hi = (mid, hi) if mean_effective_n(v, mid) < target else (lo, mid)
# print(f"t_S = {mid:.4f}: sphere n_eff {mean_effective_n(v, mid):.2f}, ball target {target:.2f}")
# ex2_t_sphere = mid
# ```
# The target is about 5.6 negatives and $t_S\approx 0.09$. (Why the checks: for a function that is not monotone,
# or a target outside its range, bisection still returns a number — one of its bounds.)
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# for beta in (0.5, 2.0):
#     for seed in (0, 1):
#         tr = Trainer(TrainConfig.preset("demo-tree", loss="mix", mix_lam=beta, seed=seed, eval_every=0, eval_train=False))
#         for _ in tr.run(steps):
#             pass
#         print(beta, seed, tr.history[-1]["test/E/R@1"], tr.history[-1]["test/H/R@1"])
# ```
# On this small problem the differences between the settings are of the order of the seed spread
# (the std over seeds is 1.3–4.0 points, about 2 typically: the last line of section 5's sweep cell, full
# run): one seed per setting cannot rank them.
# </details>
