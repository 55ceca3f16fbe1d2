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
# tree: docs/maths.md, Eq. 8–9. This lesson goes from Dasgupta's cost for hierarchical clustering to
# its hyperbolic relaxation, derives the depth of the hyperbolic lowest common ancestor (LCA), and
# shows on a toy problem what three readings of Eq. 9 do to proxies.
#
# **Learning objectives.** After this lesson you can
#
# 1. state Dasgupta's cost and why, for three points, it asks the most similar pair to merge first;
# 2. derive the depth of the hyperbolic LCA of two points in closed form, via the Lorentz model, and
#    check every step numerically;
# 3. write the HypHC relaxation (docs/maths.md, Eq. 8–9) and recover Dasgupta's triplet term as
#    $\gamma_{hyp}\to 0$;
# 4. tell apart three readings of Eq. 9 and predict what each does to the proxies — in particular
#    that the literal one sends every proxy to the clipping radius and destroys the class grouping;
# 5. measure whether τ changes the tree a real CHEST training learns, with the hierarchy scores of
#    `chestlab.hierarchy`, and explain the answer.
#
# Notation: $c > 0$ is always the curvature (the ball has radius $1/\sqrt c$); $d_H$ the Poincaré
# distance (docs/maths.md, Eq. 2); $\alpha_x = 1 - c\|x\|^2$. Set `CHESTLAB_FAST=1` for a quick run.

# %%
# %matplotlib inline
import itertools
import math

import matplotlib.pyplot as plt
import torch
from ipywidgets import FloatSlider, IntSlider, interact

from chestlab import lessons, losses, poincare
from chestlab.viz import mpl as viz_mpl
from chestlab.viz.style import class_color, lecture_axes, use_lecture_style

use_lecture_style()
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
# point of the geodesic through $a$ and $b$ closest to the origin (the root); its depth is
# $d_o = d_H(0, \mathrm{lca}(a, b))$. Two points near the boundary in similar directions have a
# geodesic that stays far from the origin — a deep LCA: they merge late in the walk from the root,
# i.e. *early* in the clustering.
#
# The kit computes $d_o$ in closed form (`poincare.lca_depth`):
#
# $$ \sinh(\sqrt c\, d_o) = \frac{2\sqrt c\,\|a\wedge b\|}{\|a-b\|\,\sqrt{\alpha_a\alpha_b + c\|a-b\|^2}},
# \qquad \|a\wedge b\|^2 = \|a\|^2\|b\|^2 - \langle a,b\rangle^2 . $$
#
# We derive it in five steps, in the **Lorentz model** (the hyperboloid), where geodesics are plane
# sections — as great circles are on a sphere — and check each step on two points of a 3-D ball.
#
# **Step 1 — the hyperboloid.** With the Minkowski product
# $\langle X, Y\rangle_L = -X_0Y_0 + \sum_{i\ge1} X_iY_i$, the hyperboloid
# $\mathbb H_c = \{X\in\mathbb R^{1+D} : \langle X, X\rangle_L = -1/c,\ X_0>0\}$ is isometric to the ball
# through
#
# $$ X(x) = \Big(\frac{1 + c\|x\|^2}{\sqrt c\,\alpha_x},\ \frac{2x}{\alpha_x}\Big), \qquad
# \cosh\!\big(\sqrt c\, d_H(a, b)\big) = -c\,\langle X(a), X(b)\rangle_L . $$
#
# The origin of the ball goes to the apex $O = (1/\sqrt c, 0, \dots, 0)$; the inverse map is
# $x = \vec X / (1 + \sqrt c\, X_0)$.

# %%
def to_lorentz(x, c):
    """Ball -> hyperboloid: X = ((1 + c|x|²) / (√c α), 2x / α), α = 1 − c|x|²."""
    n2 = x.pow(2).sum(-1, keepdim=True)
    alpha = 1 - c * n2
    return torch.cat([(1 + c * n2) / (math.sqrt(c) * alpha), 2 * x / alpha], -1)


def from_lorentz(X, c):
    """Hyperboloid -> ball: x = X⃗ / (1 + √c X_0)."""
    return X[..., 1:] / (1 + math.sqrt(c) * X[..., :1])


def mink(X, Y):
    """The Minkowski product <X, Y>_L = −X_0 Y_0 + Σ X_i Y_i."""
    return -X[..., 0] * Y[..., 0] + (X[..., 1:] * Y[..., 1:]).sum(-1)


c = 0.7
a, b = poincare.expmap0(torch.randn(2, 3, **f64), c)  # two points of the 3-D ball
A, B, O = to_lorentz(a, c), to_lorentz(b, c), to_lorentz(torch.zeros(3, **f64), c)
lessons.verify("X(a), X(b) on the hyperboloid: <X, X>_L = −1/c", torch.stack([mink(A, A), mink(B, B)]), -1 / c)
lessons.verify("the origin maps to the apex (1/√c, 0, 0, 0)", O, torch.tensor([1 / math.sqrt(c), 0, 0, 0], **f64))
lessons.verify("cosh(√c d_H(a, b)) = −c <X(a), X(b)>_L", torch.cosh(math.sqrt(c) * poincare.dist(a, b, c)), -c * mink(A, B))
lessons.verify("inverse map: from_lorentz(X(a)) = a", from_lorentz(A, c), a)

# %% [markdown]
# **Step 2 — a geodesic is a plane section.** The geodesic through $a$ and $b$ is the intersection of
# $\mathbb H_c$ with the plane $\Pi = \mathrm{span}(X(a), X(b))$ through the origin of $\mathbb R^{1+D}$.
# Check: walk along the geodesic in the ball (Eq. 3, $\gamma(t) = \exp_a(t\log_a b)$, well beyond $a$ and
# $b$), map every point to the hyperboloid and measure how far it is from $\Pi$ (least squares in the
# basis $X(a), X(b)$).

# %%
t = torch.linspace(-2.0, 3.0, 51, **f64)[:, None]
walk = poincare.expmap(a.expand(len(t), -1), t * poincare.logmap(a, b, c), c)  # γ(t), t ∈ [−2, 3]
G = to_lorentz(walk, c)
basis = torch.stack([A, B], 1)  # (1 + D, 2)
coef = torch.linalg.lstsq(basis, G.T).solution
rel_residual = (basis @ coef - G.T).norm(dim=0) / G.norm(dim=-1)
lessons.verify("every point of the geodesic lies in span(X(a), X(b))", rel_residual, 0.0, atol=1e-12)

