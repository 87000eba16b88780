"""RunawayTracker on real tensors: distances, cadence, ring bounds, NaN, and the segment format."""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from trainlight.collectors.health.ks import QUANTILE_KEYS, c_alpha
from trainlight.collectors.problems import Problems
from trainlight.collectors.scalars import ScalarColumns
from trainlight.collectors.schema import RunHeader
from trainlight.collectors.signals.runaway import (
    CRITICAL,
    DISTANCE,
    EFFECT,
    GEN_MEAN,
    GEN_QUANTILES,
    REF_QUANTILES,
    RunawayTracker,
    per_sample_means,
)
from trainlight.collectors.writer import build_segment, encode_segment

ALL_KEYS = [DISTANCE, CRITICAL, EFFECT, GEN_MEAN]
EPOCH = datetime(1970, 1, 1)


def audio(gen: torch.Generator, n: int, offset: float = 0.0) -> torch.Tensor:
    """[n, 1, 256] "audio" whose per-sample means are ~N(offset, 1)."""
    dc = torch.randn(n, 1, 1, generator=gen)
    return dc + 0.5 * torch.randn(n, 1, 256, generator=gen) + offset


def by_step(columns: dict[str, list[Any]] | None) -> dict[int, dict[str, float]]:
    """The one-per-reading rows (distance, critical, effect, gen_mean) by step and key."""
    assert columns is not None
    assert columns["table"] == ["metrics"] * len(columns["step"])
    out: dict[int, dict[str, float]] = {}
    for step, key, value in zip(columns["step"], columns["key"], columns["value"], strict=True):
        if key not in QUANTILE_KEYS:
            out.setdefault(step, {})[key] = value
    return out


def quantile_rows(columns: dict[str, list[Any]] | None, key: str) -> dict[int, list[float]]:
    """The quantile rows of `key` by step, in the order they were written."""
    assert columns is not None
    out: dict[int, list[float]] = {}
    for step, k, value in zip(columns["step"], columns["key"], columns["value"], strict=True):
        if k == key:
            out.setdefault(step, []).append(value)
    return out


def feed(tracker: RunawayTracker, steps: range, value: float = 0.0) -> None:
    """One 1-D batch per step whose per-sample values are the step number (+ value)."""
    for step in steps:
        tracker.observe(step, torch.full((4,), float(step) + value))


def test_same_distribution_stays_below_the_critical_value() -> None:
    gen = torch.Generator().manual_seed(0)
    tracker = RunawayTracker(problems=Problems())
    tracker.reference(audio(gen, 2048))
    for step in range(40):
        tracker.observe(step, audio(gen, 64))
    rows = by_step(tracker.collect())
    assert sorted(rows) == [0, 10, 20, 30]
    last = rows[30]  # ring full: 512 generated means against m = 2048
    assert last[CRITICAL] == pytest.approx(c_alpha(0.01) * math.sqrt((512 + 2048) / (512 * 2048)))
    assert last[DISTANCE] < last[CRITICAL]
    assert last[EFFECT] < 0.2
    assert abs(last[GEN_MEAN]) < 0.2


def test_a_dc_offset_of_one_std_is_far_above_the_critical_value() -> None:
    gen = torch.Generator().manual_seed(1)
    real = audio(gen, 2048)
    real_means = per_sample_means(real).numpy()
    std = float(real_means.std())
    q25, q75 = np.quantile(real_means, [0.25, 0.75])
    tracker = RunawayTracker(problems=Problems())
    tracker.reference(real)
    for step in range(11):
        tracker.observe(step, audio(gen, 64, offset=std))
    shifted = by_step(tracker.collect())[10]  # the ring: 512 means of steps 3-10
    assert shifted[DISTANCE] > 3 * shifted[CRITICAL]
    # |median shift| / IQR: one std of a normal is 1/1.349 IQR
    assert shifted[EFFECT] == pytest.approx(std / (q75 - q25), abs=0.1)
    assert shifted[EFFECT] == pytest.approx(1 / 1.349, abs=0.1)
    assert shifted[GEN_MEAN] == pytest.approx(std, abs=0.15)
    for step in range(11, 21):  # an offset of one reference IQR: effect ≈ 1
        tracker.observe(step, audio(gen, 64, offset=float(q75 - q25)))
    assert by_step(tracker.collect())[20][EFFECT] == pytest.approx(1.0, abs=0.1)


