"""`trainlight runs`: the store's runs as an aligned table in the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from trainlight.app.formatting import format_age, format_value
from trainlight.app.store.queries import RunSummary

_COLUMNS = ("RUN ID", "NAME", "PROJECT", "GROUP", "STATUS", "STEP", "UPDATED", "LAST VALUES")
_MAX_CELL = 48


def runs_table_text(runs: Sequence[RunSummary], now: datetime) -> str:
    if not runs:
        return "no runs in this store"
    rows = [_COLUMNS] + [_cells(run, now) for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def _cells(run: RunSummary, now: datetime) -> tuple[str, ...]:
    values = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(run.last_values.items()))
    return (
        run.run_id,
        _clip(_printable(run.name)),
        _clip(_printable(run.project)),
        _clip(_printable(run.group)),
        run.status,
        "" if run.last_step is None else str(run.last_step),
        format_age(run.updated_at, now),
        _clip(values, 60),
    )


def _printable(text: str) -> str:
    # Names are free text; control characters must not move the terminal's cursor.
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _clip(text: str, limit: int = _MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
