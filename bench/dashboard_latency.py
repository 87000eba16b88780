"""Dashboard server latency on a big store: grid (warm/cold cache), run page, LCA heatmap payload.

Why (issue 5, Benchmarks): with 1,000 runs and 50M metric rows the grid callback must answer in
p50 < 200 ms warm and < 1 s cold, the run page in < 300 ms, and the heatmap must ship < 2 MB for
a 200-frame animation.

The store is built through the real ingest path: segments (~100k rows) made by `encode_segment`
with a `RunHeader`, dropped into the inbox with `write_atomically`, ingested by
`Ingester(store).ingest_pending()` (exactly-once bookkeeping, `latest`, health rules). Every run
logs several keys incl. `loss`, plus per-layer `lca` rows; run 0 is a 50k-step run and run 1
holds 200 LCA frames of 64x64 (`lca_frames` rows).

Timings are server-side and in-process: the app from `create_app(store)` is driven through
Flask's test client with the same POST `/_dash-update-component` the browser sends, so the time
covers the callback, its queries and Dash's JSON serialisation, but no network. "Cold" clears the
app's flask-caching cache before each call (a new data version looks the same to the grid);
DuckDB's own buffer pool stays warm, as it would in a running server. The heatmap's bytes
are everything a browser fetches to play run 1's 200 frames: the layers and steps callbacks,
one render callback per frame, and the decoder script it loads once. "warm"/"cold" grid calls
are first loads (full rowData); "tick" calls carry the browser's record of the rows it holds,
as every live refresh does: "idle" on an unchanged store, "ingest" right after a live run's
segment was ingested (a new data version: the query runs again, only changed rows are sent).

    python bench/dashboard_latency.py --quick                     # 100 runs, 2M rows
    python bench/dashboard_latency.py --rows 10_000_000 --dir /tmp/tl10m
    python bench/dashboard_latency.py --dir /tmp/tl10m            # reuse the built store
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from trainlight.app.factory import create_app
from trainlight.app.figures.heatmap_codec import decode_payload
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.frames import lca_frame
from trainlight.collectors.schema import RunHeader, StoreLayout, make_run_id, write_atomically
from trainlight.collectors.writer import encode_segment

KEYS = ("loss", "lr", "grad_norm", "accuracy", "throughput")
LAYERS = ("conv1", "conv2", "fc1", "fc2")
LCA_EVERY = 100  # steps between per-layer `lca` rows
SEGMENT_ROWS = 100_000
BIG_RUN_STEPS = 50_000
N_FRAMES = 200
FRAME = 64
INGEST_EVERY_ROWS = 2_000_000  # ingest the inbox whenever this many rows are waiting

GOAL_GRID_WARM_MS = 200
GOAL_GRID_COLD_MS = 1000
GOAL_RUN_MS = 300
GOAL_HEATMAP_BYTES = 2 * 1024 * 1024


# --------------------------------------------------------------------------- store build


def _header(run_id: str, i: int, seq: int, status: str) -> RunHeader:
    return RunHeader(
        run_id=run_id,
        seq=seq,
        name=f"bench run {i}",
        project=f"proj-{i % 5}",
        group=f"group-{i % 20}",
        tags=(f"t{i % 3}", "bench"),
        config={"lr": 3e-4, "batch": 64, "seed": i},
        status=status,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time() - 3600,
        sent_at=time.time(),
    ).validated()


def _metric_part(first_step: int, n_steps: int, seed: int) -> dict[str, pa.Array]:
    steps = np.repeat(np.arange(first_step, first_step + n_steps, dtype=np.int64), len(KEYS))
    n = len(steps)
    key_idx = np.tile(np.arange(len(KEYS), dtype=np.int32), n_steps)
    rng = np.random.default_rng(seed)
    loss_like = 2.0 * np.exp(-steps / 20_000) + 0.05 * rng.standard_normal(n)
    return {
        "table": pa.array(["metrics"] * n, pa.string()).dictionary_encode(),
        "step": pa.array(steps),
        "key": pa.DictionaryArray.from_arrays(pa.array(key_idx), pa.array(KEYS)),
        "value": pa.array(loss_like),
        "wall_time": pa.array(1_700_000_000_000_000 + steps * 1_000, pa.timestamp("us")),
    }


def _layer_part(first_step: int, n_steps: int, seed: int) -> dict[str, Any] | None:
    steps = np.arange(first_step, first_step + n_steps, dtype=np.int64)
    steps = steps[steps % LCA_EVERY == 0]
    if not len(steps):
        return None
    n = len(steps) * len(LAYERS)
    rng = np.random.default_rng(seed + 1)
    return {
        "table": ["layer_metrics"] * n,
        "step": np.repeat(steps, len(LAYERS)),
        "key": ["lca"] * n,
        "layer": list(LAYERS) * len(steps),
        "value": rng.standard_normal(n) * 1e-3,
    }


def _frame_part(last_step: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    values = rng.standard_normal((N_FRAMES, FRAME * FRAME)).astype(np.float32) * 1e-3
    offsets = pa.array(np.arange(N_FRAMES + 1, dtype=np.int32) * FRAME * FRAME)
    return {
        "table": ["lca_frames"] * N_FRAMES,
        "step": np.linspace(0, last_step, N_FRAMES).astype(np.int64),
        "layer": ["conv1"] * N_FRAMES,
        "n_rows": [FRAME] * N_FRAMES,
        "n_cols": [FRAME] * N_FRAMES,
        "values": pa.ListArray.from_arrays(offsets, pa.array(values.ravel())),
    }


def _run_steps(n_runs: int, n_rows: int) -> list[int]:
    """Steps per run so metric rows total ~n_rows; run 0 is the 50k-step run."""
    big = min(BIG_RUN_STEPS, n_rows // len(KEYS) // 2)
    rest = max(n_rows // len(KEYS) - big, 0)
    per = max(rest // max(n_runs - 1, 1), 1)
    return [big] + [per] * (n_runs - 1)


def build_store(root: Path, n_runs: int, n_rows: int) -> None:
    layout = StoreLayout(root)
    store = Store(layout)
    ingester = Ingester(store)
    steps_per_segment = SEGMENT_ROWS // len(KEYS)
    encode_s = ingest_s = 0.0
    pending = rows_written = 0
    start = time.perf_counter()
    for i, n_steps in enumerate(_run_steps(n_runs, n_rows)):
        run_id = make_run_id(f"bench-{i:04d}")
        layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        n_segments = -(-n_steps // steps_per_segment)
        for seq in range(n_segments):
            t0 = time.perf_counter()
            first = seq * steps_per_segment
            count = min(steps_per_segment, n_steps - first)
            parts: list[Any] = [_metric_part(first, count, i * 1000 + seq)]
            layer = _layer_part(first, count, i * 1000 + seq)
            if layer is not None:
                parts.append(layer)
            if i == 1 and seq == n_segments - 1:
                parts.append(_frame_part(n_steps - 1))
            last = seq == n_segments - 1
            status = "running" if (i % 10 == 0 or not last) else "finished"
            payload = encode_segment(parts, _header(run_id, i, seq, status))
            write_atomically(layout.segment_path(run_id, seq), payload)
            encode_s += time.perf_counter() - t0
            pending += count * len(KEYS)
            rows_written += count * len(KEYS)
        if pending >= INGEST_EVERY_ROWS:
            t0 = time.perf_counter()
            ingester.ingest_pending()
            ingest_s += time.perf_counter() - t0
            pending = 0
            print(f"  ... {i + 1}/{n_runs} runs, {rows_written:,} metric rows", flush=True)
    t0 = time.perf_counter()
    ingester.ingest_pending()
    ingest_s += time.perf_counter() - t0
    total = time.perf_counter() - start
    with store.read() as cur:
        counts = {
            t: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("runs", "metrics", "layer_metrics", "lca_frames", "health")
        }
    store.close()
    print(
        f"build: {total:.1f} s ({rows_written / total:,.0f} metric rows/s overall; "
        f"encode+write {encode_s:.1f} s, ingest {ingest_s:.1f} s = "
        f"{rows_written / ingest_s:,.0f} rows/s); {counts}"
    )


# --------------------------------------------------------------------------- timing


def _dash_call(
    client: Any, outputs: list[tuple[str, str]], inputs: list[dict[str, Any]], state: list[Any]
) -> tuple[float, int, dict[str, Any]]:
    """POST one callback like the browser does; (seconds, response bytes, decoded response)."""
    output = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".."
    body = {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"],
    }
    t0 = time.perf_counter()
    resp = client.post("/_dash-update-component", json=body)
    seconds = time.perf_counter() - t0
    if resp.status_code == 204:  # PreventUpdate: nothing to send
        return seconds, 0, {}
    if resp.status_code != 200:
        raise SystemExit(f"callback {output} failed: {resp.status_code} {resp.data[:500]!r}")
    return seconds, len(resp.data), json.loads(resp.data)


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def grid_call(
    client: Any, sent: Any = None, tick: int | None = None
) -> Callable[[], tuple[float, int, dict[str, Any]]]:
    """The grid refresh; `sent` is the browser's record of the rows it holds (None: a first
    load, which gets the full rowData; else a refresh tick, which gets only what changed)."""
    outputs = [
        ("grid", "rowData"),
        ("grid", "rowTransaction"),
        ("grid-project", "options"),
        ("grid-group", "options"),
        ("grid-tag", "options"),
        ("grid-count", "children"),
        ("grid-sent", "data"),
    ]
    inputs = [
        {"id": "grid-url", "property": "search", "value": "?sort=health"},
        {"id": "grid-refresh", "property": "n_intervals", "value": tick},
    ]
    state = [{"id": "grid-sent", "property": "data", "value": sent}]
    return lambda: _dash_call(client, outputs, inputs, state)


def _apply_sent(sent: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
    """The browser's `grid-sent` after a response (a full value, or a Patch of digests)."""
    data = resp.get("response", {}).get("grid-sent", {}).get("data")
    if not isinstance(data, dict) or "__dash_patch_update" not in data:
        return data if isinstance(data, dict) else sent
    rows = dict(sent["rows"])
    for op in data["operations"]:
        location, params = op["location"], op["params"]
        if location[:1] == ["rows"] and op["operation"] == "Assign":
            rows[location[1]] = params["value"]
        elif location[:1] == ["rows"] and op["operation"] == "Delete":
            rows.pop(location[1], None)
    meta = next(
        (o["params"]["value"] for o in data["operations"] if o["location"] == ["meta"]),
        sent["meta"],
    )
    return {**sent, "rows": rows, "meta": meta}


