"""Series and frame queries against a real store filled by real Monitor runs and the Ingester."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.app.store.filled_store import INF_STEP, LONG_STEPS, NAN_STEP
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.read.buckets import bucket_width
from trainlight.app.store.read.frames import (
    frame_layers,
    frame_scale,
    frame_steps,
    frames_at,
    lca_frame,
)
from trainlight.app.store.read.series import (
    OverfitMark,
    SpikeMark,
    StepRange,
    catch_marks,
    current_health,
    health_history,
    layer_series,
    layer_totals,
    metric_series,
    overfit_marks,
    run_judging,
    run_roles,
    scalar_keys,
    scalar_series,
    spike_marks,
    step_clock,
)
from trainlight.collectors.schema import StoreLayout


def raw(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    with store.read() as cur:
        rows = cur.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step",
            [run_id, key],
        ).fetchall()
    return [(int(s), float(v)) for s, v in rows]


def test_scalar_keys_leave_out_reserved_keys(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        assert scalar_keys(cur, runs["lca"]) == ("loss", "lr")
        assert scalar_keys(cur, runs["gan"]) == ("content", "d_loss")


def test_short_series_is_exact(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        series = scalar_series(cur, runs["lca"], "loss")
    rows = raw(store, runs["lca"], "loss")
    assert series.count == len(rows) == 120 and not series.downsampled
    assert series.steps.tolist() == [float(s) for s, _ in rows]
    for values in (series.mean, series.low, series.high):
        assert values.tolist() == [v for _, v in rows]


def test_bucket_width_is_the_smallest_nice_width_that_fits() -> None:
    nice = [m * 10**e for e in range(9) for m in (1, 2, 5)]
    cases = [(0, 99, 100), (0, 100, 100), (10, 99, 7), (0, 19_999, 1000), (-5, 5, 3), (7, 7, 2)]
    cases.append((1_000_000, 1_049_999, 1000))
    for first, last, buckets in cases:
        fits = [w for w in nice if last // w - first // w + 1 <= buckets]
        assert bucket_width(first, last, buckets) == fits[0]


def test_buckets_match_a_naive_reference(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    buckets = 7
    with store.read() as cur:
        series = scalar_series(cur, runs["lca"], "loss", StepRange(10, 99), buckets=buckets)
    rows = [(s, v) for s, v in raw(store, runs["lca"], "loss") if 10 <= s <= 99]
    width = bucket_width(10, 99, buckets)  # 20: buckets aligned to multiples of it
    groups: dict[int, list[tuple[int, float]]] = {}
    for s, v in rows:
        groups.setdefault(s // width, []).append((s, v))
    expected = [groups[b] for b in sorted(groups)]
    assert len(series.steps) == len(expected) <= buckets
    assert series.count == len(rows) and series.downsampled
    for i, group in enumerate(expected):
        values = [v for _, v in group]
        assert series.steps[i] == pytest.approx(np.mean([s for s, _ in group]))
        assert series.mean[i] == pytest.approx(np.mean(values))
        assert (series.low[i], series.high[i]) == (min(values), max(values))


def test_one_query_for_many_keys_matches_one_per_key(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        together = metric_series(cur, runs["gan"], ["content", "d_loss", "missing"], buckets=50)
        alone = {k: scalar_series(cur, runs["gan"], k, buckets=50) for k in ("content", "d_loss")}
    assert sorted(together) == ["content", "d_loss"]
    for key, series in alone.items():
        np.testing.assert_array_equal(together[key].steps, series.steps)
        np.testing.assert_array_equal(together[key].high, series.high)


def test_long_series_is_bounded_keeps_spike_and_reports_nonfinite(
    filled: tuple[Store, dict[str, str]],
) -> None:
    store, runs = filled
    with store.read() as cur:
        series = scalar_series(cur, runs["long"], "wave")
        zoomed = scalar_series(cur, runs["long"], "wave", StepRange(12_000, 12_999))
    assert series.count == LONG_STEPS
    assert len(series.steps) <= 1000
    assert series.high.max() == 50.0  # a 1-step spike survives downsampling
    assert np.isfinite(series.mean).all()
    assert [s for s, _ in series.nonfinite] == [NAN_STEP, INF_STEP]
    assert math.isnan(series.nonfinite[0][1]) and series.nonfinite[1][1] == math.inf
    assert zoomed.count == 1000 and len(zoomed.steps) == 1000  # zoomed: every point
    assert zoomed.steps[0] == 12_000 and not zoomed.nonfinite


def test_layer_series_in_model_order_and_cumulative(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        dead = layer_series(cur, runs["lca"], "dead_frac")
        cumulative = layer_series(cur, runs["lca"], "lca", cumulative=True)
        totals = layer_totals(cur, runs["lca"], "lca")
        helping = layer_series(cur, runs["lca"], "lca_helping")
    assert [s.name for s in dead] == ["1", "3"]
    assert all(0 <= v <= 1 for s in dead for v in s.mean)
    assert [s.name for s in cumulative] == list(totals) == ["0", "2", "4"]
    for series in cumulative:
        assert series.mean[-1] == pytest.approx(totals[series.name])
    assert all(0 <= v <= 1 for s in helping for v in s.mean)


def test_cumulative_in_a_step_range_counts_from_the_first_step(
    filled: tuple[Store, dict[str, str]],
) -> None:
    store, runs = filled
    with store.read() as cur:
        zoomed = layer_series(cur, runs["lca"], "lca", StepRange(40, 80), cumulative=True)
        rows = cur.execute(
            """SELECT step, value FROM layer_metrics WHERE run_id = ? AND key = 'lca'
               AND layer = '0' ORDER BY step""",
            [runs["lca"]],
        ).fetchall()
    running = dict(zip([s for s, _ in rows], np.cumsum([v for _, v in rows]), strict=True))
    first = zoomed[0]
    assert first.name == "0" and first.steps[0] >= 40 and first.steps[-1] <= 80
    assert first.mean[-1] == pytest.approx(running[max(s for s in running if s <= 80)])


def test_health_history_and_marks(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        history = health_history(cur, runs["gan"])
        marks = catch_marks(cur, runs["gan"])
        roles = run_roles(cur, runs["gan"])
        none = catch_marks(cur, runs["lca"])
        judged = run_judging(cur, runs["lca"])
        default = run_judging(cur, "no-such-run")
    current = current_health(history)
    assert current["catch"].state == "green"
    assert marks.catch_step == current["catch"].step
    assert marks.plateau_step is not None
    assert roles == {"adversary": "d_loss", "content": "content"}
    assert none.catch_step is None and none.plateau_step is None
    assert (judged.settings.lca_window, judged.settings.confirm) == (3, 1)  # its health= overrides
    assert judged.settings.catch_window is None and default.settings.lca_window == 10
    assert [c.signal for c in history if c.signal == "catch"]  # ordered by seq, not empty


def test_lca_frames(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    run_id = runs["lca"]
    with store.read() as cur:
        layers = frame_layers(cur, run_id)
        steps = frame_steps(cur, run_id, "0")
        frame = lca_frame(cur, run_id, "0", steps[2] + 1)
        side = frames_at(cur, run_id, steps[-1])
        scale = frame_scale(cur, run_id, "0")
        every = np.concatenate(
            [
                np.asarray(v)
                for (v,) in cur.execute(
                    "SELECT \"values\" FROM lca_frames WHERE run_id = ? AND layer = '0'", [run_id]
                ).fetchall()
            ]
        )
        missing = lca_frame(cur, run_id, "no-such-layer", 0)
    assert layers == ("0", "2", "4")
    assert 1 < len(steps) <= 16 and list(steps) == sorted(steps)
    assert frame is not None and frame.step == steps[2]
    assert (frame.n_rows, frame.n_cols) == (16, 8) and len(frame.rows()) == 16
    assert [f.layer for f in side] == list(layers) and {f.step for f in side} == {steps[-1]}
    assert scale == pytest.approx(np.quantile(np.abs(every), 0.99), rel=1e-5)
    assert missing is None


def test_step_clock_is_the_rate_between_wall_times_and_the_rules_marks(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        with store.write() as cur:
            rows = [("r", step, "loss", 1.0, utc_naive(1000.0 + step / 10)) for step in range(100)]
            rows += [("r", step, "loss", 1.0, utc_naive(1100.0 + step)) for step in range(100, 150)]
            rows += [("r", 120, "progress/slowdown", 10.0, None)]
            cur.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
        with store.read() as cur:
            clock = step_clock(cur, "r", "loss", points=150)
    finally:
        store.close()
    assert clock.rates[10] == pytest.approx(10.0) and clock.rates[-1] == pytest.approx(1.0)
    assert clock.slowdowns == ((120, 10.0),) and clock.stalls == ()


def test_recorded_marks_pair_up_as_the_rules_wrote_them(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    rows = [
        ("r", 100, "spike/onset", 9.0),
        ("r", 100, "spike/level", 2.0),
        ("r", 130, "spike/recovered", 30.0),
        ("r", 400, "spike/onset", 7.0),
        ("r", 400, "spike/level", 1.5),
        ("r", 250, "overfit/from_step", 150.0),
        ("r", 250, "overfit/best", 0.3),
    ]
    try:
        with store.write() as cur:
            cur.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, NULL)", rows)
        with store.read() as cur:
            spikes, rises = spike_marks(cur, "r"), overfit_marks(cur, "r")
    finally:
        store.close()
    assert spikes == (SpikeMark(100, 9.0, 2.0, 130), SpikeMark(400, 7.0, 1.5, None))
    assert rises == (OverfitMark(150, 0.3, 250),)
