"""Every figure of the kit: one geometry layer, two drawing backends, figure builders by subject.

* :mod:`chestlab.viz.geometry` -- what a disk figure draws, as numpy polylines and points: the
  boundary, the geodesic grid, hyperbolic circles, geodesic arcs, projections of ball points to the
  disk (tangent PCA, UMAP).
* :mod:`chestlab.viz.plotly` / :mod:`chestlab.viz.mpl` -- draw them on a plotly ``Figure`` / a
  matplotlib ``Axes`` with the same layers, colours and markers (:mod:`chestlab.viz.style`).
* figure builders, each figure described once and drawn by plotly (the dashboard, the lessons'
  interactive figures) and, where a static one is needed, matplotlib (``*_mpl``, PNG/PDF):

  - :mod:`chestlab.viz.similarity` -- a batch's similarities (Fig. 3) and Eq. 7's per-sample margins;
  - :mod:`chestlab.viz.disk` -- the Poincaré disk with embeddings, proxies and the class hierarchy;
  - :mod:`chestlab.viz.training` -- loss and metric curves over steps, the hierarchy's level strip;
  - :mod:`chestlab.viz.hardneg` -- the hard-negative weights (the hard-negative paper's Fig. 3);
  - :mod:`chestlab.viz.hierarchy` -- dendrograms, the class hierarchy in the disk, HIER's disk;
  - :mod:`chestlab.viz.paper` -- the papers' static figures (Figs. 2-3, Tables 6-7 as bars);
  - :mod:`chestlab.viz.reproduce` -- the hierarchy experiments' figures.

The dashboard's panels, the notebooks and :mod:`chestlab.reproduce` draw with these; the analysis
they show lives in the library (:func:`chestlab.metrics.per_sample_margins`,
:func:`chestlab.gradients.anchor_negative_weights`).
"""

import importlib
from typing import Any

from . import geometry, style
from .geometry import (
    as_numpy,
    boundary_circle,
    circle_label_points,
    disk_radius,
    euclid_radius,
    geodesic_arc,
    geodesic_arcs,
    geodesic_grid,
    hyperbolic_circle,
    hyperboloid_to_disk,
    project_to_disk,
    projection_label,
    proxy_points,
    view_limit,
)

#: the submodules imported on first use (plotly, matplotlib, the losses): the dashboard's first
#: frame needs none of them
_LAZY = ("plotly", "mpl", "convert", "similarity", "disk", "training", "hardneg", "hierarchy", "paper", "reproduce")

__all__ = [
    "geometry",
    "style",
    *_LAZY,
    "as_numpy",
    "disk_radius",
    "euclid_radius",
    "view_limit",
    "boundary_circle",
    "geodesic_grid",
    "circle_label_points",
    "hyperbolic_circle",
    "geodesic_arc",
    "geodesic_arcs",
    "project_to_disk",
    "projection_label",
    "hyperboloid_to_disk",
    "proxy_points",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
