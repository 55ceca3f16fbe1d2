"""Loss and retrieval curves of a run: the loss and its parts per step (named for the run's loss; the
regularisers L_HypHC and L_HIER, orders of magnitude below the total, on their own log axis), Recall@1
and MAP@R where evaluated (unseen test classes solid, training classes dashed)."""

from __future__ import annotations

from typing import Any

TITLE = "Loss and retrieval"
SLOT = "left"


def figure(ctx: Any) -> Any:
    from chestlab.viz import training

    return training.training_curves(list(ctx.run.rows) + list(ctx.trainer.history), uirevision=f"cur{ctx.name}",
                                    loss=ctx.trainer.config.loss)


def render(ctx: Any, box: Any) -> None:
    from .chart import PLOTLY_CONFIG, modebar_room

    fig = figure(ctx)
    twin = any(str(t.name or "").endswith("right axis, log)") for t in fig.data)
    box.markdown(f"**{TITLE}** — solid: unseen test classes, dashed: training classes"
                 + ("; dotted: a regulariser, on the log axis right of the loss" if twin else ""))
    box.plotly_chart(modebar_room(fig), key=f"cur_{ctx.name}", config=PLOTLY_CONFIG)  # the bar covered "MAP@R"