def test_the_ring_keeps_the_most_recent_means() -> None:
    tracker = RunawayTracker(problems=Problems(), ring=100, every=1)
    values = torch.arange(5 * 64, dtype=torch.float32)
    for step in range(5):
        tracker.observe(step, values[step * 64 : (step + 1) * 64])
        if step == 2:
            tracker.collect()
    rows = by_step(tracker.collect())
    np.testing.assert_array_equal(tracker.window(), np.arange(220, 320))
    assert rows[4][GEN_MEAN] == pytest.approx(np.arange(220, 320).mean())
    tracker.observe(5, torch.arange(1000, 1250, dtype=torch.float64))  # one batch > ring
    tracker.collect()
    np.testing.assert_array_equal(tracker.window(), np.arange(1150, 1250))


def test_pending_is_bounded_oldest_dropped_and_counted() -> None:
    problems = Problems()
    tracker = RunawayTracker(problems=problems, ring=1000, every=10, max_pending=128, chunk=16)
    feed(tracker, range(200))  # the flush thread is stalled: nothing collected
    dropped = problems.count("runaway_pending_full")
    assert 200 - 128 <= dropped < 200 - 128 + 16
    rows = by_step(tracker.collect())
    kept = sorted(set(tracker.window()))
    assert kept == list(range(dropped, 200))
    assert sorted(rows) == [s for s in range(0, 200, 10) if s >= dropped]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (range(36), [0, 10, 20, 30]),
        (range(1, 36), [1, 10, 20, 30]),
        (range(0, 36, 3), [0, 12, 21, 30]),  # first observed step of each window of 10
    ],
)
def test_rows_come_at_the_first_observed_step_of_each_window(
    steps: range, expected: list[int]
) -> None:
    gen = torch.Generator().manual_seed(2)
    real = audio(gen, 512)
    batches = [audio(gen, 64) for _ in steps]
    results = []
    for collect_at in (None, steps[len(steps) // 2], steps[1]):  # flush timing must not matter
        tracker = RunawayTracker(problems=Problems(), every=10)
        tracker.reference(real)
        rows: dict[int, dict[str, float]] = {}
        for step, batch in zip(steps, batches, strict=True):
            tracker.observe(step, batch)
            if step == collect_at:
                rows.update(by_step(tracker.collect()))
        rows.update(by_step(tracker.collect()))
        assert sorted(rows) == expected
        assert all(sorted(keys) == sorted(ALL_KEYS) for keys in rows.values())
        results.append(rows)
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int16])
def test_observe_accepts_low_precision_and_integer_cpu_tensors(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    batch = (audio(gen, 64) * 100).to(dtype)
    tracker = RunawayTracker(problems=Problems(), every=1)
    tracker.observe(0, batch)
    assert by_step(tracker.collect())[0][GEN_MEAN] == pytest.approx(batch.double().mean().item())
    want = batch.double().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(tracker.window(), want, rtol=1e-6, atol=1e-4)


def test_a_nan_sample_makes_the_distance_nan_until_it_leaves_the_ring() -> None:
    gen = torch.Generator().manual_seed(4)
    tracker = RunawayTracker(problems=Problems(), ring=128, every=1)
    tracker.reference(audio(gen, 1024))
    broken = audio(gen, 64)
    broken[5, 0, 17] = math.nan
    tracker.observe(0, broken)
    nan_rows = by_step(tracker.collect())[0]
    assert math.isnan(nan_rows[DISTANCE])
    assert math.isnan(nan_rows[EFFECT]) and math.isnan(nan_rows[GEN_MEAN])
    assert math.isfinite(nan_rows[CRITICAL])
    for step in (1, 2):  # 128 clean means push the NaN out
        tracker.observe(step, audio(gen, 64))
    later = by_step(tracker.collect())
    assert math.isnan(later[1][DISTANCE]) and math.isfinite(later[2][DISTANCE])
    spiky = audio(gen, 64)
    spiky[0] = math.inf
    tracker.observe(3, spiky)
    inf_rows = by_step(tracker.collect())[3]
    assert math.isfinite(inf_rows[DISTANCE]) and inf_rows[GEN_MEAN] == math.inf


def test_without_a_reference_only_gen_mean_is_stored_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gen = torch.Generator().manual_seed(5)
    problems = Problems()
    tracker = RunawayTracker(problems=problems)
    with caplog.at_level(logging.WARNING, logger="trainlight"):
        for step in range(25):
            tracker.observe(step, audio(gen, 64))
            if step % 7 == 0:
                tracker.collect()
        tracker.collect()
        tracker.reference(audio(gen, 512))
        tracker.observe(30, audio(gen, 64))
        after = by_step(tracker.collect())
    warnings = [r for r in caplog.records if "mon.reference()" in r.getMessage()]
    assert len(warnings) == 1
    assert problems.count("runaway_no_reference") == 3  # steps 0, 10, 20
    assert sorted(after[30]) == sorted(ALL_KEYS)


def test_rows_round_trip_through_a_segment() -> None:
    gen = torch.Generator().manual_seed(6)
    tracker = RunawayTracker(problems=Problems(), every=5)
    tracker.reference(audio(gen, 512))
    before = time.time()
    for step in range(12):
        batch = audio(gen, 64)
        if step == 10:
            batch[0] = math.nan
        tracker.observe(step, batch)
    columns = tracker.collect()
    assert columns is not None
    header = RunHeader(run_id="runaway-test", seq=0, name="runaway")
    scalars = ScalarColumns(step=[3], key=["loss"], value=[0.5], wall_time=[before])
    # step 0 also carries the 257 reference quantiles and 33 generated ones
    assert build_segment([scalars.arrow(), columns], header).num_rows == 1 + 3 * 4 + 257 + 33
    rows = pq.read_table(io.BytesIO(encode_segment([columns], header))).to_pylist()
    assert [(r["table"], r["step"], r["key"]) for r in rows if r["key"] in ALL_KEYS] == [
        ("metrics", s, k) for s in (0, 5, 10) for k in ALL_KEYS
    ]
    for row, value, micros in zip(rows, columns["value"], columns["wall_time"], strict=True):
        assert row["value"] == value or (math.isnan(row["value"]) and math.isnan(value))
        assert row["wall_time"] == EPOCH + timedelta(microseconds=micros)  # naive UTC, exact
        assert before - 1e-3 <= micros / 1e6 <= time.time()


def test_failures_are_counted_never_raised() -> None:
    problems = Problems()
    tracker = RunawayTracker(problems=problems, every=1)
    tracker.observe(0, torch.tensor(1.0))  # no batch dim
    tracker.observe(1, "not a tensor")  # type: ignore[arg-type]
    tracker.observe(2, torch.zeros(3, 2, dtype=torch.complex64))
    tracker.reference(torch.full((8, 3), math.nan))  # nothing finite to compare with
    assert problems.count("runaway_observe:ValueError") == 1
    assert problems.count("runaway_observe:AttributeError") == 1
    assert problems.count("runaway_observe:TypeError") == 1
    assert problems.count("runaway_reference:ValueError") == 1
    assert tracker.collect() is None
    real = torch.randn(64, 3, generator=torch.Generator().manual_seed(7))
    real[0, 0] = math.inf
    tracker.reference(real)  # the non-finite sample is left out, and said so
    assert problems.count("runaway_reference_nonfinite") == 1
    tracker.observe(3, torch.randn(64, 3))
    assert sorted(by_step(tracker.collect())[3]) == sorted(ALL_KEYS)


def test_constructor_refuses_bad_settings() -> None:
    for bad in ({"ring": 0}, {"every": 0}, {"quantiles": 1}, {"max_pending": 4, "chunk": 8}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunawayTracker(problems=Problems(), **bad)


def test_observe_and_collect_on_two_threads_lose_no_window() -> None:
    tracker = RunawayTracker(problems=Problems(), ring=4, every=10)  # ring = one step's batch
    collected: dict[int, dict[str, float]] = {}
    done = threading.Event()

    def flush() -> None:
        cols = tracker.collect()
        if cols is not None:  # None: no window started since the last collect
            collected.update(by_step(cols))

    def flusher() -> None:
        while not done.wait(0.0005):
            flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    feed(tracker, range(2000))
    done.set()
    thread.join()
    flush()
    assert sorted(collected) == list(range(0, 2000, 10))
    assert all(rows[GEN_MEAN] == step for step, rows in collected.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_observe_does_not_synchronise_the_device() -> None:
    gen = torch.Generator().manual_seed(8)
    tracker = RunawayTracker(problems=Problems(), every=1, chunk=4)
    tracker.reference(audio(gen, 512).cuda())
    batches = [audio(gen, 64).cuda().half() for _ in range(10)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, batch in enumerate(batches):
            tracker.observe(step, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not [kind for kind in tracker.problems.snapshot() if kind.startswith("runaway_obs")]
    assert sorted(by_step(tracker.collect())) == list(range(10))


def test_reference_quantiles_are_written_once_per_reference() -> None:
    gen = torch.Generator().manual_seed(9)
    real, other = audio(gen, 2048), audio(gen, 100, offset=3.0)
    tracker = RunawayTracker(problems=Problems(), every=1)
    tracker.reference(real)
    for step in range(3):
        tracker.observe(step, audio(gen, 64))
    first = quantile_rows(tracker.collect(), REF_QUANTILES)
    tracker.reference(other)  # a smaller sample than the summary: kept whole
    tracker.observe(3, audio(gen, 64))
    tracker.observe(4, audio(gen, 64))
    second = quantile_rows(tracker.collect(), REF_QUANTILES)
    assert sorted(first) == [0] and sorted(second) == [3]
    naive = np.quantile(per_sample_means(real).double().numpy(), np.linspace(0, 1, 257))
    np.testing.assert_allclose(first[0], naive, rtol=1e-12)
    np.testing.assert_array_equal(second[3], np.sort(per_sample_means(other).double().numpy()))


def test_generated_quantiles_every_nth_reading_over_the_finite_window() -> None:
    tracker = RunawayTracker(problems=Problems(), ring=400, every=2, gen_quantiles_every=3)
    written: dict[int, np.ndarray] = {}
    for step in range(20):  # readings at steps 0, 2, ..., 18; quantiles at 0, 6, 12, 18
        batch = torch.arange(40, dtype=torch.float64) * (step + 1)  # > 33 means from step 0
        if step == 12:
            batch[0] = math.nan
            batch[1] = math.inf
        tracker.observe(step, batch)
        columns = tracker.collect()
        if columns is not None and step in (0, 6, 12, 18):
            window = tracker.window()
            written[step] = np.quantile(window[np.isfinite(window)], np.linspace(0, 1, 33))
        if columns is not None:
            got = quantile_rows(columns, GEN_QUANTILES)
            assert sorted(got) == ([step] if step in written else [])
            if got:
                np.testing.assert_allclose(got[step], written[step], rtol=1e-12)
                assert len(got[step]) == 33 and all(math.isfinite(v) for v in got[step])
    assert sorted(written) == [0, 6, 12, 18]


def test_quantile_settings_are_checked() -> None:
    for bad in ({"gen_quantiles": 1}, {"gen_quantiles_every": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunawayTracker(problems=Problems(), **bad)
