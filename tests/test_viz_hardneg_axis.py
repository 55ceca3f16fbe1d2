"""The hard-negative figure on a projector (issue 19): at t = 0.01 the weights span 1e-290..1, yet
the y axis stays bounded with readable ticks, and the legend sits under the plot, clear of the
"uniform 1/N" label in its top-right corner."""

from __future__ import annotations

import math

import torch

from chestlab.viz import hardneg


def test_a_small_temperature_keeps_the_axis_bounded_and_the_legend_clear() -> None:
    v = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    curves = hardneg.weight_curves(v, t_sphere=0.01, t=0.01, c_values=[1.0])
    assert min(float(c["w"].min()) for c in curves) < 1e-30  # the data do reach far below the floor
    fig = hardneg.weights_figure([1.0], 0.01, v=v)
    lo, hi = fig.layout.yaxis.range
    assert lo == math.log10(hardneg.W_FLOOR) and -9 <= lo and 0 <= hi <= 0.1
    assert (hi - lo) / fig.layout.yaxis.dtick <= 6  # at most a handful of ticks: 10^-8 … 1
    legend = fig.layout.legend
    assert legend.orientation == "h" and legend.y < 0 and legend.yanchor == "top"  # under the plot area
    label = next(a for a in fig.layout.annotations if a.text == "uniform 1/N")
    assert label.yref.endswith("domain") or label.y > 0  # drawn in the plot area, where no legend is
