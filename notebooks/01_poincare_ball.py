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
# # 01 · The Poincaré ball
#
# CHEST embeds images in the **Poincaré ball**. This lesson builds the ball from its metric, derives
# Möbius addition and the distance, checks every formula numerically against `chestlab.poincare`,
# and ends with why the paper clips features before mapping them into the ball.
#
# Equation numbers are those of the CHEST paper, restated in `shared/spec/chest.md` (“the spec”).
# Pattern of every section: **derive → verify → play**. Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import torch
from ipywidgets import FloatSlider, interact

from chestlab import lessons, poincare

f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. The ball, its metric and the conformal factor
#
# The ball of curvature $-c$ ($c>0$) is $\mathbb B_c = \{x\in\mathbb R^D : c\|x\|^2 < 1\}$, radius
# $1/\sqrt c$. Its metric is the Euclidean one rescaled at every point,
#
# $$ g_x = \lambda_x^2\, g^E, \qquad \lambda_x = \frac{2}{1 - c\|x\|^2} \quad\text{(the conformal factor)}. $$
#
# *Conformal*: angles are Euclidean angles, only lengths change. A small Euclidean step $dx$ at $x$
# has hyperbolic length $\lambda_x\|dx\|$: at the centre $\lambda_0 = 2$, and $\lambda_x\to\infty$ at
# the boundary — the boundary is infinitely far away, and there is *more room* near it.

# %%
x = poincare.expmap0(torch.randn(5, 3, **f64), c=0.7)
lessons.verify("conformal_factor = 2 / (1 - c|x|^2)", poincare.conformal_factor(x, 0.7), 2 / (1 - 0.7 * x.pow(2).sum(-1, keepdim=True)))

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for c in (0.25, 0.5, 1.0, 2.0):
    rho = torch.linspace(0, 0.995, 200, **f64) / math.sqrt(c)
    lam = poincare.conformal_factor(torch.stack([rho, 0 * rho], -1), c).squeeze(-1)
    ax.plot(rho, lam, label=f"c = {c}")
ax.set(yscale="log", xlabel="Euclidean norm ‖x‖", ylabel="λ_x", title="the conformal factor blows up at the boundary 1/√c")
ax.legend(frameon=False);

# %% [markdown]
# ## 2. Möbius addition (Eq. 1) and the gyrogroup
#
# **Derivation.** The isometries of the unit disk ($c = 1$, $D = 2$, points as complex numbers) that
# move $0$ to $a$ are the Möbius transformations $z\mapsto \frac{a + z}{1 + \bar a z}$. Define
# $a\oplus z$ as exactly this map. Writing $\bar a z$ with $\langle a,z\rangle$ and $\|a\|^2$ and
# multiplying out (then rescaling the ball to radius $1/\sqrt c$) gives Eq. (1), which makes sense in
# any dimension:
#
# $$ x\oplus_c y = \frac{(1 + 2c\langle x,y\rangle + c\|y\|^2)\,x + (1 - c\|x\|^2)\,y}{1 + 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}. $$
#
# Check: in 2-D with $c=1$ it *is* the complex Möbius map, and general $c$ is the rescaling
# $x\oplus_c y = \tfrac{1}{\sqrt c}\big(\sqrt c x\oplus_1 \sqrt c y\big)$.

# %%
a, z = 0.6 * torch.rand(2, 2, **f64)
ac, zc = complex(*a), complex(*z)
mob = (ac + zc) / (1 + ac.conjugate() * zc)
lessons.verify("Eq. 1 in 2-D, c = 1  ==  (a + z) / (1 + conj(a) z)", poincare.mobius_add(a, z, 1.0), [mob.real, mob.imag])
c = 0.3
x, y = poincare.expmap0(torch.randn(2, 4, **f64), c)
lessons.verify("x ⊕_c y = (√c x ⊕_1 √c y) / √c", poincare.mobius_add(x, y, c), poincare.mobius_add(c**0.5 * x, c**0.5 * y, 1.0) / c**0.5)
lessons.verify("c → 0: x ⊕ y → x + y", poincare.mobius_add(x, y, 1e-12), x + y, rtol=1e-9)

# %% [markdown]
# $\oplus$ is neither commutative nor associative, but it is a **gyrogroup**: the failure is exactly a
# rotation, the *gyration* $\mathrm{gyr}[x,y]z = \ominus(x\oplus y)\oplus(x\oplus(y\oplus z))$.
# `lessons.gyro_checks` verifies the identities on random points (float64). Points very close to the
# boundary make the nested additions ill-conditioned (errors grow like $\lambda^2$), so the check
# uses points at moderate depth:

