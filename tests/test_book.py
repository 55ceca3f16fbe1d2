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


def test_plotly_widgets_and_pyplot_become_static(tmp_path: Path, monkeypatch) -> None:
    # as in a process that imported streamlit (which sets MPLBACKEND=Agg): the kernel must not inherit it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src = tmp_path / "nbs"
    src.mkdir()
    nb = _nb(
        "import plotly.graph_objects as go\nimport matplotlib.pyplot as plt\nfrom ipywidgets import interact\n"
        "fig = go.Figure(go.Histogram(x=[1, 2, 2, 3], name='h'))\nfig.update_layout(title='a plotly figure')",
        "def draw(a=1.0):\n    plt.plot([0, a])\n    plt.title(f'a = {a}')\n    plt.show()\ninteract(draw, a=(0.0, 2.0));",
        "fig.show()",
        "print('no figure here')",
    )
    nb.cells += [nbformat.v4.new_markdown_cell("The distance is docs/maths.md, Eq. 2; all of it: `docs/maths.md`."),
                 _solution_cell("def my_answer():\n    return 6 * 7"), nbformat.v4.new_code_cell("print(my_answer())")]
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
    # the solution ran (its output is on the page) but is shown collapsed; docs/maths.md is in the book
    assert "42" in html and _inside_details(html, "return 6 * 7")
    assert (tmp_path / "book" / "maths.html").is_file() and 'href="maths.html"' in index
    assert 'href="maths.html#eq-2"' in html and 'href="maths.html"' in html and not _links_to_docs(html)
    # the executed copy renders again without a kernel
    again = book.build(tmp_path / "book2", fast=True, folder=src, executed=tmp_path / "executed")
    assert again[0].figures == page.figures


def _solution_cell(source: str):
    """A code cell marked as the lessons mark an implement-it-yourself solution (collapsed in Jupyter)."""
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}})


def _inside_details(page_html: str, needle: str) -> bool:
    """``needle`` occurs on the page, and every occurrence of it is inside a collapsed ``<details>``
    solution (not in a code cell's visible input)."""
    import html as html_

    def plain(h: str) -> str:  # the text, without the syntax highlighting's tags
        return html_.unescape(re.sub(r"<[^>]+>", "", h))

    pattern = r'<details class="chestlab-solution">.*?</details>'
    blocks = re.findall(pattern, page_html, flags=re.S)
    outside = re.sub(pattern, "", page_html, flags=re.S)
    return any(needle in plain(b) for b in blocks) and needle not in plain(outside)


def _links_to_docs(page_html: str) -> list:
    return re.findall(r'href="(?:\.\./)?docs/maths\.md[^"]*"', page_html)


def test_solution_cells_are_collapsed_and_maths_is_linked() -> None:
    """What Jupyter shows collapsed (a code cell tagged ``solution``, ``source_hidden``) is collapsed on
    the page too, in ``<details>``; mentions of docs/maths.md link to the book's maths.html (Eq. N to
    its section), but not inside maths or code."""
    nb = _nb("x = 1")
    nb.cells += [
        nbformat.v4.new_markdown_cell("Notation as in `docs/maths.md` (docs/maths.md, Eq. 7; Eq. 8–9 in "
                                      "docs/maths.md, Eq. 8–9), see also [the page](../docs/maths.md#eq-9).\n\n"
                                      "$$ L \\qquad \\text{(docs/maths.md, Eq. 9)} $$"),
        _solution_cell("def my_dist(x, y):\n    # a fence in a comment: ```\n    return abs(x - y)"),
        nbformat.v4.new_code_cell("my_dist(1, 3)"),
        nbformat.v4.new_markdown_cell("1. An exercise.\n\n<details><summary>Solution 1</summary>\n\n"
                                      "```python\nexercise_answer = 7\n```\nWith $x^2$.\n</details>"),
    ]
    page = book.render(book.make_static(nb), "t")
    assert _inside_details(page, "my_dist") is False  # the check cell calls it outside, visibly ...
    assert _inside_details(page, "a fence in a comment") and "<summary>" in page  # ... the solution is collapsed
    assert "my_dist(1, 3)" in re.sub(r"<[^>]+>", "", page)
    # an exercise's solution written as <details> in markdown stays collapsed too (nbconvert's image
    # embedding used to close the <details> before its content)
    (block,) = re.findall(r"<details><summary>Solution 1</summary>(.*?)</details>", page, flags=re.S)
    assert "exercise_answer" in block and "$x^2$" in block
    assert 'href="maths.html#eq-7"' in page and 'href="maths.html#eq-8"' in page and 'href="maths.html#eq-9"' in page
    assert '<a href="maths.html"><code>docs/maths.md</code></a>' in page
    assert "\\text{(docs/maths.md, Eq. 9)}" in page  # maths untouched: MathJax renders it
    assert not _links_to_docs(page)
    # without a maths page in the book the text stays as it is
    assert "maths.html" not in book.render(book.make_static(nb, maths=False), "t")


