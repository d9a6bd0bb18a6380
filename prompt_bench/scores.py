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
