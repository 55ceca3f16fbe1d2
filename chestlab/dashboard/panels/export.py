"""Share and export: the link that reopens the experiment, and downloads of the config, the metrics
and the figures (HTML from plotly, PNG from matplotlib).

The download callables run only when clicked (on Streamlit's download thread) and read
``state.snapshot``, which the training fragment replaces whole at every redraw: a click exports the
latest snapshot, never the live trainer (which may be mid-step). matplotlib and pandas are imported
only then.
"""

from __future__ import annotations

import json
from typing import Any, Callable

TITLE = "Share and export"
SLOT = "page"
EMPTY = {"config": {}, "rows": [], "history": [], "sim": None, "disk": None}


def share_text(query: dict) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "(defaults)"


# -- what the buttons produce (module functions, so tests call them on a snapshot) ----------------
def config_json(snap: dict) -> str:
    return json.dumps(snap["config"], indent=2)


def metrics_csv(snap: dict) -> str:
    import pandas as pd  # only when clicked (0.6 s import)

    rows = snap["rows"] + snap["history"]
    if not rows:
        return "step\n"
    df = pd.DataFrame(rows).sort_values("step", kind="stable")
    return df.groupby("step", as_index=False).first().to_csv(index=False)


def similarity_figure(snap: dict, mpl: bool) -> Any:
    from chestlab.viz import similarity

    if snap.get("sim") is None:
        raise RuntimeError("no similarities to export: no training step yet, or a loss without class proxies")
    f = similarity.similarity_histogram_mpl if mpl else similarity.similarity_histogram
    cfg = snap["config"]
    return f(snap["sim"], cfg.get("delta_h"), cfg.get("delta_e"))


def disk_figure(snap: dict, mpl: bool) -> Any:
    from chestlab.viz import disk, geometry

    d = snap["disk"]
    if d is None:
        raise RuntimeError("no disk to export yet")
    tree = dict(class_super=d.get("class_super"), tree=d.get("tree"))  # the page's colours and hierarchy
    if mpl:
        return disk.poincare_disk_mpl(d["xy"], d["labels"], d["super"], d["pxy"], c=d["c"], circles=(1, 2, 3),
                                      title=geometry.projection_label(d["dim_h"]), **tree)
    return disk.poincare_disk(d["xy"], d["labels"], d["super"], d["pxy"], c=d["c"], circles=(1, 2, 3),
                              title=geometry.projection_label(d["dim_h"]), class_names=d["names"],
                              super_names=d.get("super_names"), **tree)


def curves_figure(snap: dict, mpl: bool) -> Any:
    from chestlab.viz import training

    return (training.training_curves_mpl if mpl else training.training_curves)(snap["rows"] + snap["history"],
                                                                               loss=snap["config"].get("loss"))


FIGURES: tuple[tuple[str, Callable[[dict, bool], Any], str], ...] = (
    ("similarity histograms", similarity_figure, "similarity"),
    ("Poincaré disk", disk_figure, "disk"),
    ("training curves", curves_figure, "curves"),
)


def render(ctx: Any, box: Any) -> None:
    """The share link and the download buttons, in ``box`` (the page's "Share and export" expander)."""
    from ..text import literal

    state = ctx.state

    def snap() -> dict:
        return state.snapshot or EMPTY

    box.markdown("**Share:** the address bar holds every setting that differs from the defaults — copy it "
                 "(add `&play=1` to start playing on open).")
    box.markdown(literal(share_text(ctx.query), limit=2000))  # shown as typed, never rendered

    def html(fn: Callable[[dict, bool], Any]) -> Callable[[], str]:
        return lambda: fn(snap(), False).to_html(include_plotlyjs=True, full_html=True)  # offline: plotly.js inlined

    def png(fn: Callable[[dict, bool], Any]) -> Callable[[], bytes]:
        from chestlab.viz.mpl import to_png

        return lambda: to_png(fn(snap(), True))

    a, b = box.columns(2)
    a.download_button("config (JSON)", lambda: config_json(snap()), "chestlab_config.json", "application/json",
                      on_click="ignore", key="dl_cfg",
                      help="TrainConfig.from_dict(json.load(open(...))) rebuilds it; "
                           "python -m chestlab.train --set key=value accepts its entries")
    b.download_button("metrics (CSV)", lambda: metrics_csv(snap()), "chestlab_metrics.csv", "text/csv", on_click="ignore",
                      key="dl_csv", help="one row per step: loss components, and Recall@k / MAP@R where evaluated")
    cols = box.columns(len(FIGURES))
    for col, (name, fn, fname) in zip(cols, FIGURES):
        col.download_button(f"{name} (HTML)", html(fn), f"{fname}.html", "text/html", on_click="ignore", key=f"dl_{fname}_html")
        col.download_button(f"{name} (PNG)", png(fn), f"{fname}.png", "image/png", on_click="ignore", key=f"dl_{fname}_png")
