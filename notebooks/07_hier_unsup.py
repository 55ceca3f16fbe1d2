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
# # 07 · Hierarchies the labels do not give: HIER and the unsupervised method
#
# CHEST learns from class labels: a sample is near its class's proxies and far from all others, and
# every other class is equally "other". Two papers ask the ball for more. **HIER** (Kim, Jeong & Kwak,
# CVPR 2023) adds learned *hierarchical proxies* — points of the ball with no class — and a triplet
# loss that makes them the ancestors of groups of data, so that a latent hierarchy above the classes
# is learned. The **unsupervised method** (Yan, Luo, Deng & Huang, CVPR 2021) has no labels at all:
# it clusters the embeddings hierarchically and trains on how many levels two samples share.
#
# The equations are restated in docs/maths.md, sections "HIER — hierarchical proxies" and
# "Unsupervised hierarchical similarity"; CHEST's own numbers are used where they apply (Eq. 2, the
# Poincaré distance; Eq. 4, the exponential map; Eq. 8, the similarity $e^{-d}$; Eq. 10, CHEST's total
# loss). HIER's project page — the text of it this kit teaches from — prints no equations (docs/maths.md restates
# them from the authors' code), so this lesson numbers its displays **(H1)–(H5)**;
# the unsupervised paper's own numbers are (1) its distance, (2) its exponential map and (3) its
# average linkage, and the kit's loss for it is **(U1)**.
#
# **Learning objectives.** After this lesson you can
#
# 1. say what a hierarchical proxy is and pick the LCA proxy of a group by the largest distance (H1);
# 2. derive the Gumbel-max trick and the straight-through selection vector (H2–H3), and check both;
# 3. derive HIER's triplet loss (H4) and draw what it pulls and pushes;
# 4. mine triplets from reciprocal neighbours and read which pairs of the wide tree they relate;
# 5. compare CHEST with CHEST + HIER over paired seeds and say what the run shows and what it does not;
# 6. build the unsupervised method's multi-level pseudo-labels by average linkage (its Eq. 3), read
#    the similarity degree as a depth, and write the multi-level triplet loss (U1).
#
# Notation: $c$ the curvature, $r$ the clipping radius, $d_H$ the Poincaré distance (Eq. 2),
# $x^H = \exp_0(\mathrm{clip}_r(W x^E + b))$ (Eq. 4). Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown
from ipywidgets import FloatSlider, IntSlider, interact
from sklearn.metrics import adjusted_rand_score

from chestlab import lessons, poincare
from chestlab.viz import mpl as viz_mpl
from chestlab.hierarchy import class_means
from chestlab.engine import Trainer
from chestlab.losses.hier import (gumbel_noise, hier_loss, hier_parents, hier_similarity, lca_select, lca_triplet_loss,
                                  reciprocal_triplets)
from chestlab.losses.unsup import hierarchical_triplet_loss, pseudo_labels, similarity_degree
from chestlab.settings import TrainConfig
from chestlab.viz.hierarchy import hier_disk_geometry
from chestlab.viz.style import COLORS, super_color, use_lecture_style

use_lecture_style()
f64 = dict(dtype=torch.float64)
T0 = time.perf_counter()
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. Hierarchical proxies and the LCA of a group
#
# HIER keeps $P$ **hierarchical proxies** $\rho_1, \dots, \rho_P$, learned like CHEST's class proxies but with
# no class: each is a tangent vector $\xi_p$ mapped into the ball like the data,
# $\rho_p = \exp_0(\mathrm{clip}_r(\xi_p))$ (Eq. 4), started at $\xi_p \sim 0.9\,r\,\mathcal N(0, I)/\sqrt{D_H}$.
# They are to become the *internal nodes* of a tree whose leaves are the samples: a proxy near the origin
# an ancestor of much, a proxy near the boundary an ancestor of little.
#
# **Which proxy is the lowest common ancestor (LCA) of a group?** A proxy covers a group as well as its
# *farthest* member lets it. For a pair and a triplet, the group's radius seen from $\rho$ is
#
# $$
# \nu^{ij}_\rho = \max\big(d_H(x_i, \rho), d_H(x_j, \rho)\big), \qquad
# \nu^{ijk}_\rho = \max\big(\nu^{ij}_\rho, d_H(x_k, \rho)\big), \qquad
# \rho_{ij} = \operatorname*{arg\,min}_\rho \nu^{ij}_\rho, \quad \rho_{ijk} = \operatorname*{arg\,min}_\rho \nu^{ijk}_\rho . \tag{H1}
# $$
#
# A toy in the disk ($D = 2$, $c = 1$): nine samples near the boundary in three groups of three, and six proxies
# drawn as HIER initialises them (with $r = 1.2$). The triplet: $i$ and $j$ from group A, $k$ from group B.
# `lca_triplet_loss` (noise off) picks the two LCAs; we pick them by hand from (H1).

# %%
C = 1.0


def polar(rad, deg):
    return [rad * math.cos(math.radians(deg)), rad * math.sin(math.radians(deg))]


leaves = torch.tensor([polar(0.88, g + o) for g in (90, 210, 330) for o in (-14, 0, 14)], **f64)
group = torch.arange(9) // 3  # A, B, C
xi = 0.9 * 1.2 * torch.randn(6, 2, generator=torch.Generator().manual_seed(131), **f64) / math.sqrt(2)
prox = poincare.expmap0(xi, C)
i, j, k = 0, 2, 4
triplet = torch.tensor([[i, j, k]])
d_toy = poincare.pairwise_dist(leaves, prox, C)  # (9, 6): sample -> proxy distances (Eq. 2)
nu_ij = torch.maximum(d_toy[i], d_toy[j])
nu_ijk = torch.maximum(nu_ij, d_toy[k])
toy = lca_triplet_loss(d_toy, triplet, margin=0.1, tau=0.1)
print("ν_ij  =", nu_ij.numpy().round(2), "  ν_ijk =", nu_ijk.numpy().round(2))
lessons.verify("ρ_ij  = argmin ν_ij   (H1)", toy.lca_ij, nu_ij.argmin())
lessons.verify("ρ_ijk = argmin ν_ijk  (H1)", toy.lca_ijk, nu_ijk.argmin())
a_ij, a_ijk = int(toy.lca_ij), int(toy.lca_ijk)


# %%
def draw_toy(ax, arrows=None, title=None):
    viz_mpl.disk_view(ax, C, grid=False)
    for g, name in enumerate("ABC"):
        m = (group == g).numpy()
        ax.scatter(leaves[m, 0], leaves[m, 1], s=90, color=super_color(g), zorder=4, label=f"group {name}")
    ax.scatter(prox[:, 0], prox[:, 1], s=260, marker="*", color="0.25", edgecolors="k", zorder=5, label="proxies")
    for p in range(len(prox)):
        ax.annotate(f"ρ{p}", prox[p].numpy(), xytext=(9, 6), textcoords="offset points", fontsize="small")
    for s, name in ((i, "i"), (j, "j"), (k, "k")):
        ax.annotate(name, leaves[s].numpy(), xytext=(10, -4), textcoords="offset points", fontsize="large", weight="bold")
    for s in (i, j):
        ax.plot(*lessons.geodesic_arc(leaves[s], prox[a_ij], C).T, color=COLORS["pos"], lw=2.2, zorder=3)
    for s in (i, j, k):
        ax.plot(*lessons.geodesic_arc(leaves[s], prox[a_ijk], C).T, color=COLORS["neg"], lw=1.6, ls="--", zorder=3)
    ax.plot([], [], color=COLORS["pos"], lw=2.2, label="to ρ_ij")
    ax.plot([], [], color=COLORS["neg"], lw=1.6, ls="--", label="to ρ_ijk")
    if arrows is not None:
        pts, vec = arrows
        ax.quiver(pts[:, 0], pts[:, 1], vec[:, 0], vec[:, 1], angles="xy", scale_units="xy", scale=1, width=0.008,
                  color="k", zorder=6)
    ax.set_title(title or f"the LCAs of the triplet: ρ_ij = ρ{a_ij}, ρ_ijk = ρ{a_ijk}")


