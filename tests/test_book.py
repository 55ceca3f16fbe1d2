"""``make book`` (chestlab.book): the lessons executed and rendered to static HTML, every figure
embedded -- matplotlib figures as PNG data URIs, plotly figures as plotly's HTML with plotly.js inline
and a PNG fallback, sliders (ipywidgets) as the view they showed when the cell ran.

The whole book takes minutes; CI builds it in fast mode on a subset: one real lesson (01, the
quickest) and a small notebook made here with every kind of output (plotly, interact, pyplot).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")
pytest.importorskip("nbclient")

from chestlab import book  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _nb(*sources: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources],
                                    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})


def test_figure_cells_are_read_from_the_source() -> None:
    nb = _nb(
        "import matplotlib.pyplot as plt",  # 0: no figure
        "def draw(a=1):\n    plt.plot([0, a])\n    plt.show()",  # 1: defines a drawing function only
        "draw(2)",  # 2: calls it
        "from ipywidgets import interact\ninteract(draw, a=(0, 2));",  # 3: a widget
        "# display(fig)\nx = 1",  # 4: commented out
        "fig, ax = plt.subplots()\nax.plot([1, 2])",  # 5: a new pyplot figure
        "import plotly.graph_objects as go\nfig = go.Figure()\nfig",  # 6: a figure as the last expression
        "%matplotlib inline\nfig.show()",  # 7: a magic line and plotly's show
        "def helper():\n    return draw\nhelper",  # 8: defines a function that only mentions draw
    )
    assert book.figure_cells(nb) == [2, 3, 5, 6, 7]


def _check_page(page_html: str, n_figure_cells: int) -> dict:
    counts = book.count_figures(page_html)
    assert counts["total"] >= n_figure_cells, counts
    assert book.WIDGET_VIEW_MIME not in page_html  # no widget left that needs a widget manager
    for img in re.findall(r'src="data:image/png;base64,([^"]{0,40})', page_html):
        assert img.startswith("iVBORw0KGgo")  # a PNG header, embedded (no link to a file)
    return counts


def test_plotly_widgets_and_pyplot_become_static(tmp_path: Path) -> None:
    src = tmp_path / "nbs"
    src.mkdir()
    nb = _nb(
        "import plotly.graph_objects as go\nimport matplotlib.pyplot as plt\nfrom ipywidgets import interact\n"
        "fig = go.Figure(go.Histogram(x=[1, 2, 2, 3], name='h'))\nfig.update_layout(title='a plotly figure')",
        "def draw(a=1.0):\n    plt.plot([0, a])\n    plt.title(f'a = {a}')\n    plt.show()\ninteract(draw, a=(0.0, 2.0));",
        "fig.show()",
        "print('no figure here')",
    )
    nbformat.write(nb, src / "10_demo.ipynb")
    pages = book.build(tmp_path / "book", fast=True, folder=src, timeout=120, save_executed=tmp_path / "executed")
    (page,) = pages
    html = (tmp_path / "book" / page.file).read_text()
    counts = _check_page(html, len(page.figure_cells))
    assert page.figure_cells == [0, 1, 2] and page.complete
    assert counts == {"png": 3, "plotly": 2, "total": 3}
    assert html.count("Plotly.newPlot") == 2 and html.count("chestlab-static") >= 2  # live + static image
    assert html.count("window.__chestlabDefine = window.define") == 1  # plotly.js inlined once per page
    assert "sliders' initial values" in html and "a = 1.0" not in html.split("chestlab-widget-note")[0]
    index = (tmp_path / "book" / "index.html").read_text()
    assert 'href="10_demo.html"' in index and "fast mode" in index
    # the executed copy renders again without a kernel
    again = book.build(tmp_path / "book2", fast=True, folder=src, executed=tmp_path / "executed")
    assert again[0].figures == page.figures


def test_plotly_fallback_png_without_kaleido() -> None:
    """The static image of a plotly figure is drawn with matplotlib when kaleido is missing."""
    from chestlab import figures
    import numpy as np

    fig = figures.poincare_disk(np.array([[0.1, 0.2], [-0.3, 0.1]]), [0, 1], c=1.0, circles=(1.0,))
    png = book._plotly_to_mpl_png(fig)
    assert png[:4] == b"\x89PNG" and len(png) > 3000
    fig = figures.similarity_histogram({"h_pos": [1.0, 2.0], "h_neg": [0.0, 0.5, 0.2, 0.1]}, delta_h=1.0)
    assert book._plotly_to_mpl_png(fig)[:4] == b"\x89PNG"


def test_a_lesson_builds_in_fast_mode_with_all_its_figures(tmp_path: Path) -> None:
    """``python -m chestlab.book --fast --lessons 01``: the page has at least one embedded figure per
    figure-producing cell, and the index links it."""
    out = tmp_path / "book"
    proc = subprocess.run([sys.executable, "-m", "chestlab.book", "--fast", "--lessons", "01", "--out", str(out),
                           "--timeout", "120"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[1/1] 01_poincare_ball" in proc.stderr  # progress on stderr
    (page,) = sorted(out.glob("01_*.html"))
    nb = nbformat.read(ROOT / "notebooks" / f"{page.stem}.ipynb", as_version=4)
    n = len(book.figure_cells(nb))
    assert n >= 3
    _check_page(page.read_text(), n)
    assert f'href="{page.name}"' in (out / "index.html").read_text()


def test_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "chestlab.book", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--fast" in proc.stdout and "--lessons" in proc.stdout
