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
# **Learning objectives.** After this lesson you can
#
# 1. state the metric of the ball and its conformal factor $\lambda^c_x$, and say why the boundary is
#    infinitely far away;
# 2. derive Möbius addition (Eq. 1) from a Möbius transformation of the complex unit disk, step by
#    step, and use Möbius scalar multiplication $\mu\otimes_c x$;
# 3. derive the distance (Eq. 2) and its limit $c\to0$ (with its factor 2);
# 4. use the exponential and logarithmic maps (Eq. 3–4) and write geodesics with them;
# 5. implement $\oplus_c$, $d_H$, $\exp_0$ and $\log_0$ yourself in plain torch and check them;
# 6. say where float32 breaks down near the boundary, and what feature clipping (radius $r$) buys.
#
# Equation numbers are those of the CHEST paper; the kit states them in its own notation in
# `docs/maths.md` (“docs/maths.md, Eq. 1”, short “Eq. 1” below), and so is the notation, with two
# exceptions that follow the code: points are $x, y$ (there $u, v$) and tangent vectors $v$ (there $\xi$).
# $c > 0$ is always the curvature parameter: the ball has curvature $-c$; $d_H$ is the Poincaré distance. Pattern of every section: **derive → verify → play**.
# Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import FloatSlider, interact

from chestlab import lessons, poincare
from chestlab.viz import mpl as viz_mpl
from chestlab.viz.style import COLORS, use_lecture_style

use_lecture_style()
f64 = dict(dtype=torch.float64)
torch.manual_seed(0)
print("fast mode:", lessons.FAST)

# %% [markdown]
# ## 1. The ball, its metric and the conformal factor
#
# The ball of curvature $-c$ ($c>0$) is $\mathbb D^n_c = \{x\in\mathbb R^n : c\|x\|^2 < 1\}$, radius
# $1/\sqrt c$. Its metric is the Euclidean one rescaled at every point,
#
# $$ g_x = (\lambda^c_x)^2\, g^E, \qquad \lambda^c_x = \frac{2}{1 - c\|x\|^2} \quad\text{(the conformal factor)}. $$
#
# *Conformal*: angles are Euclidean angles, only lengths change. A small Euclidean step $dx$ at $x$
# has hyperbolic length $\lambda^c_x\|dx\|$: at the centre $\lambda^c_0 = 2$, and $\lambda^c_x\to\infty$ at
# the boundary — the boundary is infinitely far away, and there is *more room* near it.

# %%
x = poincare.expmap0(torch.randn(5, 3, **f64), c=0.7)
lessons.verify("conformal_factor = 2 / (1 - c|x|^2)", poincare.conformal_factor(x, 0.7), 2 / (1 - 0.7 * x.pow(2).sum(-1, keepdim=True)))

# %%
fig, ax = plt.subplots(figsize=(10, 5))
for c in (0.25, 0.5, 1.0, 2.0):
    rho = torch.linspace(0, 0.995, 200, **f64) / math.sqrt(c)
    lam = poincare.conformal_factor(torch.stack([rho, 0 * rho], -1), c).squeeze(-1)
    ax.plot(rho, lam, label=f"c = {c}  (boundary at ‖x‖ = {1 / math.sqrt(c):.2f})")
ax.set(yscale="log", xlabel="Euclidean norm ‖x‖ (coordinates of the ball)", ylabel="conformal factor $\\lambda^c_x$",
       title="$\\lambda^c_x$ blows up at the boundary $\\|x\\| = 1/\\sqrt{c}$")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0));

# %% [markdown]
# ## 2. Möbius addition (Eq. 1), derived step by step
#
# Take the unit disk ($c = 1$, $n = 2$) and write its points as complex numbers. The
# orientation-preserving isometries of the disk that move $0$ to $a$ are the Möbius transformations
# $z\mapsto \dfrac{a + e^{i\theta}z}{1 + \bar a e^{i\theta}z}$ — one for every rotation angle $\theta$: first
# rotate about $0$, then move $0$ to $a$. The one **without** the rotation ($\theta = 0$) is Möbius addition,
#
# $$ a\oplus z = \frac{a + z}{1 + \bar a z}, $$
#
# so "the isometry that moves $0$ to $a$" is $a\oplus z$ only up to a rotation; the last cell of this section
# shows a rotated one that also moves $0$ to $a$.
#
# To turn this into a formula that makes sense in any dimension, we need it in terms of inner products
# and norms only. With $\langle a, z\rangle = \operatorname{Re}(a\bar z)$:
#
# 1. **Make the denominator real**: multiply numerator and denominator by the conjugate of the
#    denominator, $\overline{1 + \bar a z} = 1 + a\bar z$:
#    $\;a\oplus z = \dfrac{(a+z)(1 + a\bar z)}{|1 + \bar a z|^2}.$
# 2. **Expand the numerator**: $(a+z)(1+a\bar z) = a + z + a|z|^2 + a^2\bar z$. Only $a^2\bar z$ is not
#    yet a real combination of $a$ and $z$.
# 3. **Remove $a^2\bar z$**: since $\bar a a = |a|^2$, $\;a^2\bar z + |a|^2 z = a(a\bar z + \bar a z) = 2\operatorname{Re}(a\bar z)\,a$, so
#    $$ a^2\bar z = 2\langle a, z\rangle\, a - |a|^2 z. $$
# 4. **Collect**: numerator $= (1 + 2\langle a,z\rangle + |z|^2)\,a + (1 - |a|^2)\,z$, and the denominator is
#    $|1+\bar a z|^2 = 1 + 2\operatorname{Re}(\bar a z) + |a|^2|z|^2 = 1 + 2\langle a,z\rangle + |a|^2|z|^2$.
# 5. **Rescale** the ball to radius $1/\sqrt c$: $x\oplus_c y = \tfrac{1}{\sqrt c}\big(\sqrt c\, x\oplus_1 \sqrt c\, y\big)$, which is Eq. 1:
#
# $$ x\oplus_c y = \frac{(1 + 2c\langle x,y\rangle + c\|y\|^2)\,x + (1 - c\|x\|^2)\,y}{1 + 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}. $$
#
# Each step, checked on random points of the disk:

