"""Loss and retrieval curves of a run: the loss and its parts per step, Recall@1 and MAP@R where
evaluated (unseen test classes solid, training classes dashed)."""

from __future__ import annotations

from typing import Any

TITLE = "Loss and retrieval"
SLOT = "left"


def figure(ctx: Any) -> Any:
    from chestlab import figures

    return figures.training_curves(list(ctx.run.rows) + list(ctx.trainer.history), uirevision=f"cur{ctx.name}")


def render(ctx: Any, box: Any) -> None:
    from . import PLOTLY_CONFIG

    box.markdown(f"**{TITLE}** — solid: unseen test classes, dashed: training classes")
    box.plotly_chart(figure(ctx), key=f"cur_{ctx.name}", config=PLOTLY_CONFIG)
