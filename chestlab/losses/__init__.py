r"""The losses: the functional core (Eq. 5–10 and the hard-negative paper's losses, what lessons and
tests call), the parts losses are composed from, and the registered trainable losses.

- :mod:`.functional` — ``soft_similarity``, ``proxy_loss``, ``hyphc_loss``, ``chest_loss``,
  ``pair_ce_loss``, ``mix_loss``, ``hard_negative_weights``, ``sample_triplets`` (Eq. 5–7 and 10:
  the readable reference of the fused terms).
- :mod:`.parts` — ``ProxyTerm`` (Eq. 5–7 under a given distance, fused) and ``HypHCTerm`` (Eq. 8–9).
- :mod:`.checks` — the validators and the rules more than one module states (``hyphc_needs_two_proxies``).
- :mod:`.base` — ``Loss`` (a weighted sum of ``Term`` s), ``Term``, ``Step``, ``LossOutput``,
  ``LossContext``, ``settings_section`` (a section made of its parts' and terms' sections) and the
  registry (``register_loss``, ``get_loss``, ``list_losses``).
- :mod:`.chest` (``chest``), :mod:`.pairwise` (``pair_ce``, ``mix``) — the registered losses; each
  term owns its settings section (CHEST: ``CHESTProxyTermH``, ``CHESTProxyTermE``, ``CHESTHypHCTerm``).
- :mod:`.hier` (``chest_hier``, ``pair_ce_hier``) — HIER's term, joined to a base loss by composition
  (``CHESTLoss.with_terms(HIERTerm)``).
- :mod:`.unsup` (``unsup``) — unsupervised: hierarchical pseudo-labels and a multi-level triplet loss.
"""

from .base import Loss, LossContext, LossOutput, Step, Term, get_loss, list_losses, register_loss, settings_section
from .checks import check_chest_inputs, check_hyphc, check_labels, check_positive, hyphc_needs_two_proxies
from .chest import (
    CHEST_TERMS,
    CHESTHypHCTerm,
    CHESTLoss,
    CHESTProxySettings,
    CHESTProxyTerm,
    CHESTProxyTermE,
    CHESTProxyTermH,
    CHESTSettings,
)
from .functional import (
    CHESTOutput,
    chest_loss,
    hard_negative_weights,
    hyphc_loss,
    mix_loss,
    pair_ce_loss,
    pair_similarity,
    proxy_loss,
    sample_triplets,
    soft_similarity,
)
from .pairwise import MixLoss, MixTerm, PairCELoss, PairCETerm
from .hier import (
    CHESTHIERLoss,
    HIERSettings,
    HIERTerm,
    PairCEHIERLoss,
    hier_loss,
    hier_parents,
    lca_select,
    lca_triplet_loss,
    reciprocal_triplets,
)
from .unsup import UnsupLoss, hierarchical_triplet_loss, pseudo_labels, similarity_degree
from .parts import HypHCTerm, PoincareDistance, ProxyTerm, euclidean_distance

__all__ = [
    "Loss", "LossContext", "LossOutput", "Step", "Term", "get_loss", "list_losses", "register_loss", "settings_section",
    "CHESTLoss", "CHESTSettings", "CHESTProxySettings", "CHESTProxyTerm", "CHESTProxyTermH", "CHESTProxyTermE",
    "CHESTHypHCTerm", "CHEST_TERMS", "hyphc_needs_two_proxies", "PairCELoss", "MixLoss",
    "PairCETerm", "MixTerm",
    "HypHCTerm", "PoincareDistance", "ProxyTerm", "euclidean_distance",
    "CHESTOutput", "chest_loss", "check_chest_inputs", "check_hyphc", "check_labels", "check_positive",
    "hard_negative_weights", "hyphc_loss", "mix_loss", "pair_ce_loss", "pair_similarity", "proxy_loss",
    "sample_triplets", "soft_similarity",
    "CHESTHIERLoss", "PairCEHIERLoss", "HIERSettings", "HIERTerm", "hier_loss", "hier_parents", "lca_select",
    "lca_triplet_loss", "reciprocal_triplets",
    "UnsupLoss", "hierarchical_triplet_loss", "pseudo_labels", "similarity_degree",
]