# %%
a, z = 0.6 * torch.rand(2, 2, **f64) - 0.3
ac, zc = complex(*a), complex(*z)
inner = float(a @ z)
lessons.verify("⟨a, z⟩ = Re(a z̄)", inner, (ac * zc.conjugate()).real)
step3 = ac**2 * zc.conjugate(), 2 * inner * ac - abs(ac) ** 2 * zc
lessons.verify("step 3:  a² z̄ = 2⟨a, z⟩ a − |a|² z", [step3[0].real, step3[0].imag], [step3[1].real, step3[1].imag])
num = (ac + zc) * (1 + ac * zc.conjugate())
num_real = (1 + 2 * inner + abs(zc) ** 2) * ac + (1 - abs(ac) ** 2) * zc
lessons.verify("step 4:  (a+z)(1+a z̄) = (1+2⟨a,z⟩+|z|²) a + (1−|a|²) z", [num.real, num.imag], [num_real.real, num_real.imag])
lessons.verify("step 4:  |1 + ā z|² = 1 + 2⟨a,z⟩ + |a|²|z|²", abs(1 + ac.conjugate() * zc) ** 2, 1 + 2 * inner + abs(ac * zc) ** 2)
mob = (ac + zc) / (1 + ac.conjugate() * zc)
lessons.verify("Eq. 1 in 2-D, c = 1  ==  (a + z) / (1 + ā z)", poincare.mobius_add(a, z, 1.0), [mob.real, mob.imag])
c = 0.3
x, y = poincare.expmap0(torch.randn(2, 4, **f64), c)
lessons.verify("step 5:  x ⊕_c y = (√c x ⊕_1 √c y) / √c", poincare.mobius_add(x, y, c), poincare.mobius_add(c**0.5 * x, c**0.5 * y, 1.0) / c**0.5)
lessons.verify("c → 0: x ⊕ y → x + y", poincare.mobius_add(x, y, 1e-12), x + y, rtol=1e-9)

# %%
theta = 1.0  # radians: rotate about 0 first, then move 0 to a


def rotated(z):
    """z ↦ (a + e^{iθ} z) / (1 + ā e^{iθ} z): a disk isometry that also moves 0 to a."""
    zr = complex(*z) * complex(math.cos(theta), math.sin(theta))
    w = (ac + zr) / (1 + ac.conjugate() * zr)
    return torch.tensor([w.real, w.imag], **f64)


u, w = 0.5 * torch.rand(2, 2, **f64) - 0.25
lessons.verify("the rotated map sends 0 to a, like a ⊕ z", rotated(torch.zeros(2, **f64)), a)
lessons.verify("it is an isometry: d_H(g(u), g(w)) = d_H(u, w)", poincare.dist(rotated(u), rotated(w), 1.0), poincare.dist(u, w, 1.0))
R_theta = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], **f64)
lessons.verify("it is a ⊕ (rotation of z)", rotated(u), poincare.mobius_add(a, R_theta @ u, 1.0))
print(f"g(u) = {rotated(u).numpy().round(4)},  a ⊕ u = {poincare.mobius_add(a, u, 1.0).numpy().round(4)}: "
      "two different isometries that both move 0 to a")
assert not torch.allclose(rotated(u), poincare.mobius_add(a, u, 1.0))

# %% [markdown]
# $\oplus$ is neither commutative nor associative, but it is a **gyrogroup**: the failure is exactly a
# rotation, the *gyration* $\mathrm{gyr}[x,y]z = \ominus(x\oplus y)\oplus(x\oplus(y\oplus z))$.
# `lessons.gyro_checks` verifies the identities on random points (float64). Points very close to the
# boundary make the nested additions ill-conditioned, so the check uses points at moderate depth:

# %%
x, y, z = poincare.expmap0(0.5 * torch.randn(3, 10, 5, **f64), c=0.8)
rows = lessons.gyro_checks(x, y, z, c=0.8)

# %% [markdown]
# ## 3. The distance (Eq. 2) and its $c\to 0$ limit
#
# Left addition $y\mapsto a\oplus y$ is an isometry (checked below), and $(-x)\oplus x = 0$, so
# $d_H(x,y) = d_H(0, (-x)\oplus y)$. Along a diameter the length of the segment from $0$ to $u$ is
# $\int_0^{\|u\|}\lambda^c_{r}\,dr = \int_0^{\|u\|}\frac{2\,dr}{1-cr^2} = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|u\|)$, hence Eq. 2:
#
# $$ d_H(x,y) = \frac{2}{\sqrt c}\operatorname{artanh}\big(\sqrt c\,\|(-x)\oplus_c y\|\big),
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
# $d_H(x,y)\to 2\|x-y\|$ — not $\|x-y\|$: the metric at $c=0$ is still $(\lambda^0_x)^2 g^E$ with $\lambda^0_x = 2$.

# %%
x, y = torch.tensor([[0.3, -0.2], [0.1, 0.4]], **f64)
for c in (1.0, 1e-1, 1e-3, 1e-6, 0.0):
    print(f"c = {c:<6g}  d_H(x, y) / ‖x − y‖ = {float(poincare.dist(x, y, c) / (x - y).norm()):.8f}")
lessons.verify("c = 0 is exactly 2‖x − y‖", poincare.dist(x, y, 0.0), 2 * (x - y).norm())

