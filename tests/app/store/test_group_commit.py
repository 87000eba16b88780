"""Group commit keeps the inbox's contract: once `write` returns, the file is there, whole, under
its final name, with no temporary left; a write that cannot complete raises and leaves nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from trainlight.app.store.ingest.group_commit import GroupCommit

WRITERS = 24


@pytest.mark.parametrize("use_syncfs", [True, False])
def test_concurrent_writes_are_whole_and_final_when_write_returns(
    tmp_path: Path, use_syncfs: bool
) -> None:
    committer = GroupCommit(tmp_path, use_syncfs=use_syncfs)
    start = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        directory = tmp_path / f"run-{index % 6}"
        directory.mkdir(exist_ok=True)
        path = directory / f"{index}.parquet"
        payload = os.urandom(1000 + index * 97)
        start.wait(timeout=30)
        try:
            committer.write(path, payload)
            assert path.read_bytes() == payload  # answered: whole, under its final name
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(p.name for p in tmp_path.glob("*/*")) == sorted(
        f"{i}.parquet" for i in range(WRITERS)
    )
    assert 1 <= committer.commits <= WRITERS


def test_a_write_that_cannot_be_renamed_raises_and_leaves_no_temporary(tmp_path: Path) -> None:
    committer = GroupCommit(tmp_path, use_syncfs=False)
    blocked = tmp_path / "7.parquet"
    blocked.mkdir()
    (blocked / "occupied").write_bytes(b"x")  # a non-empty directory cannot be replaced
    with pytest.raises(OSError):
        committer.write(blocked, b"segment")
    assert [p.name for p in tmp_path.iterdir()] == ["7.parquet"]
    committer.write(tmp_path / "8.parquet", b"next")  # the committer goes on
    assert (tmp_path / "8.parquet").read_bytes() == b"next"
