"""``make book`` (chestlab.book): the lessons executed and rendered to static HTML, every figure
embedded -- matplotlib figures as PNG data URIs, plotly figures as plotly's HTML with plotly.js inline
and a PNG fallback, sliders (ipywidgets) as the view they showed when the cell ran.

The whole book takes minutes; CI builds it in fast mode on a subset: one real lesson (01, the
quickest) and a small notebook made here with every kind of output (plotly, interact, pyplot).
"""

from __future__ import annotations

import html as html_
import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")
pytest.importorskip("nbclient")

from chestlab import book  # noqa: E402
from chestlab.viz import convert  # noqa: E402

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
        "display(viz.similarity.similarity_histogram(sim, delta_h=1.0))",  # 9: a viz builder displayed
        "viz.disk.poincare_disk(x, y, c=1.0)",  # 10: a viz builder as the last expression
        "display(table.style)",  # 11: a table, not a figure
    )
    assert book.figure_cells(nb) == [2, 3, 5, 6, 7, 9, 10]


def _check_page(page_html: str, n_figure_cells: int) -> dict:
    counts = book.count_figures(page_html)
    assert counts["total"] >= n_figure_cells, counts
    assert book.WIDGET_VIEW_MIME not in page_html  # no widget left that needs a widget manager
    for img in re.findall(r'src="data:image/png;base64,([^"]{0,40})', page_html):
        assert img.startswith("iVBORw0KGgo")  # a PNG header, embedded (no link to a file)
    return counts


SECRET = "the secret answer is 42"  # the text of a markdown solution: only in the instructor edition


@pytest.fixture(scope="module")
def demo_book(tmp_path_factory) -> dict:
    """A small notebook with every kind of output (plotly, interact, pyplot), maths, a solution cell
    and a markdown solution, executed once and built into both editions and slides."""
    tmp_path = tmp_path_factory.mktemp("demo")
    src = tmp_path / "nbs"
    src.mkdir()
    nb = _nb(
        "import plotly.graph_objects as go\nimport matplotlib.pyplot as plt\nfrom ipywidgets import interact\n"
        "fig = go.Figure(go.Histogram(x=[1, 2, 2, 3], name='h'))\nfig.update_layout(title='a plotly figure')",
        "def draw(a=1.0):\n    plt.plot([0, a])\n    plt.title(f'a = {a}')\n    plt.show()\ninteract(draw, a=(0.0, 2.0));",
        "fig.show()",
        "print('no figure here')",
    )
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        "# A demo\n\nThe distance $d_c(x, y) = \\frac{2}{\\sqrt c}\\operatorname{artanh}(\\sqrt c\\,\\|{-x} \\oplus_c y\\|)$, "
        "and on its own line\n\n$$ \\lambda_x^c = \\frac{2}{1 - c\\|x\\|^2} $$"))
    nb.cells += [nbformat.v4.new_markdown_cell("## Exercises\n\nThe distance is docs/maths.md, Eq. 2; all of it: "
                                               "`docs/maths.md`.\n\n1. Compute it.\n\n<details><summary>Solution 1"
                                               f"</summary>\n\nWith $x = 6 \\cdot 7$: {SECRET}.\n</details>"),
                 _solution_cell("def my_answer():\n    return 6 * 7"), nbformat.v4.new_code_cell("print(my_answer())")]
    nbformat.write(nb, src / "10_demo.ipynb")
    # as in a process that imported streamlit (which sets MPLBACKEND=Agg): the kernel must not inherit it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLBACKEND", "Agg")
        pages = book.build(tmp_path / "book", fast=True, folder=src, timeout=120, save_executed=tmp_path / "executed",
                           slides=True)
    return {"tmp": tmp_path, "src": src, "pages": pages, "out": tmp_path / "book"}


def test_plotly_widgets_and_pyplot_become_static(demo_book) -> None:
    (page,) = demo_book["pages"]
    out = demo_book["out"]
    html = (out / "instructor" / page.file).read_text()
    counts = _check_page(html, len(page.figure_cells))
    assert page.figure_cells == [1, 2, 3] and page.complete
    assert counts == {"png": 3, "plotly": 2, "total": 3}
    assert html.count("Plotly.newPlot") == 2 and html.count("chestlab-static") >= 2  # live + static image
    assert html.count("window.__chestlabDefine = window.define") == 1  # plotly.js inlined once per page
    assert "sliders' initial values" in html and "a = 1.0" not in html.split("chestlab-widget-note")[0]
    index = (out / "instructor" / "index.html").read_text()
    assert 'href="10_demo.html"' in index and "fast mode" in index
    # the solution ran (its output is on the page) but is shown collapsed; docs/maths.md is in the book
    assert "42" in html and _inside_details(html, "return 6 * 7")
    assert (out / "instructor" / "maths.html").is_file() and 'href="maths.html"' in index
    assert 'href="maths.html#eq-2"' in html and 'href="maths.html"' in html and not _links_to_docs(html)
    top = (out / "index.html").read_text()
    assert all(f'href="{k}/index.html"' in top for k in ("student", "instructor", "slides"))


