"""docs/maths.md, the one statement of the kit's maths that docstrings, the README and the lessons
cite, and the rule that the project refers to nothing outside the repository.

- no file of the project names the private material the kit was written from (its folder or its
  restatement of the equations): everything the project cites is in the repository;
- docs/maths.md has one ``## Eq. N — title`` heading for each equation of the CHEST paper (lessons
  link their GitHub anchors, e.g. ``docs/maths.md#eq-7--proxy-loss-with-a-margin``), and its own
  links point at headings that exist;
- every ``chestlab.<module>.<name>`` it names exists;
- its notation table gives each symbol one meaning, each setting one symbol, and names real settings;
- the sections of losses still to come say so exactly while the loss is not registered.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATHS = ROOT / "docs" / "maths.md"

#: Files and folders (relative to the repository root) that may not point outside the repository.
#: The lessons join with one word: add "notebooks" once they cite docs/maths.md.
SEARCHED = ("chestlab", "docs", "README.md", "benchmarks", "app.py", "tests", "notebooks")
#: Text files looked at inside the folders above.
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".txt", ".rst", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".json",
                 ".html", ".css", ".js"}
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}

# The patterns are assembled from pieces so that this file does not match them itself.
_OUTSIDE = re.compile(
    "|".join((
        re.escape("sha" + "red/"),  # the folder of the papers and their restatement
        r"\bthe\s+" + "sp" + r"ec\b",  # ... and the restatement's name
        re.escape("sp" + "ec/" + "chest"),
    )),
    re.IGNORECASE,
)

_EQ_HEADING = re.compile(r"^## Eq\. (\d+) — (\S.*)$", re.MULTILINE)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped (letters of any
    script, digits, ``_``, ``-`` and spaces kept), spaces -> ``-``. ``"Eq. 7 — proxy loss"`` ->
    ``"eq-7--proxy-loss"``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _maths() -> str:
    assert MATHS.is_file(), "docs/maths.md is missing"
    return MATHS.read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    """Every Markdown heading (any level) outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line.lstrip("#").strip())
    return out


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/maths.md has no '## {title}' section"
    return match.group(1)


def _notation_rows() -> tuple[list[str], list[list[str]]]:
    """The notation table: (header cells, rows of cells)."""
    lines = [ln.strip() for ln in _section(_maths(), "Notation").splitlines() if ln.strip().startswith("|")]
    assert len(lines) > 2, "the Notation section has no table"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    header = cells(lines[0])
    rows = [cells(ln) for ln in lines[2:]]
    bad = [r[0] for r in rows if len(r) != len(header)]
    assert not bad, (f"notation rows with a number of cells other than {len(header)} (a '|' inside a formula "
                     f"splits a GitHub table: write \\lVert, \\rVert, \\vert): {bad}")
    return [h.lower() for h in header], rows