fig, ax = plt.subplots(figsize=(8.5, 8.5))
draw_toy(ax)
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
plt.show()

# %% [markdown]
# The pair $i, j$ is covered best by a proxy on its side of the disk; the triplet, which also holds $k$ from
# group B, by a proxy between the two groups. It is not nearer the origin: these proxies are random, as at
# initialisation, and do not form a tree yet — putting the ancestors of more data nearer the root is what
# training is for. The geodesics are the curves of the ball, so the picture is exact: data and proxies are 2-D.

# %% [markdown]
# ## 2. Choosing with noise: the Gumbel-max trick and the straight-through gradient
#
# (H1)'s argmin is hard and deterministic. HIER picks instead with **Gumbel noise** at a temperature
# $\tau_{HIER}$ (0.1 in the paper's code):
#
# $$
# \psi_\rho = -\frac{\nu_\rho}{\tau_{HIER}} + \zeta_\rho, \quad \zeta_\rho \sim \mathrm{Gumbel}(0, 1) \text{ i.i.d.}, \qquad
# \text{LCA} = \operatorname*{arg\,max}_\rho \psi_\rho . \tag{H2}
# $$
#
# **The Gumbel-max trick.** With $a_\rho = -\nu_\rho/\tau_{HIER}$, $\zeta = -\log(-\log u)$ has CDF
# $F(z) = e^{-e^{-z}}$ and density $F'(z) = e^{-z}F(z)$. The proxy $\rho$ wins when $a_\rho + \zeta_\rho$ beats every other:
#
# $$
# P(\rho \text{ wins}) = \int e^{-z}F(z)\prod_{q \ne \rho}F(z + a_\rho - a_q)\,dz
# = \int e^{-z}\exp\Big(-e^{-z}\sum_q e^{a_q - a_\rho}\Big)dz = \frac{e^{a_\rho}}{\sum_q e^{a_q}} = \operatorname{softmax}(a)_\rho ,
# $$
#
# (substitute $t = e^{-z}$). So the noisy argmax *samples* a proxy with the softmax's probabilities: the nearest
# group-cover usually, another sometimes — exploration, and less of it the smaller $\tau_{HIER}$.
#
# **The gradient.** An argmax has no useful gradient. HIER uses the *straight-through* estimator: with
# $\sigma = \operatorname{softmax}(\psi)$ and $\operatorname{sg}$ the stop-gradient,
#
# $$
# \chi = \operatorname{onehot}\big(\operatorname*{arg\,max}_\rho \psi_\rho\big) + \big(\sigma - \operatorname{sg}[\sigma]\big), \qquad
# d_H(x, \rho_{ij}) := \sum_\rho \chi_\rho\, d_H(x, \rho) . \tag{H3}
# $$
#
# Its *value* is exactly the one-hot vector ($\sigma - \operatorname{sg}[\sigma] = 0$), so the sum is the distance to the
# chosen proxy; its *gradient* is that of $\sigma$, so the distances that decide the choice get one too.
# Three checks against `lca_select`: the frequencies of the noisy argmax, the value, the gradient.

# %%
tau = 0.5  # a large temperature, so that several proxies have visible probabilities
n_draw = lessons.pick(40_000, 10_000)
gen = torch.Generator().manual_seed(0)
noise = gumbel_noise((n_draw, 6), gen, dtype=torch.float64)
_, picks = lca_select(nu_ij.expand(n_draw, 6), tau, noise)
freq = torch.bincount(picks, minlength=6).double() / n_draw
probs = torch.softmax(-nu_ij / tau, 0)
print("softmax(-ν/τ):", probs.numpy().round(3), "\nfrequencies :", freq.numpy().round(3))
lessons.verify("Gumbel-max: argmax frequencies ≈ softmax   (H2)", freq, probs, atol=4 / math.sqrt(n_draw))

nu = nu_ij.clone().requires_grad_()
w = torch.rand(6, generator=gen, **f64)  # any downstream weights: the distances of some node to the proxies
chi, idx = lca_select(nu[None], tau, noise[:1])
lessons.verify("value of χ is exactly the one-hot   (H3)", chi.detach(), torch.nn.functional.one_hot(idx, 6).double(), rtol=0, atol=0)
(g_chi,) = torch.autograd.grad((chi * w).sum(), nu)
nu2 = nu_ij.clone().requires_grad_()
(g_soft,) = torch.autograd.grad((torch.softmax(-nu2 / tau + noise[0], 0) * w).sum(), nu2)
lessons.verify("gradient of χ = gradient of softmax(ψ)   (H3)", g_chi, g_soft)

# %% [markdown]
# Move the temperature: the bars are the softmax probabilities of each proxy being chosen as the LCA of the
# pair $i, j$ (left) and of the triplet (right), the dots the frequencies of 4 000 noisy argmax draws. At the
# paper's $\tau_{HIER} = 0.1$ the pair's two best covers, $\rho_2$ and $\rho_4$ (radii 2.45 and 2.62), are still
# chosen about 85 : 15 — the noise explores among near-ties — while a proxy whose radius is larger by more than
# $0.1 \ln 100 \approx 0.46$ is chosen less than 1 % of the time. At large $\tau_{HIER}$ the choice tends to uniform.

# %%
def show_choice(tau=0.1):
    z = gumbel_noise((2, 4000, 6), torch.Generator().manual_seed(1), dtype=torch.float64)
    fig, axs = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    for ax, v, name, zz in ((axs[0], nu_ij, "pair i, j", z[0]), (axs[1], nu_ijk, "triplet i, j, k", z[1])):
        p = torch.softmax(-v / tau, 0)
        _, pk = lca_select(v.expand(4000, 6), tau, zz)
        f = torch.bincount(pk, minlength=6).double() / 4000
        ax.bar(range(6), p, color="0.7", label="softmax(−ν/τ)")
        ax.plot(range(6), f, "o", color=COLORS["pos"], ms=9, label="noisy argmax, 4 000 draws")
        ax.set(xticks=range(6), xticklabels=[f"ρ{q}" for q in range(6)], title=f"LCA of the {name}", ylim=(0, 1.05))
    axs[0].set_ylabel("probability of being chosen")
    axs[1].legend(loc="upper right")
    fig.suptitle(f"τ_HIER = {tau:g}")
    fig.tight_layout()
    plt.show()


interact(show_choice, tau=FloatSlider(value=0.1, min=0.02, max=3.0, step=0.02, continuous_update=False, description="τ_HIER"));

# %%
show_choice(tau=1.0)  # the callback once more, at a temperature where the noise matters

