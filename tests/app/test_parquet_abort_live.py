"""Issue 13: segments whose footers made pyarrow abort the process (SIGABRT), and footers that lie
about their value counts, sent to a real `trainlight serve` on 127.0.0.1 over HTTP and dropped
straight into its inbox: refused (422) or quarantined, and the server stays up and keeps
ingesting a valid run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.crafted_segments import ABORTING, LYING, valid
from tests.support.server import LiveServer, running_server
from trainlight.collectors.schema import StoreLayout, write_atomically

CRAFTED = {**ABORTING, **LYING}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("abort") / "store") as live:
        yield live


def post(server: LiveServer, run_id: str, seq: int, body: bytes) -> tuple[int, str]:
    reply = server.http.post(
        server.url("api/v1/ingest"),
        params={"run_id": run_id, "seq": str(seq)},
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    return reply.status_code, reply.text


def rejected(server: LiveServer) -> int:
    health = server.http.get(server.url("api/v1/health"), timeout=10).json()
    return int(health["rejected_segments"])


def assert_ingests_a_valid_run(server: LiveServer, run_id: str) -> None:
    for seq in range(3):
        assert post(server, run_id, seq, valid(run_id, seq))[0] == 202
    ingested = server.wait_for(
        lambda: (server.run(run_id) or {}).get("last_step") == 19, 30, f"{run_id} ingested"
    )
    assert ingested


def test_crafted_footers_posted_are_refused_and_the_server_lives_on(server: LiveServer) -> None:
    for i, (name, craft) in enumerate(CRAFTED.items()):
        run_id = f"crafted-{i}"
        status, text = post(server, run_id, 0, craft(valid(run_id)))
        assert status == 422, (name, status, text)
        assert server.process.poll() is None, f"{name} killed the server:\n{server.log_tail()}"
    assert_ingests_a_valid_run(server, "after-posts-1")
    assert rejected(server) == 0


def test_crafted_footers_in_the_inbox_are_quarantined_and_the_server_lives_on(
    server: LiveServer,
) -> None:
    layout = StoreLayout.resolve(server.store_dir)
    before = rejected(server)
    for i, craft in enumerate(CRAFTED.values()):
        run_id = f"inbox-{i}"
        layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        write_atomically(layout.segment_path(run_id, 0), craft(valid(run_id)))
    server.wait_for(lambda: rejected(server) == before + len(CRAFTED), 30, "all quarantined")
    assert server.process.poll() is None, server.log_tail()
    health = server.http.get(server.url("api/v1/health"), timeout=10).json()
    reasons = " | ".join(r["reason"] for r in health["latest_rejections"])
    assert "footer does not describe a trainlight segment" in reasons, reasons
    assert "declares 25 rows, its pages hold 20" in reasons, reasons
    assert_ingests_a_valid_run(server, "after-inbox-1")