def _resolve(dotted: str):
    """``chestlab.a.b.c`` -> the object: the longest importable module prefix, then attributes.
    Raises ``AttributeError`` / ``ModuleNotFoundError`` when it does not exist."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and not name.startswith(err.name) and err.name != name:
                raise  # the module exists but one of its own imports is missing
            continue
        for attr in parts[n:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _text_files(entry: str):
    path = ROOT / entry
    if path.is_file():
        yield path
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in TEXT_SUFFIXES and not SKIPPED_DIRS.intersection(p.parts):
                yield p


# ------------------------------------------------------------------------------------------------
# (a) nothing points outside the repository
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", SEARCHED)
def test_no_reference_outside_the_repository(entry):
    hits = []
    for path in _text_files(entry):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not hits, ("these lines point outside the repository; cite docs/maths.md (e.g. "
                      "'Eq. 7 (docs/maths.md)') instead:\n" + "\n".join(hits))


def test_the_pattern_catches_what_it_should():
    assert _OUTSIDE.search("see ../" + "sha" + "red/papers")
    assert _OUTSIDE.search("as The " + "sp" + "ec says")
    for fine in ("GridSpec", "spec = GRIDS[grid]", "the specifier", "kernelspec", "dataset-specific"):
        assert not _OUTSIDE.search(fine), fine


# ------------------------------------------------------------------------------------------------
# (b) one heading per equation, and anchors that resolve
# ------------------------------------------------------------------------------------------------
def test_one_heading_per_equation_in_order():
    numbers = [int(n) for n, _ in _EQ_HEADING.findall(_maths())]
    assert sorted(set(numbers)) == list(range(1, 11)), f"Eq. headings found for {sorted(set(numbers))}, need 1..10"
    assert len(numbers) == len(set(numbers)), f"an equation has two headings: {numbers}"
    assert numbers == sorted(numbers), f"Eq. headings out of order: {numbers}"


def test_equation_anchors_have_the_lesson_form():
    for n, title in _EQ_HEADING.findall(_maths()):
        slug = github_slug(f"Eq. {n} — {title}")
        assert slug.startswith(f"eq-{n}--"), slug


def test_headings_are_unique_and_internal_links_resolve():
    text = _maths()
    slugs = [github_slug(h) for h in _headings(text)]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    assert not dupes, f"two headings share an anchor (GitHub would suffix one with -1): {dupes}"
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - set(slugs))
    assert not broken, f"links to anchors no heading has: {broken}"


def test_github_slug():
    assert github_slug("Eq. 7 — proxy loss with a margin") == "eq-7--proxy-loss-with-a-margin"
    assert github_slug("Eq. 1 — Möbius addition") == "eq-1--möbius-addition"
    assert github_slug("Where the papers are ambiguous: the kit's choices") == "where-the-papers-are-ambiguous-the-kits-choices"


# ------------------------------------------------------------------------------------------------
# (c) the functions it names exist
# ------------------------------------------------------------------------------------------------
def test_named_functions_exist():
    names = sorted(set(re.findall(r"`(chestlab(?:\.\w+)+)", _maths())))
    assert len(names) > 20, "docs/maths.md should name the kit function of every formula"
    missing = []
    for name in names:
        try:
            obj = _resolve(name)
        except (AttributeError, ModuleNotFoundError) as err:
            missing.append(f"{name} ({err})")
            continue
        if not (callable(obj) or type(obj).__name__ == "module"):
            missing.append(f"{name} (not a module, class or function)")
    assert not missing, "docs/maths.md names what the kit does not have:\n" + "\n".join(missing)


# ------------------------------------------------------------------------------------------------
# (d) the notation table: one symbol, one meaning
# ------------------------------------------------------------------------------------------------
def test_notation_table_gives_each_symbol_one_meaning():
    header, rows = _notation_rows()
    assert header[:2] == ["symbol", "meaning"], header
    meanings: dict[str, set[str]] = {}
    for row in rows:
        symbol = re.sub(r"\s+", " ", row[0])
        assert symbol, f"a notation row without a symbol: {row}"
        meanings.setdefault(symbol, set()).add(row[1])
    twice = {s: sorted(m) for s, m in meanings.items() if len(m) > 1}
    assert not twice, f"symbols listed with different meanings: {twice}"


def test_notation_table_names_real_settings_once_each():
    from chestlab.settings import schema

    header, rows = _notation_rows()
    col = header.index("setting")
    known = schema()
    seen: dict[str, str] = {}
    for row in rows:
        for key in re.findall(r"`([^`]+)`", row[col]):
            assert key in known, f"the notation table names {key!r} (for {row[0]}), which is not a setting"
            assert key not in seen, f"setting {key!r} is listed for two symbols: {seen[key]} and {row[0]}"
            seen[key] = row[0]
    # the symbols the issue asked to tell apart
    symbols = {re.sub(r"\s+", " ", r[0]): r for r in rows}
    assert "`mix_lam`" in symbols[r"$\beta$"][col]
    assert "`c`" in symbols["$c$"][col]
    assert "class" in symbols["$y$"][1]


# ------------------------------------------------------------------------------------------------
# losses still to come
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss, title", [("chest_hier", "HIER — hierarchical proxies"),
                                         ("unsup", "Unsupervised hierarchical similarity")])
def test_to_be_implemented_marks_follow_the_registry(loss, title):
    """A section of a loss still to come opens with "**To be implemented.**" exactly while no loss of
    that name is registered (the mark is not in the heading, so the section's anchor stays put)."""
    from chestlab.losses import list_losses

    marked = _section(_maths(), title).lstrip().startswith("**To be implemented.**")
    registered = loss in list_losses()
    assert marked != registered, (
        f"loss {loss!r} is {'registered' if registered else 'not registered'} but the section "
        f"'{title}' {'still opens' if marked else 'does not open'} with '**To be implemented.**'"
    )