# %%
x, y, z = poincare.expmap0(0.5 * torch.randn(3, 10, 5, **f64), c=0.8)
rows = lessons.gyro_checks(x, y, z, c=0.8)

# %% [markdown]
# ## 3. The distance (Eq. 2) and its $c\to 0$ limit
#
# Left addition $y\mapsto(-x)\oplus y$ is an isometry that moves $x$ to $0$, so
# $D(x,y) = D(0, (-x)\oplus y)$. Along a diameter the length of the segment from $0$ to $u$ is
# $\int_0^{\|u\|}\frac{2\,dr}{1-cr^2} = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|u\|)$, hence Eq. (2):
#
# $$ D_c(x,y) = \frac{2}{\sqrt c}\operatorname{artanh}\big(\sqrt c\,\|(-x)\oplus_c y\|\big),
# \qquad \|(-x)\oplus y\| = \frac{\|x-y\|}{\sqrt{1 - 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}}. $$

# %%
c = 0.5
x, y = poincare.expmap0(torch.randn(2, 50, 8, **f64), c)
formula = 2 / c**0.5 * torch.atanh(c**0.5 * poincare.mobius_add(-x, y, c).norm(dim=-1))
lessons.verify("dist == (2/√c) artanh(√c ‖(-x) ⊕ y‖)   (Eq. 2)", poincare.dist(x, y, c), formula, rtol=1e-10)
den = (1 - 2 * c * (x * y).sum(-1) + c**2 * x.pow(2).sum(-1) * y.pow(2).sum(-1)).sqrt()
lessons.verify("‖(-x) ⊕ y‖ == ‖x - y‖ / sqrt(...)", poincare.mobius_add(-x, y, c).norm(dim=-1), (x - y).norm(dim=-1) / den)
a = poincare.expmap0(torch.randn(8, **f64), c)
lessons.verify("left translations are isometries", poincare.dist(poincare.mobius_add(a, x, c), poincare.mobius_add(a, y, c), c), poincare.dist(x, y, c), rtol=1e-9)
lessons.verify("pairwise_dist == dist on all pairs", poincare.pairwise_dist(x, y, c), poincare.dist(x[:, None], y[None], c), rtol=1e-9)

# %% [markdown]
# **The factor 2.** As $c\to0$, $\operatorname{artanh}(t)\approx t$ and $\|(-x)\oplus y\|\to\|x-y\|$, so
# $D_c(x,y)\to 2\|x-y\|$ — not $\|x-y\|$: the metric at $c=0$ is still $\lambda^2 g^E$ with $\lambda = 2$.

# %%
x, y = torch.tensor([[0.3, -0.2], [0.1, 0.4]], **f64)
for c in (1.0, 1e-1, 1e-3, 1e-6, 0.0):
    print(f"c = {c:<6g}  D_c(x, y) / ‖x − y‖ = {float(poincare.dist(x, y, c) / (x - y).norm()):.8f}")
lessons.verify("c = 0 is exactly 2‖x − y‖", poincare.dist(x, y, 0.0), 2 * (x - y).norm())

# %% [markdown]
# ## 4. Exponential and logarithmic maps (Eq. 3–4)
#
# The network outputs a Euclidean vector $v$; $\exp_0$ turns it into a point of the ball. $\exp_z(v)$
# follows the geodesic leaving $z$ with velocity $v$ for unit time. Its hyperbolic speed is
# $\lambda_z\|v\|$, so $D(z,\exp_z v) = \lambda_z\|v\|$; along a diameter through $0$ the distance
# formula inverts to $\|x\| = \tanh(\sqrt c\,\lambda_0\|v\|/2)/\sqrt c$ and translating by $z\oplus$ gives
#
# $$ \exp_z(v) = z\oplus\tanh\Big(\frac{\sqrt c\,\lambda_z\|v\|}{2}\Big)\frac{v}{\sqrt c\|v\|}\ \ (3),
# \qquad \exp_0(v) = \tanh(\sqrt c\|v\|)\frac{v}{\sqrt c\|v\|}\ \ (4). $$

# %%
c = 0.5
z = poincare.expmap0(0.3 * torch.randn(20, 6, **f64), c)
v = 0.3 * torch.randn(20, 6, **f64)  # moderate steps: λ_z‖v‖ large would land (projected) on the boundary
lam = poincare.conformal_factor(z, c).squeeze(-1)
lessons.verify("Eq. 4 formula", poincare.expmap0(v, c), torch.tanh(c**0.5 * v.norm(dim=-1, keepdim=True)) * v / (c**0.5 * v.norm(dim=-1, keepdim=True)))
lessons.verify("D(0, exp_0 v) = 2‖v‖", poincare.dist0(poincare.expmap0(v, c), c), 2 * v.norm(dim=-1), rtol=1e-9)
lessons.verify("D(z, exp_z v) = λ_z ‖v‖   (Eq. 3)", poincare.dist(z, poincare.expmap(z, v, c), c), lam * v.norm(dim=-1), rtol=1e-8)
lessons.verify("log_0(exp_0 v) = v", poincare.logmap0(poincare.expmap0(v, c), c), v, rtol=1e-9)
lessons.verify("log_z(exp_z v) = v", poincare.logmap(z, poincare.expmap(z, v, c), c), v, rtol=1e-7, atol=1e-9)

