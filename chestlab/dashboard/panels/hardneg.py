"""Hard negatives — where the gradient goes (the hard-negative paper's Fig. 3): for one anchor of the
current model, the weight of each negative in the pairwise cross-entropy's gradient, negatives sorted
by distance, on the sphere and in the ball for a few curvatures.

The temperatures are the run's (``t`` of pair_ce, ``t_e`` of mix) when its loss has them; otherwise
the panel offers its own sliders, built from the same settings of the schema (they change this
figure only)."""

from __future__ import annotations

from typing import Any

TITLE = "Hard negatives — where the gradient goes (hard-negative paper, Fig. 3)"
SLOT = "below"
N_POINTS = 96
#: the figure's own temperature widgets: setting -> widget key
OWN_KEYS = {"t": "hn_t", "t_e": "hn_t_e"}


def available(ctx: Any) -> bool:
    """Run A only, when it is alone on the page (it is a wide figure)."""
    return ctx.primary and ctx.wide


def temperatures(ctx: Any, box: Any) -> dict[str, float]:
    """``{"t": .., "t_e": ..}``: the run's values where its loss declares them, else the panel's own
    sliders (drawn in ``box``), generated from the schema's settings ``t`` and ``t_e``."""
    from chestlab.settings import schema

    from ..widgets import widget

    cfg, sch = ctx.trainer.config, schema()
    keys = set(cfg.keys())
    out: dict[str, float] = {}
    own = [k for k in OWN_KEYS if k not in keys]
    cols = box.columns(len(own)) if own else []
    for name in OWN_KEYS:
        if name in keys or name not in sch:
            out[name] = float(getattr(cfg, name))
            continue
        s = sch[name]
        key = OWN_KEYS[name]
        ctx.session.setdefault(key, float(s.default))
        value = widget(s, cols[own.index(name)], key, label=f"{s.label} — this figure only",
                       help=f"{s.help}; the {cfg.loss} loss has no {name}, so it only changes this figure")
        try:
            out[name] = float(s.validate(value))
        except Exception:
            out[name] = float(s.default)
    return out


def figure(ctx: Any, d: dict, t: float, t_e: float) -> Any:
    """Weights over the negatives of the model's features (one anchor), sphere vs hyperbolic."""
    import chestlab.poincare as P
    from chestlab.viz import hardneg

    c = float(d["c"])  # the curvature the points were embedded with (a stopped run's are from before a c change)
    x = d["x_h"][:N_POINTS].double()
    v = P.logmap0(x, c) if c > 0 else x
    c_values = sorted({round(c, 3), 0.1, 1.0} - {0.0}) or [0.5]
    from chestlab.viz.style import legend_below

    from .chart import modebar_room, readable

    fig = hardneg.weights_figure(c_values, t, t_sphere=t_e, v=v, labels=d["labels"][:N_POINTS], uirevision="hardneg")
    # the mode bar covered the "uniform 1/N" label (top right); the legend's rows are counted for the
    # width of the figure (a compare column or the page) so that it stays clear of the x-axis title
    return readable(legend_below(modebar_room(fig), 900 if getattr(ctx, "wide", True) else 440, grow=True))


def render(ctx: Any, box: Any) -> None:
    from .chart import PLOTLY_CONFIG, chart
    from .disk import options

    exp = box.expander(TITLE, expanded=True)
    fig_box, ctl_box = exp.container(), exp.container()
    temps = temperatures(ctx, ctl_box)
    d = ctx.disk_data(options(ctx)["disk_split"])
    chart(fig_box, lambda: figure(ctx, d, temps["t"], temps["t_e"]), key="hardneg", config=PLOTLY_CONFIG)
    fig_box.caption(f"For one anchor of the current model, the weight w of each negative in the pairwise cross-entropy "
                    f"gradient, negatives sorted by distance (1 = hardest). Temperature t = {temps['t']:g} (hyperbolic), "
                    f"t_E = {temps['t_e']:g} (sphere); move t, t_E or c to see the weights concentrate on hard negatives.")
