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
# # 04 · The HypHC regulariser: hierarchical clustering in the ball
#
# CHEST adds to its loss a term from *HypHC* (Chami et al. 2020) that asks the **proxies** to form a
# tree: Eq. 8–9 of the paper (spec `shared/spec/chest.md`, *HypHC regulariser*). This lesson goes
# from Dasgupta's cost for hierarchical clustering to its hyperbolic relaxation, checks the hyperbolic
# LCA, and shows on a toy problem what the two readings of Eq. 9 do to proxies.

# %%
# %matplotlib inline
import itertools
import math

import matplotlib.pyplot as plt
import torch
from ipywidgets import FloatSlider, IntSlider, interact

from chestlab import lessons, losses, poincare

f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. Dasgupta's cost, one triplet at a time
#
# A hierarchical clustering is a binary tree $T$ over the data. Dasgupta's cost charges every pair
# by its similarity times the size of the smallest cluster containing both:
# $\mathrm{cost}(T) = \sum_{i<j} w_{ij}\,|\mathrm{leaves}(T[i\vee j])|$. Similar pairs must be merged
# **early** (deep in the tree). For three points there are three trees — which pair merges first —
# and the cost of the tree merging $(p, q)$ first is (up to a constant) $w_{ij} + w_{ik} + w_{jk} - w_{pq}$:
# it is smallest when the *most similar* pair merges first. Summing this over all triplets gives
# Dasgupta's cost of the whole tree up to a constant (Wang & Wang 2018).

# %%
w = {(0, 1): 0.9, (0, 2): 0.2, (1, 2): 0.3}  # similarities of three points


def dasgupta(first):  # full Dasgupta cost of the 3-leaf tree that merges `first` first
    return sum(s * (2 if pair == first else 3) for pair, s in w.items())


for first in w:
    print(f"merge {first} first: cost = {dasgupta(first):.2f}   triplet term Σw − w_first = {sum(w.values()) - w[first]:.2f}")

# %% [markdown]
# ## 2. Trees in the ball: the hyperbolic LCA
#
# HypHC reads a tree off points of the ball: the **lowest common ancestor** of $a$ and $b$ is the
# point of the geodesic through $a$, $b$ closest to the origin (the root); its depth is
# $d_o = D_H(0, \mathrm{lca}(a, b))$. Two points near the boundary in similar directions have a
# geodesic that stays far from the origin — a deep LCA, they merge late in the walk from the root,
# i.e. *early* in the clustering. The kit has a closed form (`poincare.lca_depth`); check it against
# brute force on the sampled geodesic (`lessons.lca_point`):

# %%
c = 1.0
a, b = poincare.expmap0(torch.randn(2, 2, **f64), c)
brute = poincare.dist0(lessons.lca_point(a, b, c, n=20001), c)
lessons.verify("lca_depth (closed form) == min over the geodesic", poincare.lca_depth(a, b, c), brute, rtol=1e-4, atol=1e-4)
lessons.verify("geodesic through the origin: depth 0", poincare.lca_depth(a, -0.5 * a, c), 0.0, atol=1e-7)


# %%
def show_lca(c=1.0, r=0.85, spread_deg=40.0, rot=30.0):
    R = 1 / math.sqrt(c)
    ang = [math.radians(rot - spread_deg / 2), math.radians(rot + spread_deg / 2), math.radians(rot + 160)]
    pts = torch.tensor([[r * R * math.cos(t), r * R * math.sin(t)] for t in ang], **f64)
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    lessons.draw_disk(ax, c, grid=False, circles=(1, 2))
    for (i, j), col in zip(itertools.combinations(range(3), 2), ("C0", "C1", "C2")):
        g = lessons.geodesic(pts[i], pts[j], c, n=300, full=True).numpy()
        lca = lessons.lca_point(pts[i], pts[j], c)
        depth = float(poincare.lca_depth(pts[i], pts[j], c))
        ax.plot(g[:, 0], g[:, 1], color=col, lw=1)
        ax.scatter(*lca, color=col, marker="s", s=30, label=f"lca({i},{j}): depth {depth:.2f}")
    ax.scatter(*pts.T, color="k", zorder=5)
    for i, p in enumerate(pts):
        ax.annotate(str(i), p, xytext=(4, 4), textcoords="offset points")
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    plt.show()


sl = dict(continuous_update=False)
interact(show_lca, c=FloatSlider(value=1, min=0.1, max=3, step=0.1, **sl), r=FloatSlider(value=0.85, min=0.1, max=0.99, step=0.01, description="‖x‖√c", **sl),
         spread_deg=FloatSlider(value=40, min=1, max=150, step=1, description="angle 0–1", **sl), rot=FloatSlider(value=30, min=-180, max=180, step=5, **sl));

# %%
show_lca(c=1.0, r=0.97, spread_deg=15)  # the callback once more (CI runs it)

# %% [markdown]
# ## 3. The relaxation: Eq. 8–9
#
# For a triplet, “which pair merges first” = “which pair has the deepest LCA”. Replace the argmax
# by a softmax with temperature $\gamma_{hyp}$ and the similarities by $S_{pq} = e^{-D_H(p_p, p_q)}$ (Eq. 8):
#
# $$ L_{\mathrm{HypHC}}(t) = \sum_{p<q} S_{pq} - \sum_{p<q} S_{pq}\operatorname{softmax}_{\text{pairs}}(d_{pq}/\gamma_{hyp}) \qquad (9) $$
#
# With $d_{pq}$ = LCA depth this is the triplet term of Dasgupta's cost, softened; as $\gamma_{hyp}\to0$
# it is exactly $\sum S - S_{\text{deepest pair}}$.

# %%
P = poincare.expmap0(torch.randn(6, 2, **f64), c)
trip = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 3, 5]])
pairs = [(0, 1), (0, 2), (1, 2)]
S = torch.stack([torch.exp(-poincare.dist(P[trip[:, p]], P[trip[:, q]], c)) for p, q in pairs], 1)
depth = torch.stack([poincare.lca_depth(P[trip[:, p]], P[trip[:, q]], c) for p, q in pairs], 1)
manual = S.sum(1) - (S * torch.softmax(depth / 1.0, 1)).sum(1)
lessons.verify("hyphc_loss (variant='lca') == Eq. 9 with LCA depths", losses.hyphc_loss(P, trip, c, 1.0), manual)
dasg = S.sum(1) - S.gather(1, depth.argmax(1, keepdim=True)).squeeze(1)
lessons.verify("γ_hyp → 0: Dasgupta's triplet term", losses.hyphc_loss(P, trip, c, 1e-4), dasg, rtol=1e-6, atol=1e-8)

# %% [markdown]
# ## 4. Two readings of Eq. 9
#
# The paper writes $d_{jk} = D_H(p_j, p_k)$ — a pairwise *distance*, not an LCA depth. The spec's
# default follows HypHC (LCA depths, $S$ held constant each step); `variant="pairwise"` is the literal
# reading. What does the literal one do? With $S$ constant, the derivative of Eq. 9 in $d_p$ is
#
# $$ \frac{\partial L}{\partial d_p} = -\frac{w_p}{\gamma_{hyp}}\big(S_p - \bar S\big), \qquad \bar S = \textstyle\sum_q w_q S_q, $$
#
# so a pair more similar than average ($S_p > \bar S$) has its $d_p$ **increased**. With LCA depths this is
# right (similar pairs get deeper LCAs); with distances it pushes the *closest* pair apart and pulls the
# farthest together: it equalises distances within every triplet.
#
# **Toy problem** (`lessons.hyphc_toy`): 3 classes × 3 proxies in the 2-D disk, starting grouped by class
# (as the proxy loss would leave them), trained by the HypHC term *alone* on all triplets.

# %%
steps = lessons.pick(300, 100)
runs = {v: lessons.hyphc_toy(v, steps) for v in ("lca", "pairwise")}
for v, r in runs.items():
    print(f"{v:<9} mean LCA depth same class {r['lca_within'][0]:.2f} → {r['lca_within'][-1]:.2f}, other class {r['lca_between'][0]:.2f} → {r['lca_between'][-1]:.2f};"
          f" distances same {r['dist_within'][0]:.2f} → {r['dist_within'][-1]:.2f}, other {r['dist_between'][0]:.2f} → {r['dist_between'][-1]:.2f};"
          f" triplets whose closest pair has the deepest LCA {r['consistent'][0]:.0%} → {r['consistent'][-1]:.0%}")


