"""One geometry layer for the Poincaré-disk figures, two drawing backends.

* :mod:`chestlab.viz.geometry` -- what gets drawn, as numpy polylines and points: the boundary, the
  geodesic grid, hyperbolic circles, geodesics, projections of ball points to the disk.
* :mod:`chestlab.viz.plotly` / :mod:`chestlab.viz.mpl` -- draw them on a plotly ``Figure`` / a
  matplotlib ``Axes`` with the same layers, colours and markers (:mod:`chestlab.viz.style`).

``chestlab.figures`` (dashboard, reproduction) and ``chestlab.lessons`` (notebooks) build their disk
figures from these.
"""

from . import geometry, mpl, plotly, style
from .geometry import (
    as_numpy,
    boundary_circle,
    disk_radius,
    euclid_radius,
    geodesic,
    geodesic_grid,
    hyperbolic_circle,
    hyperboloid_to_disk,
    project_to_disk,
    proxy_points,
    view_limit,
)

__all__ = [
    "geometry",
    "plotly",
    "mpl",
    "style",
    "as_numpy",
    "disk_radius",
    "euclid_radius",
    "view_limit",
    "boundary_circle",
    "geodesic_grid",
    "hyperbolic_circle",
    "geodesic",
    "project_to_disk",
    "hyperboloid_to_disk",
    "proxy_points",
]
