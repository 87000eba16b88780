"""Where a run's requests go: the server it was given, or one of that server's receivers.

A server started with `--receivers N` lists their ports in its ingest answers (`"receivers":
[8051, 8052]`), only to clients that reached it directly (app/intake.py). A run then sends its
segments and stop polls to one of them, chosen by a stable hash of its run id, so each run's
segments go through one process in order, and runs spread over the receivers. The receiver is
reached at the same host as the server, over plain HTTP; when it cannot be reached (a firewall, a
receiver being restarted) the request is made again at the server's own address at once, and
the receivers are left alone for `RECEIVER_PAUSE_S`. A server without receivers, or one that
knows nothing of them, never lists any: everything goes to the address the collector was given.
"""

from __future__ import annotations

import http.client
import json
import time
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from trainlight.collectors.deadline_http import DeadlineClient, Reply

RECEIVER_PAUSE_S = 60.0
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


def advertised_ports(content: bytes) -> tuple[int, ...]:
    """The receiver ports listed in an ingest answer (none when absent or malformed)."""
    try:
        listed = json.loads(content).get("receivers", [])
    except (ValueError, AttributeError):
        return ()
    if not isinstance(listed, list):
        return ()
    return tuple(p for p in listed if type(p) is int and 0 < p < 65536)  # not bool


class Routes:
    """Requests for one server, sent to the receiver a run is assigned to while there is one."""

    def __init__(self, base_url: str, headers: Mapping[str, str], read_timeout_s: float) -> None:
        self.base_url = base_url
        self._headers = dict(headers)
        self._read_timeout = read_timeout_s
        self._main = DeadlineClient(base_url, headers, read_timeout_s)
        parts = urlsplit(base_url)
        self._usable = parts.scheme == "http"  # receivers speak plain HTTP only
        host = parts.hostname or ""
        self._host = f"[{host}]" if ":" in host else host
        self._ports: tuple[int, ...] = ()
        self._receivers: dict[int, DeadlineClient] = {}
        self._paused_until = 0.0
        self._cut_off: float | None = None

    def learn(self, reply: Reply) -> None:
        """Take the receiver list of a successful ingest answer (an empty one included)."""
        if self._usable:
            self._ports = advertised_ports(reply.content)

    def receiver_for(self, run_id: str) -> int | None:
        """The port of the run's receiver, or None for the server's own address."""
        if not self._ports or time.monotonic() < self._paused_until:
            return None
        return self._ports[zlib.crc32(run_id.encode()) % len(self._ports)]

    def address_for(self, run_id: str) -> str:
        """The address the run's next request goes to (before any fallback)."""
        port = self.receiver_for(run_id)
        return self.base_url if port is None else f"http://{self._host}:{port}"

    def cut_off(self, deadline: float | None) -> None:
        """No request, on any address, runs past `deadline` (see DeadlineClient.cut_off)."""
        self._cut_off = deadline
        self._main.cut_off(deadline)
        for client in self._receivers.values():
            client.cut_off(deadline)

    def request(
        self,
        run_id: str,
        method: str,
        path: str,
        timeout_s: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request for `run_id`, each attempt within `timeout_s`; raises like DeadlineClient."""
        port = self.receiver_for(run_id)
        if port is not None:
            try:
                return self._receiver(port).request(
                    method, path, time.monotonic() + timeout_s, body, headers
                )
            except TRANSPORT_ERRORS:
                self._paused_until = time.monotonic() + RECEIVER_PAUSE_S
        return self._main.request(method, path, time.monotonic() + timeout_s, body, headers)

    def _receiver(self, port: int) -> DeadlineClient:
        if port not in self._receivers:
            client = DeadlineClient(
                f"http://{self._host}:{port}", self._headers, read_timeout_s=self._read_timeout
            )
            client.cut_off(self._cut_off)
            self._receivers[port] = client
        return self._receivers[port]
