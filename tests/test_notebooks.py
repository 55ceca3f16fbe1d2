"""The lesson notebooks (notebooks/*.ipynb): committed without outputs, in sync with their jupytext
percent-format twins (notebooks/*.py), ending with exercises whose solutions are collapsed, and
citing the CHEST paper's equation numbers (docs/maths.md) where they treat them. Running them is
nbmake's job:

    CHESTLAB_FAST=1 pytest -n 2 --dist loadfile tests notebooks --nbmake --nbmake-timeout=300
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = (
    "00_why_hyperbolic",
    "01_poincare_ball",
    "02_hard_negatives",
    "03_chest_loss",
    "04_hyphc_regulariser",
    "05_training_and_ablations",
    "06_embeddings",
    "07_hier_unsup",
)
#: Equation numbers of the CHEST paper (as restated in docs/maths.md) each lesson treats and
#: must cite, and the figures / tables it redraws.
CITES = {
    "00_why_hyperbolic": ({2, 4}, ()),
    "01_poincare_ball": ({1, 2, 3, 4}, ()),
    "02_hard_negatives": ({2}, ("Fig. 3",)),
    "03_chest_loss": ({5, 6, 7, 10}, ()),
    "04_hyphc_regulariser": ({8, 9}, ()),
    "05_training_and_ablations": ({7, 10}, ("Fig. 3", "Tables 6–7")),
    "06_embeddings": ({2}, ("Fig. 2",)),
    "07_hier_unsup": ({2, 4, 8, 10}, ()),  # and HIER's displays (H1)-(H5): its page prints no equation numbers
}


def cited_equations(text: str) -> set[int]:
    """Equation numbers cited as 'Eq. 7', 'Eq. (7)', 'Eq. 5–6' or 'Eq. 8-9' (ranges expanded)."""
    out: set[int] = set()
    for a, b in re.findall(r"Eqs?\.\s*\(?(\d+)\)?(?:\s*[–-]\s*\(?(\d+))?", text):
        out.update(range(int(a), int(b or a) + 1))
    return out


def _read(name: str):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_the_lessons_exist():
    found = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_valid_and_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{name}.ipynb has outputs in cells {dirty}: clear them (jupytext --to ipynb {name}.py)"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_in_sync_with_its_jupytext_twin(name):
    jupytext = pytest.importorskip("jupytext")
    py = jupytext.read(NB_DIR / f"{name}.py")
    nb = _read(name)
    pairs = [(a.cell_type, a.source.strip()) for a in py.cells]
    assert pairs == [(b.cell_type, b.source.strip()) for b in nb.cells], (
        f"{name}.py and {name}.ipynb differ: regenerate with `jupytext --to ipynb notebooks/{name}.py` "
        f"(or `jupytext --sync`)"
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_ends_with_exercises_and_collapsed_solutions(name):
    nb = _read(name)
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    heads = [i for i, c in enumerate(md) if re.search(r"^##\s+Exercises", c.source, re.M)]
    assert heads, f"{name}: no '## Exercises' section"
    tail = "\n".join(c.source for c in md[heads[-1]:])
    n_ex = len(re.findall(r"^\s*\d+\.\s", tail.split("<details>")[0], re.M))
    n_sol = len(re.findall(r"<details>\s*<summary>\s*Solution", tail))
    assert n_ex >= 2, f"{name}: fewer than two exercises"
    assert n_sol >= n_ex, f"{name}: {n_ex} exercises but {n_sol} collapsed solutions"
    assert tail.count("<details>") == tail.count("</details>")
    code_after = [c for c in nb.cells[nb.cells.index(md[heads[-1]]):] if c.cell_type == "code"]
    assert not code_after, f"{name}: the exercises must be the last section"


#: "Implement it yourself" (d2l style): the functions a lesson asks the student to write in plain torch.
#: The reference solution sits in a collapsed code cell (so a top-to-bottom run, as in CI, checks the
#: solution); a later cell compares each function with the library through lessons.verify.
IMPLEMENT = {
    "01_poincare_ball": ("my_mobius_add", "my_dist", "my_expmap0", "my_logmap0"),
    "02_hard_negatives": ("my_hard_negative_weights", "my_mix_weights"),
    "03_chest_loss": ("my_soft_similarity", "my_proxy_loss", "my_l_h"),
    "04_hyphc_regulariser": ("my_lca_depth", "my_hyphc_triplet"),
    "05_training_and_ablations": ("my_per_sample_margins", "my_paired_se", "my_power"),
    "06_embeddings": ("my_recall_at_k", "my_map_at_r"),
    "07_hier_unsup": ("my_lca_select", "my_lca_triplet_loss", "my_reciprocal_positives", "my_pseudo_labels",
                      "my_similarity_degree"),
}
#: What no student-facing cell may contain: a pointer outside the repository (the folder of the
#: papers and their restatement) or talk about CI. Written in pieces so that this file passes
#: tests/test_docs.py's own search for such pointers.
_NOT_FOR_STUDENTS = re.compile("|".join((re.escape("sha" + "red/"), r"\bthe\s+" + "sp" + r"ec\b", r"\bCI\b")), re.I)


@pytest.mark.parametrize("name", EXPECTED)
def test_cites_the_spec_equations(name):
    md = _markdown(_read(name))
    assert "docs/maths.md" in md, f"{name}: point the reader to docs/maths.md for the equations"
    eqs, others = CITES[name]
    missing = sorted(eqs - cited_equations(md)) + [x for x in others if x not in md]
    assert not missing, f"{name}: does not cite {missing}"


@pytest.mark.parametrize("name", EXPECTED)
def test_student_facing_cells_stay_in_the_repository_and_off_ci(name):
    for i, cell in enumerate(_read(name).cells):
        hit = _NOT_FOR_STUDENTS.search(cell.source)
        assert not hit, f"{name} cell {i}: {hit.group(0)!r} -- cite docs/maths.md, and do not talk about CI"


@pytest.mark.parametrize("name", EXPECTED)
def test_objectives_summary_and_projector_style(name):
    nb = _read(name)
    md = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
    assert "Learning objectives" in md[0][1], f"{name}: the first cell states the learning objectives"
    summary = [i for i, s in md if re.search(r"^##\s+Summary", s, re.M)]
    exercises = [i for i, s in md if re.search(r"^##\s+Exercises", s, re.M)]
    assert summary and summary[-1] <= exercises[-1], f"{name}: a '## Summary' before the exercises"
    between = [c for c in nb.cells[summary[-1]:exercises[-1]] if c.cell_type == "code"]
    assert not between, f"{name}: the summary closes the lesson (no code between it and the exercises)"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "use_lecture_style()" in first_code, f"{name}: call use_lecture_style() in the first code cell"


@pytest.mark.parametrize("name", sorted(IMPLEMENT))
def test_implement_it_yourself(name):
    cells = _read(name).cells
    hidden = [i for i, c in enumerate(cells) if c.cell_type == "code" and c.metadata.get("jupyter", {}).get("source_hidden")]
    assert hidden, f"{name}: no collapsed solution cell (metadata jupyter.source_hidden)"
    solution = "\n".join(cells[i].source for i in hidden)
    assert not re.search(r"\b(chestlab|poincare|losses|gradients|lessons|viz)\.", solution), (
        f"{name}: the reference solution must be plain torch, without the kit's functions")
    checks = "\n".join(c.source for c in cells[hidden[0] + 1:] if c.cell_type == "code")
    for fn in IMPLEMENT[name]:
        assert re.search(rf"^def {fn}\(", solution, re.M), f"{name}: the solution does not define {fn}"
        assert re.search(rf"lessons\.verify\(.*\b{fn}\(", checks), f"{name}: {fn} is never checked with lessons.verify"
    md = _markdown(_read(name))
    assert re.search(r"^##\s+\d*\.?\s*Implement it yourself", md, re.M) and "collapsed" in md


def test_cited_equations_parser():
    assert cited_equations("Eq. (1), Eq. 3–4, Eqs. 8-9 and Eq. 10") == {1, 3, 4, 8, 9, 10}


@pytest.mark.parametrize("name", EXPECTED)
def test_widgets_are_exercised_and_fast_mode_used(name):
    code = "\n".join(c.source for c in _read(name).cells if c.cell_type == "code")
    assert "interact(" in code, f"{name}: no slider"
    for fn in re.findall(r"interact\((\w+)", code):
        assert re.search(rf"^{fn}\(", code, re.M), f"{name}: callback {fn} is never called explicitly (CI would not run it)"
    if "Trainer(" in code or "hyphc_toy(" in code:
        assert "lessons.pick(" in code, f"{name}: trains without a fast-mode setting (lessons.pick)"


# -- the helpers in chestlab.lessons ------------------------------------------------------------
def test_lessons_helpers():
    import torch

    from chestlab import lessons, poincare

    c = 0.7
    a, b = torch.tensor([[0.4, 0.3], [-0.5, 0.2]], dtype=torch.float64)
    g = lessons.geodesic_arc(a, b, c, n=7)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    assert torch.allclose(poincare.dist(a.expand(7, 2), g, c), t * poincare.dist(a, b, c), atol=1e-10)
    circle = lessons.hyperbolic_circle(a, 1.5, c)
    assert torch.allclose(poincare.dist(a.expand(len(circle), 2), circle, c), torch.full((len(circle),), 1.5, dtype=torch.float64))
    assert abs(float(poincare.dist0(lessons.lca_point(a, b, c, n=20001), c) - poincare.lca_depth(a, b, c))) < 1e-4
    x, y, z = poincare.expmap0(0.5 * torch.randn(3, 4, 3, dtype=torch.float64), c)
    assert all(err < 1e-9 for _, err in lessons.gyro_checks(x, y, z, c))
    with pytest.raises(AssertionError):
        lessons.verify("wrong", 1.0, 2.0)
    assert lessons.pick("full", "fast") == ("fast" if lessons.FAST else "full")


# -- exercises that check themselves ----------------------------------------------------------------
#: Exercises whose answers a lesson checks: lesson -> {exercise: the names the student defines}. The exercise
#: names them; a code cell before the summary checks whichever are defined (with a message that says what is
#: off) and asks for the others (so a run without answers -- CI, the student edition -- shows only that
#: line); the exercise's written solution defines them, so the shipped solution passes its check. The
#: exercises left out are open questions or proofs (each lesson's check section says so).
EXERCISE_CHECKS = {
    "00_why_hyperbolic": {1: ("ex1_small",), 2: ("ex2_tau",), 4: ("ex4_c",)},
    "01_poincare_ball": {1: ("ex1_dist0",), 2: ("ex2_midpoint",), 3: ("ex3_s_zero", "ex3_s_project"),
                         4: ("ex4_associative",), 5: ("ex5_double",)},
    "02_hard_negatives": {1: ("ex1_grad",), 2: ("ex2_t_sphere",)},
    "03_chest_loss": {1: ("ex1_logits",), 2: ("ex2_loss", "ex2_rho")},
}
#: Lessons whose checks follow an older pattern (the answer named above the check cell, no wrong-answer proof).
EXERCISE_CHECKS_ANSWER_ONLY = {
    "04_hyphc_regulariser": {2: ("ex2_limit",)},
    "05_training_and_ablations": {3: ("answer_3",), 4: ("answer_4",)},
    "06_embeddings": {2: ("ex2_x", "ex2_labels")},
}
#: Lessons whose written solutions define the checked names: run against their checks below.
SOLUTIONS_CHECKED = {**EXERCISE_CHECKS, **{k: v for k, v in EXERCISE_CHECKS_ANSWER_ONLY.items() if k != "06_embeddings"}}


def _exercise_parts(nb) -> tuple[dict[int, str], dict[int, str]]:
    """The lesson's exercises (number -> text) and the Python code of their written solutions."""
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    head = max(i for i, s in enumerate(md) if re.search(r"^##\s+Exercises", s, re.M))
    tail = "\n".join(md[head:])
    items = tail.split("<details>")[0]
    texts = dict((int(n), t) for n, t in re.findall(r"^(\d+)\.\s(.*?)(?=^\d+\.\s|\Z)", items, flags=re.M | re.S))
    solutions = {int(n): "\n".join(re.findall(r"```python\n(.*?)```", body, flags=re.S))
                 for n, body in re.findall(r"<summary>\s*Solution (\d+)\s*</summary>(.*?)</details>", tail, flags=re.S)}
    return texts, solutions


