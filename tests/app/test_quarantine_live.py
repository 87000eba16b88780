"""Issue 13, defect 3 on a real `trainlight serve` (127.0.0.1): poisoned inbox entries do not
hold back a run sent over HTTP, and `/api/v1/health` (behind the token) and the grid's count line
report them."""

from __future__ import annotations

from pathlib import Path

from tests.support.segments import metrics_segment, nested_header
from tests.support.server import start_server, stop_server
from trainlight.app.pages.grid import count_text
from trainlight.collectors.schema import StoreLayout, write_atomically

TOKEN = "quarantine-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def poison_inbox(layout: StoreLayout) -> None:
    """A directory named like a segment, a name only str.isdigit() accepts, a 100k-deep header."""
    for run_id in ("bad-dir", "bad-name", "bad-deep"):
        layout.run_inbox(run_id).mkdir(parents=True)
    layout.segment_path("bad-dir", 0).mkdir()
    write_atomically(layout.run_inbox("bad-name") / "\u00b2\u00b2.parquet", b"PAR1")
    write_atomically(layout.segment_path("bad-deep", 0), nested_header("bad-deep", 100_000))


def test_poisoned_entries_are_quarantined_and_reported_and_block_nothing(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    poison_inbox(StoreLayout.resolve(store_dir))
    server = start_server(store_dir, tmp_path / "serve.log", extra_args=("--token", TOKEN))
    try:
        http, url = server.http, server.url
        assert http.get(url("api/v1/health"), timeout=10).status_code == 401
        segment = metrics_segment("good-1", 0, [(0, "loss", 0.75)])
        reply = http.post(
            url("api/v1/ingest"),
            params={"run_id": "good-1", "seq": "0"},
            data=segment,
            headers={**AUTH, "Content-Type": "application/octet-stream"},
            timeout=10,
        )
        assert reply.status_code == 202, reply.text

        def good_run() -> object:
            found = http.get(url("api/v1/runs/good-1"), headers=AUTH, timeout=10)
            return found.status_code == 200 and found.json()

        assert server.wait_for(good_run, 30, "good-1 ingested")["last_values"]["loss"] == 0.75
        health = http.get(url("api/v1/health"), headers=AUTH, timeout=10).json()
        assert health["rejected_segments"] == 3, health
        reasons = " | ".join(r["reason"] for r in health["latest_rejections"])
        assert "Is a directory" in reasons and "not a segment file name" in reasons
        assert "nested 100002 deep" in reasons
        log = server.log_tail(200_000)
        assert log.count("rejected segment") == 3 and "Traceback" not in log, log
    finally:
        stop_server(server)


def test_the_grid_count_line_names_rejected_segments_only_when_there_are_some() -> None:
    assert count_text(3, 3, 0) == "3 runs"
    assert count_text(2, 3, 0) == "2 of 3 runs"
    assert count_text(3, 3, 2) == "3 runs · rejected segments: 2"