def _ingest_tick(store: Store, run_id: str, steps: int = 10) -> None:
    """What a live run does between two grid ticks: one more segment, ingested (new data
    version, so the grid's cached query misses: the cold case the 1 s goal is about)."""
    with store.read() as cur:
        seq, last = cur.execute(
            "SELECT (SELECT max(seq) FROM segments WHERE run_id = ?), "
            "(SELECT last_step FROM runs WHERE run_id = ?)",
            [run_id, run_id],
        ).fetchone()  # type: ignore[misc]
    part = _metric_part(int(last) + 1, steps, int(seq) + 1)
    payload = encode_segment([part], _header(run_id, 0, int(seq) + 1, "running"))
    write_atomically(store.layout.segment_path(run_id, int(seq) + 1), payload)
    Ingester(store).ingest_pending()


RUN_OUTPUT = (
    "..run-header.children...run-body.children..."
    '{"axis":["ALL"],"name":["ALL"],"type":"run-graph"}.figure'
    "...run-query.data...run-version.data...run-sent.data.."
)


def run_page_call(
    client: Any,
    run_id: str,
    *,
    refresh: bool = False,
    sent: dict[str, Any] | None = None,
    slots: list[dict[str, str]] | None = None,
) -> tuple[float, int, dict[str, Any]]:
    """POST the run page's render callback as the browser does: on load (no graphs on the page,
    nothing sent yet) or on a refresh tick, holding `sent` and the page's graphs (`slots`)."""
    body = {
        "output": RUN_OUTPUT,
        "outputs": [
            {"id": "run-header", "property": "children"},
            {"id": "run-body", "property": "children"},
            [{"id": slot, "property": "figure"} for slot in slots or []],
            {"id": "run-query", "property": "data"},
            {"id": "run-version", "property": "data"},
            {"id": "run-sent", "property": "data"},
        ],
        "inputs": [
            {"id": "run-smooth", "property": "value", "value": 0.6},
            {"id": "run-from", "property": "value", "value": None},
            {"id": "run-to", "property": "value", "value": None},
            {"id": "run-refresh", "property": "n_intervals", "value": 1 if refresh else None},
        ],
        "state": [
            {"id": "run-id", "property": "data", "value": run_id},
            {"id": "run-version", "property": "data", "value": -1 if refresh else None},
            {"id": "run-sent", "property": "data", "value": sent},
        ],
        "changedPropIds": ["run-refresh.n_intervals" if refresh else "run-smooth.value"],
    }
    t0 = time.perf_counter()
    resp = client.post("/_dash-update-component", json=body)
    seconds = time.perf_counter() - t0
    if resp.status_code != 200:
        raise SystemExit(f"run page callback failed: {resp.status_code} {resp.data[:500]!r}")
    return seconds, len(resp.data), json.loads(resp.data)