# %% [markdown]
# ## 4. Exponential and logarithmic maps (Eq. 3–4)
#
# The network outputs a Euclidean vector $v$; $\exp_0$ turns it into a point of the ball. $\exp_z(v)$
# follows the geodesic leaving $z$ with velocity $v$ for unit time. Its hyperbolic speed is
# $\lambda^c_z\|v\|$, so $d_H(z,\exp_z v) = \lambda^c_z\|v\|$; along a diameter through $0$ the distance
# formula inverts to $\|x\| = \tanh(\sqrt c\,\lambda^c_0\|v\|/2)/\sqrt c$ and translating by $z\oplus$ gives
#
# $$ \exp_z(v) = z\oplus\tanh\Big(\frac{\sqrt c\,\lambda^c_z\|v\|}{2}\Big)\frac{v}{\sqrt c\|v\|}\ \ (3),
# \qquad \exp_0(v) = \tanh(\sqrt c\|v\|)\frac{v}{\sqrt c\|v\|}\ \ (4). $$
#
# The logarithmic maps invert them: $\log_0(y) = \operatorname{artanh}(\sqrt c\|y\|)\,\frac{y}{\sqrt c\|y\|}$.
# Note $d_H(0, \exp_0 v) = 2\|v\|$ for **every** $c$.

# %%
c = 0.5
z = poincare.expmap0(0.3 * torch.randn(20, 6, **f64), c)
v = 0.3 * torch.randn(20, 6, **f64)  # moderate steps: λ_z‖v‖ large would land (projected) on the boundary
lam_z = poincare.conformal_factor(z, c).squeeze(-1)
lessons.verify("Eq. 4 formula", poincare.expmap0(v, c), torch.tanh(c**0.5 * v.norm(dim=-1, keepdim=True)) * v / (c**0.5 * v.norm(dim=-1, keepdim=True)))
lessons.verify("d_H(0, exp_0 v) = 2‖v‖", poincare.dist0(poincare.expmap0(v, c), c), 2 * v.norm(dim=-1), rtol=1e-9)
lessons.verify("d_H(z, exp_z v) = λ^c_z ‖v‖   (Eq. 3)", poincare.dist(z, poincare.expmap(z, v, c), c), lam_z * v.norm(dim=-1), rtol=1e-8)
lessons.verify("log_0(exp_0 v) = v", poincare.logmap0(poincare.expmap0(v, c), c), v, rtol=1e-9)
lessons.verify("log_z(exp_z v) = v", poincare.logmap(z, poincare.expmap(z, v, c), c), v, rtol=1e-7, atol=1e-9)

# %% [markdown]
# ## 5. Möbius scalar multiplication and geodesics
#
# On a line through the origin, $\oplus$ is the relativistic addition of velocities: with
# $x = \tanh(\sqrt c\,u)/\sqrt c$ and $y = \tanh(\sqrt c\,w)/\sqrt c$ (same direction), $x\oplus_c y = \tanh(\sqrt c\,(u+w))/\sqrt c$ —
# the *rapidities* $u = \operatorname{artanh}(\sqrt c\|x\|)/\sqrt c$ add. So $x\oplus x\oplus\cdots\oplus x$ ($n$ times)
# multiplies the rapidity by $n$, and for any real $\mu$ one defines
#
# $$ \mu\otimes_c x = \frac{1}{\sqrt c}\tanh\!\big(\mu\operatorname{artanh}(\sqrt c\|x\|)\big)\frac{x}{\|x\|} = \exp_0\big(\mu\log_0 x\big). $$
#
# Since $d_H(0,x) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)$, it scales distances from the origin:
# $d_H(0, \mu\otimes x) = |\mu|\,d_H(0,x)$. With it, the geodesic from $x$ to $y$ is *translate $x$ to $0$, scale,
# translate back*: $\gamma(t) = x\oplus\big(t\otimes((-x)\oplus y)\big)$ — the same curve as $\exp_x(t\log_x y)$.

# %%
c = 0.6
x, y = poincare.expmap0(0.7 * torch.randn(2, 10, 3, **f64), c)
smul, add = poincare.mobius_scalar_mul, poincare.mobius_add
lessons.verify("2 ⊗ x = x ⊕ x", smul(2.0, x, c), add(x, x, c))
lessons.verify("3 ⊗ x = x ⊕ (x ⊕ x)", smul(3.0, x, c), add(x, add(x, x, c), c))
lessons.verify("(0.3 + 1.2) ⊗ x = (0.3 ⊗ x) ⊕ (1.2 ⊗ x)", smul(1.5, x, c), add(smul(0.3, x, c), smul(1.2, x, c), c))
lessons.verify("d_H(0, μ ⊗ x) = |μ| d_H(0, x)   (μ = −0.4)", poincare.dist0(smul(-0.4, x, c), c), 0.4 * poincare.dist0(x, c))
lessons.verify("μ ⊗ x = exp_0(μ log_0 x)", smul(0.7, x, c), poincare.expmap0(0.7 * poincare.logmap0(x, c), c))
t = torch.linspace(0, 1, 11, **f64)[:, None]
gamma = add(x[0].expand(11, 3), smul(t, add(-x[0], y[0], c).expand(11, 3), c), c)
lessons.verify("x ⊕ (t ⊗ ((−x) ⊕ y)) = exp_x(t log_x y)", gamma, lessons.geodesic_arc(x[0], y[0], c, n=11), rtol=1e-8, atol=1e-12)
lessons.verify("…and has constant speed: d_H(x, γ(t)) = t d_H(x, y)", poincare.dist(x[0].expand(11, 3), gamma, c), t[:, 0] * poincare.dist(x[0], y[0], c), rtol=1e-8)

# %% [markdown]
# ## 6. Geodesics and distance circles — play
#
# Drawn in the disk a geodesic is an arc of a circle that meets the boundary at right angles, bent
# **towards the origin**: passing near the centre, where space is “cheaper”, is shorter than the
# straight chord. The dotted circles are the points at $d_H = 1, 2, 3$ from the origin; the red circle is
# the set of points at $d_H = 1$ from $x$ — a Euclidean circle too, but much smaller (and off-centre)
# when $x$ is near the boundary.