def test_maths_page_has_the_anchors_the_lessons_and_its_own_links_use() -> None:
    from urllib.parse import unquote

    page = book.render_maths()
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert {f"eq-{k}" for k in range(1, 11)} <= ids
    internal = re.findall(r'href="#([^"]+)"', page)
    missing = [t for t in internal if t not in ids and unquote(t) not in ids]
    assert internal and not missing, missing  # docs/maths.md's own links (GitHub anchors) work on the page
    assert "MathJax" in page and "\\oplus" in page  # the maths left to MathJax, as on the lesson pages


def test_plotly_fallback_png_without_kaleido() -> None:
    """The static image of a plotly figure is drawn with matplotlib when kaleido is missing."""
    from chestlab.viz import disk as vdisk
    from chestlab.viz import similarity as vsim
    import numpy as np

    fig = vdisk.poincare_disk(np.array([[0.1, 0.2], [-0.3, 0.1]]), [0, 1], c=1.0, circles=(1.0,))
    png = book._plotly_to_mpl_png(fig)
    assert png[:4] == b"\x89PNG" and len(png) > 3000
    fig = vsim.similarity_histogram({"h_pos": [1.0, 2.0], "h_neg": [0.0, 0.5, 0.2, 0.1]}, delta_h=1.0)
    assert book._plotly_to_mpl_png(fig)[:4] == b"\x89PNG"


def test_plotly_fallback_is_readable_and_keeps_its_legend() -> None:
    """The matplotlib fallback uses the lessons' projector fonts, keeps a disk's legend (legend-only
    entries of viz.disk.disk_legend: which colour is which class, which marker which super-class),
    its circle labels, and keeps every legend inside the image."""
    from chestlab.viz import disk as vdisk
    from chestlab.viz import similarity as vsim
    import numpy as np

    rng = np.random.default_rng(0)
    x = 0.5 * rng.normal(size=(40, 2)).clip(-1.5, 1.5) / 2
    labels = np.arange(40) % 4
    fig = vdisk.poincare_disk(x, labels, labels // 2, rng.uniform(-0.4, 0.4, (4, 1, 2)), c=1.0, grid=True,
                                circles=(1.0, 2.0), class_names=list("abcd"), super_names=["AB", "CD"])
    vdisk.disk_legend(fig, list("abcd"), ["AB", "CD"])
    mfig = book._plotly_to_mpl(fig)
    (leg,) = mfig.legends
    names = [t.get_text() for t in leg.get_texts()]
    assert {"a", "b", "c", "d", "AB", "CD", "proxies (train classes)"} <= set(names), names
    texts = [t for ax in mfig.axes for t in ax.texts]
    assert any("= 2" in t.get_text() for t in texts)  # the circle labels
    assert min(t.get_fontsize() for t in leg.get_texts()) >= 13 and mfig.get_figwidth() >= 10

    sim = {"h_pos": rng.normal(-2, 0.3, 64), "h_neg": rng.normal(-4, 0.5, 64 * 15), "e_pos": None, "e_neg": None}
    mfig = book._plotly_to_mpl(vsim.margin_histogram(sim, 1.0, None, title="eta_E = 0"))
    mfig.canvas.draw()
    box, page = mfig.legends[0].get_window_extent(), mfig.bbox
    assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1  # not cut off
    assert len(mfig.axes) == 2  # the "not computed" panel is kept


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
    text = page.read_text()
    _check_page(text, n)
    assert f'href="{page.name}"' in (out / "index.html").read_text()
    # its implement-it-yourself solution is collapsed, and its citations of docs/maths.md are links
    assert _inside_details(text, "def my_expmap0(v, c):")
    assert (out / "maths.html").is_file() and 'href="maths.html' in text and not _links_to_docs(text)


def test_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "chestlab.book", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--fast" in proc.stdout and "--lessons" in proc.stdout
