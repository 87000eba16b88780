"""`store.sparklines`: the main-loss buckets ingest keeps, against the old full-scan query.

Everything goes through the real ingest path (`ingest_segments` on encoded segments, or real
trainings through the inbox); the reference is the grid's old query over `metrics`
(tests/app/store/spark_reference.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.app.store.spark_reference import old_sparklines
from tests.support.segments import metrics_segment
from tests.support.trainings import train_diverging, train_gan, train_mlp
from trainlight.app.grid.rows import sparkline
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.sparklines import (
    STORED_BUCKETS,
    Bucket,
    fit_width,
    merge_buckets,
    read_sparklines,
)
from trainlight.app.store.ingest.transaction import decode_segment, ingest_segments
from trainlight.collectors.schema import StoreLayout

Rows = Sequence[tuple[int, str, float]]
Stored = tuple[str, int, dict[int, tuple[int, float]]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path / "store"))
    yield opened
    opened.close()


def ingest(store: Store, run_id: str, seq: int, rows: Rows) -> None:
    ingest_segments(store, [decode_segment(metrics_segment(run_id, seq, rows))])


def stored(store: Store, run_id: str) -> Stored:
    """(key, width, {bucket: (n, total)}) as ingest left them."""
    with store.read() as cur:
        key, width = cur.execute(
            "SELECT key, width FROM spark_runs WHERE run_id = ?", [run_id]
        ).fetchone() or ("", 0)
        rows = cur.execute(
            "SELECT bucket, n, total FROM spark_buckets WHERE run_id = ?", [run_id]
        ).fetchall()
    return key, width, {b: (n, t) for b, n, t in rows}


def same(a: float, b: float) -> bool:
    """Equal up to summation order; NaN equals NaN, an infinity only itself."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if math.isinf(a) or math.isinf(b) else a == pytest.approx(b, rel=1e-9, abs=1e-9)


def assert_same_buckets(got: Stored, want: Stored) -> None:
    assert got[:2] == want[:2]
    assert sorted(got[2]) == sorted(want[2])
    for bucket, (n, total) in want[2].items():
        assert got[2][bucket][0] == n, bucket
        assert same(got[2][bucket][1], total), (bucket, got[2][bucket][1], total)


def assert_same_values(got: Sequence[float], want: Sequence[float]) -> None:
    assert len(got) == len(want)
    assert all(same(g, w) for g, w in zip(got, want, strict=True)), (got, want)


def test_fit_width_is_the_smallest_power_of_two_that_fits() -> None:
    assert fit_width(1, 0, STORED_BUCKETS - 1) == 1
    assert fit_width(1, 0, STORED_BUCKETS) == 2
    assert fit_width(1, 0, 1_000_000) == 8192  # 1e6 // 4096 = 244 > 239; // 8192 = 122
    assert fit_width(4, 1000, 1000) == 4  # never narrows
    assert fit_width(1, -300, -61) == 1  # floor division keeps negative steps in order
    with pytest.raises(ValueError, match="power of two"):
        fit_width(3, 0, 10)
    with pytest.raises(ValueError, match="cap"):
        fit_width(1, 0, 10, cap=1)


def test_merge_buckets_adds_counts_and_sums_of_pairs() -> None:
    old = {0: Bucket(1, 1.0), 1: Bucket(2, 5.0), 2: Bucket(1, math.inf)}
    merged = merge_buckets(old, 2, [(1, Bucket(1, -math.inf)), (3, Bucket(1, 7.0))])
    assert merged[0] == Bucket(3, 6.0)
    assert merged[1].n == 2 and math.isnan(merged[1].total)  # +Inf and -Inf: NaN, still visible
    assert merged[3] == Bucket(1, 7.0)


def test_segments_in_pieces_and_out_of_order_give_the_buckets_of_one_pass(
    tmp_path: Path,
) -> None:
    rng = random.Random(4)
    rows = [(s, "loss", rng.gauss(1000.0 / (s + 1), 0.1)) for s in range(5000)]
    rows += [(s, "lr", 0.1) for s in range(0, 5000, 7)]
    rows[1234] = (1234, "loss", float("nan"))
    rows[4321] = (4321, "loss", float("inf"))
    rows.sort(key=lambda r: r[0])
    cuts = sorted(rng.sample(range(1, len(rows)), 16))
    pieces = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    order = list(range(len(pieces)))
    rng.shuffle(order)

    whole = Store(StoreLayout.resolve(tmp_path / "whole"))
    split = Store(StoreLayout.resolve(tmp_path / "split"))
    try:
        ingest(whole, "r", 0, rows)
        for seq in order:
            ingest(split, "r", seq, pieces[seq])
        want = stored(whole, "r")
        assert want[0] == "loss" and want[1] == 32  # 4999 // 32 = 156 < 240 <= 4999 // 16
        assert sum(n for n, _ in want[2].values()) == 5000
        assert_same_buckets(stored(split, "r"), want)
        with whole.read() as cur:  # 157 buckets regrouped into 60 slots: drawn as before
            drawn_alike(read_sparklines(cur)["r"].values, old_sparklines(cur)["r"][1])
    finally:
        whole.close()
        split.close()


