"""Plug-ins: Python modules outside the package that register losses, datasets, backbones or rules
when they are imported (see docs/extending.md). Every entry point loads them the same way:

- ``--plugin MODULE`` (repeatable) on ``python -m chestlab.train``, ``.evaluate`` and ``.reproduce``;
- the environment variable ``CHESTLAB_PLUGINS``: module names separated by commas (or ``os.pathsep``);
- the entry-point group ``chestlab.plugins`` of installed packages (``importlib.metadata``);
- the ``plugins`` list of a run's ``config.json``: the modules the run used, loaded again by
  ``evaluate``, ``--resume`` and ``reproduce`` (the dashboard loads only the first three sources:
  nothing a link names is imported).

A plug-in is named by its dotted module name (``my_losses``, ``my_pkg.losses``), imported from
``sys.path`` like any module: never a file path, so a command line, a variable or a run folder can
only select code that is already installed or importable, never point at a file to run.

This module imports nothing heavy: the command lines load plug-ins before they build their parsers,
so that ``--help`` and ``--set loss=NAME`` see what the plug-ins registered.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

__all__ = ["ENV", "GROUP", "PluginError", "check_name", "from_env", "from_entry_points", "load", "loaded",
           "add_argument", "load_for_cli", "without_plugin_options", "load_environment", "recorded", "load_recorded", "load_recorded_file"]

#: The environment variable naming plug-in modules.
ENV = "CHESTLAB_PLUGINS"
#: The entry-point group of installed plug-ins (``[project.entry-points."chestlab.plugins"]``).
GROUP = "chestlab.plugins"

_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)
#: The plug-in modules loaded in this process, in load order (what a run records).
_LOADED: dict[str, None] = {}


class PluginError(ValueError):
    """A plug-in name that is not a module name, or a module that cannot be imported (one line)."""


def check_name(name: Any, where: str = "--plugin") -> str:
    """``name`` if it is a dotted Python module name, else :class:`PluginError` naming ``where`` it
    came from: a path (``./my_losses.py``, ``/tmp/x``) is refused, never opened, and so is a module
    of the standard library."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".py") or len(name) > 200:
        shown = name if isinstance(name, str) else repr(name)
        raise PluginError(f"{where} {shown[:200]}: not a module name; a plug-in is named by its dotted Python module "
                          "name (e.g. my_losses or my_pkg.losses, importable from sys.path), never by a file path")
    if name.split(".")[0] in sys.stdlib_module_names:  # a run folder cannot make `antigravity` or `webbrowser` run
        raise PluginError(f"{where} {name}: a module of Python's standard library is not a plug-in")
    return name