# %% [markdown]
# ## 3. The triplet loss, derived
#
# What should the LCAs of a triplet look like, if $i$ and $j$ are related and $k$ is not? In a tree, the
# ancestor of the pair sits *below* the ancestor of all three: $i$ and $j$ branch off together, later than
# $k$. Read with distances: each of $i, j$ should be nearer its pair's LCA than the triplet's, and $k$ nearer
# the triplet's LCA than the pair's. Each wish is a hinge with margin $\delta_{hier}$ (0.1 in the paper's code):
#
# $$
# L_{HIER}(i, j, k) = \mathbb 1[\rho_{ij} \ne \rho_{ijk}]\Big(
# \big[d_H(x_i, \rho_{ij}) - d_H(x_i, \rho_{ijk}) + \delta_{hier}\big]_+
# + \big[d_H(x_j, \rho_{ij}) - d_H(x_j, \rho_{ijk}) + \delta_{hier}\big]_+
# + \big[d_H(x_k, \rho_{ijk}) - d_H(x_k, \rho_{ij}) + \delta_{hier}\big]_+\Big), \tag{H4}
# $$
#
# the distances to the LCAs through (H3), so the gradient also reaches the proxies that decided the choice.
# When one proxy is the LCA of both groups the three comparisons are empty, and the indicator (a constant)
# makes the triplet count 0. The gradient moves both the samples and the proxies: $i$ and $j$ are pulled to
# their LCA, $k$ to the triplet's — HIER's Fig. 2 ("relevant pairs are pulled into their LCA, and the
# remaining sample is pulled into LCA of the entire triplet").

# %%
hand = (d_toy[[i, j], a_ij] - d_toy[[i, j], a_ijk] + 0.1).clamp(min=0).sum() + (d_toy[k, a_ijk] - d_toy[k, a_ij] + 0.1).clamp(min=0)
lessons.verify("lca_triplet_loss == (H4) by hand", toy.loss, hand * (a_ij != a_ijk))
terms = [float(d_toy[s, a_ij] - d_toy[s, a_ijk] + 0.1) for s in (i, j)] + [float(d_toy[k, a_ijk] - d_toy[k, a_ij] + 0.1)]
print("hinge arguments (i, j, k):", np.round(terms, 3), " L_HIER =", round(float(toy.loss), 3))


def descent(tau):
    """−∇ L_HIER of the toy triplet w.r.t. the coordinates of i, j, k and the six proxies (noise off)."""
    pts = torch.cat([leaves[[i, j, k]], prox]).clone().requires_grad_()
    d = poincare.pairwise_dist(pts[:3], pts[3:], C)
    (grad,) = torch.autograd.grad(lca_triplet_loss(d, torch.tensor([[0, 1, 2]]), margin=0.1, tau=tau).loss.sum(), pts)
    return pts.detach(), -grad


fig, axs = plt.subplots(1, 2, figsize=(17, 8.5))
for ax, tau_ in zip(axs, (0.01, 0.1)):
    pts, v = descent(tau_)
    norm = v.norm(dim=1, keepdim=True)
    moving = (norm > 1e-3 * norm.max()).squeeze(1)
    print(f"τ = {tau_}: |∇| of i, j, k:", norm[:3, 0].numpy().round(3), " of ρ0..ρ5:", norm[3:, 0].numpy().round(3))
    draw_toy(ax, arrows=(pts[moving].numpy(), (0.13 * v / norm.clamp(min=1e-12))[moving].numpy()),
             title=f"τ_HIER = {tau_}: " + ("the hinges alone" if tau_ < 0.05 else "with the softmax's gradient (H3)"))
