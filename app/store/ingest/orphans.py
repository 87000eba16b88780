"""Temporaries left in the inbox by a writer killed mid-write, removed once surely abandoned.

`write_atomically` writes `.<name>.<random>.tmp` beside its target and renames it; a `kill -9` (of
the server while receiving, or of anything writing a local inbox) between the two leaves it behind
forever. Nothing reads such a file, so the only harm is disk space, and the only danger in removing
one is racing a writer still at work: a temporary is removed only when untouched for `max_age_s`
(ten minutes; the largest segment is written in well under a second), at most `limit` per pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("trainlight.ingest")

ORPHAN_AGE_S = 600.0


def remove_orphan_temporaries(
    inbox: Path, max_age_s: float = ORPHAN_AGE_S, limit: int = 10_000, now: float | None = None
) -> int:
    """Remove `inbox/<run>/.*.tmp` files older than `max_age_s`; how many were removed."""
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = 0
    with contextlib.suppress(OSError), os.scandir(inbox) as runs:
        for run_dir in runs:
            if removed >= limit:
                break
            if run_dir.is_dir(follow_symlinks=False):
                removed += _remove_old(Path(run_dir.path), cutoff, limit - removed)
    if removed:
        log.info("removed %d abandoned temporary file(s) from %s", removed, inbox)
    return removed


def _remove_old(directory: Path, cutoff: float, limit: int) -> int:
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if removed >= limit:
                break
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed
