"""Score arithmetic and formatting shared by training, the console summary and the report.

Imports nothing (no torch, no pandas), so the report can use it and still read records only.
"""

from __future__ import annotations

import math


def harmonic_mean(base: float, new: float) -> float:
    """H = 2·base·new / (base + new), 0 when both are 0 (NaN when either is NaN)."""
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def percent(value: float | None) -> str:
    """A score in [0, 1] as a percentage with one decimal; "-" when missing (None or NaN)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.1f}"


def dev_score(metrics: dict) -> float | None:
    """The best dev (validation) score of the metric the run selected its checkpoint on, or None.

    `val/primary_best` when the record has it, else `val/<primary_metric>_best` (records written
    before it existed; a base-to-new run's primary is H, which has no dev score, so None).
    """
    value = metrics.get("val/primary_best")
    if value is None:
        value = metrics.get(f"val/{metrics.get('primary_metric')}_best")
    return None if value is None else float(value)
