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
# # 03 · From SoftTriple to the CHEST loss
#
# CHEST learns **proxies** — a few learnable points per class — and pulls each sample towards its
# class's proxies, in hyperbolic *and* Euclidean space. This lesson builds the loss piece by piece:
# the soft similarity over $K$ proxies (Eq. 5–6), the margin loss (Eq. 7), why hyperbolic distances
# need other scales than SoftTriple's cosines, and the total (Eq. 10). Every gradient is derived and
# checked against autograd (`chestlab.gradients`).
#
# **Learning objectives.** After this lesson you can
#
# 1. compute the soft similarity of a sample to a class over its $K$ proxies (Eq. 5–6) and its gradient;
# 2. tell, for every proxy, whether the loss pulls it towards a sample or pushes it away — and how hard;
# 3. write the margin loss (Eq. 7) as a cross-entropy over classes, recognise it as SoftTriple's loss, and
#    place it in its family (normalised softmax with a margin, not ProxyNCA);
# 4. explain, with numbers, why hyperbolic similarities need other scales $\lambda_H$, $\delta_H$ than cosines;
# 5. assemble Eq. 10 and check each term's gradient by the chain rule;
# 6. implement Eq. 5–7 yourself.
#
# **Notation.** Equation numbers are the CHEST paper's, as stated in `docs/maths.md` (“docs/maths.md,
# Eq. 7”, short “Eq. 7”). $c$ is only the curvature. Classes are $y = 1..C$, sample $i$ has label $y_i$, and
# class $y$ has proxies $p_{y,q}$, $q = 1..K$; $d_E$ and $d_H$ are the Euclidean and the Poincaré distance.
# Each space $*\in\{H, E\}$ has its own softness $\gamma_*$, scale $\lambda_*$ and
# margin $\delta_*$ (Eq. 5–7). Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from ipywidgets import FloatSlider, interact

from chestlab import gradients, lessons, losses, poincare
from chestlab.train import Trainer, TrainConfig
from chestlab.viz.style import COLORS, use_lecture_style

use_lecture_style()
f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. Soft similarity over $K$ proxies (Eq. 5–6)
#
# SoftTriple (Qian et al. 2019) gives each class $K$ centres, because one class can have several
# modes (a car from the front and from the side). The similarity to a class is a *soft maximum* of
# the similarities to its centres. CHEST uses distances, $d_q = d_E(x, p_{y,q})$ (Eq. 5) or $d_q = d_H(x, p_{y,q})$ (Eq. 6):
#
# $$ S(x, y) = -\sum_q \sigma_q\,d_q, \qquad \sigma = \operatorname{softmax}(-d/\gamma) . $$
#
# $\gamma\to0$: $S\to-\min_q d_q$ (only the nearest proxy counts); $\gamma\to\infty$: $S\to-\text{mean}_q d_q$.

# %%
d = torch.tensor([[1.0, 2.0, 4.0, 7.0]], **f64)
lessons.verify("Eq. 5/6 formula", losses.soft_similarity(d, 5.0), -(torch.softmax(-d / 5, -1) * d).sum(-1))
lessons.verify("γ → 0 gives −min_q d_q", losses.soft_similarity(d, 1e-3), -d.min(), rtol=1e-6)
lessons.verify("γ → ∞ gives −mean_q d_q", losses.soft_similarity(d, 1e7), -d.mean(), rtol=1e-6)

# %% [markdown]
# **Gradient.** With $\partial\sigma_{q'}/\partial d_q = -\sigma_{q'}(\mathbb 1[q'=q]-\sigma_q)/\gamma$,
#
# $$ \frac{\partial S}{\partial d_q} = -\sigma_q + \frac1\gamma\sum_{q'} \sigma_{q'}(\mathbb 1[q'=q]-\sigma_q)\,d_{q'}
# = -\sigma_q\Big(1 - \frac{d_q + S}{\gamma}\Big). $$
#
# $d_q + S = d_q - \bar d$, the distance of proxy $q$ above the soft mean $\bar d = -S$: $\partial S/\partial d_q < 0$ for the near
# proxies and $> 0$ for a proxy farther than $\bar d + \gamma$.

# %%
d = (3 * torch.rand(6, 4, **f64)).requires_grad_(True)
(auto,) = torch.autograd.grad(losses.soft_similarity(d, 2.0).sum(), d)
lessons.verify("∂S/∂d_q = −σ_q (1 − (d_q + S)/γ)   vs autograd", gradients.soft_similarity_grad(d.detach(), 2.0), auto)

# %% [markdown]
# **Who is pulled, who is pushed?** The sign of $\partial S/\partial d_q$ alone does not say: it depends on the class.
# The loss of Eq. 7 (section 2) *falls* when the sample's own class becomes more similar and *rises* when
# another class does: $\partial L/\partial S_{y_i} < 0$ and $\partial L/\partial S_y > 0$ for $y\ne y_i$. By the chain rule
# $\partial L/\partial d_q = (\partial L/\partial S)(\partial S/\partial d_q)$, and gradient descent moves each distance against its derivative:
#
# | | $\partial S/\partial d_q < 0$ (near proxies) | $\partial S/\partial d_q > 0$ (beyond $\bar d+\gamma$) |
# |---|---|---|
# | own class $y_i$ | pulled towards the sample | pushed away |
# | another class | pushed away | pulled towards the sample |
#
# Checked on one sample of class 0, with three classes of three proxies each, $\gamma = 2$:

