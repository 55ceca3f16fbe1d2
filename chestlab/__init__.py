"""chestlab — a teaching kit for hyperbolic deep metric learning (the CHEST loss).

Modules, one concept each:
- ``poincare``  Poincaré-ball geometry (Eq. 1–4), feature clipping, hyperbolic LCA.
- ``settings``  every setting of a run, declared once (type, default, paper symbol, range, help).
- ``paper``     Table 1 presets, the ablation rows of Tables 6-7 and the paper's numbers.
- ``losses``    the functional core (Eq. 5–10, pairwise CE / Mix, hard-negative weights), the parts
                losses are composed from, and the loss registry (``register_loss``, ``get_loss``).
- ``gradients`` closed-form gradients that the notebooks derive, checked against autograd.
- ``metrics``   Recall@k and MAP@R in Euclidean, cosine and Poincaré space.
- ``engine``    builders, the Trainer, the evaluator, checkpoints and the CLI (``python -m chestlab.train``).
- ``plugins``   modules outside the package that register losses and datasets (``--plugin``, ``CHESTLAB_PLUGINS``).
- ``interrupts`` Ctrl-C and SIGTERM in the command-line programs (one line, exit status 128 + signal).
"""

__version__ = "0.1.0"

# The built-in losses register their settings sections (chestlab.settings holds the registry and
# imports no loss), so any ``import chestlab.<x>`` knows them: ``TrainConfig(loss="pair_ce")``.
from . import losses as _losses  # noqa: E402,F401