# %% [markdown]
# ## 5. Geodesics and distance circles — play
#
# The geodesic from $x$ to $y$ is $\gamma(t) = \exp_x(t\log_x y)$ (`lessons.geodesic`); it has
# constant speed, $D(x,\gamma(t)) = t\,D(x,y)$. Drawn in the disk it is an arc of a circle that
# meets the boundary at right angles, bent **towards the origin**: passing near the centre, where
# space is “cheaper”, is shorter than the straight chord. The dotted circles are the points at
# $D_H = 1, 2, 3$ from the origin; the red circle is the set of points at $D_H = 1$ from $x$ — a
# Euclidean circle too, but much smaller (and off-centre) when $x$ is near the boundary.

# %%
x, y = torch.tensor([[0.5, 0.3], [-0.2, 0.6]], **f64)
g = lessons.geodesic(x, y, 0.5, n=11)
lessons.verify("geodesic has constant speed", poincare.dist(x.expand(11, 2), g, 0.5), torch.linspace(0, 1, 11, **f64) * poincare.dist(x, y, 0.5), rtol=1e-8)


# %%
def show_geodesic(c=1.0, rx=0.6, ax_deg=20.0, ry=0.8, ay_deg=150.0):
    R = 1 / math.sqrt(c)
    x = torch.tensor([rx * R * math.cos(math.radians(ax_deg)), rx * R * math.sin(math.radians(ax_deg))], **f64)
    y = torch.tensor([ry * R * math.cos(math.radians(ay_deg)), ry * R * math.sin(math.radians(ay_deg))], **f64)
    fig, ax = plt.subplots(figsize=(5, 5))
    lessons.draw_disk(ax, c, circles=(1, 2, 3))
    g = lessons.geodesic(x, y, c).numpy()
    ax.plot(g[:, 0], g[:, 1], color="C0", lw=2.5, label="geodesic")
    ax.plot([x[0], y[0]], [x[1], y[1]], color="C1", ls="--", label="Euclidean chord")
    circ = lessons.hyperbolic_circle(x, 1.0, c).numpy()
    ax.plot(circ[:, 0], circ[:, 1], color="C3", lw=1, label="D_H = 1 around x")
    ax.scatter(*torch.stack([x, y]).T, color="k", zorder=5)
    ax.set_title(f"c = {c:g}: D_H(x, y) = {float(poincare.dist(x, y, c)):.2f},  2‖x − y‖ = {float(2 * (x - y).norm()):.2f}", fontsize=9)
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    plt.show()


sl = dict(continuous_update=False)
interact(show_geodesic, c=FloatSlider(value=1.0, min=0.05, max=4, step=0.05, **sl),
         rx=FloatSlider(value=0.6, min=0, max=0.99, step=0.01, description="‖x‖·√c", **sl),
         ax_deg=FloatSlider(value=20, min=-180, max=180, step=5, description="angle x", **sl),
         ry=FloatSlider(value=0.8, min=0, max=0.99, step=0.01, description="‖y‖·√c", **sl),
         ay_deg=FloatSlider(value=150, min=-180, max=180, step=5, description="angle y", **sl));

# %%
show_geodesic(c=1.0, rx=0.95, ax_deg=10, ry=0.95, ay_deg=60)  # the callback once more (CI runs it): two points near the boundary

# %% [markdown]
# Try it: move both points towards the boundary at a fixed angle apart — the Euclidean chord stays
# the same length while $D_H$ grows without bound and the geodesic dives towards the centre. This
# is why trees embed well: the number of points you can place at distance $\ge 1$ from each other on
# a circle of radius $\rho$ grows like $e^{\rho}$, as the number of leaves of a tree grows with depth.

# %% [markdown]
# ## 6. float32 near the boundary, and feature clipping ($r = 2.3$)
#
# A point with $\exp_0$-preimage of norm $s$ sits at $\sqrt c\|x\| = \tanh(\sqrt c s)$, so its margin
# to the boundary is $1-\tanh(\sqrt c s)\approx 2e^{-2\sqrt c s}$. float32 resolves margins down to its
# machine epsilon $\approx 6\cdot10^{-8}$ only: from $\sqrt c s\approx 8$ on, every point is rounded onto
# the same shell (`poincare.project` keeps them $10^{-5}$ inside), and distances saturate.
# The table takes two points at the same $s$, an angle $0.01$ apart ($c = 1$):

