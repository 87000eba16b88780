"""`/lca/<id>`'s render callback, driven like the browser drives it, on a real ingested store.

The first frame brings the graph and its frame; every later tick brings only the 8-bit frame,
which decodes (as the browser does) to the frame the store holds, NaN and ±Inf included.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from flask.testing import FlaskClient

from trainlight.app.factory import create_app
from trainlight.app.figures.heatmap_codec import decode_payload
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.frames import lca_frame
from trainlight.collectors.schema import RunHeader, StoreLayout, write_atomically
from trainlight.collectors.writer import encode_segment

RUN = "lca-page-1"
LAYERS = ("a", "b")
STEPS = (0, 10, 20, 30)
SIDE = 16
RENDER_OUTPUTS = [
    ("lca-figure", "children"),
    ("lca-shown", "data"),
    ("lca-frames", "data"),
    ("lca-step-label", "children"),
    ("lca-query", "data"),
]


def frames_segment() -> bytes:
    """Frames of two layers at four steps, through the collectors' encoder; a few NaN/±Inf."""
    rng = np.random.default_rng(3)
    n = len(LAYERS) * len(STEPS)
    values = rng.standard_normal((n, SIDE * SIDE)).astype(np.float32) * 1e-2
    values[1, :3] = [math.nan, math.inf, -math.inf]
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * SIDE * SIDE)
    part = {
        "table": ["lca_frames"] * n,
        "step": [s for s in STEPS for _ in LAYERS],
        "layer": list(LAYERS) * len(STEPS),
        "n_rows": [SIDE] * n,
        "n_cols": [SIDE] * n,
        "values": pa.ListArray.from_arrays(offsets, pa.array(values.ravel())),
    }
    header = RunHeader(run_id=RUN, seq=0, name="frames", sent_at=time.time())
    return encode_segment([part], header)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    opened.layout.run_inbox(RUN).mkdir(parents=True)
    write_atomically(opened.layout.segment_path(RUN, 0), frames_segment())
    Ingester(opened).ingest_pending()
    yield opened
    opened.close()


def render(
    client: FlaskClient, index: int, shown: Any, *, all_layers: bool = False
) -> tuple[int, dict[str, Any]]:
    """POST the render callback as the browser does: (response bytes, its outputs)."""
    body = {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in RENDER_OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in RENDER_OUTPUTS],
        "inputs": [
            {"id": "lca-slider", "property": "value", "value": index},
            {"id": "lca-all", "property": "value", "value": ["all"] if all_layers else []},
            {"id": "lca-tick", "property": "disabled", "value": True},
        ],
        "state": [
            {"id": "lca-steps", "property": "data", "value": list(STEPS)},
            {"id": "lca-layer", "property": "value", "value": "a"},
            {"id": "lca-run", "property": "data", "value": RUN},
            {"id": "lca-shown", "property": "data", "value": shown},
        ],
        "changedPropIds": ["lca-slider.value"],
    }
    resp = client.post("/_dash-update-component", json=body)
    assert resp.status_code == 200, resp.data[:300]
    response: dict[str, Any] = json.loads(resp.data)["response"]
    return len(resp.data), response


def graph_layers(children: Any) -> list[str]:
    return [g["props"]["id"]["layer"] for g in children["props"]["children"]]


def assert_matches_store(store: Store, payload: dict[str, Any]) -> None:
    with store.read() as cur:
        frame = lca_frame(cur, RUN, payload["layer"], payload["step"])
    assert frame is not None and frame.step == payload["step"]
    exact, shown = frame.grid(), decode_payload(payload)
    finite, infinite = np.isfinite(exact), np.isinf(exact)
    assert np.array_equal(np.isnan(exact), np.isnan(shown))
    assert np.array_equal(exact[infinite], shown[infinite])
    assert np.abs(shown[finite] - exact[finite]).max() <= payload["scale"] / 254 * (1 + 1e-5)


def test_graphs_are_sent_once_then_each_tick_sends_only_its_frames(store: Store) -> None:
    client = create_app(store).server.test_client()
    first_bytes, first = render(client, 0, None)
    assert graph_layers(first["lca-figure"]["children"]) == ["a"]
    shown = first["lca-shown"]["data"]
    frames = first["lca-frames"]["data"]
    assert [(f["layer"], f["step"]) for f in frames] == [("a", 0)]
    assert_matches_store(store, frames[0])

    for index, step in enumerate(STEPS[1:], start=1):
        size, tick = render(client, index, shown)
        assert "lca-figure" not in tick and "lca-shown" not in tick  # the graph stays
        (payload,) = tick["lca-frames"]["data"]
        assert (payload["layer"], payload["step"]) == ("a", step)
        assert_matches_store(store, payload)
        assert tick["lca-step-label"]["children"] == f"step {step} · frame {index + 1} of 4"
        assert tick["lca-query"]["data"] == f"?layer=a&step={step}"
        assert size < first_bytes
    assert frames[0]["scale"] == payload["scale"]  # one colour scale for the whole animation


def test_side_by_side_rebuilds_the_graphs_once_for_every_layer(store: Store) -> None:
    client = create_app(store).server.test_client()
    _, first = render(client, 0, None)
    _, both = render(client, 0, first["lca-shown"]["data"], all_layers=True)
    assert graph_layers(both["lca-figure"]["children"]) == list(LAYERS)
    payloads = both["lca-frames"]["data"]
    assert [f["layer"] for f in payloads] == list(LAYERS)
    for payload in payloads:
        assert_matches_store(store, payload)
    b = decode_payload(payloads[1]).ravel()  # layer b's frame 0 holds NaN and ±Inf
    assert math.isnan(b[0]) and (b[1], b[2]) == (math.inf, -math.inf)
    _, next_tick = render(client, 1, both["lca-shown"]["data"], all_layers=True)
    assert "lca-figure" not in next_tick and len(next_tick["lca-frames"]["data"]) == 2


def test_the_old_heatmap_address_redirects_with_its_query(store: Store) -> None:
    client = create_app(store).server.test_client()
    moved = client.get(f"/run/{RUN}/lca?layer=b&step=20")
    assert moved.status_code == 301
    assert moved.headers["Location"].endswith(f"/lca/{RUN}?layer=b&step=20")
    assert client.get(f"/run/{RUN}/lca").headers["Location"].endswith(f"/lca/{RUN}")
    page = client.get(f"/lca/{RUN}?layer=b")
    assert page.status_code == 200 and b"_dash-config" in page.data


def test_the_old_heatmap_address_never_redirects_off_site_nor_injects_headers(store: Store) -> None:
    client = create_app(store).server.test_client()
    quoted = client.get('/run/a"b<x>/lca?x=1')
    assert quoted.status_code == 301 and quoted.headers["Location"] == "/lca/a%22b%3Cx%3E?x=1"
    injected = client.get("/run/x/lca?a=%0d%0aSet-Cookie:%20x=1")
    assert injected.headers["Location"] == "/lca/x?a=%0d%0aSet-Cookie:%20x=1"
    assert "Set-Cookie" not in injected.headers
    for off_site in ("/run/%2F%2Fevil.com/lca", "/run/..%2F..%2Fetc/lca"):
        assert "Location" not in client.get(off_site).headers  # not the redirect's rule
