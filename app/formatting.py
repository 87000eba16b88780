"""How numbers and times read in the dashboard and the terminal (shared so they agree)."""

from __future__ import annotations

import math
from datetime import datetime


def format_value(value: float | None) -> str:
    """Short, sign-preserving, with NaN and ±Inf spelled out (they are the alarms)."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_age(moment: datetime | None, now: datetime) -> str:
    """'12s ago', '3m ago', '2h ago', '4d ago'."""
    if moment is None:
        return "never"
    seconds = max(0.0, (now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"