# %% [markdown]
# **Step 3 — distance from the apex to a plane section.** Scale by $\sqrt c$ so that points of
# $\mathbb H_c$ become unit vectors, $\langle y, y\rangle_L = -1$, and $\cosh(\sqrt c\,D) = -\langle y, y'\rangle_L$.
# Split the scaled apex $o = \sqrt c\,O = (1, 0, \dots, 0)$ into a part in the plane and a part
# Minkowski-orthogonal to it: $o = o_\parallel + o_\perp$. For a point $y$ of the geodesic ($y\in\Pi$),
#
# $$ \cosh\!\big(\sqrt c\, d_H(0, y)\big) = -\langle o, y\rangle_L = -\langle o_\parallel, y\rangle_L
# \ \ge\ \sqrt{-\langle o_\parallel, o_\parallel\rangle_L} , $$
#
# by the reversed Cauchy–Schwarz inequality for timelike vectors, with equality for
# $y^* = o_\parallel/\sqrt{-\langle o_\parallel, o_\parallel\rangle_L}$: **that is the LCA**. Since
# $-1 = \langle o, o\rangle_L = \langle o_\parallel, o_\parallel\rangle_L + \langle o_\perp, o_\perp\rangle_L$,
#
# $$ \cosh^2(\sqrt c\, d_o) = 1 + \langle o_\perp, o_\perp\rangle_L
# \quad\Longleftrightarrow\quad \sinh^2(\sqrt c\, d_o) = \langle o_\perp, o_\perp\rangle_L . $$
#
# Check against brute force: the point of the sampled geodesic closest to the origin
# (`lessons.lca_point`, 20 001 samples).

# %%
u, v, o = math.sqrt(c) * A, math.sqrt(c) * B, torch.tensor([1.0, 0, 0, 0], **f64)
gram = torch.tensor([[mink(u, u), mink(u, v)], [mink(v, u), mink(v, v)]], **f64)
coef = torch.linalg.solve(gram, torch.stack([mink(o, u), mink(o, v)]))
o_par = coef[0] * u + coef[1] * v
o_perp = o - o_par
d_o = torch.asinh(mink(o_perp, o_perp).sqrt()) / math.sqrt(c)
brute_lca = lessons.lca_point(a, b, c, n=20001)
lessons.verify("o_perp is Minkowski-orthogonal to the plane", torch.stack([mink(o_perp, u), mink(o_perp, v)]), 0.0, atol=1e-12)
lessons.verify("sinh²(√c d_o) = <o_perp, o_perp>_L  vs brute force", d_o, poincare.dist0(brute_lca, c), rtol=1e-5, atol=1e-5)
lca = from_lorentz(o_par / (-mink(o_par, o_par)).sqrt() / math.sqrt(c), c)
lessons.verify("the LCA is y* = o_par / |o_par|, back in the ball", lca, brute_lca, atol=2e-3)

# %% [markdown]
# **Step 4 — a normal to the plane.** Take $n = (1, m)$ with $m$ in the span of $a$ and $b$; then $n$
# lies in $\mathrm{span}(o, \Pi)$ and is orthogonal to $\Pi$ when
#
# $$ \langle n, X(x)\rangle_L = 0 \iff 2\sqrt c\,\langle m, x\rangle = 1 + c\|x\|^2 \qquad (x = a, b). $$
#
# In $\mathrm{span}(o, \Pi)$, a 3-D space, $o_\perp$ is a multiple of $n$:
# $o_\perp = \frac{\langle o, n\rangle_L}{\langle n, n\rangle_L}n$, so with $\langle o, n\rangle_L = -1$ and
# $\langle n, n\rangle_L = \|m\|^2 - 1$:
#
# $$ \sinh^2(\sqrt c\, d_o) = \frac{1}{\|m\|^2 - 1}, \qquad
# \|m\|^2 = \frac{\|\rho_a b - \rho_b a\|^2}{\|a\wedge b\|^2}, \quad \rho_x = \frac{1 + c\|x\|^2}{2\sqrt c}, $$
#
# the second identity from solving the $2\times2$ system $\langle m, a\rangle = \rho_a$, $\langle m, b\rangle = \rho_b$
# (its Gram determinant is $\|a\wedge b\|^2$). A bonus: the points $x$ of the geodesic satisfy
# $2\sqrt c\,\langle m, x\rangle = 1 + c\|x\|^2$, i.e. $\|x - m/\sqrt c\|^2 = (\|m\|^2 - 1)/c$ — the familiar
# circle orthogonal to the boundary, of Euclidean radius $\varrho = \sqrt{\|m\|^2-1}/\sqrt c$, so
# $\sinh(\sqrt c\, d_o) = 1/(\sqrt c\,\varrho)$: the smaller the circle, the deeper the LCA.

# %%
def rho(x):
    return (1 + c * x.pow(2).sum()) / (2 * math.sqrt(c))


ab = torch.stack([a, b])  # m = ab.T @ k with (ab ab.T) k = (rho_a, rho_b)
m = ab.T @ torch.linalg.solve(ab @ ab.T, torch.stack([rho(a), rho(b)]))
n = torch.cat([torch.ones(1, **f64), m])
wedge2 = a.pow(2).sum() * b.pow(2).sum() - a.dot(b) ** 2
lessons.verify("n = (1, m) is orthogonal to X(a) and X(b)", torch.stack([mink(n, A), mink(n, B)]), 0.0, atol=1e-12)
lessons.verify("o_perp is a multiple of n: o_perp = −n / <n, n>_L", o_perp, -n / mink(n, n))
lessons.verify("|m|² = |ρ_a b − ρ_b a|² / |a ∧ b|²", m.pow(2).sum(), (rho(a) * b - rho(b) * a).pow(2).sum() / wedge2)
lessons.verify("sinh²(√c d_o) = 1 / (|m|² − 1)", torch.sinh(math.sqrt(c) * d_o) ** 2, 1 / (m.pow(2).sum() - 1))
lessons.verify("the geodesic is the circle |x − m/√c|² = (|m|² − 1)/c", (walk - m / math.sqrt(c)).pow(2).sum(-1),
               (m.pow(2).sum() - 1) / c)

