"""Group commit (app/store/group_commit.py): concurrent writers share flushes, every file lands
whole with its own bytes (against a naive `write_atomically` copy), and a failed flush reaches
every writer of its group and no other."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from tests.support.server import start_server, stop_server
from trainlight.app.store import group_commit
from trainlight.app.store.group_commit import GroupCommit
from trainlight.collectors.schema import write_atomically

WRITERS = 24


def write_concurrently(commit: GroupCommit, root: Path) -> list[BaseException | None]:
    """Every writer starts at once (barrier); returns what each raised."""
    start = threading.Barrier(WRITERS)
    outcome: list[BaseException | None] = [None] * WRITERS

    def writer(i: int) -> None:
        run = root / f"run-{i % 6}"
        start.wait(timeout=10)
        try:
            commit.write(run / f"{i}.parquet", f"segment {i}".encode() * 50)
        except BaseException as exc:
            outcome[i] = exc

    for i in range(6):
        (root / f"run-{i}").mkdir(parents=True, exist_ok=True)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcome


def slow_flush(monkeypatch: pytest.MonkeyPatch, fail_first: bool = False) -> list[int]:
    """Make every flush take 50 ms (so writers pile up behind it); returns the group sizes."""
    real = group_commit.flush
    sizes: list[int] = []

    def flush(root: Path, paths: list[Path], use_syncfs: bool = True) -> None:
        sizes.append(len(paths))
        time.sleep(0.05)
        if fail_first and len(sizes) == 1:
            raise OSError(5, "Input/output error")
        real(root, paths, use_syncfs)

    monkeypatch.setattr(group_commit, "flush", flush)
    return sizes


@pytest.mark.parametrize("use_syncfs", [True, False])
def test_concurrent_writes_share_flushes_and_land_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_syncfs: bool
) -> None:
    sizes = slow_flush(monkeypatch)
    commit = GroupCommit(tmp_path / "inbox", use_syncfs)
    assert write_concurrently(commit, tmp_path / "inbox") == [None] * WRITERS
    assert sum(sizes) == WRITERS and commit.flushes == len(sizes) < WRITERS / 2, sizes
    reference = tmp_path / "reference"
    reference.mkdir()
    for i in range(WRITERS):
        write_atomically(reference / f"{i}.parquet", f"segment {i}".encode() * 50)
        written = tmp_path / "inbox" / f"run-{i % 6}" / f"{i}.parquet"
        assert written.read_bytes() == (reference / f"{i}.parquet").read_bytes()
    assert not list((tmp_path / "inbox").rglob("*.tmp"))


def test_a_failed_flush_fails_its_group_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = slow_flush(monkeypatch, fail_first=True)
    commit = GroupCommit(tmp_path / "inbox")
    outcome = write_concurrently(commit, tmp_path / "inbox")
    failed = [exc for exc in outcome if exc is not None]
    assert len(failed) == sizes[0] >= 1, (sizes, outcome)
    assert all(isinstance(exc, OSError) and "durable" in str(exc) for exc in failed)
    commit.write(tmp_path / "inbox" / "run-0" / "later.parquet", b"ok")  # the next group works


def test_server_with_group_commit_acknowledges_and_ingests(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    server = start_server(store_dir, tmp_path / "serve.log", extra_args=("--group-commit",))
    try:
        for seq in range(3):
            reply = server.http.post(
                server.url("api/v1/ingest"),
                params={"run_id": "grouped", "seq": str(seq)},
                data=metrics_segment("grouped", seq, [(seq, "loss", 1.0 / (seq + 1))]),
                headers={"Content-Type": "application/octet-stream"},
                timeout=10,
            )
            assert reply.status_code == 202, reply.text

        def ingested() -> object:
            return (server.run("grouped") or {}).get("last_step") == 2

        assert server.wait_for(ingested, 30, "grouped run ingested")
    finally:
        stop_server(server)