# %%
dist = torch.tensor([[[1.0, 2.0, 9.0], [2.0, 3.0, 10.0], [6.0, 7.0, 8.0]]], **f64).requires_grad_(True)  # (1, C, K)
label, lam_demo, delta_demo = torch.tensor([0]), 1.0, 0.5
S = losses.soft_similarity(dist, 2.0)
(dL_dd,) = torch.autograd.grad(losses.proxy_loss(S, label, lam_demo, delta_demo).sum(), dist)
chain = gradients.proxy_loss_grad(S.detach(), label, lam_demo, delta_demo)[..., None] * gradients.soft_similarity_grad(dist.detach(), 2.0)
lessons.verify("∂L/∂d = ∂L/∂S · ∂S/∂d   vs autograd", chain, dL_dd)
dS_dd = gradients.soft_similarity_grad(dist.detach(), 2.0)
print("class        d_q    ∂S/∂d_q   ∂L/∂d_q   gradient descent")
for y in range(3):
    for k in range(3):
        g = float(dL_dd[0, y, k])
        print(f"{'own (0)' if y == 0 else f'other ({y})':<10} {float(dist.detach()[0, y, k]):5.0f} {float(dS_dd[0, y, k]):+9.3f} {g:+9.3f}   "
              f"{'pulled in' if g > 0 else 'pushed away'}")
assert (torch.sign(dL_dd) == torch.sign(dS_dd) * torch.where(torch.arange(3) == 0, -1.0, 1.0)[None, :, None]).all()

# %% [markdown]
# **How hard is the push?** The figure below shows the weights $\sigma_q$ and the derivatives $\partial S/\partial d_q$ for one
# class at distances 1, 2, 4, 9. In the call with $\gamma = 0.5$ the second proxy has $\partial S/\partial d_q = +0.09$ against $-1.10$ on
# the nearest: where it exists, the push is an order of magnitude weaker than the pull. What $\partial S/\partial d_q$ mainly
# decides is *which* proxy is pulled — the nearest, through $\sigma_q$, the more so the smaller $\gamma$.

# %%
def show_soft(gamma=5.0):
    d = torch.tensor([1.0, 2.0, 4.0, 9.0], **f64)
    p = torch.softmax(-d / gamma, 0)
    g = gradients.soft_similarity_grad(d, gamma)
    fig, axs = plt.subplots(1, 2, figsize=(15, 5))
    ticks = dict(xticks=range(4), xticklabels=[f"d = {x:g}" for x in d.tolist()])
    axs[0].bar(range(4), p, color="#7f7f7f")
    axs[0].set(title=f"weights $\\sigma_q$;  S = {float(losses.soft_similarity(d, gamma)):.2f} (−min = −1, −mean = −4)", ylabel="$\\sigma_q$", **ticks)
    bars = axs[1].bar(range(4), g, color=["#2ca02c" if x < 0 else "#9467bd" for x in g])
    axs[1].bar_label(bars, labels=[f"{float(x):+.2f}" for x in g], fontsize=13)
    axs[1].axhline(0, color="k", lw=0.8)
    axs[1].set(title="$\\partial S/\\partial d_q$: green < 0, purple > 0", ylabel="$\\partial S/\\partial d_q$", **ticks)
    fig.suptitle(f"one class, four proxies, γ = {gamma:g}")
    fig.tight_layout()
    plt.show()


sl = dict(continuous_update=False)
interact(show_soft, gamma=FloatSlider(value=5.0, min=0.1, max=30, step=0.1, description="γ", **sl));

# %%
show_soft(gamma=0.5)  # the callback, called directly (a run without widgets draws it too)
g_half = gradients.soft_similarity_grad(torch.tensor([1.0, 2.0, 4.0, 9.0], **f64), 0.5)
print(f"γ = 0.5: push {float(g_half[1]):+.3f} on the second proxy vs pull {float(g_half[0]):+.3f} on the nearest")

# %% [markdown]
# **What $K > 1$ buys.** A 2-D toy: class 0 has two modes, at $(-2, 0)$ and $(2, 0)$, with class 1 between
# them at the origin and class 2 above. We train only the proxies (Euclidean, Eq. 5 + 7, $\gamma_E = 5$)
# with $K = 1$ and $K = 2$:

# %%
g = torch.Generator().manual_seed(0)
modes = {0: [(-2.0, 0.0), (2.0, 0.0)], 1: [(0.0, 0.0)], 2: [(0.0, 2.5)]}
X = torch.cat([torch.tensor(m, **f64) + 0.4 * torch.randn(60, 2, generator=g, **f64) for ms in modes.values() for m in ms])
Y = torch.tensor([y for y, ms in modes.items() for _ in ms for _ in range(60)])


