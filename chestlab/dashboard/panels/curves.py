"""Loss and retrieval curves of a run: the loss and its parts per step (named for the run's loss; the
regularisers L_HypHC and L_HIER, orders of magnitude below the total, on their own log axis), Recall@1
and MAP@R where evaluated (unseen test classes solid, training classes dashed)."""

from __future__ import annotations

from typing import Any

TITLE = "Loss and retrieval"
SLOT = "left"
#: the legend groups of the retrieval curves (split + space, :func:`chestlab.viz.training.training_curves`)
_METRIC_GROUPS = {f"{split}{space}" for split in ("test", "train") for space in ("H", "E")}
#: the width (px) of this chart at 1280×720: alone (the left column), in compare mode (half the page)
WIDE_PX, NARROW_PX = 550, 450


def _rows(ctx: Any) -> list:
    """The rows the curves are drawn from: the run's step rows, then its evaluations."""
    return list(ctx.run.rows) + list(ctx.trainer.history)


def figure(ctx: Any) -> Any:
    from chestlab.viz import training

    return training.training_curves(_rows(ctx), uirevision=f"cur{ctx.name}", loss=ctx.trainer.config.loss)


def render(ctx: Any, box: Any) -> None:
    from .chart import PLOTLY_CONFIG, chart, modebar_room, readable

    from chestlab.viz.style import legend_below
    from chestlab.viz.training import loss_terms

    # a regulariser on its own log axis: as the figure decides it (training_curves), without building it
    twin = any(t["small"] for t in loss_terms(_rows(ctx), ctx.trainer.config.loss))
    box.markdown(f"**{TITLE}** — :green[H green], :orange[E orange]; solid: unseen test, dashed: training "
                 "classes" + ("; dotted: regulariser, log axis right of the loss" if twin else ""))

    def make() -> Any:
        fig = figure(ctx)
        # the legend names the loss's terms; the retrieval curves' key (colour = space, dash = split) is the line
        # above: their four entries made the legend 5 rows deep in a compare column, over the axis titles
        fig.for_each_trace(lambda t: t.update(showlegend=False), selector=lambda t: t.legendgroup in _METRIC_GROUPS)
        legend_below(fig, WIDE_PX if ctx.wide else NARROW_PX)
        return readable(modebar_room(fig))  # the bar covered "MAP@R"

    chart(box, make, key=f"cur_{ctx.name}", config=PLOTLY_CONFIG)  # a chart the page holds is not built