axs[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# Only one of the three hinges is active here: $j$ is nearer the triplet's LCA $\rho_{ijk}$ than its pair's LCA
# $\rho_{ij}$ (plus the margin); the hinges of $i$ and $k$ are 0. The arrows give the *direction* of steepest descent
# (all drawn at one length; the printed lengths differ) in the disk's coordinates — the Riemannian gradient has
# the same direction. Left, at a temperature so small that the softmax is one-hot and (H3)'s gradient part
# vanishes: only the active hinge acts — $j$ is pulled toward $\rho_{ij}$ and pushed from $\rho_{ijk}$, and the two
# chosen proxies move accordingly ($\rho_{ij}$ toward $j$, $\rho_{ijk}$ away from it). Right, at the paper's
# $\tau_{HIER} = 0.1$: the softmax's gradient also reaches $i$, $k$ and $\rho_3$, the proxies that compete for the
# choice, through the radii $\nu$ — the straight-through estimator at work — and it is not small: the printed
# lengths show $i$, whose hinge is 0, moved more strongly than $j$ is by its hinge alone. The loss only acts
# on triplets whose LCAs are in the wrong order (in section 5's batch, 14 % of the mined triplets).

# %% [markdown]
# ## 4. Which triplets? Reciprocal neighbours on the wide tree
#
# Which $i, j$ are "related"? HIER does not use the labels alone. It mines each step from a similarity that
# no gradient passes through, $\omega_{ab} = e^{-d_H(x_a, x_b)}$ (the form of Eq. 8), plus 1 when $a, b$ share a
# label, so that classmates outrank everyone. With $\mathrm{nn}_\kappa(a)$ the $\kappa$ most similar nodes ($a$
# included), the positives of an anchor $i$ are its **reciprocal** neighbours,
#
# $$
# j \ne i, \quad j \in \mathrm{nn}_\kappa(i), \quad i \in \mathrm{nn}_\kappa(j), \tag{H5}
# $$
#
# its negatives every other node. Classmates qualify (the $+1$); so do samples of *other* classes that are
# mutual neighbours — that is where HIER can see a relation the labels do not state. Each anchor with a
# positive and a negative gets the same number of triplets, $j$ and $k$ drawn uniformly.
#
# The data: the **wide tree** of lesson 06 (preset `demo-tree-wide`: branching 4×4×4×4, 256 leaf classes,
# half of them unseen at test time, equal edge lengths, $D_H = D_E = 4$). A batch as the trainer draws it —
# 16 classes × 4 samples — through the *untrained* network, which is what HIER mines from at step 0. For the
# other-class positive pairs we ask how far up the true tree the two classes meet (the depth of their true
# LCA: 3 = siblings, 0 = only the root), against all other-class pairs of the batch.

# %%
base_cfg = dict(eval_every=0, eval_train=False, eval_hierarchy=True, eval_max=lessons.pick(4000, 1500))
tr0 = Trainer(TrainConfig.preset("demo-tree-wide", seed=0, **base_cfg))  # untrained
train_set = tr0.train_set
n_batches = lessons.pick(20, 8)
rng = torch.Generator().manual_seed(3)
c_w = tr0.config.c
batches, batch_index = [], []  # (x_h, labels, true LCA depths, mining similarity) of each batch; its sample indices
for _ in range(n_batches):
    classes = torch.randperm(train_set.num_classes, generator=rng)[:16]
    idx = torch.cat([(train_set.labels == cl).nonzero().squeeze(1)[torch.randperm(30, generator=rng)[:4]] for cl in classes])
    with torch.no_grad():
        _, x_ = tr0.model(train_set.data[idx])
    y_ = train_set.labels[idx]
    batch_index.append(idx)
    depth_ = train_set.lca_level(y_[:, None], y_[None, :])  # depth of the true LCA of the two classes (4: same class)
    batches.append((x_.double(), y_, depth_, hier_similarity(poincare.pairwise_dist(x_.double(), x_.double(), c_w), y_)))
xb, yb, _, sim = batches[0]
print(f"{n_batches} batches of {tuple(xb.shape)}, 16 classes × 4; tree depth {train_set.depth}")


# %%
def reciprocal_mask(s, kappa):
    top = s.topk(kappa, dim=1).indices
    near = torch.zeros_like(s, dtype=torch.bool).scatter_(1, top, True)
    return near & near.T & ~torch.eye(len(s), dtype=torch.bool)


def show_mining(kappa=5):
    depths = range(train_set.depth)
    n_pos, n_all, n_same = np.zeros(len(depths)), np.zeros(len(depths)), 0
    for x_, y_, depth_, s_ in batches:
        pos = reciprocal_mask(s_, kappa)
        trip = reciprocal_triplets(s_, kappa, 20, torch.Generator().manual_seed(0))
        assert bool(pos[trip[:, 0], trip[:, 1]].all()) and not bool(pos[trip[:, 0], trip[:, 2]].any())
        upper = torch.triu(torch.ones_like(pos), 1)
        other = upper & (y_[:, None] != y_[None, :])
        n_same += int((pos & upper & ~other).sum())
        n_pos += [float((pos & other & (depth_ == lv)).sum()) for lv in depths]
        n_all += [float((other & (depth_ == lv)).sum()) for lv in depths]
    fig, axs = plt.subplots(1, 2, figsize=(14, 6.2), gridspec_kw={"width_ratios": [1, 1.15]})
    axs[0].imshow(reciprocal_mask(sim, kappa).numpy(), cmap="Greys", interpolation="nearest")
    axs[0].grid(False)
    axs[0].set(title=f"reciprocal positives, κ = {kappa} (batch 1)", xlabel="sample j (4 per class)", ylabel="anchor i")
    x = np.arange(len(depths))
    axs[1].bar(x - 0.2, n_all / n_all.sum(), 0.4, color="0.7", label=f"all other-class pairs ({int(n_all.sum())})")
    axs[1].bar(x + 0.2, n_pos / max(n_pos.sum(), 1), 0.4, color=COLORS["pos"], label=f"other-class positives ({int(n_pos.sum())})")
    axs[1].set(xticks=x, xticklabels=[f"{lv}" + (" (root)" if lv == 0 else " (siblings)" if lv == 3 else "") for lv in depths],
               xlabel="depth of the two classes' true LCA", ylabel="share of the pairs", yscale="log",
               title=f"{len(batches)} batches: {n_same} same-class positive pairs, and")
    axs[1].legend(loc="upper right")
    fig.tight_layout()
    plt.show()
    mining_counts[kappa] = (n_pos, n_all)


mining_counts = {}  # κ -> (other-class positives, all other-class pairs) per true LCA depth


interact(show_mining, kappa=IntSlider(value=5, min=2, max=40, step=1, continuous_update=False, description="κ"));

# %%
show_mining(kappa=20)  # the kit's default κ (the preset with the authors' ratios uses 5)
mined_pos, mined_all = mining_counts[20]
enrich = (mined_pos / mined_pos.sum()) / (mined_all / mined_all.sum())
print("share among other-class positives / share among all other-class pairs, by true LCA depth 0..3:", enrich.round(2))

# %% [markdown]
# Left: the classmates form the 4×4 blocks on the diagonal (the $+1$ puts them first); the dots off the blocks
# are reciprocal neighbours of other classes. With $\kappa = 5$ and 4 samples per class an anchor's 5 nearest are
# itself, its 3 classmates and one other node, so few other-class pairs are mutual; with $\kappa = 20$ many are
# (move the slider). Right, over the batches of the untrained network: in the full run (20 batches) the
# other-class positives spread over the true depths as all other-class pairs do — the printed ratios of the two
# shares are 0.99, 1.02, 1.06 and 1.00 for depths 0–3. At step 0 the mutual neighbours HIER relates say nothing
# about the tree beyond chance; whatever hierarchy it finds must come from training.

# %% [markdown]
# ## 5. The regulariser next to CHEST
#
# HIER adds two means of (H4) to the base loss: one over triplets mined in the batch (H5) with the proxies as
# candidate LCAs, and one over triplets mined among **the proxies themselves** — no labels; the proxies are then
# both the nodes and the candidate LCAs, so they arrange into a hierarchy of their own. With CHEST (Eq. 10) as
# the base:
#
# $$
# L = L_{CHEST} + \eta_{HIER}\Big(\overline{L_{HIER}}^{\,batch} + \overline{L_{HIER}}^{\,proxies}\Big), \qquad \eta_{HIER} = 0.5 .
# $$
#
# `hier_loss` computes both means from one generator (drawing, in order: the batch's triplets, their noise,
# the proxies' triplets, their noise). We rebuild it from its parts:

# %%
P_h = poincare.expmap0(0.9 * 2.3 * torch.randn(32, 4, generator=torch.Generator().manual_seed(5), **f64) / 2, c_w)
kw = dict(margin=0.1, tau=0.1, topk=20, per_anchor=20)
l_batch, l_proxy = hier_loss(xb, yb, P_h, c_w, generator=torch.Generator().manual_seed(7), **kw)

g = torch.Generator().manual_seed(7)
nodes = torch.cat([xb, P_h])
d_all = poincare.pairwise_dist(nodes, nodes, c_w)
means = []
for d_nodes, d_lca, lab in ((d_all[:64, :64], d_all[:64, 64:], yb), (d_all[64:, 64:], d_all[64:, 64:], None)):
    trip = reciprocal_triplets(hier_similarity(d_nodes, lab), 20, 20, g)
    z = gumbel_noise((2, len(trip), 32), g, dtype=torch.float64)
    per = lca_triplet_loss(d_lca, trip, 0.1, 0.1, (z[0], z[1]))
    means.append(per.loss.mean())
    print(f"{'batch ' if lab is not None else 'proxies'}: {len(trip)} triplets, {float((per.loss > 0).float().mean()):.0%} "
          f"with a non-zero loss, {float((per.lca_ij == per.lca_ijk).float().mean()):.0%} with one LCA for both groups")
lessons.verify("hier_loss: batch mean == mined (H5) + (H4) by hand", l_batch, means[0])
lessons.verify("hier_loss: proxies mean == mined (H5) + (H4) by hand", l_proxy, means[1])

# %% [markdown]
# ## 6. CHEST against CHEST + HIER on the wide tree, five paired seeds
#
# **What the paper concludes.** HIER's page: "The efficacy of HIER is evaluated on four standard benchmarks,
# where it consistently improved the performance of conventional methods when integrated with them, and
# consequently achieved the best records, surpassing even the existing hyperbolic metric learning technique, in
# almost all settings." Its base losses are Proxy-Anchor and Multi-Similarity on pretrained vision transformers.
#
# **Our run.** For each of 5 seeds, two networks that differ only in the loss: **CHEST** (preset
# `demo-tree-wide`) and **CHEST + HIER** (`loss="chest_hier"`, the kit's CPU-sized HIER: 32 proxies, κ = 20,
# 20 triplets per anchor, the paper's η = 0.5, δ = 0.1, τ = 0.1) — same seed, hence the same initial network
# and the same batches. Scored on the unseen test classes in $H$: Recall@1, MAP@R, super-class Recall@1, the
# mistake severity (lower is better) and the cophenetic correlation and dendrogram purity of the tree decoded
# from the class means (lesson 06). Each row of the table pairs the two networks of a seed:
# $\Delta$ = (CHEST + HIER) − CHEST, mean ± standard error over seeds (`lessons.paired_table`).

# %%
from chestlab import results as stored

# The 10 networks (5 seeds × 2 arms, 150 steps each) take about a minute and a half of CPU: full mode reads
# their scores from chestlab/assets/results/lesson07_hier_study.json, computed once with this code by
# `python -m chestlab.results regenerate lesson07_hier_study`; fast mode trains its short version here.
RECOMPUTE = False  # True: train all 10 networks now (lessons.hier_arm for every seed and arm) instead of reading them
study = stored.load("lesson07_hier_study", recompute=RECOMPUTE)
ARMS = lessons.HIER_ARMS  # CHEST: preset demo-tree-wide; CHEST + HIER: the same with loss="chest_hier"
steps, seeds = study["steps"], study["seeds"]
rows, shares = study["rows"], study["shares"]
# the two networks of seed 0 are trained here (the pictures below need them) and must score as the study's seed 0
# (to 0.002: another number of CPU threads changes the last digits of the sums)
t0 = time.perf_counter()
runs = {}
for arm in ARMS:
    runs[(arm, 0)], row0, _ = lessons.hier_arm(arm, 0, steps, eval_max=study["eval_max"])
    read0 = next(r for r in rows if r["arm"] == arm and r["seed"] == 0)
    lessons.verify(f"{arm}, seed 0: trained here == the study's R@1, MAP@R", [row0["R@1"], row0["MAP@R"]],
                   [read0["R@1"], read0["MAP@R"]], rtol=0, atol=2e-3)
print(f"{len(rows)} networks × {steps} steps in the study; seed 0's two trained here in {time.perf_counter() - t0:.0f} s")
scores = ["R@1", "MAP@R", "super_R@1", "severity", "cophenet", "purity"]
hier_table = lessons.paired_table(rows, scores, a="CHEST + HIER", b="CHEST", space="arm")
display(hier_table.style.format({"CHEST + HIER": "{:.3f}", "CHEST": "{:.3f}", "Δ": "{:+.3f}", "s.e.": "{:.3f}"}).hide(axis="index"))
display(Markdown("Read in this run (|Δ| against twice its standard error):\n\n"
                 + lessons.paired_verdict(hier_table, a="CHEST + HIER", b="CHEST")
                 + f"\n\nη_HIER · L_HIER is {100 * np.mean(shares):.2f} % of the total loss over the last third of the "
                   f"steps (mean of the 5 seeds; largest {100 * np.max(shares):.2f} %)."))

# %%
df = pd.DataFrame(rows)
fig, axs = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 4.8))
for ax, m in zip(axs, scores):
    pair = df.pivot(index="seed", columns="arm", values=m)
    delta = pair["CHEST + HIER"] - pair["CHEST"]
    ax.axhline(0, color="k", lw=1)
    ax.scatter(np.zeros(len(delta)), delta, color="0.35", s=40, zorder=3, label="one seed")
    ax.errorbar([0.25], [delta.mean()], yerr=[2 * delta.std(ddof=1) / np.sqrt(len(delta))], color=COLORS["H"], marker="D",
                ms=10, capsize=8, lw=2.5, label="mean ± 2 s.e.")
    ax.set(xlim=(-0.4, 0.6), xticks=[], title=m + (" ↓" if m == "severity" else ""))
