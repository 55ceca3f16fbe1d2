"""environment.yml (the conda route) stays in step with pyproject.toml (the pip route).

Every requirement of pyproject.toml — core dependencies and all extras — must appear in
environment.yml as its conda-forge package with the same version bounds; environment.yml must list
no conda package that pyproject.toml lacks (python and pip aside); and its pip section installs only
the kit itself, plus the few packages that conda-forge does not carry (PIP_ONLY below).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml  # PyYAML: a dependency of timm, so present wherever the kit's dependencies are
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (tomli comes with pytest there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

# PyPI name -> conda-forge name, where the two differ. Any other name is the same on both.
CONDA_NAME = {
    "torch": "pytorch",
}
# PyPI packages that conda-forge does not carry: environment.yml installs them in its pip section.
PIP_ONLY = {"geoopt"}
# conda packages with no pyproject counterpart by design.
CONDA_ONLY = {"python", "pip"}
# What the pip section may hold besides PIP_ONLY requirements: the kit itself, editable.
KIT_PIP_LINE = "-e ."

_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def pyproject_requirements(pyproject: dict) -> dict[str, SpecifierSet]:
    """Canonical PyPI name -> specifier for the core dependencies and every extra."""
    project = pyproject["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    reqs: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):
            continue  # a self-referencing extra such as "chestlab[app]"
        if name in reqs and reqs[name] != req.specifier:
            raise AssertionError(
                f"pyproject.toml: {name} is listed twice with different bounds: "
                f"{reqs[name]} vs {req.specifier}"
            )
        reqs[name] = req.specifier
    return reqs


def conda_dependencies(env: dict) -> tuple[dict[str, SpecifierSet], list[str]]:
    """(conda name -> specifier, pip section lines) of an environment.yml."""
    conda: dict[str, SpecifierSet] = {}
    pip_lines: list[str] = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"environment.yml: unexpected dependency mapping {dep}"
            pip_lines.extend(str(line).strip() for line in dep["pip"] or [])
            continue
        match = _CONDA_SPEC.match(str(dep))
        assert match, f"environment.yml: cannot parse conda dependency {dep!r}"
        name, spec = match.groups()
        # conda's "pkg=1.2" / "pkg 1.2" (fuzzy) and build strings are not used here: only the
        # PEP 440-compatible comparison operators, which SpecifierSet parses.
        conda[name.lower()] = SpecifierSet(spec.replace(" ", ""))
    return conda, pip_lines


def drift(pyproject: dict, env: dict) -> list[str]:
    """Every way environment.yml disagrees with pyproject.toml; empty when they are in step."""
    problems: list[str] = []
    reqs = pyproject_requirements(pyproject)
    conda, pip_lines = conda_dependencies(env)

    if "conda-forge" not in (env.get("channels") or []):
        problems.append("environment.yml: channel conda-forge is missing")

    pip_reqs: dict[str, SpecifierSet] = {}
    for line in pip_lines:
        if line == KIT_PIP_LINE:
            continue
        if line.startswith("-"):
            problems.append(f"pip section: unexpected option line {line!r}")
            continue
        req = Requirement(line)
        pip_reqs[canonicalize_name(req.name)] = req.specifier
    if KIT_PIP_LINE not in pip_lines:
        problems.append(f"pip section: must install the kit with {KIT_PIP_LINE!r}")
    if pip_lines.count(KIT_PIP_LINE) > 1:
        problems.append(f"pip section: {KIT_PIP_LINE!r} is listed more than once")

    for name, spec in sorted(reqs.items()):
        if name in PIP_ONLY:
            where, got = "pip section", pip_reqs.get(name)
            shown = name
        else:
            shown = CONDA_NAME.get(name, name)
            where, got = "conda dependencies", conda.get(shown)
        if got is None:
            problems.append(f"{shown} (pyproject {name}{spec}) is missing from the {where}")
        elif got != spec:
            problems.append(
                f"{shown}: environment.yml has {str(got) or 'no bounds'}, "
                f"pyproject.toml has {str(spec) or 'no bounds'}"
            )

    conda_counterparts = {CONDA_NAME.get(n, n) for n in reqs if n not in PIP_ONLY}
    for name in sorted(set(conda) - conda_counterparts - CONDA_ONLY):
        problems.append(f"conda package {name} has no counterpart in pyproject.toml")
    for name in sorted(set(pip_reqs) - (PIP_ONLY & set(reqs))):
        problems.append(
            f"pip section installs {name}: only the kit and PIP_ONLY packages from pyproject "
            "belong there"
        )
    for name in sorted(PIP_ONLY & set(conda)):
        problems.append(f"{name} is in PIP_ONLY but also listed as a conda package")

    python = conda.get("python")
    requires_python = SpecifierSet(pyproject["project"].get("requires-python", ""))
    lower = {s for s in requires_python if s.operator in (">=", ">")}
    if python is None:
        problems.append("environment.yml does not pin python")
    elif lower and not lower <= set(python):
        problems.append(
            f"python: environment.yml has {python}, pyproject requires-python is {requires_python}"
        )
    return problems


def _load_real() -> tuple[dict, dict]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    return pyproject, env


def test_environment_yml_matches_pyproject():
    pyproject, env = _load_real()
    problems = drift(pyproject, env)
    assert not problems, "environment.yml drifted from pyproject.toml:\n  " + "\n  ".join(problems)


def test_mapping_tables_are_live():
    # A stale entry (a package dropped from pyproject) would silently widen what the test allows.
    pyproject, _ = _load_real()
    reqs = pyproject_requirements(pyproject)
    assert set(CONDA_NAME) <= set(reqs), set(CONDA_NAME) - set(reqs)
    assert PIP_ONLY <= set(reqs), PIP_ONLY - set(reqs)


def test_license_is_an_spdx_string():
    pyproject, _ = _load_real()
    project = pyproject["project"]
    assert project["license"] == "MIT"
    for path in project.get("license-files", []):
        assert (ROOT / path).is_file(), f"license file {path} is missing"


# --- the comparison itself catches drift on either side ------------------------------------------

_PYPROJECT = {
    "project": {
        "name": "kit",
        "requires-python": ">=3.10",
        "dependencies": ["torch>=2.1,<3", "numpy>=1.24"],
        "optional-dependencies": {"dev": ["geoopt>=0.5", "ipykernel>=6.29,<7"]},
    }
}
_ENV_YML = """\
name: kit
channels:
  - conda-forge
dependencies:
  - python>=3.10,<3.13
  - pip
  - pytorch>=2.1,<3
  - numpy>=1.24
  - ipykernel>=6.29,<7
  - pip:
      - geoopt>=0.5
      - -e .
"""


def _drift_of(env_text: str = _ENV_YML, pyproject: dict | None = None) -> list[str]:
    return drift(pyproject or _PYPROJECT, yaml.safe_load(env_text))


def _with_dev(*dev: str) -> dict:
    project = dict(_PYPROJECT["project"], **{"optional-dependencies": {"dev": list(dev)}})
    return {"project": project}


def test_drift_fixture_is_in_step():
    assert _drift_of() == []


_DRIFTS = {
    # environment.yml side
    "conda-package-dropped": (
        _ENV_YML.replace("  - numpy>=1.24\n", ""), None, "numpy (pyproject numpy>=1.24) is missing"
    ),
    "conda-upper-bound-dropped": (
        _ENV_YML.replace("pytorch>=2.1,<3", "pytorch>=2.1"), None, "pytorch: environment.yml has >=2.1,"
    ),
    "conda-lower-bound-changed": (
        _ENV_YML.replace("pytorch>=2.1,<3", "pytorch>=2.0,<3"), None, "pytorch: environment.yml has <3,>=2.0"
    ),
    "pypi-name-in-conda": (
        _ENV_YML.replace("pytorch>=2.1,<3", "torch>=2.1,<3"), None, "pytorch (pyproject torch<3,>=2.1) is missing"
    ),
    "conda-extra-package": (
        _ENV_YML.replace("  - pip\n", "  - pip\n  - seaborn\n"), None, "conda package seaborn has no counterpart"
    ),
    "pip-extra-package": (
        _ENV_YML.replace("      - -e .\n", "      - -e .\n      - rich\n"), None, "pip section installs rich"
    ),
    "pip-kit-with-extras": (
        _ENV_YML.replace("      - -e .\n", '      - -e ".[dev]"\n'), None, "pip section: unexpected option line"
    ),
    "pip-kit-dropped": (_ENV_YML.replace("      - -e .\n", ""), None, "must install the kit"),
    "pip-only-dropped": (
        _ENV_YML.replace("      - geoopt>=0.5\n", ""), None, "geoopt (pyproject geoopt>=0.5) is missing from the pip section"
    ),
    "python-below-requires-python": (
        _ENV_YML.replace("python>=3.10", "python>=3.9"), None, "python: environment.yml has"
    ),
    "channel-dropped": (_ENV_YML.replace("conda-forge", "defaults"), None, "channel conda-forge is missing"),
    # pyproject.toml side
    "pyproject-bound-changed": (
        _ENV_YML, _with_dev("geoopt>=0.5", "ipykernel>=6.29,<8"), "ipykernel: environment.yml has <7,>=6.29, pyproject.toml has <8,>=6.29"
    ),
    "pyproject-package-added": (
        _ENV_YML, _with_dev("geoopt>=0.5", "ipykernel>=6.29,<7", "nbmake>=1.4"), "nbmake (pyproject nbmake>=1.4) is missing"
    ),
    "pyproject-package-dropped": (_ENV_YML, _with_dev("geoopt>=0.5"), "conda package ipykernel has no counterpart"),
    "pyproject-pip-only-bound-changed": (
        _ENV_YML, _with_dev("geoopt>=0.6", "ipykernel>=6.29,<7"), "geoopt: environment.yml has >=0.5, pyproject.toml has >=0.6"
    ),
}


@pytest.mark.parametrize(("env_text", "pyproject", "expected"), list(_DRIFTS.values()), ids=list(_DRIFTS))
def test_drift_is_reported(env_text, pyproject, expected):
    problems = _drift_of(env_text, pyproject)
    assert any(expected in p for p in problems), problems
