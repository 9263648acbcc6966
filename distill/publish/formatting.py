"""How the run report writes numbers: thousands separators, percents, durations, sizes.

Every formatter takes whatever a run's JSON holds and returns "–" for a missing or
non-numeric value (a bool is not a number here), so a partial run still renders.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt_int(n: Any) -> str:
    return f"{int(n):,}" if _is_number(n) else MISSING


def fmt_pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percent without the sign (0.253 -> "25.3")."""
    return f"{100 * float(x):.{digits}f}" if _is_number(x) else MISSING


def fmt_seconds(s: Any) -> str:
    if not _is_number(s):
        return MISSING
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def fmt_bytes(n: Any) -> str:
    if not _is_number(n):
        return MISSING
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (nan for none); no numpy needed."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