def _graph_ids(component: Any) -> list[dict[str, str]]:
    """The ids of every dcc.Graph in a serialised component tree (the page's figure slots)."""
    found: list[dict[str, str]] = []
    if isinstance(component, list):
        for child in component:
            found += _graph_ids(child)
    elif isinstance(component, dict) and "props" in component:
        if component.get("type") == "Graph":
            found.append(component["props"]["id"])
        for value in component["props"].values():
            found += _graph_ids(value)
    return found


def measure_run_page(
    client: Any, cache: Any, store: Store, run_id: str, repeats: int
) -> dict[str, Any]:
    """Run page timings: load with the cache cleared (a new data version: every refresh of a
    live store), load with it warm, and refresh ticks of a live run (a segment ingested before
    each, so the tick recomputes and answers with patches of the curves' tails)."""
    run_page_call(client, run_id)  # first call: route setup, DuckDB buffer pool
    cold, warm = [], []
    for _ in range(repeats):
        cache.clear()
        cold.append(run_page_call(client, run_id)[0])
    for _ in range(repeats):
        seconds, load_bytes, resp = run_page_call(client, run_id)
        warm.append(seconds)
    response = resp["response"]
    sent, slots = response["run-sent"]["data"], _graph_ids(response["run-body"]["children"])
    live, live_bytes = [], []
    for _ in range(repeats):
        _ingest_tick(store, run_id)
        seconds, size, resp = run_page_call(client, run_id, refresh=True, sent=sent, slots=slots)
        response = resp["response"]
        sent = response["run-sent"]["data"]
        if "run-body" in response:  # the panels changed (a verdict): new graphs on the page
            slots = _graph_ids(response["run-body"]["children"])
        live.append(seconds)
        live_bytes.append(size)
    return {
        "cold": cold,
        "warm": warm,
        "live": live,
        "load_bytes": load_bytes,
        "live_bytes": statistics.median(live_bytes),
    }


