"""What a reader hands the sender: one run of another tool, its scalar events in a fixed order.

Readers (tensorboard.py, trackio.py) know their tool's files and nothing of segments; the sender
(segments.py) knows segments and nothing of the tools. Between them travel these frozen values.
The order of `ScalarEvents` is the source's own append order (event-file record order, trackio's
row ids), so a source that grows only appends: the events already chunked keep their places,
which is what makes a later import of a grown source add exactly the new events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A source written to within this many seconds may still be growing: only its complete chunks
# are imported and the run is left open (a later import adds the rest).
GROWING_WITHIN_S = 60.0


@dataclass(frozen=True)
class ScalarEvents:
    """A run's scalar events as columns (index i of each is one event), in source order."""

    steps: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    wall_times: tuple[float, ...] = ()  # unix seconds, the event's own

    def __len__(self) -> int:
        return len(self.steps)


class EventsBuilder:
    """Collects events as a reader finds them; `build()` freezes them."""

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._keys: list[str] = []
        self._values: list[float] = []
        self._wall_times: list[float] = []

    def add(self, step: int, key: str, value: float, wall_time: float) -> None:
        self._steps.append(step)
        self._keys.append(key)
        self._values.append(value)
        self._wall_times.append(wall_time)

    def __len__(self) -> int:
        return len(self._steps)

    def build(self) -> ScalarEvents:
        return ScalarEvents(
            tuple(self._steps), tuple(self._keys), tuple(self._values), tuple(self._wall_times)
        )


@dataclass(frozen=True)
class SourceRun:
    """One run found in a source, ready to send.

    `kind`, `source` and `path` identify it (they make its run id); `growing` says the source
    was written to within GROWING_WITHIN_S, so the run is not closed."""

    kind: str  # "tensorboard" | "trackio"
    source: Path  # the absolute logdir or database file
    path: str  # the run inside the source: its directory relative to the logdir, trackio's id
    name: str
    project: str
    events: ScalarEvents
    growing: bool
    group: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)


class SourceError(Exception):
    """The source as a whole cannot be read (missing, not the tool's files); one line."""


@dataclass(frozen=True)
class RunFailure:
    """A run that could not be read; the others are imported regardless."""

    name: str
    reason: str  # one line


def is_growing(mtimes: list[float], now: float) -> bool:
    """Whether any of the source's files was modified within GROWING_WITHIN_S of `now`."""
    return any(now - mtime < GROWING_WITHIN_S for mtime in mtimes)
