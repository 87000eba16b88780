"""The load test's readers: browsers reloading the grid, and a script polling `GET /api/v1/runs`.

A grid "reload" is what a browser does on F5, over real HTTP against the live server: the page,
`/_dash-layout`, `/_dash-dependencies`, the pages callback that renders `/`, and the grid's data
callback (with no fingerprint, so the server sends every row). The callback bodies are built from
the server's own `/_dash-dependencies`, so they follow the page's callback ids as they change.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

TIMEOUT_S = 30.0
_GRID_OUTPUT = "grid.rowData"
_PAGES_OUTPUT = "_pages_content.children"


def _prop(spec: str) -> dict[str, str]:
    ident, prop = spec.rsplit(".", 1)
    return {"id": ident, "property": prop}


def callback_body(dependency: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The POST /_dash-update-component body a browser sends for `dependency`'s first call."""
    output = str(dependency["output"])
    many = output.startswith("..")
    outputs = [_prop(o) for o in output.strip(".").split("...")] if many else [_prop(output)]
    inputs = [
        {**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in dependency["inputs"]
    ]
    state = [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in dependency["state"]]
    return {
        "output": output,
        "outputs": outputs if many else outputs[0],
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs],
    }


def reload_bodies(http: requests.Session, base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pages callback body, grid data callback body) for opening `/` afresh."""
    reply = http.get(base_url + "_dash-dependencies", timeout=TIMEOUT_S)
    reply.raise_for_status()
    found = {d["output"]: d for d in reply.json()}
    pages = next(d for out, d in found.items() if _PAGES_OUTPUT in out)
    grid = next(d for out, d in found.items() if _GRID_OUTPUT in out)
    values = {"_pages_location.pathname": "/", "_pages_location.search": "", "grid-url.search": ""}
    return callback_body(pages, values), callback_body(grid, values)


@dataclass
class Errors:
    """Every non-2xx reply or exception, counted by kind, with the first few messages."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, message: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {message[:300]}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Reload:
    at: float
    grid_s: float
    reload_s: float
    rows: int


class GridClient(threading.Thread):
    """Reloads the grid every `period` seconds (at once if a reload took longer) until stopped."""

    def __init__(self, base_url: str, period: float, stop: threading.Event, errors: Errors) -> None:
        super().__init__(daemon=True)
        self.base_url, self.period, self.stop, self.errors = base_url, period, stop, errors
        self.http = requests.Session()
        self.http.trust_env = False  # never route 127.0.0.1 through a proxy
        self.reloads: list[Reload] = []

    def run(self) -> None:
        try:
            pages, grid = reload_bodies(self.http, self.base_url)
        except Exception as exc:
            self.errors.add("grid setup", repr(exc))
            return
        next_at = time.monotonic()
        while not self.stop.wait(max(next_at - time.monotonic(), 0)):
            next_at = time.monotonic() + self.period
            try:
                self._reload(pages, grid)
            except Exception as exc:  # counted; the client keeps reloading like a user would
                self.errors.add(f"grid {type(exc).__name__}", repr(exc))

    def _reload(self, pages: dict[str, Any], grid: dict[str, Any]) -> None:
        start = time.perf_counter()
        for path in ("", "_dash-layout", "_dash-dependencies"):
            self._check(self.http.get(self.base_url + path, timeout=TIMEOUT_S), f"GET /{path}")
        update = self.base_url + "_dash-update-component"
        self._check(self.http.post(update, json=pages, timeout=TIMEOUT_S), "pages callback")
        t0 = time.perf_counter()
        reply = self.http.post(update, json=grid, timeout=TIMEOUT_S)
        end = time.perf_counter()
        self._check(reply, "grid callback")
        rows = reply.json()["response"]["grid"]["rowData"]
        self.reloads.append(Reload(time.time(), end - t0, end - start, len(rows)))

    def _check(self, reply: requests.Response, what: str) -> None:
        if not 200 <= reply.status_code < 300:
            raise RuntimeError(f"{what}: HTTP {reply.status_code} {reply.text[:200]}")


class RunsPoller(threading.Thread):
    """`GET /api/v1/runs` every `period` s; keeps (time the reply arrived, {run_id: last_step})."""

    def __init__(self, base_url: str, period: float, stop: threading.Event, errors: Errors) -> None:
        super().__init__(daemon=True)
        self.url = base_url + "api/v1/runs"
        self.period, self.stop, self.errors = period, stop, errors
        self.http = requests.Session()
        self.http.trust_env = False
        self.seen: list[tuple[float, dict[str, int | None]]] = []

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.wait(max(next_at - time.monotonic(), 0)):
            next_at = time.monotonic() + self.period
            try:
                reply = self.http.get(self.url, timeout=TIMEOUT_S)
                if reply.status_code != 200:
                    raise RuntimeError(f"HTTP {reply.status_code} {reply.text[:200]}")
                runs = reply.json()["runs"]
                self.seen.append((time.time(), {r["run_id"]: r["last_step"] for r in runs}))
            except Exception as exc:
                self.errors.add(f"runs poll {type(exc).__name__}", repr(exc))