@dataclass(frozen=True)
class HeatmapLoad:
    """What a browser fetches to open the heatmap page and play every frame of one layer."""

    setup_bytes: int  # the layers and steps callbacks
    first_bytes: int  # first frame: the graph, built once, and its frame
    frame_bytes: list[int]  # every frame callback, the first included
    seconds: list[float]  # per frame callback
    asset_bytes: int  # the decoder script (assets/lca_heatmap.js), fetched once and cached
    max_error: float  # largest |shown - exact| over finite cells within the scale, / scale
    frames: int

    @property
    def total(self) -> int:
        return self.setup_bytes + sum(self.frame_bytes) + self.asset_bytes


def heatmap_calls(client: Any, store: Store, run_id: str, layer: str = "conv1") -> HeatmapLoad:
    """Open `/run/<id>/lca` for `layer` and play it through, as the browser does: the layers
    and steps callbacks, then one render callback per frame (each tick's next index is computed
    in the browser, no request), holding `lca-shown` so only the first builds the graph."""
    _, layers_bytes, _ = _dash_call(
        client,
        [("lca-layer", "options"), ("lca-layer", "value"), ("lca-title", "children")],
        [{"id": "lca-run", "property": "data", "value": run_id}],
        [{"id": "lca-wanted-layer", "property": "data", "value": None}],
    )
    _, steps_bytes, steps_resp = _dash_call(
        client,
        [
            ("lca-steps", "data"),
            ("lca-slider", "max"),
            ("lca-slider", "marks"),
            ("lca-slider", "value"),
        ],
        [{"id": "lca-layer", "property": "value", "value": layer}],
        [
            {"id": "lca-run", "property": "data", "value": run_id},
            {"id": "lca-steps", "property": "data", "value": []},
            {"id": "lca-slider", "property": "value", "value": None},
            {"id": "lca-wanted-step", "property": "data", "value": None},
        ],
    )
    found = steps_resp["response"]["lca-steps"]["data"]
    shown: Any = None
    sizes, times, payloads = [], [], []
    for index in range(len(found)):
        seconds, size, resp = _dash_call(
            client,
            [
                ("lca-figure", "children"),
                ("lca-shown", "data"),
                ("lca-frames", "data"),
                ("lca-step-label", "children"),
                ("lca-query", "data"),
            ],
            [
                {"id": "lca-slider", "property": "value", "value": index},
                {"id": "lca-all", "property": "value", "value": []},
                {"id": "lca-tick", "property": "disabled", "value": False},
            ],
            [
                {"id": "lca-steps", "property": "data", "value": found},
                {"id": "lca-layer", "property": "value", "value": layer},
                {"id": "lca-run", "property": "data", "value": run_id},
                {"id": "lca-shown", "property": "data", "value": shown},
            ],
        )
        response = resp["response"]
        shown = response.get("lca-shown", {}).get("data", shown)
        payloads += response["lca-frames"]["data"]
        sizes.append(size)
        times.append(seconds)
    asset = client.get("/assets/lca_heatmap.js")
    return HeatmapLoad(
        setup_bytes=layers_bytes + steps_bytes,
        first_bytes=sizes[0] if sizes else 0,
        frame_bytes=sizes,
        seconds=times,
        asset_bytes=len(asset.data) if asset.status_code == 200 else 0,
        max_error=_heatmap_error(store, run_id, payloads),
        frames=len(found),
    )


