"""The options a dataset accepts (``data_options``): each option's type and range (:class:`Option`),
checked before anything is generated or read, so a bad value is one ``ValueError`` line that names
the option and what is allowed, e.g. ``depth = 'x': not an integer; allowed: an integer 1..16 or
none``. The total size the options make together (leaves x samples x dimensions for ``tree``, images
x pixels for ``shapes``) is each dataset's own check, next to its generator.

    >>> Option("int", 1, 16).check("depth", 3)
    3
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["Option", "check_options", "IMAGE_OPTIONS", "MAX_IMAGE_SIZE"]

#: The largest image side an image dataset produces: ViT's 224 x 4, so an image is at most 12.6 M floats.
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class Option:
    """One option of a dataset.

    ``kind``: ``"int"``, ``"float"`` (finite), ``"ints"`` (an int or a list of at most ``max_len``
    ints, e.g. ``branching``), ``"choice"`` (one of ``choices``), ``"path"`` (a folder or file name)
    or ``"callable"`` (a Python function, or one of ``choices``, e.g. ``"paper"``). ``low`` / ``high``
    bound numbers (and each int of ``"ints"``); ``low_open`` / ``high_open`` exclude the bound itself.
    ``nullable``: ``None`` is allowed (the dataset's own default).
    """

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nullable: bool = False
    max_len: int = 16

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``an integer 1..16 or none``."""
        lo = "" if self.low is None else f"{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}"
        span = f"{lo}..{hi}" if not (self.low_open or self.high_open) else \
            f"{'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        text = {
            "int": f"an integer {span}",
            "float": f"a number in {span}",
            "ints": f"an integer {span}, or a list of up to {self.max_len} of them (one per level)",
            "choice": "one of " + ", ".join(map(str, self.choices)),
            "path": "a folder name",
            "callable": "a Python function (not from JSON)" + "".join(f" or {c!r}" for c in self.choices),
        }[self.kind]
        return text + (" or none" if self.nullable else "")

    def check(self, name: str, value: Any) -> Any:
        """``value`` if this option accepts it (an integral float as an int), else ``ValueError``."""
        def bad(why: str) -> ValueError:
            return ValueError(f"{name} = {value!r}: {why}; allowed: {self.allowed()}")

        if value is None:
            if self.nullable:
                return None
            raise bad("not a valid value")
        if self.kind == "int":
            return self._number(self._int(value, bad), bad)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad("not a finite number")
            return self._number(value, bad)
        if self.kind == "ints":
            if isinstance(value, (list, tuple)):
                if not 1 <= len(value) <= self.max_len:
                    raise bad(f"{len(value)} values")
                return tuple(self._number(self._int(v, bad), bad) for v in value)
            return self._number(self._int(value, bad), bad)
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise bad("not a valid value")
            return value
        if self.kind == "path":
            if not isinstance(value, (str, os.PathLike)) or not str(value) or "\0" in str(value) or len(str(value)) > 4096:
                raise bad("not a folder name")
            return value
        if self.kind == "callable":
            if callable(value) or (isinstance(value, str) and value in self.choices):
                return value
            raise bad("not a function")
        raise ValueError(f"option {name}: unknown kind {self.kind!r}")  # a dataset declared it wrong

    @staticmethod
    def _int(value: Any, bad) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise bad("not an integer")
        return int(value)

    def _number(self, v: float, bad) -> Any:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise bad("out of range")
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            raise bad("out of range")
        return v


#: The options of the image benchmarks read from ``data_root``: the output side of the transform and
#: the transform itself (``"paper"``: :func:`chestlab.data.paper_transforms`).
IMAGE_OPTIONS: dict[str, Option] = {
    "image_size": Option("int", 1, MAX_IMAGE_SIZE),
    "transform": Option("callable", choices=("paper",), nullable=True),
}


def check_options(options: Mapping[str, Any], specs: Mapping[str, Option]) -> dict[str, Any]:
    """``options`` checked one by one against ``specs`` (options without a spec pass unchanged);
    the first bad one raises ``ValueError`` naming it."""
    return {k: specs[k].check(k, v) if k in specs else v for k, v in options.items()}