# %% [markdown]
# **Step 5 — algebra.** Multiply out with $\|a\|^2$, $\|b\|^2$, $\langle a, b\rangle$ as the unknowns:
#
# $$ 4c\big(\|\rho_a b - \rho_b a\|^2 - \|a\wedge b\|^2\big)
# = \big\|(1 + c\|a\|^2)\,b - (1 + c\|b\|^2)\,a\big\|^2 - 4c\|a\wedge b\|^2
# = \|a-b\|^2\big(\alpha_a\alpha_b + c\|a-b\|^2\big). $$
#
# Hence $\|m\|^2 - 1 = \|a-b\|^2(\alpha_a\alpha_b + c\|a-b\|^2) / (4c\|a\wedge b\|^2)$, and Step 4 gives the
# closed form above. Check the identity on random points of balls of several dimensions and
# curvatures, then the closed form against the library:

# %%
for dim, cc in ((2, 1.0), (5, 0.3), (16, 2.0)):
    p, q = poincare.expmap0(1.5 * torch.randn(2, 100, dim, **f64), cc)
    P2, Q2, PQ = p.pow(2).sum(-1), q.pow(2).sum(-1), (p * q).sum(-1)
    lhs = ((1 + cc * P2)[:, None] * q - (1 + cc * Q2)[:, None] * p).pow(2).sum(-1) - 4 * cc * (P2 * Q2 - PQ**2)
    d2 = (p - q).pow(2).sum(-1)
    rhs = d2 * ((1 - cc * P2) * (1 - cc * Q2) + cc * d2)  # ‖a − b‖² (α_a α_b + c ‖a − b‖²)
    lessons.verify(f"Step 5 identity, D = {dim}, c = {cc}", lhs, rhs, rtol=1e-9, atol=1e-12)
    closed = torch.asinh(2 * math.sqrt(cc) * (P2 * Q2 - PQ**2).sqrt() / rhs.sqrt()) / math.sqrt(cc)
    lessons.verify(f"closed form == poincare.lca_depth, D = {dim}, c = {cc}", poincare.lca_depth(p, q, cc), closed,
                   rtol=1e-8, atol=1e-10)
lessons.verify("a geodesic through the origin: depth 0", poincare.lca_depth(a, -0.5 * a, c), 0.0, atol=1e-7)


# %% [markdown]
# **Play.** Three points at the same distance from the origin; move the angle between points 0 and 1.
# The squares are the LCAs of the three pairs, the number in the legend their depth.

# %%
def show_lca(c=1.0, r=0.85, spread_deg=40.0, rot=30.0):
    R = 1 / math.sqrt(c)
    ang = [math.radians(rot - spread_deg / 2), math.radians(rot + spread_deg / 2), math.radians(rot + 160)]
    pts = torch.tensor([[r * R * math.cos(t), r * R * math.sin(t)] for t in ang], **f64)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    viz_mpl.disk_view(ax, c, grid=False, circles=(1, 2))
    for (i, j), col in zip(itertools.combinations(range(3), 2), ("#2ca02c", "#9467bd", "#8c564b")):
        g = lessons.geodesic_arc(pts[i], pts[j], c, n=300, full=True).numpy()
        lca_ij = lessons.lca_point(pts[i], pts[j], c)
        depth = float(poincare.lca_depth(pts[i], pts[j], c))
        ax.plot(g[:, 0], g[:, 1], color=col, lw=2)
        ax.scatter(*lca_ij, color=col, marker="s", s=90, zorder=6, label=f"lca({i},{j}): depth $d_o$ = {depth:.2f}")
    ax.scatter(*pts.T, color="k", s=60, zorder=5, label="the three points")
    for i, p in enumerate(pts):
        ax.annotate(str(i), p, xytext=(6, 6), textcoords="offset points", fontsize=16)
    ax.set_title(f"hyperbolic LCAs, c = {c:g}")
    lecture_axes(ax)  # projector-sized ticks and labels on the disk
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    plt.show()


sl = dict(continuous_update=False)
interact(show_lca, c=FloatSlider(value=1, min=0.1, max=3, step=0.1, **sl),
         r=FloatSlider(value=0.85, min=0.1, max=0.99, step=0.01, description="‖x‖√c", **sl),
         spread_deg=FloatSlider(value=40, min=1, max=150, step=1, description="angle 0–1", **sl),
         rot=FloatSlider(value=30, min=-180, max=180, step=5, **sl));

# %%
show_lca(c=1.0, r=0.97, spread_deg=15)  # the callback once more, with points near the boundary

# %% [markdown]
# ## 3. The relaxation: Eq. 8–9
#
# For a triplet, “which pair merges first” = “which pair has the deepest LCA”. Replace the argmax
# by a softmax with temperature $\gamma_{hyp}$, and the similarities by Eq. 8's $\omega(p, p') = e^{-d_H(p, p')}$
# between two proxies $p, p'$. The notation is that of docs/maths.md: a triplet of proxies is
# $T_m = (p_1, p_2, p_3)$, $m = 1..M$; its three pairs are $\pi\in\{12, 13, 23\}$, with similarity $\omega_\pi$ and
# $\phi_\pi$ the quantity the softmax reads (here the pair's LCA depth $d_o$). ($\omega$, not $S$: $S$ is the soft
# similarity of Eq. 5–6; $p$ is always a proxy, never an index; and $t$ stays the temperature of lesson 02.)
#
# $$ L_{\mathrm{HypHC}}(T_m) = \sum_{\pi} \omega_\pi - \sum_{\pi} \omega_\pi\operatorname{softmax}_{\pi}(\phi_\pi/\gamma_{hyp}) \qquad \text{(docs/maths.md, Eq. 9)} $$
#
# With $\phi_\pi = d_o$ this is the triplet term of Dasgupta's cost, softened; as $\gamma_{hyp}\to0$
# it is exactly $\sum_\pi \omega_\pi - \omega_{\text{deepest pair}}$.

