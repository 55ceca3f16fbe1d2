"""docs/course.md, the course syllabus: every lesson file and every dashboard scenario it names exists,
every lesson is in it, and both lecture plans pair lessons with scenarios."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "docs" / "course.md"

#: a lesson is named by its path, notebooks/NN_name.py (or .ipynb); a scenario by its link, ?scenario=NAME
_LESSON = re.compile(r"notebooks/(\d\d_[A-Za-z0-9_]+)\.(?:py|ipynb)")
_SCENARIO = re.compile(r"\?scenario=([A-Za-z0-9_-]+)")


def lessons_named(text: str) -> set[str]:
    return set(_LESSON.findall(text))


def scenarios_named(text: str) -> set[str]:
    return set(_SCENARIO.findall(text)) - {"NAME"}  # NAME: the placeholder of the link's pattern


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/course.md has no '## {title}' section"
    return match.group(1)


@pytest.fixture(scope="module")
def course() -> str:
    assert COURSE.is_file(), "docs/course.md is missing"
    return COURSE.read_text(encoding="utf-8")


def test_the_patterns_find_names_and_the_placeholder_is_not_one():
    text = "see notebooks/03_chest_loss.py and notebooks/99_x.ipynb; open ?scenario=clip-radius or ?scenario=NAME"
    assert lessons_named(text) == {"03_chest_loss", "99_x"}
    assert scenarios_named(text) == {"clip-radius"}


def test_every_lesson_it_names_exists_and_every_lesson_is_named(course):
    named = lessons_named(course)
    missing = sorted(n for n in named if not (ROOT / "notebooks" / f"{n}.py").is_file()
                     or not (ROOT / "notebooks" / f"{n}.ipynb").is_file())
    assert not missing, f"docs/course.md names lessons that do not exist: {missing}"
    lessons = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")}
    assert lessons and named >= lessons, f"docs/course.md leaves out lessons {sorted(lessons - named)}"


def test_every_scenario_it_names_exists(course):
    from chestlab.dashboard.scenarios import SCENARIOS

    named = scenarios_named(course)
    assert named, "docs/course.md names no dashboard scenario"
    unknown = sorted(named - set(SCENARIOS))
    assert not unknown, f"docs/course.md names scenarios that chestlab/dashboard/scenarios.py does not have: {unknown}"


@pytest.mark.parametrize("title, lectures", [("Three lectures", 3), ("Six lectures", 6)])
def test_lecture_plans_pair_every_lesson_with_scenarios(course, title, lectures):
    plan = _section(course, title)
    rows = [line for line in plan.splitlines() if re.match(r"\|\s*\d+\.", line)]
    assert len(rows) == lectures, f"'{title}': {len(rows)} lectures, expected {lectures}"
    for row in rows:
        assert scenarios_named(row), f"'{title}': a lecture without a dashboard scenario: {row[:60]}"
    taught = {n for row in rows for n in re.findall(r"\b0\d\b", row.split("|")[2])}
    lessons = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")}
    assert taught == lessons, f"'{title}' teaches lessons {sorted(taught)}, the kit has {sorted(lessons)}"


def test_prerequisites_objectives_and_times(course):
    prereq = _section(course, "Prerequisites").lower()
    for topic in ("riemannian", "softmax", "cross-entropy", "metric-learning"):
        assert topic in prereq, f"the prerequisites do not mention {topic}"
    assert re.search(r"^1\. ", _section(course, "Learning objectives"), re.M), "no numbered learning objectives"
    times = re.findall(r"\|\s*(\d+)–(\d+) min\s*\|", _section(course, "Lessons, time and what is hard"))
    assert len(times) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
    assert all(55 <= int(a) <= int(b) <= 95 for a, b in times), times


def test_linked_from_the_readme():
    assert "docs/course.md" in (ROOT / "README.md").read_text(encoding="utf-8")