def test_the_executed_copy_renders_again_with_its_execution_time(demo_book) -> None:
    """Rendering the executed copy needs no kernel, and the index shows the lesson's execution time
    (read from the notebook's execution metadata), not the time the rendering took."""
    (page,) = demo_book["pages"]
    executed = nbformat.read(demo_book["tmp"] / "executed" / "10_demo.ipynb", as_version=4)
    seconds = book.execution_seconds(executed)
    assert seconds is not None and page.seconds == pytest.approx(seconds)
    again = book.build(demo_book["tmp"] / "book2", fast=True, folder=demo_book["src"],
                       executed=demo_book["tmp"] / "executed", editions=("instructor",))
    assert again[0].figures == page.figures and again[0].seconds == pytest.approx(seconds)
    index = (demo_book["tmp"] / "book2" / "instructor" / "index.html").read_text()
    assert f"<td>{seconds:.0f} s</td>" in index and "execution time" in index
    assert not (demo_book["tmp"] / "book2" / "student").exists()


def test_execution_seconds_sums_the_cells_run_times() -> None:
    """The sum over the cells of reply - start, from each cell's metadata (nbclient's and Jupyter's
    formats), an idle hour between two cells not counted; None without any timing."""
    nb = _nb("a = 1", "b = 2", "c = 3", "# never ran")
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "2026-01-01T10:00:00.000000Z",
                                         "shell.execute_reply": "2026-01-01T10:00:01.500000Z"}
    nb.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-01-01T11:00:00.25+00:00",  # an hour later
                                         "shell.execute_reply": "2026-01-01T11:00:02.75+00:00"}
    nb.cells[2].metadata["execution"] = {"iopub.status.busy": "2026-01-01T12:00:00.123456789Z",  # nanoseconds
                                         "shell.execute_reply": "2026-01-01T13:00:00.123456789+01:00"}  # same instant
    assert book.execution_seconds(nb) == pytest.approx(1.5 + 2.5 + 0.0)
    assert book.execution_seconds(_nb("x = 1")) is None
    page = book.Page("x", "x", "x.html", None)
    assert "<td>—</td>" in book._index([page], fast=True)


def test_student_edition_has_no_solutions_and_the_instructor_edition_has_them(demo_book) -> None:
    out = demo_book["out"]
    student, instructor = ((out / e / "10_demo.html").read_text() for e in ("student", "instructor"))
    assert SECRET in instructor and "return 6 * 7" in _plain(instructor)
    assert SECRET not in student and "return 6 * 7" not in _plain(student)
    assert "Solution 1: in the instructor edition." in student
    assert "Reference solution: in the instructor edition." in student
    assert "print(my_answer())" in _plain(student)  # the exercise's check stays
    slides = (out / "slides" / "10_demo.html").read_text()  # the slides: the student edition's content
    assert SECRET not in slides and "return 6 * 7" not in _plain(slides)
    # the markdown filter itself: nested <details> in a solution, other <details> kept
    md = ("<details><summary>Hint</summary>keep</details>\n<details><summary><b>Solution</b> 2</summary>\n"
          "a <details><summary>more</summary>inner</details> b\n</details>\nafter")
    assert book.strip_solutions(md) == ("<details><summary>Hint</summary>keep</details>\n"
                                        '<p class="chestlab-solution-removed">Solution 2: in the instructor edition.</p>'
                                        "\nafter")


def test_pages_load_nothing_from_the_network(demo_book) -> None:
    """Every script and style sheet of the pages is a relative file of the book (MathJax and reveal.js
    in ``_static/``), present on disk."""
    out = demo_book["out"]
    pages = [out / k / f for k in ("student", "instructor", "slides") for f in ("10_demo.html", "maths.html")]
    for page in pages:
        text = page.read_text()
        refs = re.findall(r'<script[^>]+src="([^"]+)"', text) + re.findall(r'<link[^>]+href="([^"]+)"', text)
        refs += re.findall(r"""import\s+\w+\s+from\s+['"]([^'"]+)['"]""", text)
        assert refs, page
        for ref in refs:
            assert not re.match(r"(https?:)?//", ref), (page, ref)
            assert (page.parent / ref.split("?")[0]).is_file(), (page, ref)
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    assert (out / "_static" / "reveal.js" / "dist" / "reveal.js").is_file()