# %%
c = 1.0
P = poincare.expmap0(torch.randn(6, 2, **f64), c)
trip = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 3, 5]])
pairs = [(0, 1), (0, 2), (1, 2)]
omega = torch.stack([torch.exp(-poincare.dist(P[trip[:, i]], P[trip[:, j]], c)) for i, j in pairs], 1)  # ω_π, Eq. 8
depth = torch.stack([poincare.lca_depth(P[trip[:, i]], P[trip[:, j]], c) for i, j in pairs], 1)  # φ_π = d_o
manual = omega.sum(1) - (omega * torch.softmax(depth / 1.0, 1)).sum(1)
lessons.verify("hyphc_loss (variant='lca') == Eq. 9 with LCA depths", losses.hyphc_loss(P, trip, c, 1.0), manual)
dasg = omega.sum(1) - omega.gather(1, depth.argmax(1, keepdim=True)).squeeze(1)
lessons.verify("γ_hyp → 0: Dasgupta's triplet term", losses.hyphc_loss(P, trip, c, 1e-4), dasg, rtol=1e-6, atol=1e-8)

# %% [markdown]
# ## 4. Three readings of Eq. 9
#
# The paper's softmax reads $\phi_\pi = d_H$ of the pair — a pairwise *distance* — and says nothing about holding
# anything fixed: read literally, Eq. 9 is a function of the distances alone, differentiated as a
# whole. It cites HypHC, whose $\phi_\pi$ is the LCA *depth* and whose similarities are constants
# (data, not parameters). Mixing the two gives a third reading. `losses.hyphc_loss` has all three:
#
# | reading | $\phi_\pi$ | $\omega_\pi$ | call |
# |---|---|---|---|
# | HypHC (the kit's default) | LCA depth | held constant each step | `variant="lca"` |
# | **literal Eq. 9** | $d_H$ of the pair | differentiated | `variant="pairwise", detach_similarity=False` |
# | mixed | $d_H$ of the pair | held constant each step | `variant="pairwise"` |
#
# **Literal.** Write Eq. 9 as $L = \sum_\pi \omega_\pi(1 - \sigma_\pi)$ with $\sigma = \operatorname{softmax}_\pi(\phi_\pi/\gamma_{hyp})$, so
# $0 \le 1 - \sigma_\pi \le 1$ and
#
# $$ 0 \ \le\ L_{\mathrm{HypHC}}(T_m) \ \le\ \sum_{\pi} \omega_\pi = \sum_{\pi} e^{-d_H(\text{pair } \pi)} . $$
#
# The loss is squeezed to zero by making *every* pair of proxies far apart — same class or not. Its
# gradient does exactly that: each proxy is pushed away from all others, out to the clipping radius
# (the head clips tangent vectors at $r$, so $d_H(0, p) \le 2r$), where they spread evenly. The
# class grouping the proxy loss made is undone.
#
# **Mixed.** With $\omega$ constant the derivative of Eq. 9 in $\phi_\pi$ is
#
# $$ \frac{\partial L}{\partial \phi_\pi} = -\frac{\sigma_\pi}{\gamma_{hyp}}\big(\omega_\pi - \bar \omega\big), \qquad \bar \omega = \textstyle\sum_{\pi'} \sigma_{\pi'} \omega_{\pi'}, $$
#
# so a pair more similar than average ($\omega_\pi > \bar \omega$) has its $\phi_\pi$ **increased**. With LCA depths this
# is right (similar pairs get deeper LCAs); with distances it pushes the *closest* pair apart and pulls
# the farthest together: it equalises the three distances of every triplet — in the 2-D disk, by
# collapsing all proxies onto one point.
#
# **Toy problem** (`lessons.hyphc_toy`): 3 classes × 3 proxies in the 2-D disk ($c = 1$, clipping radius
# $r = 2.3$, so $d_H(0, p)\le 4.6$), starting grouped by class (as the proxy loss would leave them),
# trained by the HypHC term *alone* on all triplets. We watch the mean $d_H(0, p)$, the mean
# same-class and other-class distances, and the class grouping: the fraction of proxies whose
# nearest other proxy is of their own class (chance: 2 of 8 = 25 %).

# %%
steps = lessons.pick(300, 100)
r_clip = 2.3
readings = {
    "HypHC (LCA depth, ω constant)": dict(variant="lca", detach_similarity=True),
    "literal Eq. 9 (distances, ω differentiated)": dict(variant="pairwise", detach_similarity=False),
    "mixed (distances, ω constant)": dict(variant="pairwise", detach_similarity=True),
}
runs = {name: lessons.hyphc_toy(steps=steps, r=r_clip, **kw) for name, kw in readings.items()}
print(f"after {steps} steps (start → end); d_H(0, p) is at most 2r = {2 * r_clip:.1f}")
for name, r in runs.items():
    print(f"{name}\n   mean d_H(0, p) {r['norm'][0]:.2f} → {r['norm'][-1]:.2f} | mean distance same class"
          f" {r['dist_within'][0]:.2f} → {r['dist_within'][-1]:.2f}, other class {r['dist_between'][0]:.2f} → {r['dist_between'][-1]:.2f}"
          f" | nearest proxy of own class {r['nn_same_class'][0]:.0%} → {r['nn_same_class'][-1]:.0%}")

# %%
hyp, lit, mixed = runs.values()  # the claims below, checked (the cell fails if one does not hold)
assert lit["norm"][-1] > 0.9 * 2 * r_clip, "literal: the proxies end near the clipping radius 2r"
assert lit["nn_same_class"][-1] < 0.5 < lit["nn_same_class"][0], "literal: the class grouping is lost"
assert hyp["nn_same_class"][-1] == 1.0 and hyp["dist_within"][-1] < 0.5 * hyp["dist_between"][-1], "HypHC: grouping kept"
assert mixed["dist_between"][-1] < 0.1, "mixed: the proxies collapse"
print("✓ literal: at the clipping radius, grouping lost · HypHC: grouping kept · mixed: collapsed")


