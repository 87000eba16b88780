"""Group commit for the inbox: segments that arrive together share one flush to disk.

`write_atomically` makes each segment durable alone: fsync the file, rename, fsync the directory.
With one run per directory, 200 runs flushing at once cost 400 fsyncs, each a journal commit
that request threads wait for in turn. Here a request thread writes its temporary file, renames it
into the inbox (complete, so the ingester may already read it) and joins the open group; the
first thread to find no flush in progress becomes the leader, closes the group and flushes it
for everyone who joined: one `syncfs(2)` of the inbox's file system (Linux), which makes every
written file and rename durable at once; elsewhere, an fsync of each file and of each distinct
directory. Threads that arrive during a flush form the next group. `write` returns, and the 202
is sent, only after a flush that started after its rename has completed.

Why the rename may come before the flush: a file visible but not yet durable is never
acknowledged. If the machine dies before the flush, the file may be lost or truncated, and the
collector, which got no 202, sends it again; if the ingester took it before the crash, DuckDB
holds it and the resend is a recorded duplicate. Exactly once either way.

Off by default (`trainlight serve --group-commit`): measured with bench/inbox_commit.py on this
project's VM disk (ext4, an fsync ~0.25 ms), 8 threads into 200 run directories, it was slower
(x0.86 with syncfs, x0.5 with fsyncs) than an fsync per file, because ext4's journal already
merges concurrent fsyncs and one flush at a time serialises the writers. It pays where a flush
is slow (a device that honours cache flushes, network block storage). `syncfs` also flushes
whatever else is dirty on that file system (a training's checkpoints): keep the store apart.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

from trainlight.collectors.store_files import FILE_MODE

_KEEP_FAILURES = 64  # failed groups remembered for late waiters


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None, use_errno=True).syncfs)
    except (AttributeError, OSError):
        return None


_SYNCFS = _load_syncfs()


def write_renamed(path: Path, data: bytes) -> None:
    """Write a unique temporary sibling and rename it onto `path`, without any fsync."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def flush(root: Path, paths: list[Path], use_syncfs: bool = True) -> None:
    """Make `paths` (files written under `root`) and their renames durable."""
    if use_syncfs and _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"syncfs: {os.strerror(errno)}")
        finally:
            os.close(fd)
        return
    for target in [*paths, *{path.parent for path in paths}, root]:  # root: new run dirs
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class GroupCommit:
    """Durable writes into `root` whose flushes are shared by the writers that overlap."""

    def __init__(self, root: Path, use_syncfs: bool = True) -> None:
        self.root = root
        self.use_syncfs = use_syncfs
        self._cond = threading.Condition()
        self._open = 1  # the group new writes join
        self._flushed = 0  # every group up to this one is flushed (or failed)
        self._flushing = False
        self._paths: list[Path] = []  # the open group's files
        self._failed: dict[int, BaseException] = {}
        self.flushes = 0  # how many flushes ran: fewer than writes when groups formed

    def write(self, path: Path, data: bytes) -> None:
        """Write `path` atomically; returns once it is durable, raises if the flush failed."""
        write_renamed(path, data)
        with self._cond:
            group = self._open
            self._paths.append(path)
            while self._flushed < group:
                if self._flushing:
                    self._cond.wait()
                else:
                    self._lead()
            failure = self._failed.get(group)
        if failure is not None:
            raise OSError(f"could not make {path.name} durable: {failure}") from failure

    def _lead(self) -> None:
        """Close the open group and flush it, the lock released meanwhile (called locked)."""
        group, paths = self._open, self._paths
        self._open, self._paths, self._flushing = group + 1, [], True
        self._cond.release()
        failure: BaseException | None = None
        try:
            flush(self.root, paths, self.use_syncfs)
        except BaseException as exc:  # every writer of the group must hear of it
            failure = exc
        finally:
            self._cond.acquire()
        if failure is not None:
            kept = {g: e for g, e in self._failed.items() if g > group - _KEEP_FAILURES}
            self._failed = {**kept, group: failure}
        self._flushed, self._flushing = group, False
        self.flushes += 1
        self._cond.notify_all()
