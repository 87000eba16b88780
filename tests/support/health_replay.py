"""Judge a run the way the server would, straight from a store's inbox (no server): its segments
in seq order through `RunHealth`, each with the settings its header carries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainlight.app.store.ingest.transaction import decode_segment
from trainlight.collectors.health.evaluator import RunHealth, spec_from_header
from trainlight.collectors.health.verdict import Transition
from trainlight.collectors.store_files import run_entries, segment_files


def replay(store: Path, overrides: Mapping[str, Any] | None = None) -> list[Transition]:
    """Every state change of the store's run (one run per store), in order."""
    files = segment_files(run_entries(store / "inbox"))
    health: RunHealth | None = None
    changes: list[Transition] = []
    for i, (_, _, path) in enumerate(files):
        segment = decode_segment(path.read_bytes())
        header = segment.header
        settings = {**header.health, **(overrides or {})}
        spec = spec_from_header(header.roles, settings, header.prune_on, header.planned_steps)
        health = health or RunHealth(spec)
        final = i == len(files) - 1
        changes += health.feed(segment.table, spec, final=final, sent_at=header.sent_at).transitions
    return changes


def judged_states(
    store: Path, signal: str, overrides: Mapping[str, Any] | None = None
) -> list[str]:
    return [change.state for change in replay(store, overrides) if change.signal == signal]
