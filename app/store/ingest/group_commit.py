"""Group commit for the inbox: segments that arrive together share their trips to the disk.

`write_atomically` makes each segment durable alone: fsync the file, rename, fsync the directory;
200 runs flushing at once cost 400 fsyncs, each a journal commit the request threads wait for in
turn. Here a request thread writes its segment to a temporary name and joins the open group; the
first thread to find no commit in progress leads: it closes the group and commits it for everyone
in it, while the threads arriving meanwhile form the next group:

1. flush the group's temporary files: one `syncfs(2)` of the inbox's file system (Linux), or
   elsewhere an fsync of each file;
2. rename each onto its segment name (only complete, durable files ever carry one, so the ingester
   never reads a segment that a crash could still take back);
3. make the renames durable: a second `syncfs`, or an fsync of each distinct directory and of the
   inbox (new run folders).

`write` returns, and the 202 is sent, only once the commit of its group has completed: durable
before the acknowledgement stays the contract. A failed commit fails every write of its group
(their temporaries are removed), so each of those requests answers 500 and is retried.

`syncfs` flushes whatever else is dirty on that file system too (a training's checkpoints written
to the same disk): the group then waits for those as well. Keep the store on its own file system
when turning this on (`trainlight serve --group-commit`); see bench/inbox_commit.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from trainlight.collectors.store_files import FILE_MODE


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None, use_errno=True).syncfs)
    except (AttributeError, OSError):
        return None


_SYNCFS = _load_syncfs()


@dataclass
class _Pending:
    temporary: Path
    target: Path
    failure: BaseException | None = None  # set by the leader when the group's commit failed


def write_temporary(path: Path, data: bytes) -> Path:
    """Write `data` to a unique temporary sibling of `path` (no fsync); returns its path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(root: Path) -> None:
    assert _SYNCFS is not None
    fd = os.open(root, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}")
    finally:
        os.close(fd)


def commit(root: Path, group: list[_Pending], use_syncfs: bool) -> None:
    """Steps 1-3 of the module docstring for one group of temporaries written under `root`."""
    syncfs = use_syncfs and _SYNCFS is not None
    if syncfs:
        _syncfs(root)
    else:
        for item in group:
            _fsync(item.temporary)
    for item in group:
        os.replace(item.temporary, item.target)
    if syncfs:
        _syncfs(root)
        return
    for directory in [*{item.target.parent for item in group}, root]:
        _fsync(directory)


class GroupCommit:
    """Durable, atomic writes into `root` whose flushes are shared by the writers that overlap."""

    def __init__(self, root: Path, use_syncfs: bool = True) -> None:
        self.root = root
        self.use_syncfs = use_syncfs
        self._cond = threading.Condition()
        self._open = 1  # the number of the group new writes join
        self._done = 0  # every group up to this one is committed (or failed)
        self._leading = False
        self._group: list[_Pending] = []
        self.commits = 0  # fewer than writes once groups form

    def write(self, path: Path, data: bytes) -> None:
        """Write `path` atomically; returns once it is durable, raises OSError if it is not."""
        pending = _Pending(write_temporary(path, data), path)
        with self._cond:
            group = self._open
            self._group.append(pending)
            while self._done < group:
                if self._leading:
                    self._cond.wait()
                else:
                    self._lead()
        if pending.failure is not None:
            with contextlib.suppress(OSError):
                os.unlink(pending.temporary)
            raise OSError(f"could not make {path} durable: {pending.failure}") from pending.failure

    def _lead(self) -> None:
        """Close the open group and commit it, the lock released meanwhile (called locked)."""
        group, members = self._open, self._group
        self._open, self._group, self._leading = group + 1, [], True
        self._cond.release()
        try:
            commit(self.root, members, self.use_syncfs)
        except BaseException as exc:  # every writer of the group must hear of it
            for member in members:
                member.failure = exc
        finally:
            self._cond.acquire()
        self._done, self._leading = group, False
        self.commits += 1
        self._cond.notify_all()
