"""The page's defaults and bounds: the config it starts from (:data:`BASE`), the settings and
choices it does not offer and why (:data:`HIDDEN`, :data:`PAGE_ONLY`, :func:`path_reason`), the
sizes it bounds (:data:`PAGE_RANGE`), its timing (:data:`REFRESH_S`, :data:`TRAIN_FRACTION`,
:data:`CHART_UPDATES`) and its own widgets' defaults (:data:`VIEW_DEFAULTS`).

Nothing from a link or a widget reads the server's files: settings that name a file or folder
(``Setting.path``: ``data_root``, ``hierarchy_file``, ``weights``) and the dataset options that do
(:func:`chestlab.data.path_options`) are not offered, and a link that sets them is refused
(:func:`path_reason` says why).
"""

from __future__ import annotations

from typing import Any

from chestlab.paper import LOSS_PRESETS
from chestlab.settings import TrainConfig

__all__ = ["BASE", "HIDDEN", "PAGE_ONLY", "PAGE_RANGE", "path_reason", "REFRESH_S", "TRAIN_FRACTION", "CHART_UPDATES",
           "VIEW_DEFAULTS", "default"]

#: The page's defaults: the ``demo-tree`` preset with a small evaluation (≤ 0.5 s UI block) and one
#: torch thread (the demo models are tiny: on a 2-core machine a second intra-op thread competes with
#: the Streamlit server and the browser, measured 93 vs 10 steps/s on ``tree``).
BASE = TrainConfig.preset("demo-tree", eval_every=50, eval_max=600, threads=1)

#: Settings the page does not offer, and why (the URL reports them too).
HIDDEN: dict[str, str] = {
    "steps": "the page trains until you press Pause",
    "eval_max": "the page evaluates at most 600 samples per split, to stay responsive",
    "checkpoint_every": "the page writes no run folder",
    "threads": "the page trains with one CPU thread, so the browser keeps the other core",
    "workers": "the page loads data in its own process",
}

#: Choices the page leaves out, and why (offered: only what builds and trains on the page). The ViT
#: backbones fix D_E to their own width (dim_e must be none) and need images: on this page's
#: datasets they would train at a few steps per second at best.
PAGE_ONLY: dict[str, tuple[Any, str]] = {
    "backbone": (("mlp", "cnn"), "the page offers mlp (tree) and cnn (shapes, digits); the paper's ViTs (D_E fixed by "
                 "the network, 224-px images) train with python -m chestlab.train --preset cub200"),
}

#: Sizes the page bounds although the schema does not (a value beyond them would take minutes per
#: step or all the memory of the demo machine): setting -> (lowest, highest).
PAGE_RANGE: dict[str, tuple[int, int]] = {"dim_e": (1, 1024), "hier_proxies": (2, 1024), "pretrain_steps": (0, 300)}


def path_reason(assignment: str) -> str:
    """Why a link or the page may not set a setting (``Setting.path``) or dataset option that names a
    file or folder: ``assignment`` is how to give it on the command line (``data_root=...``)."""
    return (f"a file or folder path on the server: the page and its links never set one; give it on the command line "
            f"(python -m chestlab.train --set '{assignment}')")


#: Default redraw period (s): the browser timer drifts, so a bit under 1 s keeps "at least once a second".
REFRESH_S = 0.8
#: Share of each refresh spent training; the rest draws and leaves the (shared) CPU to the browser.
TRAIN_FRACTION = 0.4
#: Charts redrawn per timer redraw while playing, in turn (the others are sent unchanged and stay
#: drawn): the browser draws an updated chart from scratch, and drawing every chart at every
#: refresh kept a loaded 2-core machine's browser so busy that charts went blank and a Pause click
#: waited seconds (see chestlab.dashboard.page.HeldCharts). A widget change redraws them all.
CHART_UPDATES = 3

#: Page widgets that are not settings: key -> default.
VIEW_DEFAULTS: dict[str, Any] = dict(refresh=REFRESH_S, step_n=10, disk_split="train", disk_grid=False, disk_circles=True,
                                     disk_view="fast projection", compare=False, cmp_key="eta_e", cmp_value=0.0,
                                     preset=next(iter(LOSS_PRESETS)))


def default(name: str) -> Any:
    """The page's default value of setting ``name`` (its value in :data:`BASE`)."""
    return getattr(BASE, name)
