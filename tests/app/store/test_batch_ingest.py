"""Many runs per transaction: the same store whether segments come one per pass or all at once.

The same inbox (real Monitor trainings with LCA, roles, dead units and a divergence; a GAN-like
run that auto-prunes; small synthetic runs that switch main key, log NaN and add LCA layers late)
is ingested three ways: one segment per pass with runs interleaved (as live serving sees them),
everything in one pass, and in batches of a few dozen rows that cut across runs. Every table
ingest writes must come out the same.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from tests.app.store.filled_store import fill
from tests.app.store.store_snapshot import snapshot
from tests.app.store.test_grid_query import layer_segment
from tests.app.store.test_health_ingest import gan_segments
from tests.support.segments import metrics_segment
from tests.support.trainings import train_diverging
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.transaction import decode_segment, ingest_batch, ingest_segments
from trainlight.collectors.schema import StoreLayout, list_segment_files, write_atomically


def synthetic_runs(layout: StoreLayout) -> None:
    """Small runs of many segments, with what makes sparklines and layer lights move."""
    for r in range(6):
        run_id = f"small-{r}"
        layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        for seq in range(8):
            steps = range(seq * 40, seq * 40 + 40)
            key = "loss" if r % 2 == 0 or seq >= 5 else "g_loss"  # odd runs switch at seq 5
            rows = [(s, key, 1.0 / (s + 1)) for s in steps] + [(s, "acc", 0.5) for s in steps]
            if (r, seq) == (1, 3):
                rows.append((seq * 40, key, math.nan))
            payload = metrics_segment(run_id, seq, rows, name=run_id, group=f"g{r % 2}")
            if r >= 4 and seq % 2:  # LCA rows, a layer appearing only from seq 3
                layers = ["enc", "dec"] + (["head"] if seq >= 3 else [])
                lights = [(seq * 40, layer, "lca", (-1.0) ** seq) for layer in layers]
                payload = layer_segment(run_id, seq, lights)
            write_atomically(layout.segment_path(run_id, seq), payload)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store directory whose inbox holds every segment; never ingested itself."""
    root = tmp_path_factory.mktemp("batch-source") / "store"
    fill(root)
    train_diverging(root, "diverging")
    layout = StoreLayout.resolve(root)
    for seq, payload in enumerate(gan_segments("gan-prune", prune_on=("nonfinite",))):
        layout.run_inbox("gan-prune").mkdir(parents=True, exist_ok=True)
        write_atomically(layout.segment_path("gan-prune", seq), payload)
    synthetic_runs(layout)
    return root


def copy_of(source: Path, target: Path, with_inbox: bool = True) -> Store:
    if with_inbox:
        shutil.copytree(source / "inbox", target / "inbox")
    return Store(StoreLayout.resolve(target))


def one_per_pass(source: Path, target: Path) -> Store:
    """Each segment delivered alone, runs interleaved by seq: live serving, file by file."""
    store = copy_of(source, target, with_inbox=False)
    files = sorted(list_segment_files(source / "inbox"), key=lambda f: (f[1], f[0]))
    for run_id, seq, path in files:
        store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, store.layout.segment_path(run_id, seq))
        stats = Ingester(store).ingest_pending()
        assert (stats.segments, stats.rejected) == (1, 0)
    return store


def test_one_pass_and_small_batches_write_what_one_segment_per_pass_writes(
    source: Path, tmp_path: Path
) -> None:
    total = len(list_segment_files(source / "inbox"))
    reference = one_per_pass(source, tmp_path / "one-by-one")
    whole = copy_of(source, tmp_path / "whole")
    pieces = copy_of(source, tmp_path / "pieces")
    try:
        stats = Ingester(whole).ingest_pending()
        assert (stats.segments, stats.rejected, stats.duplicates) == (total, 0, 0)
        stats = Ingester(pieces, max_batch_rows=60).ingest_pending()
        assert (stats.segments, stats.rejected) == (total, 0)
        want = snapshot(reference)
        assert want["health"] and want["lca_layers"] and want["spark_buckets"]
        assert ("gan-prune", True) in {(r[0], r[1]) for r in want["stops"]}
        for store in (whole, pieces):
            got = snapshot(store)
            for table, rows in want.items():
                assert got[table] == rows, table
            assert not list_segment_files(store.layout.inbox)
            assert store.layout.control_path("gan-prune").exists()
    finally:
        for store in (reference, whole, pieces):
            store.close()


def test_layer_lights_keep_model_order_as_layers_appear(source: Path, tmp_path: Path) -> None:
    store = copy_of(source, tmp_path / "store")
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            layers = cur.execute(
                "SELECT layer FROM lca_layers WHERE run_id = 'small-5' ORDER BY ord"
            ).fetchall()
            latest = cur.execute(
                "SELECT layer, value FROM latest WHERE run_id = 'small-5' AND key = 'lca'"
            ).fetchall()
    finally:
        store.close()
    assert [layer for (layer,) in layers] == ["enc", "dec", "head"]
    assert dict(latest) == {"enc": -1.0, "dec": -1.0, "head": -1.0}  # seq 7: (-1) ** 7


def test_a_batch_of_many_runs_reports_each_run(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        segs = {
            (run, seq): decode_segment(metrics_segment(run, seq, [(seq, "loss", 1.0)] * 3))
            for run in ("a-1", "b-1", "c-1")
            for seq in range(3)
        }
        ingest_segments(store, [segs["b-1", 1]])
        batch = [segs[k] for k in sorted(segs)] + [segs["a-1", 0]]  # a repeat in the batch
        results = ingest_batch(store, batch)
        assert [(r.run_id, r.seqs, r.rows, r.duplicates) for r in results] == [
            ("a-1", (0, 1, 2), 9, 1),
            ("b-1", (0, 2), 6, 1),
            ("c-1", (0, 1, 2), 9, 0),
        ]
        again = ingest_batch(store, batch)
        assert [(r.seqs, r.duplicates) for r in again] == [((), 4), ((), 3), ((), 3)]
        assert ingest_batch(store, []) == ()
        with store.read() as cur:
            assert cur.execute("SELECT count(*) FROM metrics").fetchone() == (27,)
            assert cur.execute("SELECT count(*) FROM segments").fetchone() == (9,)
    finally:
        store.close()
