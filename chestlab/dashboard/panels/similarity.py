"""Similarity histograms of the current batch (the CHEST paper's Fig. 3): each sample's similarity to
its own class (positive) and to every other class (negative), in H and E."""

from __future__ import annotations

from typing import Any

TITLE = "Similarities of the current batch"
SLOT = "left"


def figure(ctx: Any) -> Any:
    """The histogram figure of the run's last batch, or None (no step yet, or a loss that computes no
    class similarities). The margins δ_H / δ_E are drawn when the run's loss has them."""
    from chestlab import figures

    sim = ctx.similarities()
    if sim is None:
        return None
    cfg = ctx.trainer.config
    keys = set(cfg.keys())
    dh = cfg.delta_h if "delta_h" in keys else None
    de = cfg.delta_e if "delta_e" in keys else None
    return figures.similarity_histogram(sim, dh, de, uirevision=f"sim{ctx.name}")


def render(ctx: Any, box: Any) -> None:
    from . import PLOTLY_CONFIG

    box.markdown(f"**{TITLE}** — positive class vs negative classes (paper Fig. 3)")
    fig = figure(ctx)
    tr = ctx.trainer
    if fig is None:
        if tr.last_output is None:
            box.info("Press Play or Step: the histograms show the last training batch.")
        else:
            box.info(f"The {tr.config.loss} loss computes no class similarities (it has no proxies): "
                     "the histograms need a loss with class proxies, such as chest.")
        return
    box.plotly_chart(fig, key=f"sim_{ctx.name}", config=PLOTLY_CONFIG)
    if "delta_h" in tr.config.keys():
        box.caption("Learning pulls the blue (own class) to the right of the dashed line: the margin δ of Eq. 7 "
                    "asks S(x, own class) − δ to beat every other class.")
