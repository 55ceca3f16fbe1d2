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
# the soft similarity over $K$ proxies (Eq. 5–6), the margin/scale loss (Eq. 7), why hyperbolic
# distances need different scales than SoftTriple's cosines, and the total (Eq. 10). Every gradient is
# derived and checked against autograd (`chestlab.gradients`). Equations: spec `shared/spec/chest.md`.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from ipywidgets import FloatSlider, interact

from chestlab import gradients, lessons, losses, poincare
from chestlab.train import Trainer, TrainConfig

f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. Soft similarity over $K$ proxies (Eq. 5–6)
#
# SoftTriple (Qian et al. 2019) gives each class $K$ centres, because one class can have several
# modes (a car from the front and from the side). The similarity to a class is a *soft maximum* of
# the similarities to its centres. CHEST uses distances, $d_k = D(x, p_{c,k})$ with $D_E$ the Euclidean
# distance (Eq. 5) or $D_H$ the Poincaré distance (Eq. 6):
#
# $$ S(x, p_c) = -\sum_k \operatorname{softmax}_k(-d_k/\gamma)\,d_k . $$
#
# $\gamma\to0$: $S\to-\min_k d_k$ (only the nearest proxy counts); $\gamma\to\infty$: $S\to-\text{mean}_k d_k$.

# %%
d = torch.tensor([[1.0, 2.0, 4.0, 7.0]], **f64)
lessons.verify("Eq. 5/6 formula", losses.soft_similarity(d, 5.0), -(torch.softmax(-d / 5, -1) * d).sum(-1))
lessons.verify("γ → 0 gives −min_k d_k", losses.soft_similarity(d, 1e-3), -d.min(), rtol=1e-6)
lessons.verify("γ → ∞ gives −mean_k d_k", losses.soft_similarity(d, 1e7), -d.mean(), rtol=1e-6)

# %% [markdown]
# **Gradient.** With $p = \operatorname{softmax}(-d/\gamma)$, $\partial p_l/\partial d_k = -p_l(\mathbb 1[l=k]-p_k)/\gamma$, so
#
# $$ \frac{\partial S}{\partial d_k} = -p_k + \frac1\gamma\sum_l p_l(\mathbb 1[l=k]-p_k)\,d_l
# = -p_k\Big(1 - \frac{d_k + S}{\gamma}\Big). $$
#
# $d_k + S = d_k - \bar d$: a proxy farther than the soft mean by more than $\gamma$ gets a *positive*
# derivative — the loss pushes that proxy *away* from the sample rather than pulling it in. That is how
# the $K$ proxies of a class specialise on different modes.

# %%
d = (3 * torch.rand(6, 4, **f64)).requires_grad_(True)
(auto,) = torch.autograd.grad(losses.soft_similarity(d, 2.0).sum(), d)
lessons.verify("∂S/∂d_k = −p_k (1 − (d_k + S)/γ)   vs autograd", gradients.soft_similarity_grad(d.detach(), 2.0), auto)


# %%
def show_soft(gamma=5.0):
    d = torch.tensor([1.0, 2.0, 4.0, 9.0], **f64)
    p = torch.softmax(-d / gamma, 0)
    g = gradients.soft_similarity_grad(d, gamma)
    fig, axs = plt.subplots(1, 2, figsize=(8, 2.6))
    axs[0].bar(range(4), p, color="C0")
    axs[0].set(title=f"weights p_k, S = {float(losses.soft_similarity(d, gamma)):.2f} (min −1, mean −4)", xticks=range(4),
               xticklabels=[f"d={x:g}" for x in d.tolist()])
    axs[1].bar(range(4), g, color=["C2" if x < 0 else "C3" for x in g])
    axs[1].axhline(0, color="k", lw=0.5)
    axs[1].set(title="∂S/∂d_k (red: pushed away)", xticks=range(4), xticklabels=[f"d={x:g}" for x in d.tolist()])
    plt.show()


sl = dict(continuous_update=False)
interact(show_soft, gamma=FloatSlider(value=5.0, min=0.1, max=30, step=0.1, description="γ", **sl));

# %%
show_soft(gamma=0.5)  # the callback once more (CI runs it)

# %% [markdown]
# ## 2. The margin loss (Eq. 7)
#
# Per sample, a cross-entropy over classes of the logits $\ell_c = \lambda(S_c - \delta\,\mathbb 1[c=c_i])$:
#
# $$ L(x_i) = -\log\frac{e^{\lambda(S_{c_i}-\delta)}}{e^{\lambda(S_{c_i}-\delta)} + \sum_{c\ne c_i} e^{\lambda S_c}}, \qquad
# \frac{\partial L_i}{\partial S_{i,c}} = \lambda\big(\operatorname{softmax}(\ell_i)_c - \mathbb 1[c=c_i]\big). $$
#
# The margin $\delta$ handicaps the true class: the loss only becomes small once
# $S_{c_i} > S_c + \delta$ for the other classes, by a few multiples of $1/\lambda$.

