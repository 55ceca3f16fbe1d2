"""What every plotly chart of the page shares: plotly's options (:data:`PLOTLY_CONFIG`) and room for
the mode bar above a figure's titles (:func:`modebar_room`), and text readable on a projector
(:func:`readable`)."""

from __future__ import annotations

from typing import Any

__all__ = ["PLOTLY_CONFIG", "MODEBAR_PX", "modebar_room", "readable", "chart", "holds"]

#: plotly's options for every chart of the page
PLOTLY_CONFIG = {"displaylogo": False}
#: height of plotly's mode bar (px), kept free above the titles of the figures that have some
MODEBAR_PX = 26


def modebar_room(fig: Any) -> Any:
    """``fig`` with ``MODEBAR_PX`` more top margin, once (a figure may be drawn again): the mode bar
    in the top right corner otherwise covers the title of a figure's right-hand panel."""
    if not getattr(fig, "_modebar_room", False):
        fig.update_layout(margin_t=(fig.layout.margin.t or 40) + MODEBAR_PX)
        fig._modebar_room = True
    return fig


def readable(fig: Any) -> Any:
    """``fig`` with every text (ticks, legend, titles, annotations) at least
    :data:`chestlab.viz.style.PROJECTOR_MIN_PX` (14 px): what a 1280×720 projector needs, in single and
    in compare mode (:func:`chestlab.viz.style.floor_fonts`; the figures of the lessons keep their sizes)."""
    from chestlab.viz.style import floor_fonts

    return floor_fonts(fig)


def holds(box: Any, key: Any) -> bool:
    """``box`` keeps the chart ``key`` as the browser shows it in this redraw (the page's
    :class:`chestlab.dashboard.page.HeldCharts` while playing, or after a click that changed nothing
    drawn): its figure need not be built. False for any other box (``st``, a test's recorder)."""
    fn = getattr(type(box), "holds", None)  # on the class: a Streamlit container answers any name with an error
    return key is not None and callable(fn) and bool(fn(box, key))


def chart(box: Any, make: Any, key: Any, **kw: Any) -> Any:
    """``box.plotly_chart(make(), key=key, **kw)``, except that a chart ``box`` holds (:func:`holds`)
    is sent without building its figure (``make`` is not called): building plotly figures is most of
    a redraw's server time. Returns the figure built, or None."""
    if holds(box, key):
        box.plotly_chart(None, key=key, **kw)
        return None
    fig = make()
    box.plotly_chart(fig, key=key, **kw)
    return fig
