"""One geometry layer for the Poincaré-disk figures, two drawing backends.

* :mod:`chestlab.viz.geometry` -- what gets drawn, as numpy polylines and points: the boundary, the
  geodesic grid, hyperbolic circles, geodesics, projections of ball points to the disk.
* :mod:`chestlab.viz.plotly` / :mod:`chestlab.viz.mpl` -- draw them on a plotly ``Figure`` / a
  matplotlib ``Axes`` with the same layers, colours and markers (:mod:`chestlab.viz.style`).

``chestlab.figures`` (dashboard, reproduction) and ``chestlab.lessons`` (notebooks) build their disk
figures from these.
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
    geodesic,
    geodesic_grid,
    geodesics,
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
    "circle_label_points",
    "hyperbolic_circle",
    "geodesic",
    "geodesics",
    "project_to_disk",
    "hyperboloid_to_disk",
    "proxy_points",
]


def __getattr__(name: str) -> Any:
    # the backends import plotly / matplotlib: only when asked for (the dashboard's first frame
    # needs no matplotlib)
    if name in ("plotly", "mpl"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
