"""Small statistics helpers (no numpy): medians and nearest-rank percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    data = sorted(values)
    if not data:
        return None
    if p <= 0:
        return data[0]
    rank = math.ceil(p / 100 * len(data))
    return data[min(len(data), max(1, rank)) - 1]


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


def summary(values: Iterable[float], digits: int = 4) -> dict[str, float | int | None]:
    data = sorted(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "count": len(data),
        "p50": r(median(data)),
        "p95": r(percentile(data, 95)),
        "min": r(data[0] if data else None),
        "max": r(data[-1] if data else None),
    }


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)