def from_env(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The module names of ``CHESTLAB_PLUGINS`` (commas or ``os.pathsep`` between them), checked."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    return [check_name(n.strip(), ENV) for n in re.split(f"[,{re.escape(os.pathsep)}]", text) if n.strip()]


def from_entry_points() -> list[str]:
    """The modules installed packages declare in the entry-point group ``chestlab.plugins``."""
    return [check_name(ep.module, f"entry point {ep.name!r} of group {GROUP}") for ep in metadata.entry_points(group=GROUP)]


def load(names: Iterable[str], where: str = "--plugin", failure: Optional[Callable[[str, str], str]] = None) -> list[str]:
    """Import the plug-in modules ``names`` (all names are checked before any is imported); returns
    those imported now (not loaded before). A module that cannot be imported raises
    :class:`PluginError`: one line, ``failure(name, reason)`` when given."""
    names = list(dict.fromkeys(check_name(n, where) for n in names))
    new = []
    for name in names:
        if name in _LOADED:
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # ImportError, or the plug-in's own error while registering
            reason = " ".join(str(err).split())
            reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
            raise PluginError(failure(name, reason) if failure else
                              f"{where} {name}: the plug-in module cannot be imported: {reason}") from None
        _LOADED[name] = None
        new.append(name)
    return new


def loaded() -> list[str]:
    """The plug-in modules loaded in this process, in load order."""
    return list(_LOADED)


# ------------------------------------------------------------------------------------------------
# command lines
# ------------------------------------------------------------------------------------------------
_HELP = (f"import plug-in module MODULE (a dotted module name, e.g. my_losses; repeatable) before the settings are "
         f"read; {ENV} and the entry-point group {GROUP} name more")


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` on ``parser`` (for its ``--help``; :func:`load_for_cli` reads it first)."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=_HELP)


class _PreParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise PluginError(message)


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    pre = _PreParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, rest = pre.parse_known_args(list(argv))
    return known.plugin, rest


def without_plugin_options(argv: Sequence[str]) -> list[str]:
    """``argv`` less its ``--plugin MODULE`` options (for a parser with subcommands, where an option
    of the main parser cannot follow the subcommand)."""
    return _split(argv)[1]


def load_for_cli(argv: Sequence[str]) -> list[str]:
    """What a command line loads before it builds its parser: ``CHESTLAB_PLUGINS``, the entry points,
    then every ``--plugin MODULE`` of ``argv`` (every name is checked before any is imported). Returns
    the modules imported now; prints one line naming them (on stderr: the output stays the command's)."""
    given = [check_name(n, "--plugin") for n in _split(argv)[0]]
    env, installed = from_env(), from_entry_points()
    new = load(env, ENV) + load(installed, f"entry point of {GROUP}") + load(given, "--plugin")
    if new:
        print(f"plug-ins: {', '.join(new)}", file=sys.stderr)
    return new


def load_environment() -> tuple[list[str], list[str]]:
    """What the dashboard loads (never a module a link names): ``CHESTLAB_PLUGINS`` and the entry
    points, each on its own. Returns (the plug-in modules loaded, one line per source or module that
    failed); once per process, the answer is kept."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        errors: list[str] = []
        for where, names in ((ENV, from_env), (f"entry point of {GROUP}", from_entry_points)):
            try:
                for name in names():
                    try:
                        load([name], where)
                    except PluginError as err:
                        errors.append(str(err))
            except PluginError as err:  # a name that is not a module name
                errors.append(str(err))
        _ENVIRONMENT = (loaded(), errors)
    return list(_ENVIRONMENT[0]), list(_ENVIRONMENT[1])


_ENVIRONMENT: Optional[tuple[list[str], list[str]]] = None


# ------------------------------------------------------------------------------------------------
# runs: what config.json records, and loading it again
# ------------------------------------------------------------------------------------------------
def recorded(loss_module: Optional[str] = None) -> list[str]:
    """What a run's ``config.json`` records as ``plugins``: the plug-in modules loaded in this process,
    and ``loss_module`` (the module that defines the run's loss) when it is neither chestlab's nor a
    script's ``__main__`` (a loss imported by a Python driver, without ``--plugin``)."""
    out = loaded()
    if loss_module and loss_module.split(".")[0] not in ("chestlab", "__main__") and _NAME.fullmatch(loss_module):
        out = list(dict.fromkeys([*out, loss_module]))
    return out


def load_recorded(stored: Mapping[str, Any], run: Any) -> list[str]:
    """Import the plug-in modules a run's ``config.json`` (``stored``) records under ``plugins``;
    prints one line naming those imported now. A module that cannot be imported raises
    :class:`PluginError`: ``run RUN used plug-in module M, which cannot be imported: ...``."""
    names = stored.get("plugins", []) if isinstance(stored, Mapping) else []
    if not isinstance(names, list):
        raise PluginError(f"run {run}: config.json's plugins must be a list of module names, got {type(names).__name__}")
    new = load(names, f"run {run}: config.json's plugins:",
               lambda name, why: f"run {run} used plug-in module {name}, which cannot be imported: {why} "
                                 "(make it importable, e.g. PYTHONPATH=its folder)")
    if new:
        print(f"plug-ins of run {run}: {', '.join(new)}", file=sys.stderr)
    return new


def load_recorded_file(config_json: Path) -> list[str]:
    """:func:`load_recorded` of a run folder's ``config.json`` (nothing when it is missing or not JSON:
    the caller reports that)."""
    import json

    try:
        stored = json.loads(Path(config_json).read_text())
    except (OSError, ValueError):
        return []
    return load_recorded(stored, Path(config_json).parent)
