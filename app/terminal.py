"""`trainlight runs`: the store's runs as an aligned table in the terminal.

Health badges are a shape per state (so they read without colour: ● green, ▲ amber, ■ red,
○ grey / no data), coloured with ANSI codes when the output is a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from trainlight.app.formatting import format_age, format_value
from trainlight.app.store.read.queries import RunSummary
from trainlight.collectors.health.registry import legend, signal_names
from trainlight.collectors.health.verdict import STATE_SHAPES

_COLUMNS = (
    "RUN ID",
    "NAME",
    "PROJECT",
    "GROUP",
    "STATUS",
    "STEP",
    "UPDATED",
    "HEALTH",
    "LAST VALUES",
)
_MAX_CELL = 48
_ANSI = {"green": "\033[32m", "amber": "\033[33m", "red": "\033[31m", "grey": "\033[90m"}
_RESET = "\033[0m"


def runs_table_text(runs: Sequence[RunSummary], now: datetime, color: bool = False) -> str:
    if not runs:
        return "no runs in this store"
    rows = [_COLUMNS] + [_cells(run, now) for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if color:  # colour after aligning: escape codes have no width
        lines = [lines[0]] + [
            _colour_badges(line, run.health) for line, run in zip(lines[1:], runs, strict=True)
        ]
    return "\n".join([*lines, legend()])


def badges(health: Mapping[str, str]) -> str:
    """One shape per registered signal, in the registry's order."""
    return "".join(STATE_SHAPES.get(health.get(name, "grey"), "?") for name in signal_names())


def _colour_badges(line: str, health: Mapping[str, str]) -> str:
    plain = badges(health)
    coloured = "".join(
        f"{_ANSI.get(health.get(signal, 'grey'), '')}{shape}{_RESET}"
        for signal, shape in zip(signal_names(), plain, strict=True)
    )
    return line.replace(plain, coloured, 1)


def _cells(run: RunSummary, now: datetime) -> tuple[str, ...]:
    values = ", ".join(
        f"{_printable(k)}={format_value(v)}" for k, v in sorted(run.last_values.items())
    )
    return (
        _printable(run.run_id),
        _clip(_printable(run.name)),
        _clip(_printable(run.project)),
        _clip(_printable(run.group)),
        run.status,
        "" if run.last_step is None else str(run.last_step),
        format_age(run.updated_at, now),
        badges(run.health),
        _clip(values, 60),
    )


def _printable(text: str) -> str:
    """Names and metric keys are free text from the trainer: control characters (escape
    sequences, carriage returns, bidi overrides) are shown escaped, never sent to the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _clip(text: str, limit: int = _MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