# %%
def show_toy(step=0):
    fig = plt.figure(figsize=(15, 10), layout="constrained")
    gs = fig.add_gridspec(2, 6, height_ratios=(1.25, 1))
    disks = [fig.add_subplot(gs[0, 2 * i:2 * i + 2]) for i in range(3)]
    curves = [fig.add_subplot(gs[1, :3]), fig.add_subplot(gs[1, 3:])]
    for ax, (name, r) in zip(disks, runs.items()):
        viz_mpl.disk_view(ax, 1.0, grid=False, circles=(2, 4))
        snap = r["snapshots"][step]
        for k in range(snap.shape[0]):
            ax.scatter(snap[k, :, 0], snap[k, :, 1], marker="*", s=260, color=class_color(k), edgecolor="k", lw=0.6,
                       label=f"class {k}", zorder=5)
        ax.set_title(name.replace(" (", "\n("))
        lecture_axes(ax)
    handles, labels = disks[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, title=f"proxies at step {step}")
    styles = {name: dict(color=col, lw=lw, alpha=al) for name, col, lw, al in
              zip(runs, ("#2ca02c", "#d62728", "#7f7f7f"), (3, 3, 1.2), (1, 1, 0.7))}
    for name, r in runs.items():
        curves[0].plot(r["norm"], **styles[name], label=name.split(" (")[0])
        curves[1].plot(100 * r["nn_same_class"], **styles[name])
    curves[0].axhline(2 * r_clip, color="k", ls="--", lw=1.5, label="clipping radius: $d_H(0, p) = 2r$")
    curves[0].set(xlabel="step", ylabel="mean $d_H(0, p)$", title="distance of the proxies from the origin")
    curves[1].axhline(25, color="k", ls=":", lw=1.5, label="chance: 2 of 8")
    curves[1].set(xlabel="step", ylabel="% of proxies", ylim=(-3, 103), title="nearest other proxy is of the same class")
    for ax in curves:
        ax.axvline(step, color="k", lw=0.8)
    handles = [h for ax in curves for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=5)
    plt.show()


interact(show_toy, step=IntSlider(value=steps, min=0, max=steps, step=5, continuous_update=False));

# %%
show_toy(step=steps)  # the callback once more: the proxies after training

# %% [markdown]
# **What we see.**
#
# * **Literal Eq. 9** (distances, $\omega$ differentiated): every proxy runs out to the clipping radius
#   (mean $d_H(0, p)$ ends next to $2r = 4.6$) and the proxies spread over the circle with no regard
#   for class: same-class pairs end almost as far apart as other-class pairs, and the nearest proxy of
#   most proxies now belongs to *another* class. The term destroys the grouping that the proxy loss
#   builds.
# * **HypHC** (LCA depths, $\omega$ constant): the proxies also move out towards the boundary, but along
#   their class directions; same-class proxies stay close (some end on top of each other: each class
#   has three stars), other classes far, and every proxy's nearest neighbour is of its own class.
#   Note what the term sees: the proxies' *own* similarities (Eq. 8 measures proxy distances; no class
#   label enters Eq. 8–9). It reinforces the grouping the proxies start with; it cannot create one.
# * **Mixed** (distances, $\omega$ constant): all proxies collapse onto one point, as the derivative above
#   predicts.
#
# In CHEST the term is weighted by $\tau = 0.5$ next to $L_H$, which keeps classes apart; lesson 05
# measures how big the term is in a real training run, and its effect in the ablation (rows “+ HypHC”).

# %% [markdown]
# ## 5. Does τ change the tree CHEST learns? A measurement on `tree`
#
# The toy above trains the HypHC term *alone*. In CHEST it sits next to the proxy losses (Eq. 10)
# with weight $\tau = 0.5$, on proxies clipped at $r = 2.3$ ($d_H(0, p) \le 4.6$). Two questions,
# measured on the `tree` data (32 training classes under 4 super-classes, 3 levels; preset `demo-tree`):
#
# 1. **How big is $\tau L_{\mathrm{HypHC}}$ in the loss?** Eq. 8 reads the similarity off the proxies,
#    $\omega = e^{-d_H}$; proxies that sit about 8 apart have $\omega \approx e^{-8} \approx 3 \cdot 10^{-4}$.
# 2. **Does τ change the proxies' tree?** Decode a dendrogram from the trained proxies
#    (`chestlab.hierarchy.decode`: average linkage on $d_H$, as the kit decodes both spaces) and score it against the
#    true tree: cophenetic correlation (↑), dendrogram purity of the super-classes (↑) and of the classes
#    (↑: the $K$ proxies of a class merge first), Dasgupta cost under the true similarity (↓) — what the
#    trainer logs as `proxies/H/*` and the dashboard's *Hierarchy* panel shows live.
#
# For each seed we train twice, $\tau = 0$ and $\tau > 0$, with the same seed (same initialisation, same
# batches), so the difference is τ's doing. Two settings: the paper's ($r = 2.3$, $\tau = 0.5$) and the
# preset `demo-tree-hyphc`, which brings the proxies nearer — $r = 1$, **not in the paper** — and weights
# the term $\tau = 8$, **not in the paper**, so that it can become most of the loss. Eq. 8–9 are unchanged.

# %%
import numpy as np

from chestlab import results
from chestlab.engine import Trainer
from chestlab.hierarchy import hierarchy_of
from chestlab.paper import PRESETS
from chestlab.settings import TrainConfig

hc_steps = lessons.pick(600, 100)
hc_seeds = lessons.pick(tuple(range(8)), (0,))  # 8: with 3, a small change can look consistent by chance
hc_settings = {  # name -> (preset, τ > 0)
    "paper: r = 2.3": ("demo-tree", 0.5),
    "demo-tree-hyphc: r = 1": ("demo-tree-hyphc", PRESETS["demo-tree-hyphc"]["tau"]),
}


# 2 settings × 2 τ × 8 seeds of 600 steps take about 9 minutes: full mode reads the runs shipped in
# chestlab/assets/results/ (`python -m chestlab.results regenerate lesson04_hyphc_study` recomputes them);
# fast mode trains its small version here. One run: `chestlab.results.hyphc_run(preset, tau, seed, steps)`.
RECOMPUTE = False  # True: train the 32 runs now (minutes) instead of reading them
study = results.load("lesson04_hyphc_study", recompute=RECOMPUTE)
truth = hierarchy_of(Trainer(TrainConfig.preset("demo-tree-hyphc")).train_set)  # the true tree of the classes
hc = {(s["setting"], s["tau"]): [{**{k: np.nan if v is None else v for k, v in r.items()}, "Z": np.array(r["Z"]),
                                  "groups": np.array(r["groups"]), "truth": truth} for r in s["runs"]] for s in study}
