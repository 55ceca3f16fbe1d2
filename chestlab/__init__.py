"""chestlab — a teaching kit for hyperbolic deep metric learning (the CHEST loss).

Modules, one concept each:
- ``poincare``  Poincaré-ball geometry (Eq. 1–4), feature clipping, hyperbolic LCA.
- ``losses``    soft similarity and proxy losses (Eq. 5–7), HypHC (Eq. 8–9), CHEST (Eq. 10),
                pairwise cross-entropy / Mix and hard-negative weights (hard-negative paper).
- ``gradients`` closed-form gradients that the notebooks derive, checked against autograd.
- ``metrics``   Recall@k and MAP@R in Euclidean, cosine and Poincaré space.
"""

__version__ = "0.1.0"