# %%
S = (-4 * torch.rand(6, 5, **f64)).requires_grad_(True)
y = torch.tensor([0, 1, 2, 3, 4, 0])
lam, delta = 20.0, 1.0
onehot = F.one_hot(y, 5).to(S.dtype)
manual = -torch.log_softmax(lam * (S - delta * onehot), 1).gather(1, y[:, None]).squeeze(1)
lessons.verify("proxy_loss == Eq. 7 written out", losses.proxy_loss(S, y, lam, delta), manual)
(auto,) = torch.autograd.grad(losses.proxy_loss(S, y, lam, delta).sum(), S)
lessons.verify("∂L/∂S = λ(softmax − onehot)   vs autograd", gradients.proxy_loss_grad(S.detach(), y, lam, delta), auto)

# %% [markdown]
# ## 3. Why hyperbolic distances need a different scale than cosines
#
# SoftTriple uses cosine similarities, all in $[-1, 1]$, with $\lambda\approx 20$ and a tiny margin
# ($\delta = 0.01$). CHEST's similarities are *negative distances*. With the feature clipping of
# lesson 01 every point has $D_H(0,x)\le 2r$, so $S_H\in[-4r, 0] = [-9.2, 0]$: a range almost five times
# wider than the cosine's, and the margins of Table 1 ($\delta_H\in\{1, 5, 10, 20\}$) are in these units.
# $\delta_H = 20$ exceeds the whole range — a margin that can never be met and so never stops
# pulling. Euclidean distances ($S_E$) are not bounded at all. Below, the similarities of a
# trained model's batch (`Trainer.similarities()`) and the cosines of the same batch:

# %%
steps = lessons.pick(400, 150)
tr = Trainer(TrainConfig.preset("demo-tree", eval_every=0, eval_train=False))
for _ in tr.run(steps):
    pass
sim = tr.similarities()
x = tr.train_set.data[:256]
with torch.no_grad():
    x_e, x_h = tr.model(x)
cos = F.normalize(x_e, dim=-1) @ F.normalize(tr.proxies()["e"].reshape(-1, x_e.shape[1]), dim=-1).T
fig, ax = plt.subplots(figsize=(7, 2.6))
for name, vals in (("cos(x^E, p^E)", cos.flatten()), ("S_H (negative Poincaré dist.)", torch.cat([torch.as_tensor(sim.h_pos), torch.as_tensor(sim.h_neg)])),
                   ("S_E (negative Euclidean dist.)", torch.cat([torch.as_tensor(sim.e_pos), torch.as_tensor(sim.e_neg)]))):
    ax.hist(vals.numpy(), bins=60, alpha=0.5, density=True, label=f"{name}: range {float(vals.min()):.1f} … {float(vals.max()):.1f}")
ax.axvline(-4 * tr.config.r, color="k", ls="--", lw=1, label="−4r: the lowest S_H allowed by clipping")
ax.legend(fontsize=7, frameon=False)
ax.set(xlabel="similarity", title=f"after {steps} steps");


# %% [markdown]
# The slider shows the per-sample loss of Eq. 7 for a sample whose own class is ahead of $C-1 = 9$
# equally similar classes by a *gap* $g = S_{c_i} - S_c$, over the gap range each similarity can reach:
# with cosines the loss is stuck at a large value unless $\lambda$ is big; with hyperbolic
# distances $\lambda = 20$ saturates the softmax within a fraction of the range, and $\delta$ decides where.

# %%
def show_scale(lam=20.0, delta=1.0):
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, hi, color in (("cosine: gap ∈ [−2, 2]", 2.0, "C1"), ("hyperbolic, r = 2.3: gap ∈ [−9.2, 9.2]", 9.2, "C0")):
        g = torch.linspace(-hi, hi, 200, **f64)
        S = torch.cat([g[:, None], torch.zeros(len(g), 9, **f64)], 1)
        Lg = losses.proxy_loss(S, torch.zeros(len(g), dtype=torch.long), lam, delta)
        ax.plot(g, Lg, color=color, label=name)
    ax.axvline(delta, color="k", ls=":", lw=1, label="gap = δ")
    ax.set(xlabel="gap S_own − S_other", ylabel="L (Eq. 7)", yscale="log", ylim=(1e-6, 400), title=f"λ = {lam:g}, δ = {delta:g}")
    ax.legend(fontsize=7, frameon=False)
    plt.show()