def train_proxies(K, gamma=5.0, steps=lessons.pick(300, 150), seed=0):
    P = (0.3 * torch.randn(3, K, 2, generator=torch.Generator().manual_seed(seed), **f64)).requires_grad_(True)
    opt = torch.optim.Adam([P], lr=0.08)
    for _ in range(steps):
        loss = losses.proxy_loss(losses.soft_similarity(torch.cdist(X, P.view(-1, 2)).view(-1, 3, K), gamma), Y, 20.0, 0.1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    S = losses.soft_similarity(torch.cdist(X, P.view(-1, 2)).view(-1, 3, K), gamma)
    return P.detach(), float(loss.detach()), float((S.argmax(1) == Y).double().mean())


fig, axs = plt.subplots(1, 2, figsize=(15, 6), sharey=True)
for ax, K in zip(axs, (1, 2)):
    P, loss, acc = train_proxies(K)
    for y in range(3):
        color = COLORS["pos"] if y == 0 else ("#7f7f7f", "#2ca02c")[y - 1]
        ax.scatter(*X[Y == y].T, s=12, color=color, alpha=0.5, label=f"class {y}")
        ax.scatter(*P[y].T, s=400, marker="*", color=color, edgecolors="k", linewidths=1.5, zorder=4 if y == 0 else 3)
    ax.set(aspect="equal", xlabel="$x_1$", title=f"K = {K}: loss {loss:.3f}, nearest-class accuracy {100 * acc:.0f} %")
    print(f"K = {K}: class-0 proxies at {P[0].numpy().round(2).tolist()}, accuracy {100 * acc:.0f} %")
axs[0].set_ylabel("$x_2$")
axs[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="stars: proxies")
fig.tight_layout()

# %% [markdown]
# With one proxy, class 0 cannot be described: its proxy sits between class 1 and one mode, and the other
# mode is lost (75 % accuracy in the full run); with two, one proxy lands on each mode and every sample is classified
# correctly. A class with a single mode does not need its second proxy, and nothing in Eq. 5–7 places it:
# class 2's spare proxy drifts into class 1's cluster, harmlessly here (the loss is about 0.01).
#
# ## 2. The margin loss (Eq. 7)
#
# Per sample, with $S_y = S_*(x_i, y)$, a cross-entropy over classes of the logits $\ell_y = \lambda_*(S_y - \delta_*\,\mathbb 1[y=y_i])$:
#
# $$ L_*(x_i) = -\log\frac{e^{\lambda_*(S_{y_i}-\delta_*)}}{e^{\lambda_*(S_{y_i}-\delta_*)} + \sum_{y\ne y_i} e^{\lambda_* S_y}}, \qquad
# \frac{\partial L_*(x_i)}{\partial S_{y}} = \lambda_*\big(\operatorname{softmax}(\ell)_y - \mathbb 1[y=y_i]\big). $$
#
# The margin $\delta_*$ handicaps the true class: the loss only becomes small once
# $S_{y_i} > S_y + \delta_*$ for the other classes, by a few multiples of $1/\lambda_*$.

# %%
S = (-4 * torch.rand(6, 5, **f64)).requires_grad_(True)
y = torch.tensor([0, 1, 2, 3, 4, 0])
lam_h, delta_h = 20.0, 1.0
onehot = F.one_hot(y, 5).to(S.dtype)
manual = -torch.log_softmax(lam_h * (S - delta_h * onehot), 1).gather(1, y[:, None]).squeeze(1)
lessons.verify("proxy_loss == Eq. 7 written out", losses.proxy_loss(S, y, lam_h, delta_h), manual)
(auto,) = torch.autograd.grad(losses.proxy_loss(S, y, lam_h, delta_h).sum(), S)
lessons.verify("∂L/∂S = λ_H(softmax − onehot)   vs autograd", gradients.proxy_loss_grad(S.detach(), y, lam_h, delta_h), auto)

# %% [markdown]
# **Whose loss is it?** Eq. 7 is **SoftTriple's loss** (Qian et al. 2019), as the CHEST paper says: the same
# cross-entropy over classes of $\lambda(S_y - \delta\,\mathbb 1[y = y_i])$, with $S$ a soft maximum over each class's $K$
# proxies. SoftTriple computes $S$ from cosines, $S = \sum_q\operatorname{softmax}_q(\cos_q/\gamma)\cos_q$; CHEST keeps the loss
# and puts negative distances in place of the cosines (Eq. 5–6), in each space. The first cell below writes
# SoftTriple's loss out from its paper and checks that `proxy_loss(soft_similarity(−cos))` is exactly it.
#
# **Which family?** The own class appears in the denominator, so Eq. 7 is a softmax cross-entropy over all
# classes with a margin — the *normalised softmax* family. Its members differ in their logits:
# **NormSoftmax** (Zhai & Wu 2019) uses *cosines* of normalised embeddings and class weights, divided by a
# temperature — SoftTriple with $K = 1$ and no margin, as the first cell checks; **ProxyNCA++** (Teh et al.
# 2020) uses negative squared distances of normalised vectors; CHEST's $L_H$ uses negative hyperbolic distances.
# The original **ProxyNCA** (Movshovitz-Attias et al. 2017)
# leaves the positive out of the denominator, $-\log\big(e^{\ell_{y_i}}/\sum_{y\ne y_i}e^{\ell_y}\big)$. The difference shows as the
# sample moves away from the other classes: Eq. 7 is bounded below by 0, ProxyNCA's loss keeps falling.

# %%
emb_ = F.normalize(torch.randn(6, 8, **f64), dim=-1)  # 6 samples, unit vectors
W_ = F.normalize(torch.randn(5, 3, 8, **f64), dim=-1)  # 5 classes x K = 3 unit-norm proxies
lab_ = torch.tensor([0, 1, 2, 3, 4, 0])
cos_ = torch.einsum("bd,ykd->byk", emb_, W_)  # (B, C, K) cosines
gam_, lam_, dlt_ = 0.1, 20.0, 0.01  # SoftTriple's γ, λ and δ
S_st = (torch.softmax(cos_ / gam_, -1) * cos_).sum(-1)  # SoftTriple's relaxed similarity S_{i,y}
pos = torch.exp(lam_ * (S_st[torch.arange(6), lab_] - dlt_))
neg = (torch.exp(lam_ * S_st) * (1 - F.one_hot(lab_, 5).to(S_st.dtype))).sum(1)
softtriple = -torch.log(pos / (pos + neg))  # SoftTriple's loss, written out from its paper
lessons.verify("Eq. 7 on soft_similarity(−cos) == SoftTriple's loss", losses.proxy_loss(losses.soft_similarity(-cos_, gam_), lab_, lam_, dlt_), softtriple)
T_ = 0.05  # NormSoftmax: cosine logits over a temperature, one weight vector per class, no margin
normsoftmax = F.cross_entropy(cos_[..., 0] / T_, lab_, reduction="none")
lessons.verify("K = 1, δ = 0, λ = 1/T: Eq. 7 on cosines == NormSoftmax", losses.proxy_loss(losses.soft_similarity(-cos_[..., :1], gam_), lab_, 1 / T_, 0.0), normsoftmax)

# %%
print("gap S_own − S_other    Eq. 7 (own class in the denominator)    ProxyNCA (without it)")
for gap in (0.0, 0.5, 1.0, 2.0, 4.0):
    S_gap = torch.tensor([[gap, 0.0, 0.0, 0.0]], **f64)
    logits = lam_h * (S_gap - delta_h * F.one_hot(torch.tensor([0]), 4))
    eq7 = losses.proxy_loss(S_gap, torch.tensor([0]), lam_h, delta_h)
    lessons.verify(f"  gap {gap}: Eq. 7 == −log softmax over all classes", eq7, -torch.log_softmax(logits, 1)[:, 0])
    nca = -logits[0, 0] + torch.logsumexp(logits[0, 1:], 0)
    print(f"{gap:>8}  {float(eq7) + 0.0:>30.3g}  {float(nca):>30.3g}")  # + 0.0: print −0.0 as 0

# %% [markdown]
# ## 3. Why hyperbolic distances need a different scale than cosines
#
# SoftTriple uses cosine similarities, all in $[-1, 1]$, with a scale of about 20 and a tiny margin
# ($\delta = 0.01$). CHEST's similarities are *negative distances*. With the feature clipping of
# lesson 01 every point has $d_H(0,x)\le 2r$, so $S_H\in[-4r, 0] = [-9.2, 0]$: a range almost five times
# wider than the cosine's, and the margins the paper uses ($\delta_H\in\{1, 5, 10, 20\}$) are in these units.
# Euclidean distances ($S_E$) are not bounded at all. Below, the similarities of a trained model to its
# classes, positive class red and negative classes blue as in the CHEST paper's Fig. 3: the cosines of
# $x^E$ to the Euclidean proxies, and the $S_H$, $S_E$ of the last training batch (`Trainer.similarities()`).

# %%
steps = lessons.pick(400, 150)
tr = Trainer(TrainConfig.preset("demo-tree", eval_every=0, eval_train=False))
for _ in tr.run(steps):
    pass
sim = tr.similarities()
idx = torch.randperm(len(tr.train_set), generator=torch.Generator().manual_seed(0))[:256]
x, lab = tr.train_set.data[idx], tr.train_set.labels[idx]
with torch.no_grad():
    x_e, x_h = tr.model(x)
P_e = tr.proxies()["e"]  # (C, K, D_E)
cos = F.normalize(x_e, dim=-1) @ F.normalize(P_e.reshape(-1, P_e.shape[-1]), dim=-1).T  # (256, C K)
own = (torch.arange(P_e.shape[0]).repeat_interleave(P_e.shape[1])[None, :] == lab[:, None])
panels = (("cos($x^E$, $p^E$), each proxy", cos[own], cos[~own]), ("$S_H$ (Eq. 6)", sim.h_pos, sim.h_neg),
          ("$S_E$ (Eq. 5)", sim.e_pos, sim.e_neg))
fig, axs = plt.subplots(1, 3, figsize=(17, 5))
for ax, (name, pos, neg) in zip(axs, panels):
    pos, neg = np.asarray(pos), np.asarray(neg)
    edges = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()), 40)
    ax.hist(neg, bins=edges, density=True, color=COLORS["neg"], alpha=0.55, label="negative classes")
    ax.hist(pos, bins=edges, density=True, color=COLORS["pos"], alpha=0.55, label="positive class")
    ax.set(xlabel=name, title=f"range {min(pos.min(), neg.min()):.1f} … {max(pos.max(), neg.max()):.1f}")