def _heatmap_error(store: Store, run_id: str, payloads: list[dict[str, Any]]) -> float:
    """Largest |decoded - stored| over the payloads' finite cells, as a fraction of the scale
    (8 bits: at most 1/254 within the scale; cells beyond it are sent exactly)."""
    worst = 0.0
    with store.read() as cur:
        for payload in payloads:
            frame = lca_frame(cur, run_id, payload["layer"], payload["step"])
            assert frame is not None and frame.step == payload["step"]
            exact, shown = frame.grid(), decode_payload(payload)
            finite = np.isfinite(exact)
            assert np.array_equal(finite, np.isfinite(shown))
            error = np.abs(shown[finite] - exact[finite]).max(initial=0.0) / payload["scale"]
            worst = max(worst, float(error))
    return worst


def measure(root: Path, repeats: int) -> None:
    store = Store(StoreLayout(root))
    app = create_app(store)
    cache = next(iter(app.server.extensions["cache"]))
    client = app.server.test_client()
    with store.read() as cur:
        n_runs, n_metrics = cur.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics)"
        ).fetchone()  # type: ignore[misc]
    with store.read() as cur:
        ids = dict(cur.execute("SELECT name, run_id FROM runs").fetchall())
        big_run, frame_run = ids["bench run 0"], ids["bench run 1"]
        big_steps = cur.execute(
            "SELECT count(DISTINCT step) FROM metrics WHERE run_id = ?", [big_run]
        ).fetchone()[0]  # type: ignore[index]

    grid = grid_call(client)
    grid()  # first call: Dash/route setup and DuckDB buffer pool, reported separately
    cold, warm = [], []
    cache.clear()
    _, grid_bytes, grid_resp = grid()
    n_rows = len(grid_resp["response"]["grid"]["rowData"])
    for _ in range(repeats):
        cache.clear()
        cold.append(grid()[0])
    for _ in range(repeats):
        warm.append(grid()[0])
    # Refresh ticks, as a browser holding the rows sends them: idle store, then a live run
    # ingesting a segment before every tick (a new data version each time).
    # The first tick may still send rows whose age text ticked over since the first load.
    sent = _apply_sent({}, grid_resp)
    idle_calls = []
    for i in range(repeats):
        idle_calls.append(grid_call(client, sent, i + 1)())
        sent = _apply_sent(sent, idle_calls[-1][2])
    idle = [seconds for seconds, _, _ in idle_calls]
    live, live_bytes = [], []
    for i in range(repeats):
        _ingest_tick(store, big_run)
        seconds, size, resp = grid_call(client, sent, repeats + i + 1)()
        sent = _apply_sent(sent, resp)
        live.append(seconds)
        live_bytes.append(size)
    # Where a cold grid call spends its time: the cached query alone, straight on the store.
    from trainlight.app.store.read.grid import grid_rows

    query = []
    for _ in range(max(5, repeats // 4)):
        t0 = time.perf_counter()
        with store.read() as cur:
            grid_rows(cur)
        query.append(time.perf_counter() - t0)

    run_page = measure_run_page(client, cache, store, big_run, repeats)
    run_bytes = run_page["load_bytes"]

    heatmap = heatmap_calls(client, store, frame_run)
    store.close()

    ms = 1000.0
    print(
        f"\nstore {root}: {n_runs:,} runs, {n_metrics:,} metric rows; "
        f"duckdb {duckdb.__version__}, {os.cpu_count()} CPUs; {repeats} calls per timing"
    )
    print(
        f"grid rows shipped {n_rows}, response {grid_bytes / 1024:,.0f} KiB; grid_rows() query "
        f"alone p50 {statistics.median(query) * ms:.0f} ms; run page {big_steps:,} steps x "
        f"{len(KEYS)} keys, response {run_bytes / 1024:,.0f} KiB; run page tick after an "
        f"ingest, p50 {run_page['live_bytes']:,.0f} B sent (patches of the curves' tails)"
    )
    print(
        f"grid ticks: idle store, p50 {statistics.median(s for _, s, _ in idle_calls):,.0f} B "
        f"sent (max {max(s for _, s, _ in idle_calls):,} B: ages that ticked over); after an "
        f"ingest, p50 {statistics.median(live_bytes):,.0f} B sent (full rowData: "
        f"{grid_bytes:,} B)"
    )
    rows = [
        ("grid warm p50", _p(warm, 50) * ms, GOAL_GRID_WARM_MS, "ms"),
        ("grid warm p95", _p(warm, 95) * ms, GOAL_GRID_WARM_MS, "ms"),
        ("grid cold p50", _p(cold, 50) * ms, GOAL_GRID_COLD_MS, "ms"),
        ("grid cold p95", _p(cold, 95) * ms, GOAL_GRID_COLD_MS, "ms"),
        ("grid tick idle p50", _p(idle, 50) * ms, GOAL_GRID_WARM_MS, "ms"),
        ("grid tick idle p95", _p(idle, 95) * ms, GOAL_GRID_WARM_MS, "ms"),
        ("grid tick ingest p50", _p(live, 50) * ms, GOAL_GRID_COLD_MS, "ms"),
        ("grid tick ingest p95", _p(live, 95) * ms, GOAL_GRID_COLD_MS, "ms"),
        ("run page cold p50", _p(run_page["cold"], 50) * ms, GOAL_RUN_MS, "ms"),
        ("run page cold p95", _p(run_page["cold"], 95) * ms, GOAL_RUN_MS, "ms"),
        ("run page warm p50", _p(run_page["warm"], 50) * ms, GOAL_RUN_MS, "ms"),
        ("run page warm p95", _p(run_page["warm"], 95) * ms, GOAL_RUN_MS, "ms"),
        ("run tick ingest p50", _p(run_page["live"], 50) * ms, GOAL_RUN_MS, "ms"),
        ("run tick ingest p95", _p(run_page["live"], 95) * ms, GOAL_RUN_MS, "ms"),
        (f"heatmap {heatmap.frames} frames", heatmap.total, GOAL_HEATMAP_BYTES, "B"),
        (
            "heatmap 1 frame (p50)",
            statistics.median(heatmap.frame_bytes[1:] or [0]),
            GOAL_HEATMAP_BYTES,
            "B",
        ),
    ]
    print(f"\n{'measure':<24}{'value':>14}{'goal':>14}{'ratio':>9}  verdict")
    for name, value, goal, unit in rows:
        fmt = (lambda v: f"{v:,.0f} ms") if unit == "ms" else (lambda v: f"{v / 1024:,.0f} KiB")
        verdict = "ok" if value < goal else "MISSED"
        print(f"{name:<24}{fmt(value):>14}{'< ' + fmt(goal):>14}{value / goal:>8.2f}x  {verdict}")
    print(
        f"(heatmap: layers + steps callbacks {heatmap.setup_bytes:,} B + {heatmap.frames} frame "
        f"callbacks {sum(heatmap.frame_bytes):,} B (the first, with the graph: "
        f"{heatmap.first_bytes:,} B), one per animation tick; decoder script "
        f"{heatmap.asset_bytes:,} B once; frame callback p50 {_p(heatmap.seconds, 50) * ms:.0f} "
        f"ms, p95 {_p(heatmap.seconds, 95) * ms:.0f} ms; 8-bit error <= "
        f"{heatmap.max_error:.4f} x scale)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=50_000_000, help="metric rows in all")
    parser.add_argument("--quick", action="store_true", help="100 runs, 2M rows")
    parser.add_argument("--dir", type=Path, help="store directory; reused if it holds a store")
    parser.add_argument("--repeats", type=int, default=20, help="calls per timing (>= 20)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rows = 100, 2_000_000
    if args.dir is None:
        import tempfile

        args.dir = Path(tempfile.mkdtemp(prefix="trainlight-dash-bench-")) / "store"
    if StoreLayout(args.dir).database.exists():
        print(f"reusing the store in {args.dir} (--runs/--rows ignored)")
    else:
        print(f"building {args.runs} runs, {args.rows:,} metric rows in {args.dir}")
        build_store(args.dir, args.runs, args.rows)
    measure(args.dir, max(args.repeats, 20))


if __name__ == "__main__":
    main()
