"""A collector follows the receivers a server advertises, and falls back to the server's own
address at once when one cannot be reached (real server on 127.0.0.1, a port nobody listens on)."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path
from urllib.parse import urlencode

from tests.support.processes import free_port
from tests.support.segments import metrics_segment
from tests.support.server import running_server
from trainlight.collectors.deadline_http import Reply
from trainlight.collectors.receiver_routes import Routes, advertised_ports

SEGMENT = {"Content-Type": "application/vnd.apache.parquet"}


def test_advertised_ports_take_only_valid_port_numbers() -> None:
    assert advertised_ports(b'{"receivers": [8051, 8052]}') == (8051, 8052)
    assert advertised_ports(b'{"receivers": [0, 70000, true, "8051", 8053]}') == (8053,)
    assert advertised_ports(b'{"run_id": "r"}') == ()
    assert advertised_ports(b"[1, 2]") == ()
    assert advertised_ports(b"not json") == ()


def test_an_unreachable_receiver_falls_back_to_the_main_address(tmp_path: Path) -> None:
    with running_server(tmp_path / "store") as server:
        routes = Routes(server.base_url, {"X-Trainlight": "1"}, read_timeout_s=10)
        dead = free_port()  # nothing listens there
        routes.learn(Reply(202, json.dumps({"receivers": [dead]}).encode(), Message()))
        assert routes.address_for("run-a") == f"http://127.0.0.1:{dead}"
        path = "/api/v1/ingest?" + urlencode({"run_id": "run-a", "seq": 0})
        body = metrics_segment("run-a", 0, [(0, "loss", 1.0)])
        reply = routes.request("run-a", "POST", path, 10, body, SEGMENT)
        assert reply.status == 202, reply.text
        assert routes.address_for("run-a") == server.base_url, "receivers paused after a failure"
        routes.learn(reply)  # a server without receivers lists none
        assert routes.receiver_for("run-a") is None


def test_https_servers_never_switch_to_receivers() -> None:
    routes = Routes("https://trainlight.example", {}, read_timeout_s=1)
    routes.learn(Reply(202, b'{"receivers": [8051]}', Message()))
    assert routes.receiver_for("run-a") is None
