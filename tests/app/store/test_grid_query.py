"""`store.grid.grid_rows` against a real DuckDB store filled through the real ingest path."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from tests.support.trainings import train_diverging, train_mlp
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.grid import SPARK_POINTS, GridRow, grid_rows
from trainlight.collectors.schema import RunHeader, StoreLayout, write_atomically
from trainlight.collectors.writer import encode_segment


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path / "store"))
    yield opened
    opened.close()


def deliver(store: Store, run_id: str, seq: int, payload: bytes) -> None:
    """Drop a segment in the inbox, as a collector would."""
    store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
    write_atomically(store.layout.segment_path(run_id, seq), payload)


def layer_segment(
    run_id: str, seq: int, rows: Sequence[tuple[int, str, str, float]], **header: object
) -> bytes:
    """A segment of layer_metrics rows (step, layer, key, value), through the real encoder."""
    part = {
        "table": ["layer_metrics"] * len(rows),
        "step": [r[0] for r in rows],
        "layer": [r[1] for r in rows],
        "key": [r[2] for r in rows],
        "value": [r[3] for r in rows],
    }
    now = time.time()
    run = RunHeader(run_id=run_id, seq=seq, name=run_id, sent_at=now, started_at=now, **header)  # type: ignore[arg-type]
    return encode_segment([part], run)


def rows_by_id(store: Store) -> dict[str, GridRow]:
    Ingester(store).ingest_pending()
    with store.read() as cur:
        return {r.run_id: r for r in grid_rows(cur)}


def test_sparkline_is_downsampled_and_keeps_nonfinite(store: Store) -> None:
    rows = [(step, "loss", 1000.0 - step) for step in range(6000)]
    rows[3000] = (3000, "loss", float("nan"))
    rows += [(step, "lr", 0.1) for step in range(0, 6000, 10)]
    deliver(store, "long", 0, metrics_segment("long", 0, rows, name="long run", group="g"))
    row = rows_by_id(store)["long"]
    assert (row.name, row.group, row.status, row.last_step) == ("long run", "g", "running", 5999)
    assert row.spark_key == "loss"
    assert len(row.spark) == SPARK_POINTS
    # 6,000 steps are stored as 188 buckets of 32 steps; the first of 60 slots holds 4 of them
    assert row.spark[0] == pytest.approx(1000 - 63.5)  # mean of steps 0..127
    assert sum(math.isnan(v) for v in row.spark) == 1  # the bucket holding the NaN, only it
    finite = [v for v in row.spark if not math.isnan(v)]
    assert finite == sorted(finite, reverse=True)


def test_short_series_keeps_every_point_and_main_key_falls_back(store: Store) -> None:
    rows = [(s, "lca/total", 1.0) for s in range(5)]
    rows += [(s, k, float(s)) for s in range(5) for k in ("g_loss", "acc")]
    deliver(store, "r", 0, metrics_segment("r", 0, rows))
    row = rows_by_id(store)["r"]
    assert row.spark_key == "g_loss"  # no `loss`: the first key logged, never a reserved one
    assert row.spark == (0.0, 1.0, 2.0, 3.0, 4.0)


def test_lca_lights_in_first_appearance_order_with_latest_value(store: Store) -> None:
    layers = ("encoder.0", "a.last", "decoder")
    first = [(0, layer, "lca", -1.0) for layer in layers]
    later = [(5, "encoder.0", "lca", 0.5), (5, "a.last", "lca", -0.1)]
    later += [(5, "decoder", "dead_frac", 0.3)]
    deliver(store, "lca", 0, layer_segment("lca", 0, first))
    deliver(store, "lca", 1, layer_segment("lca", 1, later))
    row = rows_by_id(store)["lca"]
    assert [(light.layer, light.state) for light in row.lca_layers] == [
        ("encoder.0", "hurting"),
        ("a.last", "helping"),
        ("decoder", "helping"),
    ]
    assert row.spark == ()


def test_health_states_and_reasons_from_real_trainings(tmp_path: Path, store: Store) -> None:
    sane = train_mlp(store.layout.root, "sane")
    diverging = train_diverging(store.layout.root, "diverging")
    found = rows_by_id(store)
    assert found[diverging].health["nonfinite"].state == "red"
    assert "Inf" in found[diverging].health["nonfinite"].reason
    assert found[sane].health["nonfinite"].state == "green"
    assert found[sane].health["dead_relu"].state == "green"
    assert {found[sane].status, found[diverging].status} == {"finished"}
    assert found[sane].spark_key == "loss" and found[sane].spark[-1] < found[sane].spark[0]


def test_one_query_per_kind_scales_to_many_runs(store: Store) -> None:
    for i in range(200):
        run_id = f"run-{i:03d}"
        rows = [(s, "loss", 1.0 / (s + 1)) for s in range(0, 500, 5)]
        deliver(store, run_id, 0, metrics_segment(run_id, 0, rows, name=run_id))
    start = time.perf_counter()
    found = rows_by_id(store)
    assert len(found) == 200
    assert all(len(r.spark) == SPARK_POINTS for r in found.values())
    with store.read() as cur:
        start = time.perf_counter()
        grid_rows(cur)
    assert time.perf_counter() - start < 2.0