axs[0].set_ylabel("(CHEST + HIER) − CHEST")
fig.legend(*axs[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=12)
fig.suptitle(f"wide tree, D = 4: what HIER changes, seed by seed ({steps} steps; above 0: higher with HIER)")
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# **What the full run shows** (150 steps, 5 paired seeds; fast mode's 30 steps are too short to read). Adding
# HIER changes none of the six scores beyond two standard errors: R@1 0.072 with HIER against 0.071 without
# (+0.001 ± 0.001, higher in 3 of 5 seeds), MAP@R +0.000 ± 0.000, super-class R@1 +0.001 ± 0.003, mistake
# severity +0.002 ± 0.006, cophenetic correlation +0.004 ± 0.004, purity −0.001 ± 0.004. The paired differences
# are tiny because the two networks hardly differ: $\eta_{HIER} L_{HIER}$ is about 0.5 % of the total loss (mean
# 0.52 %, largest 0.62 %), so CHEST's terms make nearly all of the gradient.
#
# So this run **does not reproduce** the paper's conclusion that HIER "consistently improved the performance of
# conventional methods". Nor is it a test of that claim: the paper adds HIER to Proxy-Anchor and Multi-Similarity
# on pretrained vision transformers with 512 proxies, we add it to CHEST on a 4-D embedding of a small MLP
# trained from scratch for 150 steps, with 32 proxies — and every score here is low (128 unseen leaf classes). The
# kit's longer study, `python -m chestlab.reproduce hier-ratios` (600 steps, also with the authors' ratios),
# reports no change beyond two standard errors either (docs/maths.md, "HIER — hierarchical proxies"); this cell
# does not show that run.

# %% [markdown]
# **The proxies' tree (HIER's Fig. 3).** The hierarchical proxies of seed 0 after training, with the tree they
# draw: a proxy's parent is the nearest proxy closer to the origin (`hier_parents`), and each class mean of the
# test samples hangs under its nearest proxy. Only the proxies above some class mean are drawn (in the full run
# 6 of the 32: the others are nobody's ancestor). Tangent-PCA projection of the 4-D ball to the disk (it keeps
# the origin and shrinks norms, so the root proxy — the one nearest the origin *in the ball*, whose printed
# $d_H(0, \rho)$ is the smallest — need not look central), colours = the true top-level branch of the tree. A
# picture of one seed, to read the construction — not evidence of a learned hierarchy: section 6's scores are
# that, and they do not move.

# %%
tr_h = runs[("CHEST + HIER", 0)]
emb = tr_h.embed("test", max_n=lessons.pick(1500, 600))
rho = tr_h.criterion.hier_points()["h"].double()  # (P, D_H): the hierarchical proxies in the ball
par = hier_parents(rho, tr_h.config.c)["proxy_parent"]
test_set = tr_h.test_set
means_h, cls = class_means(emb["x_h"].double(), emb["labels"], c=tr_h.config.c)  # gyro-midpoints of the test classes
groups = test_set.class_to_super[cls]
geo = hier_disk_geometry(rho, par, tr_h.config.c, x_h=emb["x_h"].double(), x_groups=emb["super"].tolist(),
                         anchors_h=means_h, anchor_groups=groups.tolist())
fig, ax = plt.subplots(figsize=(9, 9))
viz_mpl.disk_view(ax, tr_h.config.c, grid=False, circles=(2.0, 4.0))
ax.scatter(geo["x"][:, 0], geo["x"][:, 1], s=6, c=[super_color(s) for s in geo["x_group"]], alpha=0.25, zorder=1)
for line in geo["tree_lines"]:
    ax.plot(line[:, 0], line[:, 1], color="0.2", lw=1.6, zorder=3)
for gg, line in geo["anchor_lines"]:
    ax.plot(line[:, 0], line[:, 1], color=super_color(gg), lw=0.8, alpha=0.8, zorder=2)
ax.scatter(geo["anchors"][:, 0], geo["anchors"][:, 1], s=70, marker="*", c=[super_color(s) for s in geo["anchor_group"]],
           edgecolors="k", linewidths=0.4, zorder=4)
sh = geo["shown"]
ax.scatter(geo["hier"][sh, 0], geo["hier"][sh, 1], s=90, marker="D", color="#e377c2", edgecolors="k", zorder=5,
           label=f"hierarchical proxies ({int(sh.sum())} of {len(sh)} shown)")
rt = sh & geo["root"]
ax.scatter(geo["hier"][rt, 0], geo["hier"][rt, 1], s=220, marker="D", color="#e377c2", edgecolors="k", lw=2, zorder=6, label="root proxy")
ax.scatter([], [], s=70, marker="*", color="0.5", edgecolors="k", label="class means (test)")
for s_ in range(4):
    ax.scatter([], [], s=40, color=super_color(s_), label=str(test_set.superclasses[s_]))
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
ax.set_title(f"CHEST + HIER, seed 0, {steps} steps: the proxies' tree")
plt.show()
print("d_H(0, ρ) of the shown proxies:", np.sort(geo["depth"][sh]).round(2))

# %% [markdown]
# ## 7. Without labels: a pseudo-label hierarchy (the unsupervised paper)
#
# The unsupervised paper embeds with the exponential map (its Eq. 2; our Eq. 4 with $c$ written $\tau$) and
# measures with the Poincaré distance (its Eq. 1; our Eq. 2). It then clusters the embeddings hierarchically:
# at each step the two sub-clusters with the smallest **average** distance merge (its Eq. 3; the kit averages
# $d_H$, the distance of the space the paper says it clusters in):
#
# $$
# d(\mathcal C_a, \mathcal C_b) = \frac{1}{|\mathcal C_a|\,|\mathcal C_b|}\sum_{u \in \mathcal C_a}\sum_{v \in \mathcal C_b} d_H(u, v).
# $$
#
# The paper cuts the dendrogram at distance thresholds (5, 10, 15), one partition per **similarity level**; the
# kit cuts at *numbers* of clusters $n_1 < n_2 < \dots$ (a threshold's meaning changes with $c$, $r$ and
# training). An average-linkage dendrogram has no inversions, so its cuts are **nested**: two samples that
# share a cluster at one level share one at every coarser level. The **similarity degree** $h_{ij}$ — the number of
# levels at which $i$ and $j$ share a cluster — is therefore the depth of their deepest common cluster, the
# pseudo-label counterpart of a true LCA depth.
#
# On the wide tree the levels can match the truth: cuts at 4, 16, 64 and 128 clusters against the tree's 4, 16,
# 64 nodes at depths 1–3 and the 128 unseen leaf classes. We cluster the test samples of two networks of seed 0,
# untrained and trained with CHEST (labels, section 6), and score each level with the adjusted Rand index (ARI:
# 0 = chance, 1 = the true partition).

# %%
levels = (4, 16, 64, 128)
n_cl = lessons.pick(1500, 600)
ari, mean_h = {}, {}
for name, trainer in (("untrained", tr0), (f"CHEST, {steps} steps", runs[("CHEST", 0)])):
    e = trainer.embed("test", max_n=n_cl)
    truth = trainer.test_set.ancestors[e["labels"]]  # (N, 4): the true nodes at depths 1..4 (4: the class)
    codes = pseudo_labels(e["x_h"], trainer.config.c, levels)  # (N, 4): cluster ids, coarse to fine
    h = similarity_degree(codes, codes)
    shared = torch.stack([codes[:, None, lv] == codes[None, :, lv] for lv in range(len(levels))], -1)
    lessons.verify(f"{name}: nested cuts, h_ij = depth of the deepest shared level", h, shared.long().cumprod(-1).sum(-1), rtol=0, atol=0)
    ari[name] = [adjusted_rand_score(truth[:, lv], codes[:, lv]) for lv in range(len(levels))]
    t_depth = (truth[:, None, :] == truth[None, :, :]).long().cumprod(-1).sum(-1)  # true LCA depth of every pair
    off = ~torch.eye(len(h), dtype=torch.bool)
    mean_h[name] = [float(h[off & (t_depth == dep)].double().mean()) for dep in range(len(levels) + 1)]
print("ARI per level:", {k: np.round(v, 3).tolist() for k, v in ari.items()})
print("mean h_ij per true LCA depth 0..4:", {k: np.round(v, 2).tolist() for k, v in mean_h.items()})

fig, axs = plt.subplots(1, 2, figsize=(15, 5.6))
x = np.arange(len(levels))
for n_, (name, v) in enumerate(ari.items()):
    axs[0].bar(x + (n_ - 0.5) * 0.38, v, 0.38, color=("0.6", COLORS["H"])[n_], label=name)
    axs[1].plot(range(len(levels) + 1), mean_h[name], "o-", color=("0.6", COLORS["H"])[n_], lw=2.5, ms=9, label=name)
axs[0].set(xticks=x, xticklabels=[f"{n} clusters\n(depth {lv + 1})" for lv, n in enumerate(levels)], ylabel="ARI against the true nodes",
           title="each level against the tree", ylim=(0, max(0.1, 1.25 * max(max(v) for v in ari.values()))))
axs[0].legend(loc="upper right")
axs[1].plot([0, 4], [0, 4], ls=":", color="k", lw=1.5, label="a perfect pseudo-hierarchy")
axs[1].set(xticks=range(5), xlabel="true LCA depth of the pair (4 = same class)", ylabel="mean pseudo degree $h_{ij}$",
           title="similarity degree against the true depth", ylim=(-0.1, 4.1))
axs[1].legend(loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# In the full run the untrained network's pseudo-labels are at chance against the tree (ARI 0.001–0.004 at every
# level) and their similarity degree does not depend on the true depth (mean $h_{ij}$ 0.47 for pairs that meet only
# at the root, 0.49 for classmates). After 150 steps of CHEST *with* labels the levels are still far from the
# tree (ARI at most 0.022), but $h_{ij}$ now rises with the true depth, from 1.28 (root) to 1.54 (same class) — far
# below the diagonal a perfect pseudo-hierarchy follows. That is the method's weak point, shown here: its
# supervision is only as good as the embedding it starts from, and self-training on chance clusters teaches
# chance clusters. The paper starts from an ImageNet-pretrained network; docs/maths.md ("What to expect on
# `tree`", "From a pretrained network") reports what the kit measured for both starts on the narrower tree.

# %% [markdown]
# ## 8. The multi-level triplet loss (the kit's choice)
#
# The paper's text ends inside its Sec. 3.3, before its loss. What its Fig. 1 asks for is that a negative which
# shares *more* levels with the anchor stays *nearer* than one that shares fewer. The kit's loss says exactly
# that, with a margin $\delta_{unsup}$ per level of difference, over every triplet of the batch that the
# pseudo-labels order:
#
# $$
# L_{unsup} = \frac{1}{|\mathcal T|}\sum_{(i,j,k) \in \mathcal T}\big[d_H(x_i, x_j) - d_H(x_i, x_k) + \delta_{unsup}(h_{ij} - h_{ik})\big]_+ ,
# \qquad \mathcal T = \{(i, j, k) : j \ne i,\ k \ne i,\ h_{ij} > h_{ik}\}. \tag{U1}
# $$
#
# With one level ($h \in \{0, 1\}$) this is the ordinary triplet loss over all positive/negative pairs of the
# batch; with $L$ levels a pair that shares 3 levels must be nearer than one sharing 1 by $2\delta_{unsup}$. A
# check against the library by plain loops:

# %%
xs = poincare.expmap0(torch.randn(9, 4, generator=torch.Generator().manual_seed(2), **f64), 0.5)
cs = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [1, 2, 3], [1, 3, 4], [0, 0, 0], [1, 2, 5], [0, 1, 6]])
dd, hh = poincare.pairwise_dist(xs, xs, 0.5), similarity_degree(cs, cs)
loop = [max(0.0, float(dd[a, b] - dd[a, q] + 0.2 * (hh[a, b] - hh[a, q])))
        for a in range(9) for b in range(9) for q in range(9) if b != a and q != a and hh[a, b] > hh[a, q]]
