"""The lessons as handouts and slides: execute every notebook of ``notebooks/`` once and render it to
static HTML pages with every figure embedded (``make book``, ``make slides``):

    book/index.html                    the editions built
    book/student/<lesson>.html         student edition: the exercises' solutions removed (a note instead)
    book/instructor/<lesson>.html      instructor edition: the solutions kept, collapsed
    book/slides/<lesson>.html          a reveal.js slideshow per lesson (the student edition's content)
    book/_static/                      MathJax 2 (from jupyter-server-mathjax) and reveal.js 5 (vendored)

Every page loads its scripts from ``_static/`` by a relative link and nothing from the network, so
``book/`` opens from a USB stick; each folder has its ``index.html`` (each lesson with its figures and
its execution time, read from the notebook's execution metadata) and ``maths.html``.

    python -m chestlab.book                    # full mode, all lessons, both editions into book/
    python -m chestlab.book --fast             # fast mode (CHESTLAB_FAST=1): what CI builds
    python -m chestlab.book --what slides      # the slides (--what all: editions and slides)
    python -m chestlab.book --lessons 01 03    # a subset (name prefixes)
    python -m chestlab.book --executed DIR     # render notebooks already executed (no kernel)

The tools are the notebook stack the kit already installs: nbclient executes (one kernel per lesson,
working directory ``notebooks/``, widget state kept), nbconvert renders (its ``lab`` template; its
``reveal`` template for slides, with a slide per ``#``/``##`` heading when the lesson has no slideshow
metadata: :func:`slide_breaks`). Before rendering, what a static page cannot run is made static:

* an ipywidgets ``interact`` (a widget view) is replaced by what its output widget showed when the
  cell ran -- the figure at the sliders' initial values, with a note that it is interactive in Jupyter;
* a plotly figure becomes plotly's own HTML (the plotly.js bundle inlined once per page, so the page
  needs no network) **and** a PNG of it: from kaleido when that is installed, otherwise drawn with
  matplotlib from the figure's traces (:mod:`chestlab.viz.convert`). The PNG is shown when the
  page is printed, when JavaScript is off, or when plotly.js fails to start.

* an implement-it-yourself solution (a code cell tagged ``solution``, collapsed in Jupyter by
  ``jupyter.source_hidden``) is shown collapsed too, in a ``<details>`` element (instructor edition)
  or removed with the markdown ``<details><summary>Solution …`` blocks (student edition: :func:`edition`);
* a mention of ``docs/maths.md`` (and ``docs/maths.md, Eq. N``) becomes a link to ``maths.html`` (its
  section of Eq. N), the book's copy of ``docs/maths.md``, linked from the index as well.

Matplotlib figures are PNGs embedded as ``data:`` URIs by nbconvert. Progress goes to stderr, and a
page with fewer figures than it has figure-producing cells (:func:`figure_cells`) is reported (exit
status 1).
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["EDITIONS", "MATHS", "NOTEBOOKS", "Page", "build", "count_figures", "edition", "execute",
           "execution_seconds", "figure_cells", "install_static", "is_solution", "lessons", "link_maths", "main",
           "make_static", "mathjax_folder", "plotly_png", "render", "render_maths", "render_slides", "slide_breaks",
           "strip_solutions"]

#: the lessons' folder of a source checkout
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: the maths every lesson cites, rendered into the book as ``maths.html``
MATHS = Path(__file__).resolve().parents[1] / "docs" / "maths.md"
MATHS_PAGE = "maths.html"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
#: what draws a figure: pyplot (a new figure, show), a figure displayed (``display(fig)``,
#: ``display(viz.….…)``, a ``*figure`` builder), plotly's show, a widget (its callback draws)
_FIGURE_CALL = re.compile(r"plt\.(show|subplots|figure|subplot)\(|\.show\(\)|display\((fig|viz\.\w+\.|[\w.]*figure\w*\()"
                          r"|\binteract\(")
_FIGURE_CLASS = "chestlab-figure"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# which notebooks, which cells draw
# ------------------------------------------------------------------------------------------------
def lessons(folder: Path = NOTEBOOKS, only: Sequence[str] = ()) -> list[Path]:
    """The ``.ipynb`` files of ``folder`` in name order; ``only``: keep those whose name starts with
    one of these prefixes (``"01"``, ``"05_training"``)."""
    paths = sorted(Path(folder).glob("*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.stem.startswith(o) for o in only)]
        missing = [o for o in only if not any(p.stem.startswith(o) for p in paths)]
        if missing:
            raise SystemExit(f"chestlab.book: no lesson in {folder} starts with {', '.join(missing)}")
    return paths


def _parse(source: str) -> Any:
    import ast

    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def figure_cells(nb: Any) -> list[int]:
    """Indices of the code cells that produce a figure, read from their source alone (comments and
    the bodies of functions they define do not count): cells that create or show a pyplot figure,
    display a figure (``display(fig)``, ``display(viz.….…)``, a ``*figure`` builder), call
    plotly's ``.show()`` or ``interact(…)``, call a function an earlier cell defined that draws, or
    end with an expression that names a figure (``fig``, ``viz.….…(…)``)."""
    import ast

    drawing: set[str] = set()  # functions defined so far whose body draws
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        top = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = ast.unparse(node)
                if _FIGURE_CALL.search(body) or any(re.search(rf"\b{re.escape(f)}\(", body) for f in drawing):
                    drawing.add(node.name)
            elif not isinstance(node, ast.ClassDef):
                top.append(node)
        code = "\n".join(ast.unparse(n) for n in top)
        calls_drawing = any(re.search(rf"(?<![\w.]){re.escape(f)}\(", code) for f in drawing)
        last = top[-1] if top else None
        shows_last = isinstance(last, ast.Expr) and re.search(r"\bfig\d*\b|\bfig_\w+|\bviz\.\w+\.\w+\(", ast.unparse(last)) is not None \
            and not ast.unparse(last).rstrip().endswith(";")
        if _FIGURE_CALL.search(code) or calls_drawing or shows_last:
            out.append(i)
    return out


# ------------------------------------------------------------------------------------------------
# execution
# ------------------------------------------------------------------------------------------------
def execute(path: Path, *, fast: bool, timeout: int = 300, progress: bool = False) -> Any:
    """Run the notebook at ``path`` in a fresh kernel (working directory: its folder), fast mode
    (``CHESTLAB_FAST=1``) or full; returns the executed notebook with its widget state. ``progress``:
    one stderr line per code cell (its time)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    # The kernel inherits this process's environment: set the mode, and drop MPLBACKEND, which
    # `import streamlit` sets to Agg in any process that imports it (a test run, say); with it the
    # kernel's pyplot draws nothing inline and the figures of `interact` cells were lost.
    saved = {k: os.environ.get(k) for k in ("CHESTLAB_FAST", "MPLBACKEND")}
    os.environ["CHESTLAB_FAST"] = "1" if fast else "0"
    os.environ.pop("MPLBACKEND", None)
    try:
        # iopub_timeout: a cell's last outputs can reach us seconds after its reply on a loaded machine
        # (nbclient waits 4 s by default); waiting ends at the kernel's idle message.
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                         iopub_timeout=min(60, timeout), resources={"metadata": {"path": str(path.parent)}})
        n_code = sum(c.cell_type == "code" for c in nb.cells)
        started = {}

        def on_start(cell: Any, cell_index: int) -> None:
            started[cell_index] = time.perf_counter()

        def on_complete(cell: Any, cell_index: int, execute_reply: Any = None) -> None:
            k = sum(c.cell_type == "code" for c in nb.cells[: cell_index + 1])
            _log(f"    cell {k}/{n_code} (#{cell_index}) {time.perf_counter() - started.get(cell_index, time.perf_counter()):.1f} s")

        if progress:
            client.on_cell_start, client.on_cell_executed = on_start, on_complete
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


# ------------------------------------------------------------------------------------------------
# static outputs: widgets and plotly
# ------------------------------------------------------------------------------------------------
def _widget_outputs(state: dict, model_id: str, seen: Optional[set] = None) -> list:
    """The outputs an ipywidgets view showed: those of its output widgets, depth first."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    st = model.get("state", {})
    if model.get("model_name") == "OutputModel":
        return list(st.get("outputs", []))
    out = []
    for child in st.get("children", []) or []:
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            out += _widget_outputs(state, child[len("IPY_MODEL_"):], seen)
    return out



def _plotly_to_mpl(fig: Any) -> Any:
    """A plotly figure drawn with matplotlib (:func:`chestlab.viz.convert.plotly_to_mpl`)."""
    from .viz.convert import plotly_to_mpl

    return plotly_to_mpl(fig)


def _plotly_to_mpl_png(fig: Any) -> bytes:
    """PNG bytes of a plotly figure drawn with matplotlib (:func:`chestlab.viz.convert.plotly_to_mpl_png`)."""
    from .viz.convert import plotly_to_mpl_png

    return plotly_to_mpl_png(fig)


def plotly_png(fig_json: dict) -> tuple[bytes, str]:
    """``(png, how)``: a PNG of a plotly figure (its JSON), by kaleido when installed, else by
    :func:`_plotly_to_mpl_png`."""
    import plotly.graph_objects as go

    fig = go.Figure(json.loads(json.dumps(fig_json)), skip_invalid=True)  # plain dicts (not NotebookNodes)
    try:
        import kaleido  # noqa: F401  (optional)

        return fig.to_image(format="png", width=1000, height=int(fig.layout.height or 450)), "kaleido"
    except Exception:
        return _plotly_to_mpl_png(fig), "matplotlib"


def _plotly_html(fig_json: dict, n: int, with_js: bool) -> str:
    import plotly.io as pio

    div = pio.to_html(fig_json, include_plotlyjs=False, full_html=False, div_id=f"chestlab-plotly-{n}",
                      config={"displaylogo": False}, validate=False)
    try:
        png, how = plotly_png(fig_json)
    except Exception as err:  # a figure the fallback cannot draw: the page keeps the live figure
        _log(f"  warning: no static image for plotly figure {n}: {type(err).__name__}: {err}")
        png, how = b"", "none"
    img = base64.b64encode(png).decode()
    js = ""
    if with_js:
        from plotly.offline import get_plotlyjs

        # plotly.js registers as an AMD module when require.js is on the page (nbconvert's template loads
        # it): hide `define` while it loads so that it sets window.Plotly
        js = ("<script>window.__chestlabDefine = window.define; window.define = undefined;</script>"
              f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"
              "<script>window.define = window.__chestlabDefine;</script>")
    return (f'{js}<div class="{_FIGURE_CLASS} chestlab-plotly">'
            f'<div class="chestlab-live">{div}</div>'
            + (f'<div class="chestlab-static"><img alt="static image of an interactive figure ({how})" '
               f'src="data:image/png;base64,{img}"/></div>' if png else "") + "</div>")


_PAGE_CSS = """<style>
.chestlab-static { display: none; }
.chestlab-widget-note { color: #666; font-size: 0.9em; font-style: italic; margin: 0.2em 0 0.4em; }
details.chestlab-solution { border: 1px solid #ccc; border-radius: 4px; padding: 0.3em 0.8em; margin: 0.5em 0; }
details.chestlab-solution > summary { cursor: pointer; font-weight: bold; color: #333; }
@media print { .chestlab-live { display: none; } .chestlab-static { display: block; } }
</style>
<noscript><style>.chestlab-live { display: none; } .chestlab-static { display: block; }</style></noscript>
<script>
window.addEventListener("load", function () {
  if (window.Plotly === undefined) {  // plotly.js did not start: show the static images
    document.querySelectorAll(".chestlab-live").forEach(function (e) { e.style.display = "none"; });
    document.querySelectorAll(".chestlab-static").forEach(function (e) { e.style.display = "block"; });
  }
});
</script>"""


def make_static(nb: Any, *, maths: bool = True) -> Any:
    """A copy of the executed notebook ``nb`` whose outputs a static page shows: widget views replaced
    by the outputs their output widgets captured, plotly figures by HTML with plotly.js inlined (once)
    and a PNG fallback, solution cells (:func:`is_solution`) collapsed in a ``<details>`` element.
    ``maths``: the book has ``maths.html``, so mentions of ``docs/maths.md`` link to it
    (:func:`link_maths`). The widget state is dropped from the metadata (nothing left uses it)."""
    import nbformat

    nb = copy.deepcopy(nb)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    n_plotly = 0
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and maths:
            cell["source"] = link_maths(cell.source)
        if cell.cell_type == "code" and is_solution(cell):
            cells += _collapsed_solution(cell)
        else:
            cells.append(cell)
    nb.cells = cells
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW_MIME in data:
                captured = _widget_outputs(state, data[WIDGET_VIEW_MIME].get("model_id", ""))
                outputs.append(nbformat.v4.new_output(
                    "display_data", data={"text/html": '<p class="chestlab-widget-note">Interactive in Jupyter (sliders): '
                                          "below, the view at the sliders' initial values.</p>"}))
                outputs += [nbformat.from_dict(o) for o in captured]
            else:
                outputs.append(out)
        for out in outputs:
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                fig_json = data[PLOTLY_MIME]
                if isinstance(fig_json, str):
                    fig_json = json.loads(fig_json)
                out["data"] = {"text/html": _plotly_html(fig_json, n_plotly, with_js=n_plotly == 0)}
                n_plotly += 1
        cell["outputs"] = outputs
    nb.metadata.pop("widgets", None)
    return nb


# ------------------------------------------------------------------------------------------------
# solutions collapsed, docs/maths.md linked
# ------------------------------------------------------------------------------------------------
def is_solution(cell: Any) -> bool:
    """A code cell the lesson keeps collapsed: tagged ``solution`` or with its source hidden
    (``jupyter.source_hidden``, how Jupyter collapses it)."""
    meta = cell.get("metadata", {})
    return cell.get("cell_type") == "code" and ("solution" in (meta.get("tags") or [])
                                                 or bool((meta.get("jupyter") or {}).get("source_hidden")))


def _collapsed_solution(cell: Any) -> list:
    """A solution code cell as a markdown cell holding the code in ``<details>`` (collapsed, as in
    Jupyter; a click shows it), followed by its outputs, if any, in a code cell without its source."""
    import nbformat

    longest = max((len(m) for m in re.findall(r"`+", cell.source)), default=0)
    fence = "`" * max(3, longest + 1)
    md = nbformat.v4.new_markdown_cell(
        '<details class="chestlab-solution"><summary>Solution (collapsed, as in Jupyter: click to show the code)'
        f"</summary>\n\n{fence}python\n{cell.source.rstrip()}\n{fence}\n\n</details>")
    md.metadata["tags"] = ["solution"]
    out = [md]
    if cell.get("outputs"):
        rest = copy.deepcopy(cell)
        rest.metadata.setdefault("transient", {})["remove_source"] = True  # nbconvert's templates skip the input
        out.append(rest)
    return out


_MATHS_REF = re.compile(
    r"(?<![\[\w/.])(`?)(?:\.\./)?docs/maths\.md(`?)(?![\w/]|\]\()"  # `docs/maths.md`, ../docs/maths.md
    r"((?:,? Eq\.[ \xa0]?)(\d+)(?:[–-]\d+)?)?")  # … , Eq. 7 (or Eq. 8–9)
_MATHS_TARGET = re.compile(r"\]\((?:\.\./)?docs/maths\.md(#[^)\s]*)?\)")  # a link's target
_MATH_OR_CODE = re.compile(r"(```.*?```|~~~.*?~~~|\$\$.*?\$\$|(?<![\\$])\$[^$\n]+?\$|<[^>\n]*>)", re.S)


def link_maths(markdown: str, page: str = MATHS_PAGE) -> str:
    """``markdown`` (a lesson's cell) with its mentions of ``docs/maths.md`` turned into links to the
    book's copy ``page``: a link ``[…](docs/maths.md#a)`` or ``(../docs/maths.md#a)`` gets the target
    ``page#a``; the text ``docs/maths.md`` (or in backticks) becomes ``[docs/maths.md](page)``, and
    ``docs/maths.md, Eq. 7`` links to the section of Eq. 7 (``page#eq-7``). Maths (``$…$``, ``$$…$$``),
    code blocks and HTML tags are left as they are."""
    parts = _MATH_OR_CODE.split(markdown)
    for i in range(0, len(parts), 2):  # the even parts are outside maths and code
        text = _MATHS_TARGET.sub(lambda m: f"]({page}{m.group(1) or ''})", parts[i])

        def link(m: "re.Match") -> str:
            label = f"{m.group(1)}docs/maths.md{m.group(2)}{m.group(3) or ''}"
            return f"[{label}]({page}{'#eq-' + m.group(4) if m.group(4) else ''})"

        parts[i] = _MATHS_REF.sub(link, text)
    return "".join(parts)


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens
    (``Eq. 2 — Poincaré distance`` -> ``eq-2--poincaré-distance``), so the links inside
    ``docs/maths.md`` work on its page too."""
    text = re.sub(r"<[^>]+>|[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def render_maths(source: Path = MATHS) -> str:
    """``docs/maths.md`` as a page of the book: nbconvert's ``lab`` template (the lessons' look and
    MathJax, so ``$…$`` renders as on the lesson pages), every heading with GitHub's anchor and every
    ``## Eq. N`` heading also with ``#eq-N`` (what :func:`link_maths` links to)."""
    import nbformat

    lines, seen = [], {}
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(#{1,6})\s+(.+?)\s*$", line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors = [slug if n == 0 else f"{slug}-{n}"]
            eq = re.match(r"Eq\. ?(\d+)\b", m.group(2))
            if eq:
                anchors.append(f"eq-{eq.group(1)}")
            lines += ["".join(f'<a id="{html.escape(a)}"></a>' for a in anchors), ""]
        lines.append(line)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("\n".join(lines))])
    title = next((m.group(1) for m in re.finditer(r"^#\s+(.+)$", "\n".join(lines), flags=re.M)), "The maths")
    return render(nb, title)


# ------------------------------------------------------------------------------------------------
# editions: the solutions kept (instructor) or removed (student)
# ------------------------------------------------------------------------------------------------
#: the book's editions: the same pages, with the exercises' solutions (instructor) or without (student)
EDITIONS = ("student", "instructor")
_SOLUTION_SUMMARY = re.compile(r"<summary>\s*(?:<[^>]+>\s*)*(?:solutions?|answers?)\b", re.I)
_DETAILS_TAG = re.compile(r"<details\b[^>]*>|</details\s*>", re.I)


def _removed(what: str) -> str:
    return f'<p class="chestlab-solution-removed">{html.escape(what)}: in the instructor edition.</p>'


def strip_solutions(markdown: str) -> str:
    """``markdown`` without its solution blocks -- each ``<details>`` element whose ``<summary>``
    starts with "Solution" (or "Answer"), nested ``<details>`` included -- each replaced by a one-line
    note that the solution is in the instructor edition. Other ``<details>`` stay."""
    out, pos, depth, start, summary = [], 0, 0, None, ""
    for m in _DETAILS_TAG.finditer(markdown):
        opening = not m.group(0).startswith("</")
        if start is None:
            head = markdown[m.end():m.end() + 300].lstrip()
            if opening and _SOLUTION_SUMMARY.match(head):
                start, depth = m.start(), 1
                sm = re.match(r"<summary>(.*?)</summary>", head, flags=re.S | re.I)
                summary = re.sub(r"<[^>]+>", "", sm.group(1)).strip() if sm else "Solution"
            continue
        depth += 1 if opening else -1
        if depth == 0:
            out += [markdown[pos:start], _removed(summary)]
            pos, start = m.end(), None
    if start is not None:  # an unclosed solution block: cut to the end
        out += [markdown[pos:start], _removed(summary)]
        pos = len(markdown)
    return "".join(out) + markdown[pos:]


def edition(nb: Any, name: str) -> Any:
    """The notebook ``nb`` (a :func:`make_static` copy) as edition ``name`` (:data:`EDITIONS`):
    ``"instructor"`` keeps everything (solutions collapsed); ``"student"`` drops the solution cells
    (:func:`is_solution` cells, as :func:`make_static` collapsed them: the ``<details>`` cell and the
    cell of their outputs) and every solution block of the markdown (:func:`strip_solutions`), each
    replaced by a note."""
    import nbformat

    if name == "instructor":
        return nb
    if name != "student":
        raise ValueError(f"unknown edition {name!r}: one of {EDITIONS}")
    nb = copy.deepcopy(nb)
    cells, dropped = [], False
    for cell in nb.cells:
        if "solution" in (cell.get("metadata", {}).get("tags") or []) or is_solution(cell):
            if not dropped:  # one note per solution (its collapsed code and its outputs)
                cells.append(nbformat.v4.new_markdown_cell(_removed("Reference solution")))
            dropped = True
            continue
        dropped = False
        if cell.cell_type == "markdown" and "<details" in cell.source.lower():
            cell["source"] = strip_solutions(cell.source)
        cells.append(cell)
    nb.cells = cells
    return nb


# ------------------------------------------------------------------------------------------------
# slides: breaks from the headings when the lesson has no slideshow metadata
# ------------------------------------------------------------------------------------------------
_SLIDE_LINES = 26  # about what a 1200x800 slide holds at the slides' font size


def _weight(cell: Any) -> int:
    """A cell's height on a slide, in lines of text (a figure: 14)."""
    lines = sum(1 + len(line) // 100 for line in cell.source.splitlines()) if cell.source.strip() else 0
    if cell.cell_type != "code":
        return lines
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if any(k.startswith("image/") for k in data) or "chestlab-plotly" in str(data.get("text/html", "")):
            lines += 14
        else:
            text = out.get("text") or data.get("text/plain") or ""
            lines += min(12, len(str(text).splitlines()))
    return lines


def slide_breaks(nb: Any) -> Any:
    """``nb`` with a slide type in every cell's metadata (``slideshow.slide_type``, what nbconvert's
    slides exporter reads) -- unless a cell already has one: then the lesson's own breaks are kept.
    A markdown cell that starts with a ``#`` or ``##`` heading starts a slide, one with a deeper
    heading a sub-slide (below the previous one); a cell that would overflow the current (sub-)slide
    (about :data:`_SLIDE_LINES` lines, a figure ~14) starts a sub-slide too. A slide that is still too
    long scrolls (:data:`_SLIDES_CSS`)."""
    if any("slide_type" in (c.get("metadata", {}).get("slideshow") or {}) for c in nb.cells):
        return nb
    nb = copy.deepcopy(nb)
    used = 0
    for i, cell in enumerate(nb.cells):
        m = re.match(r"\s*(#{1,6})\s", cell.source) if cell.cell_type == "markdown" else None
        w = _weight(cell)
        if i == 0 or (m and len(m.group(1)) <= 2):
            kind, used = "slide", w
        elif m or (used and used + w > _SLIDE_LINES):
            kind, used = "subslide", w
        else:
            kind, used = "-", used + w
        cell.metadata.setdefault("slideshow", {})["slide_type"] = kind
    return nb


# ------------------------------------------------------------------------------------------------
# offline assets: MathJax (jupyter-server-mathjax), reveal.js (vendored), nbconvert's templates
# ------------------------------------------------------------------------------------------------
#: the folder of the book's scripts and fonts, beside the editions; pages link it relatively
STATIC = "../_static"
#: reveal.js 5 (MIT), vendored: see its README.md
REVEAL = Path(__file__).resolve().parent / "assets" / "reveal.js"
#: MathJax 2.7 as jupyter-server-mathjax ships it: TeX input, HTML-CSS output, STIX-Web fonts (it has no
#: CommonHTML output and no TeX fonts; that is what Jupyter's classic notebook used)
_MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
_MATHJAX_SKIP = ("extensions/a11y", "jax/output/SVG", "localization/")  # not needed: 6.5 of its 9.6 MB
_MATHJAX_INIT = ('<script>window.MathJax = {"HTML-CSS": {availableFonts: [], preferredFont: null, '
                 'webFont: "STIX-Web", imageFont: null}, "fast-preview": {disabled: true}, '
                 'menuSettings: {CHTMLpreview: false}};</script>')
# A code cell's input as nbconvert's lab template shows it, without its bleach pass over pygments'
# output (already escaped HTML: every character of the source is escaped or inside a <span class>):
# that pass took half of the render time, and the editions and slides render each lesson 2-3 times.
_INPUT_BLOCK = """{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
"""
_TEMPLATES = {
    # nbconvert's lab page, minus require.js and mermaid (nothing on the pages uses them), MathJax local
    "chestlab_lab.html.j2": """{%- extends 'index.html.j2' -%}
{% from 'mathjax.html.j2' import mathjax %}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}""" + _MATHJAX_INIT + """
{{ mathjax(resources.mathjax_url) }}
{%- endblock html_head_js_mathjax -%}""" + _INPUT_BLOCK,
    # nbconvert's reveal page, minus jQuery, require.js and mermaid; reveal.js 5 loaded as plain scripts
    "chestlab_reveal.html.j2": """{%- extends 'index.html.j2' -%}
{% from 'mathjax.html.j2' import mathjax %}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}""" + _MATHJAX_INIT + """
{{ mathjax(resources.mathjax_url) }}
{%- endblock html_head_js_mathjax -%}
""" + _INPUT_BLOCK + """{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, hash: true, center: false, slideNumber: "c/t",
                   transition: "{{ resources.reveal.transition }}", width: 1200, height: 800, margin: 0.04,
                   plugins: [RevealNotes]});
// MathJax's HTML-CSS output measures hidden slides wrongly: typeset the slide shown again
Reveal.on("slidechanged", function (e) {
  if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(["Rerender", MathJax.Hub, e.currentSlide]); }
});
</script>
{% endblock footer_js %}
""",
}
_SLIDES_CSS = """<style>
.reveal .slides section:not(.stack) { max-height: 100%; overflow-y: auto; text-align: left; }
.reveal .slides { text-align: left; }
:root { --jp-code-font-size: 15px; --jp-cell-prompt-width: 80px; }  /* nbconvert's 19px: 100 columns fit */
.reveal img { max-height: 560px; }
.chestlab-solution-removed { color: #777; font-style: italic; }
</style>"""


def _mathjax_url(static: str) -> str:
    return f"{static}/mathjax/MathJax.js?config={_MATHJAX_CONFIG}"


def mathjax_folder() -> Path:
    """MathJax 2's files, from the package ``jupyter-server-mathjax`` (the ``notebooks`` extra)."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:  # pragma: no cover - the notebooks extra installs it
        raise SystemExit("chestlab.book: the book's maths needs MathJax from the package jupyter-server-mathjax "
                         "(pip install -e '.[notebooks]')") from err
    return Path(jupyter_server_mathjax.__file__).resolve().parent / "static"


def install_static(folder: Path, *, slides: bool = False) -> Path:
    """Copy what the pages load into ``folder`` (the book's ``_static``): ``mathjax/`` (MathJax 2:
    TeX input, HTML-CSS output, STIX-Web fonts, English; about 3 MB) and, with ``slides``,
    ``reveal.js/`` (about 0.7 MB). Files already there are left as they are."""
    import shutil

    folder = Path(folder)
    src = mathjax_folder()
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src).as_posix()
        if f.is_dir() or (rel.startswith(_MATHJAX_SKIP) and not rel.startswith("localization/en/")):
            continue
        dest = folder / "mathjax" / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    if slides:
        for f in sorted(REVEAL.rglob("*")):
            dest = folder / "reveal.js" / f.relative_to(REVEAL)
            if f.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
    return folder


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
def count_figures(page_html: str) -> dict:
    """Figures embedded in a rendered page: ``png`` (PNG images as data URIs, the plotly fallbacks
    included), ``plotly`` (plotly figures with their static image), ``total`` (figures: PNGs that are
    not a plotly fallback, plus plotly figures)."""
    png = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", page_html))
    plotly = page_html.count(f'class="{_FIGURE_CLASS} chestlab-plotly"')
    return {"png": png, "plotly": plotly, "total": png}  # every plotly figure carries exactly one PNG


def _title(nb: Any, default: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return default


def render(nb: Any, title: str, *, static: str = STATIC) -> str:
    """The static HTML page of an executed (and :func:`make_static`) notebook: nbconvert's ``lab``
    template, inputs shown, images embedded (outputs always; markdown images when a cell has one).
    The page loads nothing from the network: MathJax from ``static`` (a URL relative to the page, the
    folder :func:`install_static` fills), no require.js or mermaid (nothing on the pages uses them).

    nbconvert embeds a markdown image by parsing each raw HTML block of a cell on its own
    (BeautifulSoup), which closes an open ``<details>`` at once and leaves its content outside: every
    collapsed exercise solution would show in full. The lessons' markdown has no images, so that
    step runs only for a notebook whose markdown has one."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    images = any(c.cell_type == "markdown" and re.search(r"!\[|<img\b", c.source) for c in nb.cells)
    exporter = HTMLExporter(template_name="lab", template_file="chestlab_lab.html.j2", embed_images=images,
                            extra_loaders=[DictLoader(_TEMPLATES)], mathjax_url=_mathjax_url(static))
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body.replace("</head>", _PAGE_CSS + "\n</head>", 1)


def render_slides(nb: Any, title: str, *, static: str = STATIC) -> str:
    """A reveal.js slideshow of an executed (and :func:`make_static`) notebook: nbconvert's slides
    exporter (``reveal`` template) on :func:`slide_breaks` of ``nb``, reveal.js and MathJax from
    ``static`` (relative to the page), nothing from the network. Keys: arrows (down: the next part of
    a long section), ``s``: speaker view, ``?``: all keys."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(template_file="chestlab_reveal.html.j2", extra_loaders=[DictLoader(_TEMPLATES)],
                              mathjax_url=_mathjax_url(static), reveal_url_prefix=f"{static}/reveal.js",
                              reveal_theme="white", reveal_transition="none")
    body, _ = exporter.from_notebook_node(slide_breaks(nb), resources={"metadata": {"name": title}})
    return body.replace("</head>", _PAGE_CSS + _SLIDES_CSS + "\n</head>", 1)


def _when(stamp: Any) -> Optional[float]:
    """A timestamp of a cell's execution metadata (ISO 8601, ``Z`` or an offset, up to nanoseconds) as
    seconds since the epoch; None if it is not one."""
    from datetime import datetime, timezone

    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", str(stamp or "").strip())
    if not m:
        return None
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) in (None, "Z") else m.group(3)))
    return base.astimezone(timezone.utc).timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def execution_seconds(nb: Any) -> Optional[float]:
    """How long the notebook's code cells ran: the sum over its cells of the time from the cell's start
    (``iopub.status.busy``, else ``iopub.execute_input``) to its reply (``shell.execute_reply``) in the
    cell's ``metadata.execution``, which nbclient and Jupyter record -- the execution time whether the
    notebook ran here or elsewhere (idle time between cells run by hand not counted). None when no
    cell has that metadata."""
    total, timed = 0.0, 0
    for cell in nb.cells:
        ex = (cell.get("metadata", {}) or {}).get("execution") or {}
        t0 = _when(ex.get("iopub.status.busy") or ex.get("iopub.execute_input") or ex.get("shell.execute_reply.started"))
        t1 = _when(ex.get("shell.execute_reply") or ex.get("iopub.status.idle"))
        if t0 is not None and t1 is not None and t1 >= t0:
            total += t1 - t0
            timed += 1
    return total if timed else None


@dataclass
class Page:
    """One lesson of the book: ``file`` in each output folder (:data:`EDITIONS`, ``slides``),
    ``seconds`` its execution time (:func:`execution_seconds`; None if unknown), ``figures`` counted on
    its most complete page (the instructor edition when built) for its ``figure_cells``, ``slides``
    the number of slides of its slideshow (0: none built)."""

    name: str
    title: str
    file: str
    seconds: Optional[float]
    figure_cells: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    slides: int = 0

    @property
    def complete(self) -> bool:
        return self.figures.get("total", 0) >= len(self.figure_cells)


_EDITION_TEXT = {
    "student": ("student edition", "the lessons without the exercises' solutions (each replaced by a note)"),
    "instructor": ("instructor edition", "the lessons with every solution, collapsed (a click shows it)"),
    "slides": ("slides", "one reveal.js slideshow per lesson: arrow keys move (down: the next part of a long "
                         "section), <kbd>s</kbd> opens the speaker view, <kbd>?</kbd> lists the keys"),
}
_INDEX_STYLE = """<style>body { font-family: system-ui, sans-serif; max-width: 52em; margin: 2em auto; line-height: 1.5; }
table { border-collapse: collapse; } td, th { padding: 0.3em 1em; border-bottom: 1px solid #ddd; text-align: left; }</style>"""


def _index(pages: Sequence[Page], fast: bool, maths: bool = False, kind: str = "instructor") -> str:
    """The index of one output folder (an edition, or ``slides``): each lesson with its figures (its
    slides) and its execution time."""
    def run_time(p: Page) -> str:
        return "—" if p.seconds is None else f"{p.seconds:.0f} s"

    if kind == "slides":
        head = "<tr><th>lesson</th><th>slides</th><th>execution time</th></tr>"
        rows = "\n".join(f'<tr><td><a href="{html.escape(p.file)}">{html.escape(p.title)}</a></td><td>{p.slides}</td>'
                         f"<td>{run_time(p)}</td></tr>" for p in pages)
    else:
        head = "<tr><th>lesson</th><th>figures</th><th>execution time</th></tr>"
        rows = "\n".join(
            f'<tr><td><a href="{html.escape(p.file)}">{html.escape(p.title)}</a></td><td>{p.figures.get("total", 0)}'
            f'{" (" + str(p.figures["plotly"]) + " interactive)" if p.figures.get("plotly") else ""}</td>'
            f"<td>{run_time(p)}</td></tr>" for p in pages)
    mode = "fast mode (CHESTLAB_FAST=1: fewer steps, smaller data)" if fast else "full mode"
    maths_link = (f'\n<p><a href="{MATHS_PAGE}">The maths</a> (<code>docs/maths.md</code>): every formula and the '
                  "notation the lessons cite (“docs/maths.md, Eq. N”).</p>\n") if maths else ""
    what, blurb = _EDITION_TEXT.get(kind, (kind, ""))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chestlab lessons: {what}</title>
{_INDEX_STYLE}
</head><body>
<p><a href="../index.html">all editions</a></p>
<h1>chestlab — the lessons ({what})</h1>
<p>Hyperbolic deep metric learning: {blurb}. Executed in {mode}; built on {time.strftime("%Y-%m-%d")};
the execution time is the lesson's cells' run time (from the notebook's execution metadata).
Every figure is embedded; interactive figures (plotly) also carry a static image, shown when printed.
Sliders are interactive only in Jupyter (<code>make notebooks</code>); here each shows its initial view.
Everything the pages need is in this folder and <code>../_static/</code>: they open without network.</p>
<table>{head}
{rows}
</table>{maths_link}</body></html>
"""


def _top_index(out: Path) -> str:
    """``out/index.html``: links to the output folders built so far (the editions, the slides)."""
    items = "\n".join(f'<li><a href="{k}/index.html">{html.escape(_EDITION_TEXT[k][0].capitalize())}</a>: '
                      f"{_EDITION_TEXT[k][1]}.</li>" for k in (*EDITIONS, "slides") if (out / k / "index.html").is_file())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chestlab lessons</title>
{_INDEX_STYLE}
</head><body>
<h1>chestlab — the lessons</h1>
<p>Hyperbolic deep metric learning, one lesson per page. This folder opens without network (from a USB
stick, say): MathJax and reveal.js are in <code>_static/</code>.</p>
<ul>
{items}
</ul>
</body></html>
"""


def _read_or_execute(path: Path, k: int, n: int, *, executed: Optional[Path], fast: bool, timeout: int,
                     retries: int, progress: bool) -> Any:
    """Lesson ``path`` executed (again, up to ``retries`` times, when a cell stalls or the kernel
    dies), or read from the folder of executed copies ``executed``."""
    import nbformat

    if executed is not None:
        _log(f"[{k}/{n}] {path.stem}: reading the executed copy in {executed}")
        return nbformat.read(Path(executed) / path.name, as_version=4)
    for attempt in range(retries + 1):
        _log(f"[{k}/{n}] {path.stem}: executing ({'fast' if fast else 'full'} mode)"
             + (f", attempt {attempt + 1}" if attempt else "") + " …")
        try:
            return execute(path, fast=fast, timeout=timeout, progress=progress)
        except Exception as err:  # a cell timed out (a stalled kernel) or the kernel died: retry
            stalled = type(err).__name__ in ("CellTimeoutError", "DeadKernelError", "TimeoutError")
            if not stalled or attempt == retries:
                raise
            _log(f"  {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} — retrying")
    raise AssertionError("unreachable")


def build(out: Path, *, fast: bool, only: Sequence[str] = (), folder: Path = NOTEBOOKS,
          executed: Optional[Path] = None, timeout: Optional[int] = None, retries: int = 2,
          progress: bool = False, save_executed: Optional[Path] = None,
          maths: Optional[Path] = MATHS, editions: Sequence[str] = EDITIONS, slides: bool = False) -> list[Page]:
    """Execute (or, with ``executed``, read already executed copies from that folder) and render the
    lessons of ``folder`` (``only``: name prefixes) into ``out``: for each edition of ``editions``
    (:data:`EDITIONS`: :func:`edition`) the folder ``out/<edition>/`` with one page per lesson and
    ``index.html``; with ``slides`` also ``out/slides/``, a reveal.js slideshow per lesson (the student
    edition's content: no solutions); ``out/_static/`` with MathJax (and reveal.js), which every page
    loads relatively, so that ``out`` opens without network; ``out/index.html`` linking what was built
    there. Each lesson runs once, whatever is rendered. Returns the pages.

    ``timeout``: seconds per cell (default 300 in fast mode, 3600 in full mode); a lesson whose cell
    times out or whose kernel dies is run again, up to ``retries`` times (nbclient has been seen to
    wait forever on an idle kernel on a loaded machine). ``progress``: one stderr line per cell;
    ``save_executed``: a folder to keep the executed notebooks in (render them again with ``executed``);
    ``maths``: the ``docs/maths.md`` the lessons cite, rendered to ``maths.html`` in each output folder
    and linked from the index and the pages (None, or a missing file: no such page, mentions left as
    text)."""
    timeout = timeout or (300 if fast else 3600)
    import nbformat

    for e in editions:
        if e not in EDITIONS:
            raise ValueError(f"unknown edition {e!r}: one of {EDITIONS}")
    kinds = [*editions, *(["slides"] if slides else [])]
    if not kinds:
        raise ValueError("nothing to build: no edition and no slides")
    out = Path(out)
    install_static(out / "_static", slides=slides)
    paths = lessons(folder, only)
    has_maths = maths is not None and Path(maths).is_file()
    maths_html = render_maths(Path(maths)) if has_maths else ""
    for kind in kinds:
        (out / kind).mkdir(parents=True, exist_ok=True)
        if has_maths:  # the document every lesson cites, in each folder
            (out / kind / MATHS_PAGE).write_text(maths_html, encoding="utf-8")
    primary = "instructor" if "instructor" in editions else kinds[0]
    pages = []
    t_all = time.perf_counter()
    for k, path in enumerate(paths, 1):
        t0 = time.perf_counter()
        nb = _read_or_execute(path, k, len(paths), executed=executed, fast=fast, timeout=timeout, retries=retries,
                              progress=progress)
        if save_executed is not None and executed is None:
            Path(save_executed).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(save_executed) / path.name)
        t1 = time.perf_counter()
        title = _title(nb, path.stem)
        static_nb = make_static(nb, maths=has_maths)
        file = f"{path.stem}.html"
        cells = figure_cells(nb)
        if primary != "instructor":  # the figures of solution cells are not on these pages
            cells = [i for i in cells if not is_solution(nb.cells[i])]
        page = Page(path.stem, title, file, execution_seconds(nb), cells)
        if page.seconds is None and executed is None:
            page.seconds = t1 - t0
        for kind in kinds:
            if kind == "slides":
                slide_nb = slide_breaks(edition(static_nb, "student"))
                page_html = render_slides(slide_nb, title)
                page.slides = sum((c.metadata.get("slideshow") or {}).get("slide_type") in ("slide", "subslide")
                                  for c in slide_nb.cells)
            else:
                page_html = render(edition(static_nb, kind), title)
            if has_maths:  # a link nbconvert wrote itself (an HTML output, say)
                page_html = re.sub(r'href="(?:\.\./)?docs/maths\.md', f'href="{MATHS_PAGE}', page_html)
            (out / kind / file).write_text(page_html, encoding="utf-8")
            if kind == primary:
                page.figures = count_figures(page_html)
        pages.append(page)
        ran = "—" if page.seconds is None else f"{page.seconds:.1f} s"
        _log(f"[{k}/{len(paths)}] {path.stem}: executed in {ran}, rendered in {time.perf_counter() - t1:.1f} s "
             f"({', '.join(kinds)}), {page.figures['total']} figures ({page.figures['plotly']} interactive) for "
             f"{len(page.figure_cells)} figure cells" + (f", {page.slides} slides" if slides else ""))
        if not page.complete:
            _log(f"  warning: {path.stem} has fewer figures ({page.figures['total']}) than figure cells "
                 f"({len(page.figure_cells)}: cells {page.figure_cells})")
    for kind in kinds:
        (out / kind / "index.html").write_text(_index(pages, fast, maths=has_maths, kind=kind), encoding="utf-8")
    (out / "index.html").write_text(_top_index(out), encoding="utf-8")
    _log(f"book: {len(pages)} lessons in {time.perf_counter() - t_all:.0f} s -> {out / 'index.html'} "
         f"({', '.join(kinds)})")
    return pages


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m chestlab.book",
        description="Execute the lessons and render them to static HTML handouts -- a student edition (no "
                    "solutions) and an instructor edition, one page per lesson, every figure embedded -- and/or "
                    "reveal.js slides; MathJax and reveal.js are copied beside them, so the folder opens offline.")
    ap.add_argument("--out", type=Path, default=Path("book"), help="output folder (default: book)")
    ap.add_argument("--what", choices=("handouts", "slides", "all"), default="handouts",
                    help="handouts (OUT/student/, OUT/instructor/; the default), slides (OUT/slides/) or all; "
                         "each lesson runs once whatever is rendered")
    ap.add_argument("--editions", nargs="+", choices=EDITIONS, default=list(EDITIONS),
                    help="which handout editions (default: both)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", default=None,
                      help="fast mode (CHESTLAB_FAST=1): fewer steps, smaller data; the default when the "
                           "environment sets CHESTLAB_FAST=1")
    mode.add_argument("--full", dest="fast", action="store_false", help="full mode (the default otherwise)")
    ap.add_argument("--lessons", nargs="+", default=(), metavar="PREFIX",
                    help="only the lessons whose file name starts with these (e.g. 01 03)")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help=f"the lessons' folder (default: {NOTEBOOKS})")
    ap.add_argument("--executed", type=Path, default=None,
                    help="render the already executed notebooks of this folder instead of executing them")
    ap.add_argument("--timeout", type=int, default=None,
                    help="seconds per cell before the lesson is run again (default 300 fast, 3600 full)")
    ap.add_argument("--retries", type=int, default=2, help="runs again of a lesson whose cell timed out (default 2)")
    ap.add_argument("--cells", action="store_true", help="progress per cell, not only per lesson")
    ap.add_argument("--save-executed", type=Path, default=None, metavar="DIR",
                    help="also keep the executed notebooks in DIR (render them again with --executed DIR)")
    args = ap.parse_args(argv)
    fast = args.fast
    if fast is None:
        fast = os.environ.get("CHESTLAB_FAST", "0").strip().lower() in ("1", "true", "yes", "on")
    editions = args.editions if args.what in ("handouts", "all") else []
    pages = build(args.out, fast=fast, only=args.lessons, folder=args.notebooks, executed=args.executed,
                  timeout=args.timeout, retries=args.retries, progress=args.cells,
                  save_executed=args.save_executed, editions=editions, slides=args.what in ("slides", "all"))
    incomplete = [p.name for p in pages if not p.complete]
    if incomplete:
        _log(f"book: pages with missing figures: {', '.join(incomplete)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
