"""The line protocol between a demo training process and the orchestrator that watches it.

A training prints one JSON line per event on stdout, prefixed so that anything else the training
prints is ignored: `start` (its run id and planned steps), `step` (progress), `end` (how the run
ended, the reason if it was stopped, the last step it ran). Torch-free: both sides import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

PREFIX = "@trainlight-demo "
KINDS = ("start", "step", "end")


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    step: int = -1  # the last step run so far (-1: none yet)
    run_id: str = ""  # start
    total_steps: int = 0  # start
    status: str = ""  # end: finished | stopped | cancelled (Ctrl-C) | crashed
    reason: str = ""  # end: why it stopped


def encode(event: Event) -> str:
    """One line (without the newline) for a training to print."""
    return PREFIX + json.dumps(asdict(event), separators=(",", ":"))


def parse(line: str) -> Event | None:
    """The event a line carries, or None for any other output (or a malformed event)."""
    if not line.startswith(PREFIX):
        return None
    try:
        data = json.loads(line[len(PREFIX) :])
        event = Event(
            kind=str(data["kind"]),
            step=int(data.get("step", -1)),
            run_id=str(data.get("run_id", "")),
            total_steps=int(data.get("total_steps", 0)),
            status=str(data.get("status", "")),
            reason=str(data.get("reason", "")),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return event if event.kind in KINDS else None