lessons.verify("hierarchical_triplet_loss == (U1) by loops", hierarchical_triplet_loss(xs, cs, 0.5, 0.2), np.mean(loop), rtol=1e-6)
print(f"{len(loop)} ordered triplets among 9 samples, {np.mean(np.array(loop) > 0):.0%} active")

# %% [markdown]
# ## 9. Implement it yourself
#
# Write, in plain torch (no `chestlab` inside; `scipy` for the clustering):
#
# * `my_lca_select(nu, tau, noise)`: (H2)–(H3) — returns `(chi, idx)` for radii `nu` `(T, P)`;
# * `my_lca_triplet_loss(d, triplets, margin, tau)`: (H1) and (H4) without noise, per triplet, from node-to-proxy
#   distances `d` `(N, P)` and `triplets` `(T, 3)`;
# * `my_reciprocal_positives(sim, kappa)`: the boolean `(N, N)` mask of (H5);
# * `my_pseudo_labels(x, c, levels)`: average linkage on $d_H$, cut at each number of clusters, `(N, L)` ids;
# * `my_similarity_degree(codes)`: $h_{ij}$, `(N, N)`.
#
# The cell below holds a reference solution, **collapsed**: write your own version into it (or in a new cell
# above the check) before you expand it. Then run the check.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_lca_select(nu, tau, noise):
    psi = -nu / tau + noise
    soft = torch.softmax(psi, dim=-1)
    idx = psi.argmax(-1)
    hard = torch.nn.functional.one_hot(idx, nu.shape[-1]).to(nu.dtype)
    return hard + (soft - soft.detach()), idx