# ------------------------------------------------------------------------------------------------
# in a browser without network: headless Chromium (Debian's chromium), every host unresolvable
# ------------------------------------------------------------------------------------------------
def _browser() -> str:
    import os
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "no chromium/chrome on PATH: install Debian's chromium (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser test cannot run: {reason}")
    pytest.skip(reason)


def _offline_dom(page: Path, profile: Path, budget_ms: int = 60000) -> str:
    """The DOM of ``page`` (a file) after its scripts ran, in headless Chromium with no network: every
    host name fails to resolve and every proxied request goes to a closed port."""
    proc = subprocess.run(
        [_browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--allow-file-access-from-files",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def _raw_tex(dom: str) -> list:
    """``$…$`` and ``$$…$$`` left as text on the page (outside scripts, styles, code and MathJax's own
    elements): maths that was not typeset."""
    text = re.sub(r"<(script|style|pre|code)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = html_.unescape(re.sub(r"<[^>]+>", "", text))
    return re.findall(r"\$\$.*?\$\$|\$[^$\n]{1,300}?\$", text, flags=re.S)


def _typeset(dom: str) -> int:
    """How many distinct formulas MathJax typeset: its TeX scripts (``math/tex``) that have their rendered
    ``MathJax`` element (reveal.js copies the current slide into an ARIA live region, typeset again)."""
    scripts = re.findall(r'<script type="math/tex[^"]*" id="(MathJax-Element-\d+)">(.*?)</script>', dom, flags=re.S)
    return len({tex.strip() for id_, tex in scripts if f'<span class="MathJax" id="{id_}-Frame"' in dom})


def test_a_page_typesets_its_maths_without_network(demo_book, tmp_path: Path) -> None:
    """The student page, opened from file:// with no network, shows its formulas typeset by the
    book's own MathJax; the same page with nbconvert's default (MathJax from a CDN) shows raw TeX
    there -- so the check, and the network block, are real."""
    page = demo_book["out"] / "student" / "10_demo.html"
    dom = _offline_dom(page, tmp_path / "p1")
    assert _typeset(dom) == 2 and 'class="MathJax_Display"' in dom  # inline and display maths
    assert not _raw_tex(dom), _raw_tex(dom)[:3]
    assert "Math Processing Error" not in dom and 'class="MathJax_Error"' not in dom
    cdn = page.parent / "cdn.html"
    cdn.write_text(re.sub(r'src="\.\./_static/mathjax/MathJax\.js[^"]*"',
                          'src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full"',
                          page.read_text()))
    try:
        dom = _offline_dom(cdn, tmp_path / "p2", budget_ms=5000)
    finally:
        cdn.unlink()
    assert _typeset(dom) == 0 and len(_raw_tex(dom)) == 2


def test_slides_open_offline_with_typeset_maths(demo_book, tmp_path: Path) -> None:
    """The slideshow: reveal.js starts (from _static/) and the maths is typeset, without network; the
    slides break at the headings (the notebook has no slideshow metadata)."""
    (page,) = demo_book["pages"]
    dom = _offline_dom(demo_book["out"] / "slides" / "10_demo.html", tmp_path / "p")
    assert re.search(r'<div class="reveal[^"]*\bready\b', dom)  # Reveal.initialize ran
    assert 'class="present' in dom and page.slides >= 2
    assert _typeset(dom) == 2 and not _raw_tex(dom)


def test_slide_breaks_follow_headings_and_keep_metadata() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\ntext"), nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## Part 1"), nbformat.v4.new_markdown_cell("### Detail"),
        nbformat.v4.new_markdown_cell("\n".join(f"line {i}" for i in range(20))),  # fits below "### Detail"
        nbformat.v4.new_markdown_cell("\n".join(f"more {i}" for i in range(10)))])  # would overflow it
    kinds = [c.metadata["slideshow"]["slide_type"] for c in book.slide_breaks(nb).cells]
    assert kinds == ["slide", "-", "slide", "subslide", "-", "subslide"]
    assert "slideshow" not in nb.cells[0].metadata  # a copy
    nb.cells[1].metadata["slideshow"] = {"slide_type": "fragment"}  # the lesson's own breaks win
    assert book.slide_breaks(nb) is nb


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


