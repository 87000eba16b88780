"""Issue 13, defect 3: one bad inbox entry used to stop the ingest pass for every run, forever.
Now each such entry is quarantined alone (moved with its reason, one log line, no traceback) and
the good run goes in during the same pass."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment, nested_header
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.quarantine import rejected_dir, rejected_summary
from trainlight.collectors.schema import StoreLayout, list_segment_files, write_atomically


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    yield opened
    opened.close()


def put(store: Store, run_id: str, name: str, payload: bytes | None) -> Path:
    """An inbox entry: a file with `payload`, or a directory when payload is None."""
    directory = store.layout.run_inbox(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if payload is None:
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    else:
        write_atomically(path, payload)
    return path


def poison(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Four poisonous entries of four runs. The unreadable one fails as a 0600 file of another
    user fails for the server (PermissionError); tests run as root, so the read is patched."""
    unreadable = put(store, "bad-perm", "000000000000.parquet", metrics_segment("bad-perm", 0, []))
    real_read = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return {
        "bad-dir": put(store, "bad-dir", "000000000000.parquet", None),
        "bad-name": put(
            store, "bad-name", "\u00b2\u00b2.parquet", metrics_segment("bad-name", 0, [])
        ),
        "bad-perm": unreadable,
        "bad-deep": put(
            store, "bad-deep", "000000000000.parquet", nested_header("bad-deep", 100_000)
        ),
    }


def test_each_bad_entry_is_quarantined_alone_and_the_good_run_goes_in_the_same_pass(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entries = poison(store, monkeypatch)
    for seq in range(2):
        put(
            store,
            "good-1",
            f"{seq:012d}.parquet",
            metrics_segment("good-1", seq, [(seq, "loss", 1.0)]),
        )
    with caplog.at_level(logging.WARNING, logger="trainlight.ingest"):
        stats = Ingester(store).ingest_pending()
    assert (stats.segments, stats.rows, stats.rejected) == (2, 2, 4)
    with store.read() as cur:
        assert cur.execute("SELECT run_id, seq FROM segments ORDER BY seq").fetchall() == [
            ("good-1", 0),
            ("good-1", 1),
        ]
    for run_id, path in entries.items():
        assert not path.exists() and not os.path.lexists(path), run_id
        moved = rejected_dir(store.layout) / f"{run_id}-{path.name}"
        assert os.path.lexists(moved), run_id
        assert moved.with_suffix(".reason.txt").read_text(), run_id
    reasons = {
        run_id: (rejected_dir(store.layout) / f"{run_id}-{p.name}")
        .with_suffix(".reason.txt")
        .read_text()
        for run_id, p in entries.items()
    }
    assert "IsADirectoryError" in reasons["bad-dir"]
    assert "not a segment file name" in reasons["bad-name"]
    assert "PermissionError" in reasons["bad-perm"]
    assert "nested 100002 deep" in reasons["bad-deep"]  # the config in the header
    assert len(caplog.records) == 4 and all(r.exc_info is None for r in caplog.records)
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)
    summary = rejected_summary(store.layout)
    assert summary.count == 4 and len(summary.latest) == 4
    # Nothing left to retry: the next pass does nothing and logs nothing.
    caplog.clear()
    assert Ingester(store).ingest_pending().rejected == 0 and not caplog.records
    assert not list_segment_files(store.layout.inbox)


def test_an_entry_that_cannot_be_moved_is_skipped_not_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    rejected_dir(store.layout).parent.mkdir(parents=True, exist_ok=True)
    rejected_dir(store.layout).write_bytes(b"not a directory")  # quarantine impossible
    bad = put(store, "bad-dir", "000000000000.parquet", None)
    put(store, "good-1", "000000000000.parquet", metrics_segment("good-1", 0, [(0, "loss", 1.0)]))
    ingester = Ingester(store)
    with caplog.at_level(logging.WARNING, logger="trainlight.ingest"):
        assert (ingester.ingest_pending().segments, len(caplog.records)) == (1, 1)
        caplog.clear()
        assert ingester.ingest_pending().rejected == 0 and not caplog.records
    assert bad.is_dir()  # left in place for a human, and not read again


def test_a_second_entry_of_the_same_name_does_not_overwrite_the_first(store: Store) -> None:
    for _ in range(2):
        put(store, "bad-dir", "000000000000.parquet", None)
        Ingester(store).ingest_pending()
    assert rejected_summary(store.layout).count == 2