# %%
lessons.precision_table(c=1.0)

# %% [markdown]
# Hyp-ViT's **feature clipping** rescales $v\leftarrow v\min(1, r/\|v\|)$ before $\exp_0$, so every
# embedding satisfies $D(0,x)\le 2r$ and stays at margin $\ge 1-\tanh(\sqrt c r)$: with the paper's
# $c = 0.5$, $r = 2.3$ that is $0.074$ — the first, perfectly accurate rows of the table. The price:
# all distances are at most $4r = 9.2$, which matters for the margins in lesson 03.

# %%
v = torch.randn(1000, 16) * 20
xc = poincare.expmap0(poincare.clip_features(v, 2.3), 0.5)
lessons.verify("clipped: max D(0, x) = 2r", poincare.dist0(xc, 0.5).max(), 4.6, rtol=1e-5)
print(f"min margin 1 − √c‖x‖ = {float(1 - 0.5**0.5 * xc.norm(dim=-1).max()):.4f}  (1 − tanh(√c r) = {1 - math.tanh(0.5**0.5 * 2.3):.4f})")


# %%
def show_precision(c=0.5, r=2.3):
    s = torch.linspace(0.2, 14, 120, **f64)
    v1, v2 = torch.stack([s, 0 * s], -1), torch.stack([s * math.cos(0.01), s * math.sin(0.01)], -1)
    d64 = poincare.dist(poincare.expmap0(v1, c), poincare.expmap0(v2, c), c)
    d32 = poincare.dist(poincare.expmap0(v1.float(), c), poincare.expmap0(v2.float(), c), c).double()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.semilogy(s, ((d32 - d64).abs() / d64).clamp_min(1e-9), label="relative error of D in float32")
    ax.axvline(r, color="k", ls="--", label=f"clipping radius r = {r:g}")
    ax.set(xlabel="tangent norm ‖v‖ before exp_0", ylabel="relative error", title=f"c = {c:g}")
    ax.legend(frameon=False, fontsize=8)
    plt.show()


interact(show_precision, c=FloatSlider(value=0.5, min=0.05, max=2, step=0.05, **sl), r=FloatSlider(value=2.3, min=0.5, max=12, step=0.1, **sl));

# %%
show_precision(c=1.0, r=8.0)  # the callback once more (CI runs it)

# %% [markdown]
# ## Exercises
#
# 1. Show from Eq. (2) that $D_c(0, x) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)$ and check it
#    with `poincare.dist0` on a few points.
# 2. Find the hyperbolic midpoint $m$ of $x$ and $y$ with the exp/log maps and verify
#    $D(x,m) = D(m,y) = D(x,y)/2$.
# 3. For $c = 1$, from which tangent norm $s$ does float32 round $1-\tanh(s)$ to zero? Compare with the
#    table of section 6.
# 4. Is $(x\oplus y)\oplus z = x\oplus(y\oplus z)$ when $x$, $y$, $z$ are collinear with the origin? Why?
#
# <details><summary>Solution 1</summary>
#
# With $x\to0$ in Eq. (2): $(-0)\oplus y = y$, so $D(0,y) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|y\|)$.
# ```python
# y = poincare.expmap0(torch.randn(5, 3, dtype=torch.float64), 0.5)
# lessons.verify("dist0", poincare.dist0(y, 0.5), 2 / 0.5**0.5 * torch.atanh(0.5**0.5 * y.norm(dim=-1)))
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# c = 0.5
# x, y = poincare.expmap0(torch.randn(2, 3, dtype=torch.float64), c)
# m = poincare.expmap(x, 0.5 * poincare.logmap(x, y, c), c)
# print(poincare.dist(x, m, c), poincare.dist(m, y, c), poincare.dist(x, y, c) / 2)
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# $1-\tanh(s)\approx 2e^{-2s}$ drops below float32's half-ulp at 1 ($2^{-25}\approx 3\cdot10^{-8}$) for
# $s > \tfrac12\ln(2/3\cdot10^{-8}) \approx 9.0$; already from $s\approx 6$ the margin ($\sim10^{-5}$) has only
# a couple of significant bits and `project` takes over — the table's error jumps there.
# </details>
#
# <details><summary>Solution 4</summary>
#
# Yes. On one line through the origin, Möbius addition is the relativistic velocity addition
# $\frac{a+b}{1+cab}$ of the signed norms, which is commutative and associative; the gyration is the
# identity for parallel vectors. Check with `x, y, z = t[:, None] * u` for a unit `u`.
# </details>
