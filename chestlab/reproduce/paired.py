r"""Paired-seed comparisons: several *arms* (trainings that differ in one thing) trained with the same
seeds, so that seed ``s`` of every arm starts from the same initialisation and sees the same batches,
and an effect is read off the per-seed differences to a baseline arm.

For values :math:`v_1 \dots v_n` (one per seed), :func:`mean_se` gives the mean and the standard error
:math:`s/\sqrt n` (:math:`s` the sample standard deviation); :func:`paired_differences` does the same
for the differences :math:`v^{arm}_s - v^{base}_s` over the seeds both arms have. A difference whose
mean is within two standard errors of 0 is not one the seeds can tell from noise.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["mean_se", "paired_differences", "arm_summary", "format_pm", "markdown_table", "write_csv"]


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error ``std(ddof=1) / sqrt(n)`` of the finite ``values``; ``nan`` where undefined."""
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def _by_seed(rows: Sequence[dict], metric: str) -> dict[Any, float]:
    return {r["seed"]: float(r[metric]) for r in rows if metric in r}


def paired_differences(base: Sequence[dict], arm: Sequence[dict], metric: str) -> dict[str, Any]:
    """Per-seed ``arm - base`` of ``metric`` over the seeds present (and finite) in both lists of
    rows (each row a dict with ``"seed"`` and the metric): ``{"mean", "se", "n", "up", "deltas",
    "seeds"}``, ``up`` the number of seeds where the arm is higher."""
    b, a = _by_seed(base, metric), _by_seed(arm, metric)
    seeds = [s for s in b if s in a and math.isfinite(a[s]) and math.isfinite(b[s])]
    d = [a[s] - b[s] for s in seeds]
    m, se = mean_se(d)
    return {"mean": m, "se": se, "n": len(d), "up": int(sum(x > 0 for x in d)), "deltas": d, "seeds": seeds}


def arm_summary(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``{metric: (mean, standard error)}`` over the rows (the seeds) of one arm."""
    return {m: mean_se([r[m] for r in rows if m in r]) for m in metrics}


def format_pm(mean: float, se: float, scale: float = 1.0, fmt: str = ".3f", sign: bool = False) -> str:
    """``"0.512 ± 0.013"`` (``scale`` multiplies both; ``sign`` forces a leading +); ``"—"`` for nan."""
    if not math.isfinite(mean):
        return "—"
    head = f"{scale * mean:{'+' if sign else ''}{fmt}}"
    return head + (f" ± {scale * se:{fmt}}" if math.isfinite(se) else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: one header line, a rule, one line per row."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[dict], fields: Optional[Sequence[str]] = None) -> None:
    """``rows`` as CSV with the union of their keys (in first-seen order) as the header."""
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