def _plain(page_html: str) -> str:
    """A page's text, without tags (the syntax highlighting's included)."""
    return html_.unescape(re.sub(r"<[^>]+>", "", page_html))


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
    png = convert.plotly_to_mpl_png(fig)
    assert png[:4] == b"\x89PNG" and len(png) > 3000
    fig = vsim.similarity_histogram({"h_pos": [1.0, 2.0], "h_neg": [0.0, 0.5, 0.2, 0.1]}, delta_h=1.0)
    assert convert.plotly_to_mpl_png(fig)[:4] == b"\x89PNG"


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
    mfig = convert.plotly_to_mpl(fig)
    (leg,) = mfig.legends
    names = [t.get_text() for t in leg.get_texts()]
    assert {"a", "b", "c", "d", "AB", "CD", "proxies (train classes)"} <= set(names), names
    texts = [t for ax in mfig.axes for t in ax.texts]
    assert any("= 2" in t.get_text() for t in texts)  # the circle labels
    assert min(t.get_fontsize() for t in leg.get_texts()) >= 13 and mfig.get_figwidth() >= 10

    sim = {"h_pos": rng.normal(-2, 0.3, 64), "h_neg": rng.normal(-4, 0.5, 64 * 15), "e_pos": None, "e_neg": None}
    mfig = convert.plotly_to_mpl(vsim.margin_histogram(sim, 1.0, None, title="eta_E = 0"))
    mfig.canvas.draw()
    box, page = mfig.legends[0].get_window_extent(), mfig.bbox
    assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1  # not cut off
    assert len(mfig.axes) == 2  # the "not computed" panel is kept


def test_a_lesson_builds_in_fast_mode_with_all_its_figures(tmp_path: Path) -> None:
    """``python -m chestlab.book --fast --lessons 01 --what all``: both editions' pages have at least one
    embedded figure per figure-producing cell, the index links them, the student edition lacks the
    lesson's reference solution, and its slides open offline with the maths typeset."""
    out = tmp_path / "book"
    proc = subprocess.run([sys.executable, "-m", "chestlab.book", "--fast", "--lessons", "01", "--out", str(out),
                           "--timeout", "120", "--what", "all"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[1/1] 01_poincare_ball" in proc.stderr  # progress on stderr
    (page,) = sorted((out / "instructor").glob("01_*.html"))
    nb = nbformat.read(ROOT / "notebooks" / f"{page.stem}.ipynb", as_version=4)
    n = len(book.figure_cells(nb))
    assert n >= 3
    text = page.read_text()
    _check_page(text, n)
    assert f'href="{page.name}"' in (out / "instructor" / "index.html").read_text()
    # its implement-it-yourself solution is collapsed, and its citations of docs/maths.md are links
    assert _inside_details(text, "def my_expmap0(v, c):")
    assert (out / "instructor" / "maths.html").is_file() and 'href="maths.html' in text and not _links_to_docs(text)
    # the student edition: the same figures, no solution (neither the code nor the exercises' answers)
    student = (out / "student" / page.name).read_text()
    n_student = len([i for i in book.figure_cells(nb) if not book.is_solution(nb.cells[i])])
    _check_page(student, n_student)
    assert "def my_expmap0(v, c):" not in _plain(student) and "Solution 1: in the instructor edition." in student
    answers = [c.source for c in nb.cells if c.cell_type == "markdown" and "<summary>Solution 1</summary>" in c.source]
    assert answers  # the lesson's exercises have written solutions ...
    first = re.search(r"<summary>Solution 1</summary>(.*?)</details>", answers[0], flags=re.S).group(1)
    line = max((ln.strip() for ln in first.splitlines() if "$" not in ln), key=len)  # its longest plain line
    assert line and line[:40] in _plain(text) and line[:40] not in _plain(student)
    # the exercises' check cell ran without answers (none is defined in the book's run): both editions show
    # its request for them, not an error, and only the instructor edition the code that defines them
    hint = "exercise 1: define ex1_dist0(y, c) and run this cell again"
    assert hint in _plain(text) and hint in _plain(student)
    assert "def ex1_dist0(y, c):" in _plain(text) and "def ex1_dist0(y, c):" not in _plain(student)
    # the slides of the lesson, offline: reveal.js started, the maths typeset, more than a few slides
    dom = _offline_dom(out / "slides" / page.name, tmp_path / "profile")
    assert re.search(r'<div class="reveal[^"]*\bready\b', dom)
    assert _typeset(dom) >= 3 and not _raw_tex(dom), _raw_tex(dom)[:3]
    index = (out / "slides" / "index.html").read_text()
    assert int(re.search(r"</a></td><td>(\d+)</td>", index).group(1)) >= 5


def test_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "chestlab.book", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--fast" in proc.stdout and "--lessons" in proc.stdout