def test_width_doubles_when_the_run_outgrows_the_buckets(store: Store) -> None:
    ingest(store, "r", 0, [(s, "loss", float(s)) for s in range(STORED_BUCKETS)])
    key, width, buckets = stored(store, "r")
    assert (key, width, len(buckets)) == ("loss", 1, STORED_BUCKETS)
    ingest(store, "r", 1, [(STORED_BUCKETS, "loss", float(STORED_BUCKETS))])
    key, width, buckets = stored(store, "r")
    assert (width, len(buckets)) == (2, STORED_BUCKETS // 2 + 1)
    assert buckets[0] == (2, 1.0) and buckets[STORED_BUCKETS // 2] == (1, STORED_BUCKETS)
    ingest(store, "r", 2, [(10 * STORED_BUCKETS, "loss", 1.0)])  # a jump: two doublings
    assert stored(store, "r")[1] == 16


def test_nan_and_inf_losses_stay_visible_like_before(store: Store) -> None:
    values = [float(100 - s) for s in range(60)]  # 60 steps: a bucket per step
    values[10], values[20], values[30] = math.nan, math.inf, -math.inf
    rows = [(s, "loss", v) for s, v in enumerate(values)]
    ingest(store, "short", 0, rows)
    long_rows = [(s, "loss", 1.0) for s in range(3000)]
    long_rows[1500] = (1500, "loss", math.inf)
    long_rows[1501] = (1501, "loss", -math.inf)
    ingest(store, "long", 0, long_rows)
    with store.read() as cur:
        new = read_sparklines(cur)
        old = old_sparklines(cur)
    assert_same_values(new["short"].values, old["short"][1])  # <= 240 steps: exactly as before
    assert [i for i, v in enumerate(new["short"].values) if not math.isfinite(v)] == [10, 20, 30]
    alarms = [v for v in new["long"].values if not math.isfinite(v)]
    assert len(alarms) == 1 and math.isnan(alarms[0])  # +Inf and -Inf in one bucket: NaN


def test_main_key_follows_the_old_rule_as_segments_arrive(store: Store) -> None:
    first = [(s, "lca/total", 1.0) for s in range(5)]
    first += [(s, k, float(s)) for s in range(5) for k in ("g_loss", "acc")]
    ingest(store, "r", 0, first)
    with store.read() as cur:
        assert read_sparklines(cur)["r"].key == old_sparklines(cur)["r"][0] == "g_loss"
    ingest(store, "r", 1, [(s, "acc", 2.0) for s in range(5, 400)])  # not the main key
    ingest(store, "r", 2, [(s, "g_loss", 3.0) for s in range(5, 9)])
    with store.read() as cur:
        new, old = read_sparklines(cur)["r"], old_sparklines(cur)["r"]
    assert new.key == old[0] == "g_loss"
    assert_same_values(new.values, old[1])
    ingest(store, "r", 3, [(s, "loss", 10.0 - s) for s in range(7, 700)])  # `loss` wins
    assert stored(store, "r")[:2] == ("loss", 4)
    with store.read() as cur:
        new, old = read_sparklines(cur)["r"], old_sparklines(cur)["r"]
    assert new.key == old[0] == "loss"
    assert len(new.values) == len(old[1]) == 60


def test_main_key_is_the_one_the_loss_role_names(store: Store) -> None:
    """`mon.roles(loss="nll")`: the grid draws the key the `spike` rule judges, not the first
    key logged, nor a `loss` the run also logs."""
    rows = [(s, k, float(s)) for s in range(5) for k in ("acc", "loss", "nll")]
    ingest_segments(store, [decode_segment(metrics_segment("r", 0, rows, roles={"loss": "nll"}))])
    ingest(store, "plain", 0, rows)
    with store.read() as cur:
        lines = read_sparklines(cur)
    assert (lines["r"].key, lines["plain"].key) == ("nll", "loss")
    assert lines["r"].values == (0.0, 1.0, 2.0, 3.0, 4.0)


def drawn_alike(new: Sequence[float], old: Sequence[float]) -> None:
    """Same number of points; as drawn (120x24 px), every point within 1.5 px of the old one
    and the alarm marks (non-finite buckets) at most one bucket apart."""
    assert len(new) == len(old)
    a, b = sparkline(new), sparkline(old)
    ys = [[float(p.split(",")[1]) for p in s.points.split()] for s in (a, b)]
    assert len(ys[0]) == len(ys[1])
    assert max((abs(p - q) for p, q in zip(*ys, strict=True)), default=0.0) <= 1.5
    gap = 120 / max(len(new) - 1, 1)
    assert len(a.alarms) == len(b.alarms)
    assert all(abs(p - q) <= gap + 0.1 for p, q in zip(a.alarms, b.alarms, strict=True))


def test_real_trainings_draw_the_same_shape_as_the_old_query(store: Store) -> None:
    root = store.layout.root
    runs = {
        train_mlp(root, "short mlp"): "exact",  # 200 steps: width 1, bucket = step
        train_gan(root, "gan"): "shape",  # 900 steps of `d_loss` (no `loss`): width 4
        train_diverging(root, "diverging"): "shape",  # 300 steps, overflows to Inf then NaN
    }
    Ingester(store).ingest_pending()
    with store.read() as cur:
        new, old = read_sparklines(cur), old_sparklines(cur)
    assert set(new) == set(old) == set(runs)
    for run_id, how in runs.items():
        assert new[run_id].key == old[run_id][0]
        if how == "exact":
            assert_same_values(new[run_id].values, old[run_id][1])
        else:
            drawn_alike(new[run_id].values, old[run_id][1])
    assert {new[r].key for r in runs} == {"loss", "d_loss"}