assert list(hc) == [(name, tau) for name, (_, tau_on) in hc_settings.items() for tau in (0.0, tau_on)]
assert all(len(runs) == len(hc_seeds) for runs in hc.values())

hc_metrics = ("share", "omega median", "omega same", "cophenet", "purity", "class purity", "dasgupta", "same-class first")
print(f"{hc_steps} steps, seeds {list(hc_seeds)}: mean ± std over seeds")
print(f"{'setting':24s} {'τ':>5s}  " + "  ".join(f"{m:>17s}" for m in hc_metrics))
for (name, tau), hc_runs in hc.items():
    cells = []
    for m in hc_metrics:
        v = np.array([r[m] for r in hc_runs]) * (100 if m == "share" else 1)
        cells.append(f"{v.mean():.3g} % ± {v.std():.2g}" if m == "share" else f"{v.mean():.2g} ± {v.std():.1g}"
                     if m.startswith("omega") else f"{v.mean():.3f} ± {v.std():.3f}")
    print(f"{name:24s} {tau:5g}  " + "  ".join(f"{x:>17s}" for x in cells))
print("share = Σ τ·L_HypHC / Σ L over the last 50 steps; omega median / same = median of Eq. 8's ω = e^(−d_H) over all"
      " pairs of proxies / the pairs of one class; same-class first = share of HypHC triplets whose most similar pair"
      " (Eq. 8) is the same-class pair")

# %% [markdown]
# The same runs, seed by seed: the change τ makes (τ > 0 minus τ = 0, same seed, so the same
# initialisation and batches), its mean over the seeds with its standard error, and in how many seeds
# it goes up. A mean change within two standard errors is not one a student could see.

# %%
from IPython.display import Markdown, display

verdict = []
deltas = {}  # (setting, score) -> the change τ makes, seed by seed
for name, (preset, tau_on) in hc_settings.items():
    off, on = hc[(name, 0.0)], hc[(name, tau_on)]
    parts = []
    for m in ("cophenet", "purity", "class purity", "dasgupta"):
        delta = deltas[(name, m)] = np.array([b[m] - a[m] for a, b in zip(off, on)])
        n = len(delta)
        se = delta.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        seen = n > 1 and abs(delta.mean()) > 2 * se and abs(delta.mean()) > 0.02
        parts.append(f"{m} {delta.mean():+.3f} ± {se:.3f} ({(delta > 0).sum()} of {n} seeds up"
                     f"{', **visible**' if seen else ''})")
    share = np.mean([r["share"] for r in on])
    verdict.append(f"* **{name}**, τ = {tau_on:g}: τ·L_HypHC is {100 * share:.2g} % of the loss; τ changes "
                   + ", ".join(parts) + ".")
display(Markdown("Measured in this run (τ > 0 minus τ = 0: mean ± standard error over the seeds):\n\n" + "\n".join(verdict)))
big = "demo-tree-hyphc: r = 1"
print(f"{big}, τ = {hc_settings[big][1]:g} minus τ = 0, seed by seed:")
print(f"{'seed':>4s}  " + "  ".join(f"{m:>12s}" for m in ("cophenet", "purity", "dasgupta")))
for i, seed in enumerate(hc_seeds):
    print(f"{seed:4d}  " + "  ".join(f"{deltas[(big, m)][i]:+12.3f}" for m in ("cophenet", "purity", "dasgupta")))
paper_share = np.mean([r["share"] for r in hc[("paper: r = 2.3", 0.5)]])
preset_share = np.mean([r["share"] for r in hc[(big, hc_settings[big][1])]])
assert paper_share < 0.01 and preset_share > 10 * paper_share, "the paper's term is negligible, the preset's is not"


