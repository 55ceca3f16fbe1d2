"""Text on the page that came from outside (a link, a text box, an exception): shown as written.

Text echoed from a link or a text box is shown literally (:func:`literal`), never as Markdown;
prose built around it is escaped (:func:`escape`); a value the schema refused is one line
(:func:`refusal`).
"""

from __future__ import annotations

import re
from typing import Any

from chestlab.settings import SettingError

__all__ = ["literal", "escape", "refusal", "refusal_reason"]


def literal(text: Any, limit: int = 80) -> str:
    """``text`` (from a link or a text box) as Markdown that shows it literally: one line, clipped
    to ``limit`` characters, in a code span whose backtick fence is longer than any run of
    backticks inside, so no link, image, emphasis, colour or emoji shortcode in it is rendered."""
    one = " ".join(str(text).split())
    if not one:
        return "(empty)"
    if len(one) > limit:
        one = one[: limit - 1] + "…"
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", one)), default=0))
    pad = " " if one[:1] == "`" or one[-1:] == "`" else ""
    return f"{fence}{pad}{one}{pad}{fence}"


def escape(text: str) -> str:
    """Prose for the page's Markdown with every character Markdown gives a meaning (links, images,
    emphasis, code, HTML, headings, tables, maths, a colon of a URL or shortcode) backslash-escaped:
    it reads as written."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$:])", r"\\\1", " ".join(text.split()))


def _shown(err: SettingError) -> str:
    return err.value if isinstance(err.value, str) and err.value else repr(err.value)  # as SettingError shows it


def refusal_reason(err: SettingError) -> str:
    """"c = -3: out of range; allowed: ..." -> "out of range; allowed: ..." (the key/value are shown apart)."""
    text = str(err)
    head = f"{err.key} = {_shown(err)}: "
    return text[len(head):] if text.startswith(head) else text


def refusal(err: SettingError) -> str:
    """A refused value's one line, a text value shown literally: ``key = `value`: why; allowed: ...``
    (a number as it is: ``K = 2.5: ...``)."""
    number = err.value is None or isinstance(err.value, (bool, int, float))
    return f"{err.key} = {_shown(err) if number else literal(_shown(err))}: {refusal_reason(err)}"