interact(show_scale, lam=FloatSlider(value=20, min=1, max=60, step=1, description="λ", **sl),
         delta=FloatSlider(value=1, min=0, max=20, step=0.5, description="δ", **sl));

# %%
show_scale(lam=20, delta=10)  # the callback once more (CI runs it)

# %% [markdown]
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
# $$ \frac{\partial L_H}{\partial x^H_i} = \frac1N\sum_c\frac{\partial L_i}{\partial S_{ic}}\sum_k\frac{\partial S_{ic}}{\partial d_{ick}}\,
# \frac{\partial D_H(x^H_i, p_{ck})}{\partial x^H_i}, $$
#
# three factors we have all derived: `proxy_loss_grad` (Eq. 7), `soft_similarity_grad` (Eq. 5–6) and
# `dist_grad` (Eq. 2). The Euclidean part is the same with $\partial\|x-p\|/\partial x = (x-p)/\|x-p\|$.

# %%
def chain(S, dists, dgrad, lam, delta):
    outer = gradients.proxy_loss_grad(S.detach(), y, lam, delta) / B  # (B, C)
    inner = gradients.soft_similarity_grad(dists.detach(), 5.0)  # (B, C, K)
    return ((outer[..., None] * inner)[..., None] * dgrad).sum((1, 2))


d_h = poincare.dist(x_h[:, None, None], P_h[None], c)
g_h = chain(s_h, d_h, gradients.dist_grad(x_h.detach()[:, None, None], P_h[None], c), 20.0, 5.0)
(auto_h,) = torch.autograd.grad(out.l_h, x_h, retain_graph=True)
lessons.verify("∂L_H/∂x^H by hand == autograd", g_h, auto_h)
diff = x_e.detach()[:, None, None] - P_e[None]
g_e = chain(s_e, diff.norm(dim=-1), diff / diff.norm(dim=-1, keepdim=True), 20.0, 1.0)
(auto_e,) = torch.autograd.grad(out.l_e, x_e)
lessons.verify("∂L_E/∂x^E by hand == autograd", g_e, auto_e)

# %% [markdown]
# The HypHC term has no closed-form gradient in the kit (the LCA depth is a composition of several
# maps); check autograd against finite differences instead (`torch.autograd.gradcheck`, float64).
# One subtlety: by default the similarities $S$ of Eq. 8 are treated as *constants* each step, as in
# HypHC (`detach_similarity=True`), so the gradient the optimiser sees is deliberately *not* the
# derivative of the loss value. Finite differences see the full function, so the check uses
# `detach_similarity=False`:

# %%
v = (0.5 * torch.randn(C * K, Dh, **f64)).requires_grad_(True)
ok = torch.autograd.gradcheck(lambda v: losses.hyphc_loss(poincare.expmap0(v, c), trip, c, detach_similarity=False).mean(), (v,))
print("✓ HypHC gradient == finite differences:", ok)

# %% [markdown]
# ## Exercises
#
# 1. With $K = 1$, show that Eq. 6–7 reduce to a proxy-NCA-like loss with logits $-\lambda D_H(x, p_c)$.
# 2. For a sample exactly at its proxy and all other proxies at distance $\rho$, compute $L_H$ for
#    $\lambda = 20$, $\delta = 1$, $C = 10$. At which $\rho$ does it drop below 0.01?
# 3. Why must the proxies be mapped by the *same* head as the data (Sec. 3.2)? What goes wrong if $P_H$
#    were free points of the ball while $x^H$ are clipped?
#
# <details><summary>Solution 1</summary>
#
# With one proxy the softmax over $k$ is 1, so $S_c = -d(x, p_c)$ and Eq. 7 is a softmax cross-entropy
# over the logits $-\lambda D_H(x, p_c) - \lambda\delta\,\mathbb 1[c = c_i]$: ProxyNCA with a margin.
# ```python
# d = torch.rand(4, 6, 1, dtype=torch.float64)
# lessons.verify("K = 1", losses.soft_similarity(d, 5.0), -d[..., 0])
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# $S_{c_i} = 0$, $S_c = -\rho$: $L = \log(1 + 9e^{-\lambda(\rho - \delta)})$; $L < 0.01$ needs
# $\rho > \delta + \ln(9/0.01005)/\lambda \approx 1.34$.
# ```python
# for rho in (1.0, 1.2, 1.34, 1.5):
#     S = torch.tensor([[0.0] + [-rho] * 9])
#     print(rho, float(losses.proxy_loss(S, torch.tensor([0]), 20.0, 1.0)))
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
