"""Files of a store directory: where segments and stop requests live, and how they are written.

The writer (a collector's inbox or outbox) and the server agree through these functions. Part of
the store contract re-exported by `trainlight.collectors.schema`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainlight.collectors.run_header import check_run_id, is_valid_run_id

DEFAULT_STORE_DIR = "./trainlight-runs"
STORE_DIR_ENV = "TRAINLIGHT_DIR"
# ASCII digits only: str.isdigit() is true for "²²", which int() refuses.
_SEGMENT_NAME = re.compile(r"([0-9]{1,18})\.parquet")
# Segment and control files: readable by a server running as another user (the Docker image's
# uid 10001), writable only by their owner. mkstemp alone would leave them 0600.
FILE_MODE = 0o644


@dataclass(frozen=True)
class StoreLayout:
    """Where things live in a store directory; the writer and the server agree through this."""

    root: Path

    @classmethod
    def resolve(cls, directory: str | os.PathLike[str] | None = None) -> StoreLayout:
        chosen = directory or os.environ.get(STORE_DIR_ENV) or DEFAULT_STORE_DIR
        return cls(Path(chosen).expanduser().absolute())

    @property
    def database(self) -> Path:
        return self.root / "trainlight.duckdb"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def control(self) -> Path:
        return self.root / "control"

    @property
    def surfaces(self) -> Path:
        """2-D loss surfaces computed offline by `trainlight landscape` (one JSON per run)."""
        return self.root / "surfaces"

    def run_inbox(self, run_id: str) -> Path:
        return self.inbox / check_run_id(run_id)

    def segment_path(self, run_id: str, seq: int) -> Path:
        return self.run_inbox(run_id) / segment_file_name(seq)

    def control_path(self, run_id: str) -> Path:
        return self.control / f"{check_run_id(run_id)}.json"

    def surface_path(self, run_id: str) -> Path:
        return self.surfaces / f"{check_run_id(run_id)}.json"


def process_namespace() -> str:
    """This process's boot id and pid namespace: two processes with equal values can check each
    other's pids; '' where /proc does not tell (then nobody judges liveness by pid)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def segment_file_name(seq: int) -> str:
    # Zero-padded so a directory listing sorts in sequence order.
    return f"{seq:012d}.parquet"


def parse_segment_file_name(name: str) -> int | None:
    """The seq of a finished segment file, or None for temporary and foreign files."""
    found = _SEGMENT_NAME.fullmatch(name)
    return int(found.group(1)) if found else None


def run_entries(root: Path) -> list[tuple[str, str, Path]]:
    """(run_id, name, path) of every entry in `root/<run_id>/` whose folder is a valid run id;
    unreadable folders are skipped (the inbox and the outbox share this layout)."""
    found: list[tuple[str, str, Path]] = []
    try:
        run_dirs = [e for e in os.scandir(root) if e.is_dir() and is_valid_run_id(e.name)]
    except OSError:
        return found
    for run_dir in run_dirs:
        try:
            names = os.listdir(run_dir.path)
        except OSError:
            continue
        found.extend((run_dir.name, name, Path(run_dir.path) / name) for name in names)
    return found


def list_segment_files(root: Path) -> list[tuple[str, int, Path]]:
    """(run_id, seq, path) of every finished segment in `root/<run_id>/`, in delivery order."""
    return segment_files(run_entries(root))


def segment_files(entries: list[tuple[str, str, Path]]) -> list[tuple[str, int, Path]]:
    """The finished segments among `run_entries`, in delivery order."""
    found = [
        (run_id, seq, path)
        for run_id, name, path in entries
        if (seq := parse_segment_file_name(name)) is not None
    ]
    found.sort(key=lambda item: (item[0], item[1]))
    return found


def write_atomically(path: Path, data: bytes) -> None:
    """Write a unique temporary sibling, fsync it, rename it, fsync the directory.

    Readers see the whole file or nothing, concurrent writers of the same path (two server
    threads receiving the same retried segment) never share a temporary, and once this returns
    the file survives a power loss (the rename itself is made durable).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class StopRequest:
    """A request, from the dashboard or an auto-prune rule, that a run stop at its next check."""

    reason: str = "stop requested from the dashboard"

    def to_bytes(self) -> bytes:
        return json.dumps({"stop": True, "reason": self.reason}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StopRequest | None:
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("stop"):
            return cls(reason=str(data.get("reason") or cls.reason))
        return None


def read_stop_request(path: Path) -> StopRequest | None:
    """The stop request in a run's control file; None without one (no file, no store directory,
    or a half-written file from a non-atomic writer: read it next time). OSError when the file
    exists but cannot be read."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return StopRequest.from_bytes(raw)
    except ValueError:
        return None