def _check_cell(nb, names) -> int:
    reads = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and "globals()" in c.source and any(re.search(rf"""["']{n}["']""", c.source) for n in names)]
    assert reads, f"no code cell checks {names}"
    return reads[-1]


@pytest.mark.parametrize("name", sorted({**EXERCISE_CHECKS, **EXERCISE_CHECKS_ANSWER_ONLY}))
def test_exercises_check_themselves(name):
    nb = _read(name)
    checked = {**EXERCISE_CHECKS, **EXERCISE_CHECKS_ANSWER_ONLY}[name]
    texts, solutions = _exercise_parts(nb)
    summary = max(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and re.search(r"^##\s+Summary", c.source, re.M))
    for number, names in checked.items():
        for n in names:  # (lesson 05 names them in the text above its check cell)
            where = texts[number] if name in EXERCISE_CHECKS else _markdown(nb)
            assert re.search(rf"`{n}[`( ]", where), f"{name}: exercise {number} does not tell the student to define `{n}`"
        assert _check_cell(nb, names) < summary, f"{name}: exercise {number}'s check comes after the summary"
        if name in EXERCISE_CHECKS:
            for n in names:
                assert re.search(rf"^(def {n}\(|{n}\s*=)", solutions.get(number, ""), re.M), (
                    f"{name}: Solution {number}'s code does not define {n}, so the shipped solution is not checked")
    if name in EXERCISE_CHECKS:
        check = nb.cells[_check_cell(nb, [n for names in checked.values() for n in names])].source
        assert "run this cell again" in check, f"{name}: without answers the check must say what to define"
        assert "lessons.refuses(check_exercises" in check, f"{name}: the check never shows that it fails on a wrong answer"


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at top level, names it reads that it does not bind anywhere) -- by ast."""
    import ast

    tree = ast.parse("\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))))
    bound_any = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    bound_any |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound_any |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    top: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            top.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            top |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        else:
            top |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return top, loads - bound_any - top


@pytest.mark.parametrize("name", sorted(SOLUTIONS_CHECKED))
def test_the_shipped_solutions_pass_their_checks(name, monkeypatch):
    """The lesson's written solutions, run before its check cell (with the earlier cells they need,
    found by the names they read), pass: the check prints a ✓ line for every checked exercise."""
    nbclient = pytest.importorskip("nbclient")
    nb = _read(name)
    checked = SOLUTIONS_CHECKED[name]
    _, solutions = _exercise_parts(nb)
    at = _check_cell(nb, [n for names in checked.values() for n in names])
    code = "\n\n".join(solutions[k] for k in sorted(checked))
    need = _names(code)[1] | _names(nb.cells[at].source)[1]
    before = [i for i, c in enumerate(nb.cells[:at]) if c.cell_type == "code"]
    keep = {before[0]}  # the imports
    for i in reversed(before):  # the last cell before the check that binds a needed name, and what it needs
        top, loads = _names(nb.cells[i].source)
        if top & need:
            keep.add(i)
            need = (need - top) | loads
    cells = [nb.cells[i] for i in sorted(keep)] + [nbformat.v4.new_code_cell(code), nb.cells[at]]
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    monkeypatch.setenv("CHESTLAB_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nbclient.NotebookClient(run, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
    out = "".join(o.get("text", "") for o in run.cells[-1].outputs if o.get("output_type") == "stream")
    for number in checked:
        assert f"✓ exercise {number}" in out, f"{name}: the shipped solution of exercise {number} did not pass:\n{out}"
    assert "run this cell again" not in out, out


@pytest.mark.parametrize("name", sorted(SOLUTIONS_CHECKED))
def test_the_student_edition_keeps_the_checks_and_drops_the_answers(name):
    """chestlab.book's student edition of the lesson: the check cell stays (so a student runs it on their
    own answers), the written solutions that define the checked names are gone; the instructor edition
    keeps them."""
    book = pytest.importorskip("chestlab.book")
    nb = _read(name)
    names = [n for ns in SOLUTIONS_CHECKED[name].values() for n in ns]
    check = nb.cells[_check_cell(nb, names)].source
    static = book.make_static(nb)
    text = {e: "\n".join(c.source for c in book.edition(static, e).cells) for e in book.EDITIONS}
    assert check in text["student"] and check in text["instructor"]
    for n in names:
        defined = re.compile(rf"^#?\s*(def {n}\(|{n}\s*=)", re.M)
        assert defined.search(text["instructor"]), f"{name}: the instructor edition lost the solution defining {n}"
        assert not defined.search(text["student"]), f"{name}: the student edition still defines {n} (a solution left in)"
