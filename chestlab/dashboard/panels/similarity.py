"""Similarities of the current batch, in one of two views (run A's radio, shared by run B):

* the CHEST paper's Fig. 3 -- each sample's similarity to its own class (positive) and to every other
  class (negative), pooled over the batch, in H and E;
* the per-sample margins -- what Eq. 7 actually compares: each sample's own-class similarity minus a
  soft maximum of *its own* negatives, against the margin δ (:func:`chestlab.viz.similarity.margin_histogram`).

The pooled histograms carry no margin line: a line at "median of the negatives + δ" says nothing
about Eq. 7, which compares each sample with its own negatives; the panel titles give the fraction of
samples that meet the margin instead.
"""

from __future__ import annotations

from typing import Any

TITLE = "Similarities of the current batch"
SLOT = "left"

#: the views (radio options) and the widget key
VIEWS = ("similarities (Fig. 3)", "per-sample margins (Eq. 7)")
VIEW_KEY = "sim_view"


def _margins_of(cfg: Any) -> dict:
    keys = set(cfg.keys())
    return {name: (float(getattr(cfg, name)) if name in keys else None)
            for name in ("delta_h", "delta_e", "lambda_h", "lambda_e")}


def figure(ctx: Any, view: str = VIEWS[0]) -> Any:
    """The figure of the run's last batch in ``view``, or None (no step yet, or a loss that computes
    no class similarities). The margins δ_H / δ_E (and scales λ) are the run's when its loss has them."""
    from chestlab.viz import similarity

    sim = ctx.similarities()
    if sim is None:
        return None
    m = _margins_of(ctx.trainer.config)
    if view == VIEWS[1]:
        return similarity.margin_histogram(sim, m["delta_h"], m["delta_e"], lambda_h=m["lambda_h"] or 20.0,
                                           lambda_e=m["lambda_e"] or 20.0, uirevision=f"margin{ctx.name}")
    return similarity.similarity_histogram(sim, m["delta_h"], m["delta_e"], lambda_h=m["lambda_h"],
                                           lambda_e=m["lambda_e"], uirevision=f"sim{ctx.name}")


def view_of(ctx: Any, box: Any) -> str:
    """Run A draws the view radio; run B shows the same view."""
    if ctx.primary:
        ctx.session.setdefault(VIEW_KEY, VIEWS[0])
        if ctx.session.get(VIEW_KEY) not in VIEWS:
            ctx.session[VIEW_KEY] = VIEWS[0]
        view = box.radio("view", VIEWS, key=VIEW_KEY, horizontal=True,
                         help="the pooled histograms of the paper's Fig. 3, or each sample's margin of Eq. 7")
        ctx.shared[VIEW_KEY] = view
        return view
    view = ctx.shared.get(VIEW_KEY, ctx.session.get(VIEW_KEY, VIEWS[0]))
    if not ctx.wide:  # compare mode: the same radio, greyed, so that B's chart lies level with A's (not ~80 px higher)
        ctx.session[f"{VIEW_KEY}_{ctx.name}"] = view
        box.radio("view", VIEWS, key=f"{VIEW_KEY}_{ctx.name}", horizontal=True, disabled=True,
                  help=f"run A's view: set it in run A's column (run {ctx.name} shows the same)")
    return view


def render(ctx: Any, box: Any) -> None:
    from .chart import PLOTLY_CONFIG, chart, modebar_room, readable

    box.markdown(f"**{TITLE}** — positive class vs negative classes (paper Fig. 3), or each sample's margin (Eq. 7)")
    tr = ctx.trainer
    view = view_of(ctx, box)
    if ctx.similarities() is None:  # (what makes figure() None)
        if tr.last_output is None:
            box.info("Press Play or Step: the histograms show the last training batch.")
        else:
            box.info(f"The {tr.config.loss} loss computes no class similarities (it has no proxies): "
                     "the histograms need a loss with class proxies, such as chest.")
        return
    def make() -> Any:
        from chestlab.viz.style import legend_below

        fig = figure(ctx, view)
        # the legend's rows counted for the column (3 long entries in the margins view): clear of the axis titles
        legend_below(fig, 550 if ctx.wide else 450)
        return readable(modebar_room(fig))

    chart(box, make, key=f"sim_{ctx.name}", config=PLOTLY_CONFIG)  # not built while the page holds it
    if "delta_h" not in tr.config.keys():
        return
    if view == VIEWS[1]:
        box.caption("Eq. 7 asks each sample's margin m = S(x, own class) − soft-max of S(x, other classes) to reach "
                    "the margin δ (dashed): samples left of it (shaded) still carry the loss.")
    else:
        box.caption("Learning pulls the red (own class) to the right of the blue (other classes). The margin δ of "
                    "Eq. 7 is met sample by sample, against each sample's own negatives: the titles give how many "
                    "samples meet it; the view “per-sample margins” shows them.")