def my_lca_triplet_loss(d, triplets, margin, tau):
    i, j, k = triplets.unbind(1)
    nu_ij = torch.maximum(d[i], d[j])
    nu_ijk = torch.maximum(nu_ij, d[k])
    chi_ij, a = my_lca_select(nu_ij, tau, torch.zeros_like(nu_ij))
    chi_ijk, b = my_lca_select(nu_ijk, tau, torch.zeros_like(nu_ijk))

    def to(x, chi):
        return (d[x] * chi).sum(1)

    loss = ((to(i, chi_ij) - to(i, chi_ijk) + margin).clamp(min=0) + (to(j, chi_ij) - to(j, chi_ijk) + margin).clamp(min=0)
            + (to(k, chi_ijk) - to(k, chi_ij) + margin).clamp(min=0))
    return loss * (a != b).to(loss.dtype)


def my_reciprocal_positives(sim, kappa):
    top = sim.topk(kappa, dim=1).indices
    near = torch.zeros(sim.shape, dtype=torch.bool).scatter_(1, top, True)
    return near & near.T & ~torch.eye(len(sim), dtype=torch.bool)


def my_dist(x, y, c):
    x, y = x[:, None, :], y[None, :, :]
    xy, x2, y2 = (x * y).sum(-1), (x * x).sum(-1), (y * y).sum(-1)
    num = ((1 - 2 * c * xy + c * y2)[..., None] * (-x) + (1 - c * x2)[..., None] * y).norm(dim=-1)  # ‖(−x) ⊕ y‖ · den
    den = 1 - 2 * c * xy + c**2 * x2 * y2
    return 2 / c**0.5 * torch.atanh((c**0.5 * num / den).clamp(max=1 - 1e-15))


def my_pseudo_labels(x, c, levels):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = my_dist(x.double(), x.double(), c)
    d = ((d + d.T) / 2).fill_diagonal_(0)
    Z = linkage(squareform(d.numpy(), checks=False), method="average")
    return torch.as_tensor(np.stack([fcluster(Z, t=n, criterion="maxclust") - 1 for n in sorted(levels)], 1))


def my_similarity_degree(codes):
    return (codes[:, None, :] == codes[None, :, :]).sum(-1)


# %%
gt = torch.Generator().manual_seed(11)
nu_t = 3 * torch.rand(50, 6, generator=gt, **f64)
z_t = gumbel_noise((50, 6), gt, dtype=torch.float64)
lessons.verify("my_lca_select == lca_select (value)   (H2–H3)", my_lca_select(nu_t, 0.3, z_t)[0], lca_select(nu_t, 0.3, z_t)[0])
nu_a, nu_b = nu_t.clone().requires_grad_(), nu_t.clone().requires_grad_()
w_t = torch.rand(50, 6, generator=gt, **f64)
ga = torch.autograd.grad((my_lca_select(nu_a, 0.3, z_t)[0] * w_t).sum(), nu_a)[0]
gb = torch.autograd.grad((lca_select(nu_b, 0.3, z_t)[0] * w_t).sum(), nu_b)[0]
lessons.verify("my_lca_select == lca_select (gradient)", ga, gb)
d_t = 4 * torch.rand(12, 7, generator=gt, **f64)
trip_t = torch.randint(0, 12, (40, 3), generator=gt)
lessons.verify("my_lca_triplet_loss == lca_triplet_loss   (H4)", my_lca_triplet_loss(d_t, trip_t, 0.1, 0.1), lca_triplet_loss(d_t, trip_t, 0.1, 0.1).loss)
lessons.verify("my_reciprocal_positives == the positives of mined triplets   (H5)", my_reciprocal_positives(sim, 20)[
    reciprocal_triplets(sim, 20, 50, gt)[:, 0], reciprocal_triplets(sim, 20, 50, gt)[:, 1]].all(), True)
