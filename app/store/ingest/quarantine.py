"""Quarantine of inbox entries the ingester cannot take: moved aside alone, with their reason.

An entry that fails to read, decode or ingest (a directory named like a segment, a name only
`str.isdigit()` accepts, an unreadable file, a bomb, a header nested 100k deep) would otherwise be
retried every pass, and before this module one such entry stopped the pass for every run. Moving
it to `<store>/rejected/<run>-<name>` with `<run>-<name minus .parquet>.reason.txt` beside it keeps
the data for a human, logs one line, and lets the next entry go in. The count and the latest
reasons are read back from that directory (so they survive a restart) for `/api/v1/health` and
the grid page.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from trainlight.collectors.schema import (
    StoreLayout,
    parse_segment_file_name,
    write_atomically,
)

log = logging.getLogger("trainlight.ingest")
REASON_SUFFIX = ".reason.txt"
_MAX_REASON_CHARS = 2000
_MAX_NAME_TRIES = 1000


@dataclass(frozen=True)
class Rejected:
    """What the rejected/ directory holds: how many entries, and the latest reasons."""

    count: int
    latest: tuple[tuple[str, str], ...]  # (entry name, reason), newest first


def rejected_dir(layout: StoreLayout) -> Path:
    return layout.root / "rejected"


def quarantine(layout: StoreLayout, path: Path, reason: str) -> Path | None:
    """Move `path` (file or directory) to rejected/ with its reason; the new path, or None when
    it could not be moved (logged; the caller skips it for the rest of the process's life)."""
    reason = reason[:_MAX_REASON_CHARS]
    try:
        target = _free_name(rejected_dir(layout), f"{path.parent.name}-{path.name}")
        os.replace(path, target)
        write_atomically(target.with_suffix(REASON_SUFFIX), reason.encode())
    except FileNotFoundError:
        return None  # gone meanwhile (ingested by another pass, or removed by hand)
    except OSError as exc:
        log.error("could not quarantine %s (%s): %s", path, reason.splitlines()[0], exc)
        return None
    log.warning("rejected segment %s: %s (moved to %s)", path, reason.splitlines()[0], target)
    return target


def _free_name(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(_MAX_NAME_TRIES):
        candidate = directory / (name if k == 0 else f"{k}-{name}")
        if not candidate.exists() and not candidate.with_suffix(REASON_SUFFIX).exists():
            return candidate
    raise OSError(f"{_MAX_NAME_TRIES} rejected entries already named {name}")


def foreign_entries(entries: list[tuple[str, str, Path]]) -> list[Path]:
    """Of the inbox's `run_entries`, those that look like segments (`*.parquet`, not a writer's
    hidden temporary) but have no valid segment name, e.g. `²².parquet`."""
    return [
        path
        for _, name, path in entries
        if name.endswith(".parquet")
        and not name.startswith(".")
        and parse_segment_file_name(name) is None
    ]


def rejected_summary(layout: StoreLayout, latest: int = 5) -> Rejected:
    """The number of quarantined entries and the reasons of the newest `latest` of them."""
    try:
        notes = [e for e in os.scandir(rejected_dir(layout)) if e.name.endswith(REASON_SUFFIX)]
    except OSError:
        return Rejected(0, ())
    notes.sort(key=_mtime, reverse=True)
    shown: list[tuple[str, str]] = []
    for note in notes[:latest]:
        try:
            text = Path(note.path).read_text(errors="replace")[:_MAX_REASON_CHARS]
        except OSError as exc:
            text = f"(reason unreadable: {exc})"
        shown.append((note.name.removesuffix(REASON_SUFFIX), text))
    return Rejected(len(notes), tuple(shown))


def rejected_count(layout: StoreLayout) -> int:
    """How many entries are quarantined (one scan of rejected/; nothing read)."""
    try:
        return sum(1 for e in os.scandir(rejected_dir(layout)) if e.name.endswith(REASON_SUFFIX))
    except OSError:
        return 0


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0