# %%
def show_toy(step=0):
    fig, axs = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw=dict(width_ratios=(1, 1, 1.3)))
    for ax, (v, r) in zip(axs, runs.items()):
        lessons.draw_disk(ax, 1.0, grid=False, circles=(2, 4))
        snap = r["snapshots"][step]
        for k in range(snap.shape[0]):
            ax.scatter(snap[k, :, 0], snap[k, :, 1], marker="*", s=120, edgecolor="k", lw=0.5, label=f"class {k}")
        ax.set_title(f"variant = {v!r}, step {step}", fontsize=9)
    axs[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
    for v, r in runs.items():
        axs[2].plot(r["consistent"], label=f"{v}: closest pair = deepest LCA")
        axs[2].plot(r["dist_within"] / r["dist_within"][0], ls="--", label=f"{v}: same-class distance (rel.)")
    axs[2].axvline(step, color="k", lw=0.5)
    axs[2].set(xlabel="step", ylim=(0, 3.2))
    axs[2].legend(fontsize=6, frameon=False)
    plt.show()


interact(show_toy, step=IntSlider(value=steps, min=0, max=steps, step=5, continuous_update=False));

# %%
show_toy(step=steps // 2)  # the callback once more (CI runs it)

# %% [markdown]
# **What we see.** With LCA depths, the proxies move out towards the boundary along their directions and
# the fraction of triplets whose closest pair has the deepest LCA rises: the embedded tree comes to agree
# with the similarities — but it is the proxies' *own* similarities (Eq. 8 measures proxy distances, not
# class labels), so the term reinforces whatever grouping the proxy loss has made and cannot create one.
# With pairwise distances, the proxies collapse: in the 2-D disk the only way to make all distances of all
# triplets equal is to make them zero (in $D_H$ dimensions a simplex of up to $D_H + 1$ proxies is another
# equilibrium). The spec expected the literal reading to *push proxies apart*; on this toy, with $S$ held
# constant, it does the opposite — a finding worth checking at the paper's scale.
#
# In CHEST the term is weighted by $\tau = 0.5$ next to $L_H$, which keeps classes apart; lesson 05 measures
# its effect in the ablation (rows “+ HypHC”).

# %% [markdown]
# ## Exercises
#
# 1. Rerun the toy with `detach_similarity=False` (the literal loss, $S$ differentiated too). What changes for each variant?
# 2. Show that at $c\to0$ the LCA depth is twice the Euclidean distance from the origin to the line through $a$ and $b$, and check it.
# 3. With 4 leaves, enumerate the trees and check that summing the triplet terms ranks them as Dasgupta's cost does.
#
# <details><summary>Solution 1</summary>
#
# ```python
# r = lessons.hyphc_toy("pairwise", steps, detach_similarity=False)
# print(r["dist_within"][[0, -1]], r["dist_between"][[0, -1]])
# ```
# Differentiating $S = e^{-d}$ adds a term that lowers $\sum S$, i.e. pushes all proxies apart; it then
# dominates, and the proxies fly to the clipping radius — the “pushes apart” behaviour the spec describes.
# </details>
#
# <details><summary>Solution 2</summary>
#
# The closed form gives $\sinh(\sqrt c d_o)/\sqrt c\to 2\|a\wedge b\|/\|a-b\|$, and $\|a\wedge b\|/\|a-b\|$ is the
# height of the triangle $(0, a, b)$ over the side $ab$.
# ```python
# a, b = torch.randn(2, 3, dtype=torch.float64)
# h = torch.linalg.cross(a, b).norm() / (a - b).norm()
# lessons.verify("c = 0", poincare.lca_depth(a, b, 0.0), 2 * h)
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# Dasgupta: $\sum_{i<j} w_{ij}|\mathrm{leaves}(i\vee j)|$. For each tree compute it and
# $\sum_{\text{triplets}}(\sum w - w_{\text{first merged}})$; the two differ by $2\sum_{i<j}w_{ij}$ (a constant), so
# they rank the trees identically.
# </details>