lessons.verify("my_reciprocal_positives == the mask of section 4", my_reciprocal_positives(sim, 7), reciprocal_mask(sim, 7))
x_t = poincare.expmap0(torch.randn(80, 4, generator=gt, **f64), 0.5)
mine, lib = my_pseudo_labels(x_t, 0.5, (3, 9, 27)), pseudo_labels(x_t, 0.5, (3, 9, 27))
lessons.verify("my_pseudo_labels == pseudo_labels (ARI per level)", [adjusted_rand_score(mine[:, l], lib[:, l]) for l in range(3)], 1.0)
lessons.verify("my_pseudo_labels == pseudo_labels (ids)", my_pseudo_labels(x_t, 0.5, (3, 9, 27)), lib, rtol=0, atol=0)
lessons.verify("my_similarity_degree == similarity_degree", my_similarity_degree(lib), similarity_degree(lib, lib), rtol=0, atol=0)
print(f"the whole lesson ran in {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Summary
#
# * HIER's hierarchical proxies are class-free points of the ball; the LCA of a group is the proxy whose farthest
#   member is nearest (H1), chosen with Gumbel noise — which samples it with probabilities $\operatorname{softmax}(-\nu/\tau)$ (H2)
#   — and a straight-through vector whose value is one-hot and whose gradient is the softmax's (H3).
# * (H4) asks the pair's LCA to sit below the triplet's: $i, j$ nearer their own LCA, $k$ nearer the triplet's, by a
#   margin; a triplet whose LCAs coincide counts 0.
# * Triplets come from reciprocal neighbours (H5) of a label-boosted $e^{-d_H}$: classmates first, then mutual
#   neighbours of other classes; the proxies mine triplets among themselves too.
# * On the wide tree (5 paired seeds, 150 steps) CHEST + HIER and CHEST differ on no score beyond two standard
#   errors, and $\eta_{HIER} L_{HIER}$ is about 0.5 % of the loss. The paper reports consistent gains with other
#   base losses, networks and data; this run does not reproduce them, and does not test that setting.
# * The unsupervised method cuts one average-linkage dendrogram (its Eq. 3) at several levels; the cuts nest, so the
#   similarity degree is a depth. Its pseudo-labels are only as good as the embedding they come from.
# * (U1), the kit's loss for it, is a triplet loss whose margin grows with the difference of similarity degrees.

# %% [markdown]
# ## Exercises
#
# 1. Train the unsupervised loss on the wide tree (no labels: `loss="unsup"`, levels 4, 16, 64, 128) for 150 steps
#    and compare its test Recall@1 and its pseudo-labels' ARI with the untrained network's.
# 2. Run section 6's comparison with the preset `demo-tree-wide-hier` (the authors' ratios: 128 proxies, κ = 5, 50
#    triplets per anchor, the proxies at 50 × the learning rate) in place of `loss="chest_hier"`. What changes in the
#    share of $\eta_{HIER} L_{HIER}$ in the loss, and in the table?
# 3. Show that the Gumbel-max choice (H2) tends to (H1)'s argmin as $\tau_{HIER} \to 0$ and to a uniform choice as
#    $\tau_{HIER} \to \infty$. For two proxies whose radii differ by $\Delta\nu$, what is the probability that the farther one is
#    chosen?
# 4. Why must the cuts be nested for $h_{ij}$ to be "the depth of the deepest shared cluster"? Give three samples
#    and two partitions that are not nested, and show that $h$ then breaks the ultrametric inequality
#    $\min(h_{ij}, h_{jk}) \le h_{ik}$.
# 5. Redo section 4's mining with the CHEST network of section 6 (seed 0) instead of the untrained one. Are the
#    other-class reciprocal positives now closer relatives in the true tree than an average other-class pair?
#
# <details><summary>Solution 1</summary>
#
# ```python
# cfg = TrainConfig.preset("demo-tree-wide", loss="unsup", unsup_levels=(4, 16, 64, 128), unsup_refresh=50,
#                          unsup_margin=0.2, unsup_max_n=2000, lr=5e-4, seed=0, **base_cfg)
# tu = Trainer(cfg)
# for _ in tu.run(150):
#     pass
# print("R@1 untrained", tr0.evaluate().metrics["test/H/R@1"])
# print("R@1 unsup    ", tu.history[-1]["test/H/R@1"])
# e = tu.embed("test", max_n=1500)
# codes = pseudo_labels(e["x_h"], tu.config.c, (4, 16, 64, 128))
# truth = tu.test_set.ancestors[e["labels"]]
# print([round(adjusted_rand_score(truth[:, l], codes[:, l]), 3) for l in range(4)])
# ```
# Compare with section 7's untrained bars. The pseudo-labels of the first refresh come from the untrained
# network; if its clusters carry little of the tree, the loss trains the network to keep those clusters
# (docs/maths.md, "What to expect on `tree`", reports this on the narrower tree).
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# rows2 = [r for r in rows if r["arm"] == "CHEST"]  # the CHEST networks of section 6, same seeds
# for seed in seeds:
#     tr = Trainer(TrainConfig.preset("demo-tree-wide-hier", seed=seed, **base_cfg))
#     ev = [e for e in tr.run(steps) if hasattr(e, "components")]
#     print(seed, "share of η·L_HIER:", np.mean([0.5 * e.components["l_hier"] / e.loss for e in ev[-steps // 3:]]))
#     rows2.append({"arm": "authors' ratios", "seed": seed,
#                   **{k[7:]: float(v) for k, v in tr.history[-1].items() if k.startswith("test/H/")}})
# t2 = lessons.paired_table(rows2, scores, a="authors' ratios", b="CHEST", space="arm")
# display(Markdown(lessons.paired_verdict(t2, a="authors' ratios", b="CHEST")))
# ```
# Each step is slower (the loss costs $O(TP)$; four times the proxies, 2.5 times the triplets per anchor). Read
# the share and the paired differences with their standard errors exactly as in section 6, and claim a change
# only where $|\Delta|$ exceeds about two standard errors. `python -m chestlab.reproduce hier-ratios` runs this
# comparison for 600 steps.
# </details>
#
# <details><summary>Solution 3</summary>
#
# By the Gumbel-max trick the choice is $\operatorname{softmax}(-\nu/\tau)$. As $\tau \to 0$ the logits $-\nu_\rho/\tau$ separate
# without bound and all mass goes to the smallest $\nu$ (ties share it); as $\tau \to \infty$ all logits tend to 0 and the
# softmax to $1/P$. For two proxies: $P(\text{farther}) = 1/(1 + e^{\Delta\nu/\tau})$ — at $\tau = 0.1$ and $\Delta\nu = 0.5$ that is
# $1/(1 + e^{5}) \approx 0.7\,\%$.
# </details>
#
# <details><summary>Solution 4</summary>
#
# Nested: if $i, j$ share a cluster at level $l$, they share one at every coarser level, so the shared levels are
# $1..h_{ij}$ — a prefix — and $h_{ij}$ is the depth of the deepest common cluster; if $i, j$ share depth $a$ and $j, k$ depth
# $b$, then $i, k$ share every level up to $\min(a, b)$, which is the ultrametric inequality. Not nested: level 1 =
# $\{i, j\}, \{k\}$, level 2 = $\{i\}, \{j, k\}$. Then $h_{ij} = 1$, $h_{jk} = 1$, $h_{ik} = 0 < \min(1, 1)$: $i$ is as similar to $j$
# as $j$ to $k$, yet $i$ and $k$ share nothing — no tree has these depths.
# </details>
#
# <details><summary>Solution 5</summary>
#
# ```python
# net = runs[("CHEST", 0)].model.eval()
# trained = []
# for idx, (_, y_, depth_, _) in zip(batch_index, batches):
#     with torch.no_grad():
#         _, x_ = net(train_set.data[idx])
#     d_ = poincare.pairwise_dist(x_.double(), x_.double(), c_w)
#     trained.append((x_.double(), y_, depth_, hier_similarity(d_, y_)))
# batches, sim = trained, trained[0][3]  # what show_mining reads
# show_mining(kappa=20)
# p_, a_ = mining_counts[20]
# print("ratio of shares by true LCA depth 0..3:", ((p_ / p_.sum()) / (a_ / a_.sum())).round(2))
# ```
# A ratio above 1 at depths 2–3 means the trained network's mutual neighbours are related classes more often
# than chance — what HIER needs to find a hierarchy beyond the labels. Read it with care: one network, a few
# thousand pairs, most of them at depth 0.
# </details>
