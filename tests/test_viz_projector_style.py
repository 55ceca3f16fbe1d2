"""The dashboard's projector floor (issue 19): every text of a plotly figure at least 14 px
(:func:`chestlab.viz.style.floor_fonts`, what the page applies to each chart), and legends placed
below the axis titles with room for their rows (:func:`chestlab.viz.style.legend_below`). The
browser measures the rendered sizes (tests/test_app_projector.py); these tests need no browser."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from chestlab.viz import hardneg, similarity, style, training


def _figures() -> dict:
    g = torch.Generator().manual_seed(0)
    sim = {"h_pos": torch.randn(64, generator=g), "h_neg": torch.randn(640, generator=g) - 1,
           "e_pos": torch.randn(64, generator=g), "e_neg": torch.randn(640, generator=g) - 1}
    rows = [{"step": s, "loss": 3.0 / (s + 1), "l_h": 1.0, "l_e": 1.0, "test/H/R@1": 0.5, "test/E/R@1": 0.4} for s in range(5)]
    return {"hardneg": hardneg.weights_figure([0.1, 1.0], 0.2),
            "similarity": similarity.similarity_histogram(sim, 1.0, 1.0),
            "curves": training.training_curves(rows, loss="chest"),
            "levels": training.level_strip([(0, {"root": 0.1, "super-classes": 1.0, "classes": 2.0, "samples": 3.0})])}


@pytest.mark.parametrize("name", ["hardneg", "similarity", "curves", "levels"])
def test_floor_fonts_raises_every_text_to_14_px_and_keeps_larger(name: str) -> None:
    fig = _figures()[name]
    before = style.plotly_font_sizes(fig)
    assert min(before.values()) < 14  # the dashboard's figures do set smaller sizes (10-12 px)
    style.floor_fonts(fig)
    after = style.plotly_font_sizes(fig)
    assert min(after.values()) >= 14
    for path, size in before.items():  # larger sizes kept, smaller ones raised to exactly 14
        assert after[path] == (size if size >= 14 else 14), path
    # the sizes a page theme would otherwise choose (ticks, legend, annotations) are now explicit
    lay = fig.layout
    assert lay.xaxis.tickfont.size >= 14 and lay.yaxis.tickfont.size >= 14 and lay.legend.font.size >= 14
    assert all(a.font.size >= 14 for a in lay.annotations)
    again = style.plotly_font_sizes(style.floor_fonts(fig))
    assert again == after  # idempotent


def test_a_figure_that_sets_no_size_gets_the_floor() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="a"))
    assert style.plotly_font_sizes(fig) == {"font.size": 12.0}  # plotly's default
    style.floor_fonts(fig, 16)
    assert fig.layout.font.size == 16 and fig.layout.xaxis.tickfont.size == 16 and fig.layout.legend.font.size == 16


def test_legend_rows_pack_entries_left_to_right() -> None:
    w = style.LEGEND_ITEM_PX + style.CHAR_WIDTH * 14 * 10  # one 10-character entry at 14 px
    assert style.legend_rows([], 500) == 0
    assert style.legend_rows(["x" * 10] * 3, 3 * w + 1) == 1
    assert style.legend_rows(["x" * 10] * 3, 2 * w + 1) == 2
    assert style.legend_rows(["x" * 10] * 3, w + 1) == 3
    assert style.legend_rows(["x" * 40], 100) == 1  # an entry wider than the figure still takes one row


def test_legend_below_leaves_room_for_its_rows() -> None:
    fig = _figures()["curves"]
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    narrow = style.legend_rows(names, 300)
    style.legend_below(fig, 300, axis_px=52)
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0 and fig.layout.legend.yanchor == "bottom"
    assert fig.layout.margin.b == 52 + narrow * 21 + 6
    wide = _figures()["curves"]
    style.legend_below(wide, 1200, axis_px=52)
    assert wide.layout.margin.b < fig.layout.margin.b  # fewer rows in a wider figure
    grown = _figures()["levels"]
    h0, b0 = grown.layout.height, grown.layout.margin.b
    style.legend_below(grown, 300, axis_px=40, grow=True)
    assert grown.layout.height == h0 + max(0, grown.layout.margin.b - b0)  # the plot keeps its height