# %%
def show_hyphc_trees(seed_index=0):
    from chestlab.viz.hierarchy import dendrogram_geometry, draw_dendrogram_mpl, true_linkage

    name = "demo-tree-hyphc: r = 1"
    tau_on = hc_settings[name][1]
    fig = plt.figure(figsize=(16, 10), layout="constrained")
    gs = fig.add_gridspec(2, 3, height_ratios=(1.1, 1))
    truth = hc[(name, 0.0)][seed_index]["truth"]
    names = truth.group_names(1)
    for col, tau in enumerate((0.0, tau_on)):
        r = hc[(name, tau)][seed_index]
        draw_dendrogram_mpl(fig.add_subplot(gs[0, col]), dendrogram_geometry(r["Z"], r["groups"]), names,
                            title=f"proxies, τ = {tau:g} (seed {hc_seeds[seed_index]})",
                            ylabel="mean $d_H$ at the merge")
    ax = fig.add_subplot(gs[0, 2])
    draw_dendrogram_mpl(ax, dendrogram_geometry(true_linkage(truth), truth.groups(1)), names,
                        title="the true tree (classes)", ylabel="LCA height (levels)", leaves_what="class")
    ax.legend(title="super-class", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=4, fontsize=12,
              title_fontsize=12)  # below the axes: inside, it would cover the tree
    panels = (("cophenet", "cophenetic correlation ↑"), ("purity", "super-class purity ↑"), ("dasgupta", "Dasgupta cost ↓"))
    for col, (m, label) in enumerate(panels):
        ax = fig.add_subplot(gs[1, col])
        xt, labels = [], []
        for k, ((setting, tau), seed_runs) in enumerate(hc.items()):
            x = k + 0.6 * (k // 2)
            vals = [r[m] for r in seed_runs]
            ax.bar(x, np.mean(vals), width=0.7, color="#c6dbef" if tau == 0 else "#2171b5", edgecolor="k")
            ax.scatter(np.full(len(vals), x), vals, color="k", s=25, zorder=5)
            xt.append(x)
            labels.append(f"{'r = 2.3' if setting.startswith('paper') else 'r = 1'}\nτ = {tau:g}")
        ax.set_xticks(xt, labels, fontsize=12)
        ax.set_title(f"{label}\n(bars: mean, dots: seeds)")
        ax.set_ylabel(label[:-2])
    fig.suptitle(f"Does τ change the proxies' tree? Data: tree, {hc_steps} steps; τ = 0 (light) vs τ > 0 (dark)")
    plt.show()


interact(show_hyphc_trees, seed_index=IntSlider(value=0, min=0, max=len(hc_seeds) - 1, continuous_update=False,
                                                 description="seed"));

# %%
show_hyphc_trees(0)  # the callback once more: the first seed

# %% [markdown]
# **What we see** (the numbers are printed above; they are measured again each time the notebook runs).
#
# * **At the paper's $r = 2.3$ the term is inert, and the ω columns say why.** The proxies sit
#   $d_H \approx 8$ apart, so Eq. 8's $\omega = e^{-d_H}$ is about 3e-4 over all pairs and about 1e-3
#   within a class (the two ω columns), and Eq. 9 never exceeds the sum of its ω (section 4's bound). The
#   term is a rounding error of the loss (the share column), so are its gradients, and moving τ cannot
#   act. This is what the dashboard's HypHC scenarios show: L_HypHC a flat line at 0.
# * With `demo-tree-hyphc` ($r = 1$) the proxies are nearer — ω about 0.04 over all pairs, about 0.6
#   within a class — and the term grows as the proxy losses fall, to most of the loss by the end of
#   the full run (`CHESTLAB_FAST=1` stops early, while it is still small). **There it acts, on what Eq. 9
#   asks for**: τ = 8 pulls each class's proxies together (ω within a class about 0.6 → 0.8 in the full
#   run, the "omega same" column, while ω over all pairs stays at 0.04) — and the decoded tree moves
#   only a little: over the 8 seeds of the full run, τ raises the cophenetic correlation by
#   +0.018 ± 0.006 (7 of 8 seeds) and the super-class purity by +0.022 ± 0.011 (6 of 8), about two
#   standard errors, against a difference of 0.19 in cophenetic correlation between the two τ = 0 rows,
#   which differ only in $r$. Seed by seed the purity goes both ways (seeds 0 and 5: −0.02; seed 2:
#   +0.07), so a three-seed run could read it either way. The last column of the first table says why
#   the effect stays small.
#   CHEST's triplets always pair two proxies of one class with one of another, and Eq. 8 reads the
#   similarities off the proxies themselves, which the proxy loss has already grouped by class: with
#   the preset, the same-class pair is already the most similar in (nearly) every triplet, so Eq. 9 only
#   asks for what is already there — "merge each class's proxies first" (the class purity column). Nothing in Eq. 8–9 says which *classes* are
#   siblings, so the term cannot build the super-class levels of the tree; only the data can, through
#   the proxy loss. What does move the tree is the geometry: compare the cophenetic correlation of
#   the two τ = 0 rows, which differ only in the clipping radius $r$.
# * Nearer proxies do not rescue it. On the wide tree (preset `demo-tree-wide`: 4 × 4 × 4 × 4 leaves,
#   $D_H = 4$) the proxies sit closer ($\omega \approx 0.15$ at either radius) and τ = 8 makes the term
#   5 % of the loss; still, over 5 paired seeds at $r = 2.3$ and at $r = 1$, every change τ makes to the
#   proxies' tree stays within two standard errors but one, Dasgupta's cost at $r = 2.3$, τ = 8:
#   −0.004 ± 0.002, on a tree at chance level (measured outside this notebook, an hour of CPU:
#   `python -m chestlab.reproduce hyphc`; the tables are in docs/reproduce.md, "Does each regulariser act?").
# * So on this data τ is a weak knob on the hierarchy: at the paper's $r$ it does nothing, at $r = 1$ about two standard errors in 8 seeds. HypHC itself clusters with
#   similarities that come from outside the tree being learned (data features); giving Eq. 8 such
#   similarities would be a change of the method, not of a setting. The dashboard's *Hierarchy* panel
#   shows the same scores live, step by step: pick the loss preset *CHEST, HypHC enlarged* ($r = 1$,
#   $\tau = 2$, the top of the τ slider; not in the paper) and move τ.

# %% [markdown]
# ## 6. Implement it yourself
#
# Write, in plain torch (no `chestlab` inside):
#
# * `my_lca_depth(x, y, c)`: the depth $d_o$ of the hyperbolic LCA of `x` and `y` (shape `(..., D)` →
#   `(...)`), with the closed form of section 2:
#   $\sinh(\sqrt c\,d_o) = 2\sqrt c\,\|x\wedge y\| / \big(\|x-y\|\sqrt{\alpha_x\alpha_y + c\|x-y\|^2}\big)$;
# * `my_hyphc_triplet(P, triplets, c, gamma_hyp)`: Eq. 9 (docs/maths.md) per triplet, HypHC's reading —
#   `P` of shape `(N, D)` proxies in the ball, `triplets` an `(M, 3)` tensor of indices into `P`, pairs
#   $\pi$ in the order 12, 13, 23; $\omega_\pi = e^{-d_H}$ (Eq. 8, with the Poincaré distance of Eq. 2 as in
#   lesson 01) and $\phi_\pi$ the pair's LCA depth. Returns `(M,)`.
#
# The cell below holds a reference solution, **collapsed**: write your own version into it (or in a new
# cell above the check) before you expand it. Then run the check.

# %% tags=["solution"] jupyter={"source_hidden": true}
def my_lca_depth(x, y, c):
    x2, y2, xy = x.pow(2).sum(-1), y.pow(2).sum(-1), (x * y).sum(-1)
    wedge = (x2 * y2 - xy**2).clamp_min(0).sqrt()  # ‖x ∧ y‖
    d2 = (x - y).pow(2).sum(-1)  # ‖x − y‖²
    s = 2 * c**0.5 * wedge / (d2 * ((1 - c * x2) * (1 - c * y2) + c * d2)).sqrt()
    return torch.asinh(s) / c**0.5


def my_poincare_dist(x, y, c):  # Eq. 2
    xy, x2, y2 = (x * y).sum(-1), x.pow(2).sum(-1), y.pow(2).sum(-1)
    u = (x - y).norm(dim=-1) / torch.sqrt(1 - 2 * c * xy + c**2 * x2 * y2)  # ‖(−x) ⊕ y‖
    return 2 / c**0.5 * torch.atanh(c**0.5 * u)


def my_hyphc_triplet(P, triplets, c, gamma_hyp):
    pairs = ((0, 1), (0, 2), (1, 2))  # π = 12, 13, 23
    x = [P[triplets[:, i]] for i in range(3)]
    omega = torch.stack([torch.exp(-my_poincare_dist(x[i], x[j], c)) for i, j in pairs], 1)  # Eq. 8
    phi = torch.stack([my_lca_depth(x[i], x[j], c) for i, j in pairs], 1)
    return omega.sum(1) - (omega * torch.softmax(phi / gamma_hyp, 1)).sum(1)  # Eq. 9


# %%
pts = poincare.expmap0(torch.randn(2, 50, 4, **f64), 0.7)
lessons.verify("my_lca_depth == poincare.lca_depth   (section 2)", my_lca_depth(pts[0], pts[1], 0.7), poincare.lca_depth(pts[0], pts[1], 0.7), rtol=1e-8, atol=1e-10)
P6 = poincare.expmap0(torch.randn(6, 2, **f64), 1.0)
trip6 = torch.tensor(list(itertools.combinations(range(6), 3)))  # all 20 triplets of 6 proxies
lessons.verify("my_hyphc_triplet == losses.hyphc_loss   (Eq. 8–9)", my_hyphc_triplet(P6, trip6, 1.0, 0.5), losses.hyphc_loss(P6, trip6, 1.0, 0.5), rtol=1e-8, atol=1e-12)

# %% [markdown]
# **Check your answer to exercise 2** (at the end). Define `ex2_limit(a, b)`, your Euclidean formula for the
# $c\to0$ limit of the LCA depth of `a` and `b` (shape `(D,)`, float64), and run this cell again: it compares
# your function with `poincare.lca_depth` at $c = 0$. Until you define it, the cell only says so.

# %%
if "ex2_limit" in globals():
    for ex_a, ex_b in torch.randn(5, 2, 3, **f64):
        lessons.verify("exercise 2: your c → 0 limit == poincare.lca_depth(a, b, 0)", ex2_limit(ex_a, ex_b), poincare.lca_depth(ex_a, ex_b, 0.0), rtol=1e-7, atol=1e-9)
else:
    print("exercise 2: define ex2_limit(a, b) and run this cell again")

# %% [markdown]
# ## Summary
#
# * Dasgupta's cost, restricted to a triplet, asks the most similar pair to merge first; summed over
#   triplets it ranks trees as the full cost does.
# * In the ball a tree is read off the **LCA**: the point of the geodesic closest to the origin. In the
#   Lorentz model a geodesic is a plane section of the hyperboloid, the LCA is the normalised
#   projection of the apex onto that plane, and $\sinh^2(\sqrt c\,d_o) = \langle o_\perp, o_\perp\rangle_L$
#   gives the closed form $\sinh(\sqrt c\,d_o) = 2\sqrt c\|a\wedge b\|/(\|a-b\|\sqrt{\alpha_a\alpha_b + c\|a-b\|^2})$
#   that `poincare.lca_depth` implements.
# * Eq. 9 (docs/maths.md) is HypHC's softened triplet term. Read with LCA depths and constant
#   similarities it keeps proxies grouped by class. Read literally — distances, everything
#   differentiated — it is bounded by $\sum S$ and minimised by pushing all proxies apart: they go to the
#   clipping radius and the class grouping is lost. Distances with constant similarities collapse them.
# * In CHEST on `tree` (section 5, measured): with the paper's settings the term is a negligible part
#   of the loss, because Eq. 8's ω between proxies $d_H \approx 8$ apart is about 3e-4; made large (`demo-tree-hyphc`) it moves the proxies' tree only a little
#   (8 seeds: cophenetic +0.018 ± 0.006, super-class purity +0.022 ± 0.011, about two standard errors), because
#   Eq. 8's similarities come from proxies already grouped by class and its triplets only ask for that grouping.

# %% [markdown]
# ## Exercises
#
# 1. Train the toy with LCA depths but $\omega$ differentiated (`variant="lca", detach_similarity=False`). Does the bound $L \le \sum_\pi \omega_\pi$ predict what happens? What becomes of the class grouping?
# 2. Show that at $c\to0$ the LCA depth is twice the Euclidean distance from the origin to the line through $a$ and $b$, and check it. (Section 6 checks your answer: define `ex2_limit(a, b)` and run its check cell.)
# 3. With 4 leaves, enumerate the trees and check that summing the triplet terms ranks them as Dasgupta's cost does.
#
# <details><summary>Solution 1</summary>
#
# ```python
# r = lessons.hyphc_toy("lca", steps, detach_similarity=False)
# print(r["norm"][[0, -1]], r["dist_within"][[0, -1]], r["dist_between"][[0, -1]], r["nn_same_class"][[0, -1]])
# ```
# The bound $0 \le L \le \sum_\pi \omega_\pi$ holds for any $\phi_\pi$, so once $\omega$ is differentiated the same push
# apart appears. With 300 steps: mean $d_H(0, p)$ 1.29 → 4.55 (the clipping radius is 4.6), the
# same-class distance 1.23 → 7.08 against 2.27 → 8.58 for other classes: the classes are no longer
# tight clusters. The LCA softmax still favours the class structure, so most proxies keep a
# same-class nearest neighbour (89 % → 78 %, against 11 % with the literal reading) — the tree term
# slows the damage but does not stop it.
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
# ex2_limit = lambda a, b: 2 * torch.linalg.cross(a, b).norm() / (a - b).norm()  # what section 6 checks
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# Dasgupta: $\sum_{i<j} w_{ij}|\mathrm{leaves}(i\vee j)|$. For each tree compute it and
# $\sum_{\text{triplets}}(\sum w - w_{\text{first merged}})$; the two differ by $2\sum_{i<j}w_{ij}$ (a constant), so
# they rank the trees identically.
# </details>