axs[1].axvline(-4 * tr.config.r, color="k", ls="--", lw=1.5, label="−4r: the lowest $S_H$ clipping allows")
axs[0].set_ylabel("density")
fig.legend(*axs[1].get_legend_handles_labels(), loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
fig.suptitle(f"similarities after {steps} steps: positive class red, negative classes blue")
fig.tight_layout(rect=(0, 0.08, 1, 1))
lessons.verify("S_H ≥ −4r on the batch", max(0.0, -4 * tr.config.r - float(np.min(sim.h_neg))), 0.0, atol=1e-4)

# %% [markdown]
# How much does the range matter for the scale? Write $\lambda_*$, $\delta_*$ for the scale and margin of Eq. 7 in either
# space (or SoftTriple's, on cosines). Take a sample whose own class is ahead of $C-1 = 9$ equally
# similar classes by a *gap* $g = S_{y_i} - S_y$. Eq. 7 then depends on $g$ only, $L(g) = \log\big(1 + 9e^{-\lambda_*(g-\delta_*)}\big)$ — the
# same curve for cosines and distances. What differs is how far $g$ can go: at most $2$ for cosines,
# $4r = 9.2$ for clipped hyperbolic distances. Plotted against the gap **as a fraction of its largest
# possible value**, the hyperbolic curve is $4.6\times$ steeper: $\lambda_H = 20$ on $S_H$ acts like a scale of 92 on cosines.

# %%
def show_scale(lam=20.0, delta=1.0):
    fig, ax = plt.subplots(figsize=(13, 5), layout="constrained")
    frac = torch.linspace(-1, 1, 401, **f64)
    for name, g_max, color in (("cosine: largest gap 2", 2.0, COLORS["E"]), ("hyperbolic, r = 2.3: largest gap 4r = 9.2", 9.2, COLORS["H"])):
        S = torch.cat([(frac * g_max)[:, None], torch.zeros(len(frac), 9, **f64)], 1)
        L = losses.proxy_loss(S, torch.zeros(len(frac), dtype=torch.long), lam, delta)
        L_best = float(F.softplus(torch.tensor(math.log(9) - lam * (g_max - delta), **f64)))  # L(g_max), without round-off
        ax.plot(frac, L, color=color, lw=3, label=f"{name}:  L at the largest gap = {L_best:.2g}")
        if delta <= g_max:
            ax.axvline(delta / g_max, color=color, ls=":", lw=2)
    ax.axhline(math.log(10), color="0.5", ls="--", lw=1, label="log C = log 10: no preference")
    ax.set(xlabel="gap $S_{y_i} - S_y$ as a fraction of its largest possible value (dotted: gap = δ)", ylabel="L (Eq. 7)",
           yscale="log", ylim=(1e-6, 400), title=f"scale $\\lambda_*$ = {lam:g}, margin $\\delta_*$ = {delta:g}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=12)
    plt.show()


interact(show_scale, lam=FloatSlider(value=20, min=1, max=60, step=1, description="λ_*", **sl),
         delta=FloatSlider(value=1, min=0, max=20, step=0.5, description="δ_*", **sl));

# %%
show_scale(lam=20, delta=1)  # the callback, called directly (a run without widgets draws it too)
for name, g_max, delta in (("cosine, δ = 0.01 (SoftTriple)", 2.0, 0.01), ("hyperbolic, δ_H = 1", 9.2, 1.0)):
    lam_min = math.log(9 / math.expm1(0.01)) / (g_max - delta)  # smallest scale with L(g_max) ≤ 0.01
    L_at = float(losses.proxy_loss(torch.tensor([[g_max] + [0.0] * 9], **f64), torch.tensor([0]), lam_min, delta))
    print(f"{name:<30}: the best possible configuration reaches L ≤ 0.01 only for λ_* ≥ {lam_min:.2f}  (check: L = {L_at:.4f})")
L20 = float(losses.proxy_loss(torch.tensor([[9.2] + [0.0] * 9], **f64), torch.tensor([0]), 20.0, 20.0))
print(f"δ_H = 20 > 4r: at the largest possible gap L = {L20:.0f} ≈ λ_H(δ_H − 4r) = {20 * (20 - 9.2):.0f} — a margin that can never be met")

# %% [markdown]
# So a cosine loss needs a scale of a few units before even a perfect configuration is cheap; with clipped
# hyperbolic distances $\lambda_H\approx 1$ suffices, and at the paper's $\lambda_H = 20$ the loss saturates within a small
# fraction of the range: $\delta_H$ decides where. $\delta_H = 20$ exceeds the whole range, so its loss never stops pulling.
#
# ## 4. The total loss (Eq. 10), term by term
#
# $$ L = \frac1N\sum_i\big(\eta_H L_H(x_i) + \eta_E L_E(x_i)\big) + \frac{\tau}{M}\sum_t L_{\mathrm{HypHC}}(t). $$
#
# $L_H$ uses $x^H$ and the proxies through the **same** hyperbolic head, $P_H = \exp_0(\mathrm{clip}(WP_E + b))$;
# $L_E$ uses $x^E$ and the unnormalised Euclidean proxies $P_E$; the HypHC term (lesson 04) acts on
# the proxies only. Rebuild `chest_loss` from its parts on random tensors:

# %%
B, C, K, De, Dh, c = 12, 4, 3, 8, 5, 0.5
x_e = torch.randn(B, De, **f64, requires_grad=True)
x_h = poincare.expmap0(0.5 * torch.randn(B, Dh, **f64), c).requires_grad_(True)
P_e, P_h = torch.randn(C, K, De, **f64), poincare.expmap0(0.5 * torch.randn(C, K, Dh, **f64), c)
y = torch.arange(B) % C
trip = losses.sample_triplets(C, K, 16, torch.Generator().manual_seed(0))
hp = dict(c=c, gamma_e=5.0, gamma_h=5.0, lambda_e=20.0, lambda_h=20.0, delta_e=1.0, delta_h=5.0, eta_e=1.0, eta_h=1.0, tau=0.5)
out = losses.chest_loss(x_e, x_h, y, P_e, P_h, trip, **hp)

s_h = losses.soft_similarity(poincare.dist(x_h[:, None, None], P_h[None], c), 5.0)  # (B, C): Eq. 6
s_e = losses.soft_similarity((x_e[:, None, None] - P_e[None]).norm(dim=-1), 5.0)  # Eq. 5
l_h, l_e = losses.proxy_loss(s_h, y, 20.0, 5.0).mean(), losses.proxy_loss(s_e, y, 20.0, 1.0).mean()
l_hyp = losses.hyphc_loss(P_h, trip, c).mean()
lessons.verify("L_H  (Eq. 6 + 7)", out.l_h, l_h)
lessons.verify("L_E  (Eq. 5 + 7)", out.l_e, l_e)
lessons.verify("L = η_H L_H + η_E L_E + τ L_HypHC   (Eq. 10)", out.loss, l_h + l_e + 0.5 * l_hyp)

# %% [markdown]
# **Each term's gradient, by the chain rule.** For sample $i$ the hyperbolic part is
#
# $$ \frac{\partial L_H}{\partial x^H_i} = \frac1N\sum_y\frac{\partial L_H(x_i)}{\partial S_{iy}}\sum_q\frac{\partial S_{iy}}{\partial d_{iyq}}\,
# \frac{\partial d_H(x^H_i, p^H_{y,q})}{\partial x^H_i}, $$
#
# three factors we have all derived: `proxy_loss_grad` (Eq. 7), `soft_similarity_grad` (Eq. 5–6) and
# `dist_grad` (Eq. 2). The Euclidean part is the same with $\partial\|x-p\|/\partial x = (x-p)/\|x-p\|$.

# %%
def chain_rule(S, dists, dgrad, lam, delta):
    outer = gradients.proxy_loss_grad(S.detach(), y, lam, delta) / B  # (B, C)
    inner = gradients.soft_similarity_grad(dists.detach(), 5.0)  # (B, C, K)
    return ((outer[..., None] * inner)[..., None] * dgrad).sum((1, 2))


d_h = poincare.dist(x_h[:, None, None], P_h[None], c)
g_h = chain_rule(s_h, d_h, gradients.dist_grad(x_h.detach()[:, None, None], P_h[None], c), 20.0, 5.0)
(auto_h,) = torch.autograd.grad(out.l_h, x_h, retain_graph=True)
lessons.verify("∂L_H/∂x^H by hand == autograd", g_h, auto_h)
diff = x_e.detach()[:, None, None] - P_e[None]
g_e = chain_rule(s_e, diff.norm(dim=-1), diff / diff.norm(dim=-1, keepdim=True), 20.0, 1.0)
(auto_e,) = torch.autograd.grad(out.l_e, x_e)
lessons.verify("∂L_E/∂x^E by hand == autograd", g_e, auto_e)

# %% [markdown]
# The HypHC term has no closed-form gradient in the kit (the LCA depth is a composition of several
# maps); check autograd against finite differences instead (`torch.autograd.gradcheck`, float64).
# One subtlety: by default the similarities $\omega$ of Eq. 8 are treated as *constants* each step, as in
# HypHC (`detach_similarity=True`), so the gradient the optimiser sees is deliberately *not* the
# derivative of the loss value. Finite differences see the full function, so the check uses
# `detach_similarity=False`:

# %%
v = (0.5 * torch.randn(C * K, Dh, **f64)).requires_grad_(True)
ok = torch.autograd.gradcheck(lambda v: losses.hyphc_loss(poincare.expmap0(v, c), trip, c, detach_similarity=False).mean(), (v,))
print("✓ HypHC gradient == finite differences:", ok)

# %% [markdown]
# ## 5. Implement it yourself
#
# Write, in plain torch (no `chestlab` inside):
#
# * `my_soft_similarity(d, gamma)`: Eq. 5–6 for distances `d` of shape `(..., K)`;
# * `my_proxy_loss(S, labels, lam, delta)`: Eq. 7 per sample, `S` of shape `(B, C)`;
# * `my_l_h(x_h, P_h, labels, c, gamma, lam, delta)`: the mean of $L_H$ over a batch — the Poincaré distances
#   from `x_h` `(B, D)` to the proxies `P_h` `(C, K, D)` (Eq. 2, as in lesson 01), then Eq. 6 and Eq. 7.
#
# The cell below holds a reference solution, **collapsed**: write your own version into it (or in a new
# cell above the check) before you expand it. Then run the check.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_soft_similarity(d, gamma):
    p = torch.softmax(-d / gamma, dim=-1)
    return -(p * d).sum(-1)


def my_proxy_loss(S, labels, lam, delta):
    logits = lam * S
    logits = logits - lam * delta * torch.nn.functional.one_hot(labels, S.shape[1]).to(S.dtype)
    return -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)


def my_l_h(x_h, P_h, labels, c, gamma, lam, delta):
    x, p = x_h[:, None, None, :], P_h[None]  # (B, 1, 1, D), (1, C, K, D)
    xy = (x * p).sum(-1)
    x2, p2 = x.pow(2).sum(-1), p.pow(2).sum(-1)
    u = (x - p).norm(dim=-1) / torch.sqrt(1 - 2 * c * xy + c**2 * x2 * p2)  # ‖(−x) ⊕ p‖
    d = 2 / c**0.5 * torch.atanh(c**0.5 * u)  # (B, C, K): Eq. 2
    return my_proxy_loss(my_soft_similarity(d, gamma), labels, lam, delta).mean()


# %%
d = 4 * torch.rand(7, 5, 3, **f64)
S = -4 * torch.rand(6, 5, **f64)
lessons.verify("my_soft_similarity == losses.soft_similarity   (Eq. 5–6)", my_soft_similarity(d, 2.0), losses.soft_similarity(d, 2.0))
lessons.verify("my_proxy_loss == losses.proxy_loss   (Eq. 7)", my_proxy_loss(S, y[:6] % 5, 20.0, 1.0), losses.proxy_loss(S, y[:6] % 5, 20.0, 1.0))
lessons.verify("my_l_h == chest_loss(...).l_h   (Eq. 6 + 7)", my_l_h(x_h.detach(), P_h, y, c, 5.0, 20.0, 5.0), out.l_h, rtol=1e-8)

# %% [markdown]
# **Check your answers to exercises 1 and 2** (at the end). Define `ex1_logits(d, y, lam, delta)` — the logits of
# the cross-entropy that Eq. 6–7 become with $K = 1$ — and `ex2_loss(rho)` and `ex2_rho` in a new cell above
# this one, and run the cell below: it compares them with `losses.proxy_loss` on `losses.soft_similarity`.
# Which loss of the literature exercise 1 gives, and exercise 3, are questions to answer in words: no check.

# %%


def _fmt(t):  # a few numbers of a tensor, for the messages
    t = torch.as_tensor(t).detach().flatten()
    return "[" + ", ".join(f"{float(v):.4g}" for v in t[:4]) + (", …]" if len(t) > 4 else "]")


def check_exercises(ex1_logits=None, ex2_loss=None, ex2_rho=None):
    """Compare your answers to exercises 1 and 2 with chestlab.losses; raise AssertionError if one is off."""
    if ex1_logits is None:
        print("exercise 1: define ex1_logits(d, y, lam, delta) and run this cell again")
    else:
        gen = torch.Generator().manual_seed(3)
        d_ = 4 * torch.rand(6, 5, generator=gen, **f64)  # distances of 6 samples to the single proxy of 5 classes
        y_ = torch.tensor([0, 1, 2, 3, 4, 2])
        for lam, delta, gamma in ((20.0, 1.0, 5.0), (4.0, 0.5, 0.1)):
            want = losses.proxy_loss(losses.soft_similarity(d_[..., None], gamma), y_, lam, delta)  # Eq. 6-7, K = 1
            logits = torch.as_tensor(ex1_logits(d_, y_, lam, delta))
            yours = F.cross_entropy(logits, y_, reduction="none")
            assert torch.allclose(yours, want, rtol=1e-9), (
                f"exercise 1 (λ = {lam}, δ = {delta}): the cross-entropy of your logits is {_fmt(yours)}, "
                f"Eq. 6–7 give {_fmt(want)} — expected logits −λ d − λ δ on the own class (the margin handicaps it)")
        print("✓ exercise 1: the cross-entropy of your logits == Eq. 6–7 with K = 1")
    C, lam, delta = 10, 20.0, 1.0

    def lib(rho):  # the sample at its proxy (S = 0), the 9 other proxies at distance rho (S = −rho)
        return float(losses.proxy_loss(torch.tensor([[0.0] + [-rho] * (C - 1)], **f64), torch.tensor([0]), lam, delta))

    if ex2_loss is None:
        print("exercise 2: define ex2_loss(rho) and run this cell again")
    else:
        for rho in (0.5, 1.0, 1.34, 2.0):
            assert math.isclose(ex2_loss(rho), lib(rho), rel_tol=1e-6, abs_tol=1e-12), (
                f"exercise 2: your L_H(ρ = {rho}) = {ex2_loss(rho):.6g}, losses.proxy_loss gives {lib(rho):.6g} "
                f"(λ_H = 20, δ_H = 1, C = 10; S = 0 for the own class, −ρ for the 9 others)")
        print("✓ exercise 2: your L_H(ρ) == losses.proxy_loss")
    if ex2_rho is None:
        print("exercise 2: define ex2_rho and run this cell again")
    else:
        lo, hi = 0.0, 5.0
        for _ in range(60):  # where the library's loss crosses 0.01 (it falls with rho)
            lo, hi = ((lo + hi) / 2, hi) if lib((lo + hi) / 2) >= 0.01 else (lo, (lo + hi) / 2)
        assert abs(ex2_rho - hi) < 0.005, (
            f"exercise 2: your ρ = {ex2_rho:.4g} gives L_H = {lib(ex2_rho):.4g}, expected the ρ where L_H drops below 0.01: "
            f"{hi:.4f} (ρ must exceed δ_H by a few multiples of 1/λ_H)")
        print(f"✓ exercise 2: L_H < 0.01 from ρ ≈ {hi:.3f}")


check_exercises(globals().get("ex1_logits"), globals().get("ex2_loss"), globals().get("ex2_rho"))
lessons.refuses(check_exercises, dict(ex1_logits=lambda d, y, lam, delta: -lam * d), dict(ex2_loss=lambda rho: math.log(1 + 9 * math.exp(-20 * rho))),
                dict(ex2_rho=1.0))  # the check does fail on a wrong answer (the margin forgotten twice; ρ = δ_H)

# %% [markdown]
# ## Summary
#
# * Eq. 5–6: $S(x, y) = -\sum_q\operatorname{softmax}_q(-d_q/\gamma)d_q$, a soft minimum of the distances to the class's $K$ proxies;
#   $\partial S/\partial d_q = -\sigma_q(1 - (d_q - \bar d)/\gamma)$.
# * For the own class the loss pulls the near proxies in and pushes a proxy beyond $\bar d + \gamma$ away; for other
#   classes the signs flip. The push is weak (+0.09 against −1.10 in the example); $\sigma_q$ decides which proxy is
#   pulled. With $K = 2$ a two-mode class is covered, with $K = 1$ it is not.
# * Eq. 7 is SoftTriple's loss, a softmax cross-entropy over all classes with logits $\lambda_*(S_y - \delta_*\mathbb 1[y = y_i])$,
#   with negative distances where SoftTriple has cosines: the normalised-softmax family with a margin
#   (NormSoftmax on cosines, ProxyNCA++ on distances), bounded below by 0 — not ProxyNCA.
# * Clipped hyperbolic similarities span $[-4r, 0]$, 4.6 times the cosine's range: the same scale is 4.6 times
#   steeper, margins are in units of distance, and $\delta_H > 4r$ can never be met.
# * Eq. 10 adds $\eta_H L_H + \eta_E L_E$ and the HypHC term; every gradient follows by the chain rule from
#   `proxy_loss_grad`, `soft_similarity_grad` and `dist_grad`.

# %% [markdown]
# ## Exercises
#
# 1. With $K = 1$, show that Eq. 6–7 reduce to a softmax cross-entropy over classes with logits $-\lambda_H d_H(x, p_{y,1})$
#    (and a margin). Which loss of the literature is that — and why not ProxyNCA? (Section 5 checks your logits:
#    define `ex1_logits(d, y, lam, delta)`, the logits `(B, C)` from the distances `d` `(B, C)` of each sample to
#    each class's proxy and the labels `y`.)
# 2. For a sample exactly at its proxy and all other proxies at distance $\rho$, compute $L_H$ for
#    $\lambda_H = 20$, $\delta_H = 1$, $C = 10$. At which $\rho$ does it drop below 0.01? (Section 5 checks both:
#    define `ex2_loss(rho)`, your $L_H$ as a function of $\rho$, and `ex2_rho`, the threshold to 0.005.)
# 3. Why must the proxies be mapped by the *same* head as the data (Sec. 3.2 of the CHEST paper)? What goes
#    wrong if $P_H$ were free points of the ball while $x^H$ are clipped?
#
# <details><summary>Solution 1</summary>
#
# With one proxy the softmax over $q$ is 1, so $S(x, y) = -d_H(x, p_{y,1})$ and Eq. 7 is a softmax cross-entropy over
# all classes of the logits $-\lambda_H d_H(x, p_{y,1}) - \lambda_H\delta_H\,\mathbb 1[y = y_i]$. The own class is in the denominator: that
# is SoftTriple's loss with one centre per class and distances instead of cosines: a normalised-softmax loss
# with a margin and distances as logits, like ProxyNCA++ (NormSoftmax has the same form with cosines). ProxyNCA
# leaves the positive out of the denominator; section 2 shows how the two differ.
# ```python
# d = torch.rand(4, 6, 1, dtype=torch.float64)
# lessons.verify("K = 1", losses.soft_similarity(d, 5.0), -d[..., 0])
#
#
# def ex1_logits(d, y, lam, delta):
#     return -lam * d - lam * delta * torch.nn.functional.one_hot(y, d.shape[1]).to(d.dtype)
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# $S_{y_i} = 0$, $S_y = -\rho$: $L = \log(1 + 9e^{-\lambda_H(\rho - \delta_H)})$; $L < 0.01$ needs
# $\rho > \delta_H + \ln(9/0.01005)/\lambda_H \approx 1.34$.
# ```python
# def ex2_loss(rho, lam=20.0, delta=1.0, C=10):
#     return math.log(1 + (C - 1) * math.exp(-lam * (rho - delta)))
#
#
# ex2_rho = 1.0 + math.log(9 / math.expm1(0.01)) / 20  # L = 0.01 ⇔ 9 e^{−λ(ρ − δ)} = e^{0.01} − 1: ρ ≈ 1.340
# for rho in (1.0, 1.2, 1.34, 1.5):
#     S = torch.tensor([[0.0] + [-rho] * 9])
#     print(rho, ex2_loss(rho), float(losses.proxy_loss(S, torch.tensor([0]), 20.0, 1.0)))
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# Free proxies could sit anywhere in the ball, in particular farther out than $\tanh(\sqrt c r)/\sqrt c$
# where no clipped embedding can follow; the distances to them would be dominated by the proxies'
# own depth, and float32 would lose them near the boundary (lesson 01). Sharing the head also ties
# the two spaces together: $P_H$ moves when $W$ moves, so $L_E$ and $L_H$ shape one set of proxies.
# </details>