# %%
def show_geodesic(c=1.0, rx=0.6, ax_deg=20.0, ry=0.8, ay_deg=150.0):
    R = 1 / math.sqrt(c)
    x = torch.tensor([rx * R * math.cos(math.radians(ax_deg)), rx * R * math.sin(math.radians(ax_deg))], **f64)
    y = torch.tensor([ry * R * math.cos(math.radians(ay_deg)), ry * R * math.sin(math.radians(ay_deg))], **f64)
    fig, ax = plt.subplots(figsize=(11, 7.5))
    g = lessons.geodesic_arc(x, y, c).numpy()
    chord = np.linspace(x.numpy(), y.numpy(), 50)
    circ = lessons.hyperbolic_circle(x, 1.0, c).numpy()
    # the circles' d_H labels (and ticks) follow the lecture style, and stay off the curves drawn here
    viz_mpl.disk_view(ax, c, circles=(1, 2, 3), avoid=np.concatenate([g, chord, circ]))
    ax.plot(g[:, 0], g[:, 1], color=COLORS["H"], lw=3, label="the geodesic from x to y")
    ax.plot([x[0], y[0]], [x[1], y[1]], color=COLORS["E"], ls="--", lw=2.5, label="Euclidean chord")
    ax.plot(circ[:, 0], circ[:, 1], color="#d62728", lw=2, label="points at $d_H = 1$ from x")
    ax.scatter(*torch.stack([x, y]).T, color="k", s=50, zorder=5)
    ax.set_title(f"c = {c:g}:  $d_H$(x, y) = {float(poincare.dist(x, y, c)):.2f},  chord ‖x − y‖ = {float((x - y).norm()):.2f}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    plt.show()


sl = dict(continuous_update=False)
interact(show_geodesic, c=FloatSlider(value=1.0, min=0.05, max=4, step=0.05, **sl),
         rx=FloatSlider(value=0.6, min=0, max=0.99, step=0.01, description="‖x‖·√c", **sl),
         ax_deg=FloatSlider(value=20, min=-180, max=180, step=5, description="angle x", **sl),
         ry=FloatSlider(value=0.8, min=0, max=0.99, step=0.01, description="‖y‖·√c", **sl),
         ay_deg=FloatSlider(value=150, min=-180, max=180, step=5, description="angle y", **sl));

# %%
show_geodesic(c=1.0, rx=0.95, ax_deg=10, ry=0.95, ay_deg=60)  # the callback, called directly: two points near the boundary

# %% [markdown]
# Try it: move both points towards the boundary at a fixed angle $\theta$ apart. The Euclidean chord
# $\|x-y\| = 2\rho\sin(\theta/2)$ grows too, but it stays **bounded** by $2\sin(\theta/2)/\sqrt c$, while $d_H$ grows
# without bound and the geodesic dives towards the centre. How fast? For large radii the geodesic is
# barely shorter than the path **through the origin**: $d_H(x,y)\approx d_H(0,x) + d_H(0,y) + \tfrac{2}{\sqrt c}\ln\sin(\theta/2)$ — a
# constant less. That is the distance of a tree (up to the common ancestor and down again), the
# theme of lesson 00. The numbers, for $\theta = 50°$ and $c = 1$ (the call above):

# %%
theta, c = math.radians(50), 1.0
print("  ‖x‖    chord ‖x−y‖   d_H(x,y)   d_H(0,x)+d_H(0,y)+2 ln sin(θ/2)")
for rho in (0.5, 0.7, 0.9, 0.95, 0.99, 0.999):
    x = torch.tensor([rho * math.cos(math.radians(10)), rho * math.sin(math.radians(10))], **f64)
    y = torch.tensor([rho * math.cos(math.radians(60)), rho * math.sin(math.radians(60))], **f64)
    d, via0 = float(poincare.dist(x, y, c)), float(2 * poincare.dist0(x, c)) + 2 * math.log(math.sin(theta / 2))
    print(f"  {rho:<6} {float((x - y).norm()):>10.3f} {d:>10.2f} {via0:>16.2f}")
    lessons.verify(f"  chord = 2ρ sin(θ/2) ≤ 2 sin(θ/2) = {2 * math.sin(theta / 2):.3f}", (x - y).norm(), 2 * rho * math.sin(theta / 2))
lessons.verify("for ‖x‖ → 1:  d_H − (d_H(0,x) + d_H(0,y) + 2 ln sin(θ/2)) → 0", d, via0, rtol=1e-5)

# %% [markdown]
# ## 7. float32 near the boundary, and feature clipping ($r = 2.3$)
#
# A point with $\exp_0$-preimage of norm $s$ sits at $\sqrt c\|x\| = \tanh(\sqrt c s)$, so its margin to the
# boundary is $1-\tanh(\sqrt c s)\approx 2e^{-2\sqrt c s}$. Two limits meet this margin as $s$ grows:
#
# * float32 resolves numbers just below 1 only in steps of $2^{-24}\approx 6\cdot10^{-8}$; the margin drops
#   to one step at $\sqrt c\,s\approx\tfrac12\ln(2\cdot2^{24})\approx 8.7$ (from there on it is 0 or one step: no
#   resolution left), and below half a step — where $\tanh(\sqrt c s)$ rounds to exactly 1, a point *on* the
#   boundary — at $\tfrac12\ln(2\cdot2^{25})\approx 9.0$. Two thresholds, 8.7 and 9.0, a factor 2 in the margin
#   apart; the next cell finds both by rounding $\tanh$ to float32;
# * but **`poincare.project` takes over first**: it keeps float32 points at a margin of at least
#   $\varepsilon = 10^{-5}$ (`poincare.BALL_EPS`), which the margin reaches at $\sqrt c\,s^* = \tfrac12\ln(2/\varepsilon)\approx 6.1$.
#   Beyond $s^*$ every point is moved onto the same shell, and distances saturate.
#
# %%
s_grid = torch.linspace(8.0, 9.5, 15_001, **f64)
tanh32 = torch.tanh(s_grid).float().double()  # tanh in float64, then rounded to the nearest float32
one_step = float(s_grid[(1 - torch.tanh(s_grid)) < 2.0**-24][0])  # the margin is below one float32 step
rounds_to_1 = float(s_grid[tanh32 == 1.0][0])  # float32 tanh is exactly 1: the point is on the boundary
print(f"c = 1: margin 1 − tanh(s) below one float32 step 2^-24 from s = {one_step:.3f};  tanh(s) rounds to 1 from s = {rounds_to_1:.3f}")
lessons.verify("one step: s = ½ ln(2·2^24) ≈ 8.7", one_step, 0.5 * math.log(2 * 2**24), atol=2e-4)
lessons.verify("rounds to 1: s = ½ ln(2·2^25) ≈ 9.0", rounds_to_1, 0.5 * math.log(2 * 2**25), atol=2e-4)
assert float(tanh32[s_grid < rounds_to_1].max()) == 1 - 2.0**-24, "just before, float32 holds the last number below 1"

# %% [markdown]
# The table takes two points at the same $s$, an angle $0.01$ apart ($c = 1$); the relative error of
# the float32 distance jumps between $s = 6.1$ and $6.2$, at $s^*$:

# %%
eps32 = poincare.BALL_EPS[torch.float32]
s_star, s_ulp = 0.5 * math.log(2 / eps32), 0.5 * math.log(2 * 2**24)
print(f"projection takes over at s* = ½ ln(2/ε) = {s_star:.2f};  float32's resolution would only at s = {s_ulp:.2f}")
table = lessons.precision_table(c=1.0, tangent_norms=(1, 2.3, 4, 5, 6.0, 6.1, 6.2, 6.5, 8, 9))
err = table["rel. error float32"]
print(f"relative error of d_H in float32: {err[6.1]:.1e} at s = 6.1, {err[6.2]:.1e} at s = 6.2 (×{err[6.2] / err[6.1]:.0f})")
beyond = table.index > s_star
lessons.verify("beyond s*, float32 points sit on the projection shell (margin ε)", table["1 − √c‖x‖ (float32)"][beyond].to_numpy().copy(), eps32, rtol=0.01)
table

# %% [markdown]
# Hyp-ViT's **feature clipping** rescales $v\leftarrow v\min(1, r/\|v\|)$ before $\exp_0$, so every
# embedding satisfies $d_H(0,x)\le 2r$ and stays at margin $\ge 1-\tanh(\sqrt c r)$: with the paper's
# $c = 0.5$, $r = 2.3$ that is $0.074$ — $\sqrt c\,r = 1.6$, the first, accurate rows of the table. The price:
# all distances are at most $4r = 9.2$ (through the origin), which matters for the margins in lesson 03.

# %%
v = torch.randn(1000, 16) * 20
xc = poincare.expmap0(poincare.clip_features(v, 2.3), 0.5)
lessons.verify("clipped: max d_H(0, x) = 2r", poincare.dist0(xc, 0.5).max(), 4.6, rtol=1e-5)
print(f"min margin 1 − √c‖x‖ = {float(1 - 0.5**0.5 * xc.norm(dim=-1).max()):.4f}  (1 − tanh(√c r) = {1 - math.tanh(0.5**0.5 * 2.3):.4f})")
print(f"largest distance between two of the 1000 points: {float(poincare.pairwise_dist(xc, xc, 0.5).max()):.2f} ≤ 4r = 9.2")


# %%
def show_precision(c=0.5, r=2.3):
    s = torch.linspace(0.2, 14, 300, **f64)
    v1, v2 = torch.stack([s, 0 * s], -1), torch.stack([s * math.cos(0.01), s * math.sin(0.01)], -1)
    d64 = poincare.dist(poincare.expmap0(v1, c), poincare.expmap0(v2, c), c)
    d32 = poincare.dist(poincare.expmap0(v1.float(), c), poincare.expmap0(v2.float(), c), c).double()
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.semilogy(s, ((d32 - d64).abs() / d64).clamp_min(1e-9), color=COLORS["H"], label="relative error of $d_H$ in float32")
    ax.axvline(r, color="k", ls="--", label=f"clipping radius r = {r:g}")
    ax.axvline(s_star / math.sqrt(c), color="#d62728", ls=":", lw=2.5, label=f"s* = ½ ln(2/ε)/√c = {s_star / math.sqrt(c):.1f}: project takes over")
    ax.axvline(s_ulp / math.sqrt(c), color="0.5", ls="-.", label=f"float32 alone: margin one step at {s_ulp / math.sqrt(c):.1f}, zero at {rounds_to_1 / math.sqrt(c):.1f}")
    ax.set(xlabel="tangent norm ‖v‖ before $\\exp_0$", ylabel="relative error", title=f"two points an angle 0.01 apart, c = {c:g}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=12)
    plt.show()


interact(show_precision, c=FloatSlider(value=0.5, min=0.05, max=2, step=0.05, **sl), r=FloatSlider(value=2.3, min=0.5, max=12, step=0.1, **sl));

# %%
show_precision(c=1.0, r=2.3)  # the callback, called directly (a run without widgets draws it too)

# %% [markdown]
# ## 8. Implement it yourself
#
# Write the four maps of this lesson in plain torch — no `chestlab` inside:
# `my_mobius_add(x, y, c)` (Eq. 1), `my_dist(x, y, c)` (Eq. 2), `my_expmap0(v, c)` (Eq. 4) and
# `my_logmap0(y, c)`, each for points of shape `(..., D)`. The cell below holds a reference solution,
# **collapsed**: write your own version into it (or in a new cell above the check) before you expand it.
# Then run the check, which compares your functions with `chestlab.poincare` on random points.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_mobius_add(x, y, c):
    xy = (x * y).sum(-1, keepdim=True)
    x2, y2 = x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return num / (1 + 2 * c * xy + c**2 * x2 * y2)


def my_dist(x, y, c):
    return 2 / c**0.5 * torch.atanh(c**0.5 * my_mobius_add(-x, y, c).norm(dim=-1))


def my_expmap0(v, c):
    n = v.norm(dim=-1, keepdim=True)
    return torch.tanh(c**0.5 * n) * v / (c**0.5 * n)


def my_logmap0(y, c):
    n = y.norm(dim=-1, keepdim=True)
    return torch.atanh(c**0.5 * n) * y / (c**0.5 * n)


# %%
c = 0.7
v = 0.8 * torch.randn(2, 100, 5, **f64)
x, y = poincare.expmap0(v, c)
lessons.verify("my_expmap0 == poincare.expmap0   (Eq. 4)", my_expmap0(v[0], c), x)
lessons.verify("my_logmap0 == poincare.logmap0", my_logmap0(x, c), poincare.logmap0(x, c))
lessons.verify("my_mobius_add == poincare.mobius_add   (Eq. 1)", my_mobius_add(x, y, c), poincare.mobius_add(x, y, c))
lessons.verify("my_dist == poincare.dist   (Eq. 2)", my_dist(x, y, c), poincare.dist(x, y, c), rtol=1e-8)

# %% [markdown]
# The formulas are right, but written this way they are not what a library can ship. Far from the
# origin, $1 - c\|x\|^2$ cancels and `atanh` of a number rounded to 1 is infinite (`inf`), or not a number
# (`nan`) once rounding pushes it past 1 — in float64:

# %%
for s in (4.0, 8.0, 12.0, 16.0):
    x = poincare.expmap0(torch.tensor([s, 0.0], **f64), 1.0)
    y = poincare.expmap0(torch.tensor([s * math.cos(1e-3), s * math.sin(1e-3)], **f64), 1.0)
    print(f"‖v‖ = {s:>4}:  my_dist = {float(my_dist(x, y, 1.0)):<20.12g} poincare.dist = {float(poincare.dist(x, y, 1.0)):.12g}")

# %% [markdown]
# `poincare.dist` evaluates Eq. 2 as $\tfrac{2}{\sqrt c}\operatorname{asinh}\big(\sqrt c\|x-y\|/\sqrt{(1-c\|x\|^2)(1-c\|y\|^2)}\big)$,
# which has no cancelling subtraction inside the square root and no `atanh` near 1
# (the docstring of `chestlab.poincare` shows the algebra; there $1 - c\|x\|^2$ itself is computed in
# double-double arithmetic, so in float64 it does not cancel either).

# %% [markdown]
# **Check your answers to the exercises** (at the end). Define, in a new cell above this one, the answers the
# exercises ask for — `ex1_dist0(y, c)`, `ex2_midpoint(x, y, c)`, `ex3_s_zero` and `ex3_s_project`,
# `ex4_associative` (`True` or `False`), `ex5_double(x, c)` — and run the cell below. It compares each one you
# have defined with `chestlab.poincare` on random points, or with float32 itself, and says what is off; the
# others it only names. The *why* of exercises 3 and 4 and the algebra of exercise 5 are yours to write.

# %%


def _fmt(t):  # a few numbers of a tensor, for the messages
    t = torch.as_tensor(t).detach().flatten()
    return "[" + ", ".join(f"{float(v):.4g}" for v in t[:4]) + (", …]" if len(t) > 4 else "]")


def check_exercises(ex1_dist0=None, ex2_midpoint=None, ex3_s_zero=None, ex3_s_project=None, ex4_associative=None, ex5_double=None):
    """Compare your answers to exercises 1-5 with chestlab.poincare and float32; raise AssertionError if one is off."""
    gen = torch.Generator().manual_seed(8)
    pts = {cc: poincare.expmap0(torch.randn(2, 20, 3, generator=gen, **f64), cc) for cc in (0.5, 1.0, 2.0)}
    if ex1_dist0 is None:
        print("exercise 1: define ex1_dist0(y, c) and run this cell again")
    else:
        for cc, (p, _) in pts.items():
            yours, want = torch.as_tensor(ex1_dist0(p, cc)), poincare.dist(torch.zeros_like(p), p, cc)
            assert yours.shape == want.shape and torch.allclose(yours, want, rtol=1e-8), (
                f"exercise 1: at c = {cc} your d_H(0, y) gives {_fmt(yours)}, expected "
                f"{_fmt(want)} (poincare.dist from the origin; one value per point, shape {tuple(want.shape)})")
        print("✓ exercise 1: your d_H(0, y) == poincare.dist(0, y) at c = 0.5, 1, 2")
    if ex2_midpoint is None:
        print("exercise 2: define ex2_midpoint(x, y, c) and run this cell again")
    else:
        for cc, (p, q) in pts.items():
            m = ex2_midpoint(p, q, cc)
            half = poincare.dist(p, q, cc) / 2
            for name, got in (("d_H(x, m)", poincare.dist(p, m, cc)), ("d_H(m, y)", poincare.dist(m, q, cc))):
                assert torch.allclose(got, half, rtol=1e-7, atol=1e-9), (
                    f"exercise 2: at c = {cc} your midpoint gives {name} = {_fmt(got)}, expected half of "
                    f"d_H(x, y): {_fmt(half)}, because the midpoint is the geodesic's point at t = 1/2 (section 5), not the chord's")
        print("✓ exercise 2: d_H(x, m) = d_H(m, y) = d_H(x, y)/2 at c = 0.5, 1, 2")
    if ex3_s_zero is None and ex3_s_project is None:
        print("exercise 3: define ex3_s_zero and ex3_s_project and run this cell again")
    else:
        s = torch.arange(5.0, 10.0, 1e-4, **f64)  # c = 1: a point at tangent norm s has norm tanh(s)
        x32 = torch.tanh(s).float()  # its float32 norm
        s_zero = float(s[x32 == 1.0][0])  # 1 − tanh(s) is 0 in float32
        moved = poincare.project(torch.stack([x32, torch.zeros_like(x32)], -1), 1.0)[:, 0] != x32
        s_project = float(s[moved][0])  # project changes the float32 point
        if ex3_s_zero is not None:
            assert abs(ex3_s_zero - s_zero) < 0.05, (
                f"exercise 3: your s = {ex3_s_zero:.3g} for 1 − tanh(s) = 0 in float32, expected {s_zero:.2f} (found by "
                f"rounding tanh to float32)" + (": 8.7 is where the margin drops to one float32 step, it rounds to 0 "
                                                 "below half a step" if abs(ex3_s_zero - 8.7) < 0.05 else ""))
            print(f"✓ exercise 3: float32 rounds 1 − tanh(s) to 0 from s ≈ {s_zero:.2f}")
        if ex3_s_project is not None:
            assert abs(ex3_s_project - s_project) < 0.05, (
                f"exercise 3: your s = {ex3_s_project:.3g} for project, expected {s_project:.2f}: from there "
                f"poincare.project moves float32 points (margin ε = {poincare.BALL_EPS[torch.float32]:g})")
            print(f"✓ exercise 3: project changes float32 points from s ≈ {s_project:.2f}")
    if ex4_associative is None:
        print("exercise 4: define ex4_associative (True or False) and run this cell again")
    else:
        add = poincare.mobius_add
        u = torch.nn.functional.normalize(torch.randn(20, 3, generator=gen, **f64), dim=-1)  # 20 directions
        x, y, z = (0.6 * torch.rand(3, 20, 1, generator=gen, **f64) - 0.3) * u  # 20 collinear triples
        gap = float((add(add(x, y, 1.0), z, 1.0) - add(x, add(y, z, 1.0), 1.0)).abs().max())
        assert ex4_associative == (gap < 1e-12), (
            f"exercise 4: your answer is {ex4_associative}, but on 20 collinear triples (x ⊕ y) ⊕ z and x ⊕ (y ⊕ z) "
            f"differ by at most {gap:.1e}, expected {gap < 1e-12} because on one line ⊕ is the addition of velocities")
        print(f"✓ exercise 4: collinear triples associate (max difference {gap:.1e})")
    if ex5_double is None:
        print("exercise 5: define ex5_double(x, c) and run this cell again")
    else:
        for cc, (p, _) in pts.items():
            yours = torch.as_tensor(ex5_double(p, cc))
            for name, want in (("2 ⊗ x", poincare.mobius_scalar_mul(2.0, p, cc)), ("x ⊕ x", poincare.mobius_add(p, p, cc))):
                assert yours.shape == want.shape and torch.allclose(yours, want, rtol=1e-9, atol=1e-12), (
                    f"exercise 5: at c = {cc} your closed form gives {_fmt(yours[0])} for the first point, expected "
                    f"{name} = {_fmt(want[0])}")
        print("✓ exercise 5: your closed form == 2 ⊗ x == x ⊕ x at c = 0.5, 1, 2")


check_exercises(*(globals().get(n) for n in ("ex1_dist0", "ex2_midpoint", "ex3_s_zero", "ex3_s_project", "ex4_associative", "ex5_double")))
lessons.refuses(check_exercises, dict(ex1_dist0=lambda y, c: torch.atanh(c**0.5 * y.norm(dim=-1)) / c**0.5), dict(ex2_midpoint=lambda x, y, c: (x + y) / 2),
                dict(ex3_s_zero=8.7), dict(ex3_s_project=7.0), dict(ex4_associative="not sure"),
                dict(ex5_double=lambda x, c: 2 * x / (1 - c * x.pow(2).sum(-1, keepdim=True))))  # the check does fail on a wrong answer (no factor 2, a Euclidean midpoint, 8.7, 7.0, not a bool, a sign)

# %% [markdown]
# ## Summary
#
# * The ball $\{c\|x\|^2<1\}$ carries the metric $(\lambda^c_x)^2 g^E$, $\lambda^c_x = 2/(1-c\|x\|^2)$: conformal, and the
#   boundary is infinitely far.
# * Möbius addition (Eq. 1) is the disk's Möbius map $\frac{a+z}{1+\bar a z}$ written with inner products:
#   multiply by the conjugate and use $a^2\bar z = 2\langle a,z\rangle a - |a|^2 z$. It is a gyrogroup, not a group.
#   Möbius scalar multiplication $\mu\otimes_c x = \exp_0(\mu\log_0 x)$ scales distances from the origin.
# * $d_H(x,y) = \tfrac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|(-x)\oplus y\|)$ (Eq. 2) tends to $2\|x-y\|$ as $c\to0$.
# * $\exp_0$ (Eq. 4) maps the network's output into the ball with $d_H(0,\exp_0 v) = 2\|v\|$ for every $c$;
#   geodesics are $x\oplus(t\otimes((-x)\oplus y)) = \exp_x(t\log_x y)$.
# * At a fixed angle both the chord and $d_H$ grow towards the boundary, but the chord stays bounded
#   while $d_H$ approaches the tree-like path through the origin.
# * In float32, `project` clamps points from $\sqrt c\,s\approx 6.1$ on; clipping at $r = 2.3$ ($\sqrt c\,r = 1.6$ at
#   $c = 0.5$) keeps every embedding far from that, at the price of $d_H\le 4r$.

# %% [markdown]
# ## Exercises
#
# 1. Show from Eq. 2 that $d_H(0, x) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)$ and check it
#    with `poincare.dist0` on a few points. (Section 8 checks your formula: define `ex1_dist0(y, c)`, one
#    distance per point of `y` `(..., D)`.)
# 2. Find the hyperbolic midpoint $m$ of $x$ and $y$ with Möbius operations and verify
#    $d_H(x,m) = d_H(m,y) = d_H(x,y)/2$. (Checked in section 8: `ex2_midpoint(x, y, c)`.)
# 3. For $c = 1$, from which tangent norm $s$ would float32 round $1-\tanh(s)$ to zero, and from which
#    $s$ does `project` change float32 points? Which one does the table of section 7 show?
#    (Checked in section 8: your two values of $s$ as `ex3_s_zero` and `ex3_s_project`, to 0.05.)
# 4. Is $(x\oplus y)\oplus z = x\oplus(y\oplus z)$ when $x$, $y$, $z$ are collinear with the origin? Why?
#    (Checked in section 8: `ex4_associative = True` or `False`; the why is yours.)
# 5. Show with the formulas that $2\otimes_c x = x\oplus_c x$: simplify both to one closed form in $x$ and $c$
#    (no $\tanh$, no $\operatorname{artanh}$). (Checked in section 8: that closed form as `ex5_double(x, c)`.)
#
# <details><summary>Solution 1</summary>
#
# With $x\to0$ in Eq. 2: $(-0)\oplus y = y$, so $d_H(0,y) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|y\|)$.
# ```python
# y = poincare.expmap0(torch.randn(5, 3, dtype=torch.float64), 0.5)
# lessons.verify("dist0", poincare.dist0(y, 0.5), 2 / 0.5**0.5 * torch.atanh(0.5**0.5 * y.norm(dim=-1)))
#
#
# def ex1_dist0(y, c):
#     return 2 / c**0.5 * torch.atanh(c**0.5 * y.norm(dim=-1))
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# $m = \gamma(\tfrac12) = x\oplus\big(\tfrac12\otimes((-x)\oplus y)\big)$ (section 5).
# ```python
# def ex2_midpoint(x, y, c):
#     return poincare.mobius_add(x, poincare.mobius_scalar_mul(0.5, poincare.mobius_add(-x, y, c), c), c)
#
#
# x, y = poincare.expmap0(torch.randn(2, 3, dtype=torch.float64), 0.5)
# m = ex2_midpoint(x, y, 0.5)
# print(poincare.dist(x, m, 0.5), poincare.dist(m, y, 0.5), poincare.dist(x, y, 0.5) / 2)
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# $1-\tanh(s)\approx 2e^{-2s}$ drops below float32's half-step at 1 ($2^{-25}\approx 3\cdot10^{-8}$), so that $\tanh(s)$
# rounds to exactly 1, for $s > \tfrac12\ln(2\cdot 2^{25}) \approx 9.0$. That is not the 8.7 of section 7's text and
# plot: 8.7 is where the margin drops to one whole step $2^{-24}$ (float32 no longer resolves it), 9.0 where it
# drops below half a step (it rounds to 0); section 7's first cell computes both. But `project` keeps float32 points at margin $\varepsilon = 10^{-5}$, which
# $2e^{-2s}$ reaches at $s^* = \tfrac12\ln(2/\varepsilon)\approx 6.1$: that comes first, and it is what the table shows — its
# float32 margin column is $10^{-5}$ from $s = 6.1$ on, and the error jumps from $6\cdot10^{-4}$ to $3\cdot10^{-2}$ there.
# ```python
# ex3_s_zero = 0.5 * math.log(2 * 2**25)  # ≈ 9.01: the margin 2e^{-2s} below half a float32 step
# ex3_s_project = 0.5 * math.log(2 / poincare.BALL_EPS[torch.float32])  # ≈ 6.10: the margin reaches ε
# ```
# </details>
#
# <details><summary>Solution 4</summary>
#
# Yes. On one line through the origin, Möbius addition is the relativistic velocity addition
# $\frac{a+b}{1+cab}$ of the signed norms (the rapidities add, section 5), which is commutative and
# associative; the gyration is the identity for parallel vectors. Check with `x, y, z = t[:, None] * u`
# for a unit vector `u` and three small numbers `t`:
# ```python
# u = torch.nn.functional.normalize(torch.randn(3, dtype=torch.float64), dim=0)
# x, y, z = torch.tensor([0.3, -0.5, 0.6], dtype=torch.float64)[:, None] * u
# add = poincare.mobius_add
# lessons.verify("collinear: (x ⊕ y) ⊕ z = x ⊕ (y ⊕ z)", add(add(x, y, 1.0), z, 1.0), add(x, add(y, z, 1.0), 1.0))
# ex4_associative = True
# ```
# </details>
#
# <details><summary>Solution 5</summary>
#
# With $u = \operatorname{artanh}(\sqrt c\|x\|)$: $2\otimes x = \tanh(2u)\frac{x}{\sqrt c\|x\|} = \frac{2\tanh u}{1+\tanh^2u}\frac{x}{\sqrt c\|x\|} = \frac{2x}{1 + c\|x\|^2}$.
# Eq. 1 with $y = x$: numerator $(1 + 2c\|x\|^2 + c\|x\|^2)x + (1-c\|x\|^2)x = 2(1 + c\|x\|^2)x$, denominator
# $1 + 2c\|x\|^2 + c^2\|x\|^4 = (1+c\|x\|^2)^2$ — the same.
# ```python
# def ex5_double(x, c):
#     return 2 * x / (1 + c * x.pow(2).sum(-1, keepdim=True))
# ```
# </details>
