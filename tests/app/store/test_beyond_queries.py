"""Replicas, PD, repro verdicts, landscape slices and variance histograms, read back from a real
store filled through the collectors' encoder and the real ingest path."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from flask import Flask

from tests.support.segments import metrics_segment
from trainlight.app.cache import create_cache
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.beyond import load_beyond
from trainlight.app.store.read.landscape import landscape_slices
from trainlight.app.store.read.layer_sizing import BINS, variance_histograms
from trainlight.app.store.read.replicas import latest_differences, replica_differences, thin
from trainlight.app.store.read.repro import evaluate_repro
from trainlight.app.store.read.surfaces import cached_surface
from trainlight.collectors.health.prediction_difference import pair_difference, relative_pd
from trainlight.collectors.health.rules.repro import DEFAULT_BUDGET
from trainlight.collectors.schema import RunHeader, StoreLayout, write_atomically
from trainlight.collectors.writer import encode_segment

Row = tuple[int, str, str, np.ndarray]  # step, key, layer, matrix


@pytest.fixture
def store(tmp_path: os.PathLike[str]) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(os.path.join(tmp_path, "store")))
    yield opened
    opened.close()


def deliver(store: Store, run_id: str, seq: int, rows: Sequence[Row], **header: object) -> None:
    """An `arrays` segment of `rows`, encoded by the collectors' writer, dropped in the inbox."""
    part = {
        "table": ["arrays"] * len(rows),
        "step": [r[0] for r in rows],
        "key": [r[1] for r in rows],
        "layer": [r[2] or None for r in rows],
        "n_rows": [r[3].shape[0] for r in rows],
        "n_cols": [r[3].shape[1] for r in rows],
        "values": [r[3].astype(np.float32).reshape(-1) for r in rows],
    }
    now = time.time()
    run = RunHeader(run_id=run_id, seq=seq, name=run_id, sent_at=now, started_at=now, **header)  # type: ignore[arg-type]
    store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
    write_atomically(store.layout.segment_path(run_id, seq), encode_segment([part], run))


def probs(seed: int, n: int = 64, classes: int = 3, noise: float = 0.0) -> np.ndarray:
    base = np.random.default_rng(0).random((n, classes)) + 0.1
    jitter = np.random.default_rng(seed).random((n, classes)) * noise
    p = base + jitter
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_replicas_are_matched_by_group_and_step(store: Store) -> None:
    a = {s: probs(1, noise=0.5) for s in (0, 10, 20)}
    b = {s: probs(2, noise=0.5) for s in (10, 20, 30)}
    deliver(store, "a", 0, [(s, "predictions", "", m) for s, m in a.items()], group="g")
    deliver(store, "b", 0, [(s, "predictions", "", m) for s, m in b.items()], group="g")
    deliver(store, "c", 0, [(10, "predictions", "", probs(3))], group="other")
    deliver(store, "d", 0, [(10, "predictions", "", probs(4, n=32))], group="g")  # other probe
    deliver(store, "e", 0, [], group="g")  # a replica without predictions
    Ingester(store).ingest_pending()
    with store.read() as cur:
        series = replica_differences(cur, "a")
        latest = latest_differences(cur, "a")
        lonely = replica_differences(cur, "c")
    assert [s.mate.run_id for s in series] == ["b"]  # d's probe differs at every step
    assert series[0].steps == (10, 20)
    for step, got in zip(series[0].steps, series[0].differences, strict=True):
        assert got == pair_difference(a[step], b[step])  # no labels: on the top class
        assert 0 < got.relative.low <= got.relative.value <= got.relative.high
        assert not got.on_labels
    reading = latest["b"]
    assert (reading.step, reading.previous) == (20, 10)
    assert reading.difference == pair_difference(a[20], b[20])
    assert reading.movement == 0.0  # the same matrices at both steps
    assert series[0].latest == reading
    assert lonely == ()


def test_labels_recorded_by_either_run_are_used(store: Store) -> None:
    labels = np.random.default_rng(5).integers(0, 3, 64)
    column = labels.astype(np.float32)[:, None]
    a, b = probs(1, noise=0.5), probs(2, noise=0.5)
    rows_a = [(0, "predictions", "", a), (0, "predictions/labels", "", column)]
    deliver(store, "a", 0, rows_a, group="g")
    deliver(store, "b", 0, [(0, "predictions", "", b)], group="g")
    Ingester(store).ingest_pending()
    with store.read() as cur:
        from_a = latest_differences(cur, "a")["b"].difference
        from_b = latest_differences(cur, "b")["a"].difference
    assert from_a == from_b == pair_difference(a, b, labels)
    assert from_a.on_labels and from_a != pair_difference(a, b)


def test_movement_is_the_larger_own_change_since_the_previous_matched_step(store: Store) -> None:
    a = {0: probs(1, noise=0.5), 7: probs(2, noise=0.5), 10: probs(3, noise=0.5)}
    b = {0: probs(4, noise=0.5), 10: probs(5, noise=0.5)}  # no step 7: 0 is the previous
    deliver(store, "a", 0, [(s, "predictions", "", m) for s, m in a.items()], group="g")
    deliver(store, "b", 0, [(s, "predictions", "", m) for s, m in b.items()], group="g")
    Ingester(store).ingest_pending()
    with store.read() as cur:
        reading = latest_differences(cur, "a")["b"]
    assert (reading.previous, reading.step) == (0, 10)
    own = [relative_pd(a[0], a[10]), relative_pd(b[0], b[10])]
    assert reading.movement == pytest.approx(max(own)) and min(own) > 0


def two_steps(matrix: np.ndarray) -> list[Row]:
    return [(0, "predictions", "", matrix), (5, "predictions", "", matrix)]


def test_repro_verdicts_cover_the_group(store: Store) -> None:
    same = probs(1)
    deliver(store, "a", 0, two_steps(same), group="g")
    deliver(store, "b", 0, two_steps(same), group="g")
    deliver(store, "far", 0, two_steps(probs(9, noise=5.0)), group="h")
    deliver(store, "far2", 0, two_steps(probs(0)), group="h")
    deliver(store, "x", 0, two_steps(probs(1)), group="")
    deliver(store, "once", 0, [(5, "predictions", "", same)], group="i")
    deliver(store, "once2", 0, [(5, "predictions", "", same)], group="i")
    Ingester(store).ingest_pending()
    with store.read() as cur:
        verdicts = dict(evaluate_repro(cur, ["a", "far", "x", "once"]))
    assert sorted(verdicts) == ["a", "b", "far", "far2", "once", "once2", "x"]
    assert verdicts["a"].state == verdicts["b"].state == "green"
    assert verdicts["a"].step == 5
    assert verdicts["far"].state == verdicts["far2"].state == "red"
    assert verdicts["x"].state == "grey"
    assert verdicts["once"].state == "amber"  # one matched step: settled or not, unknown


def test_repro_budget_comes_from_the_runs_settings(store: Store) -> None:
    deliver(store, "a", 0, two_steps(probs(0)), group="g", health={"repro_budget": 5})
    deliver(store, "b", 0, two_steps(probs(9, noise=5.0)), group="g")
    Ingester(store).ingest_pending()
    with store.read() as cur:
        verdicts = dict(evaluate_repro(cur, ["a"]))
    assert verdicts["a"].state == "green"  # relative PD ≤ 2 < 5
    assert verdicts["b"].state == "red"  # the default budget


def test_landscape_slices_rebuild_the_alpha_axis(store: Store) -> None:
    losses = {s: np.linspace(1.0, 2.0, 5)[None, :] + s for s in (0, 4, 8)}
    losses[8][0, 1] = math.nan
    deliver(store, "r", 0, [(s, "landscape/slice", "", m) for s, m in losses.items()])
    described = [(0, "landscape/span", 0.5), (0, "landscape/points", 5.0)]
    sharp = [(s, "landscape/sharpness", float(s) / 2) for s in losses]
    store.layout.run_inbox("r").mkdir(parents=True, exist_ok=True)
    write_atomically(store.layout.segment_path("r", 1), metrics_segment("r", 1, described + sharp))
    Ingester(store).ingest_pending()
    with store.read() as cur:
        got = landscape_slices(cur, "r")
        none = landscape_slices(cur, "missing")
    assert got is not None and none is None
    assert got.steps == (0, 4, 8)
    assert got.alphas == (-0.5, -0.25, 0.0, 0.25, 0.5)
    np.testing.assert_allclose(got.losses, np.vstack([losses[s] for s in (0, 4, 8)]), rtol=1e-6)
    assert math.isnan(got.losses[2, 1])
    assert got.sharpness_steps == (0, 4, 8) and got.sharpness == (0.0, 2.0, 4.0)


def test_variance_histograms_per_layer_with_near_zero_share(store: Store) -> None:
    rows: list[Row] = []
    for step in (100, 200):
        for layer, dead in (("fc1", 3), ("fc2", 0)):
            counts = np.zeros((1, BINS))
            counts[0, 0] = dead
            counts[0, 12] = 10 - dead
            rows.append((step, "act_var_hist", layer, counts))
    rows.append((300, "act_var_hist", "fc1", np.ones((1, 5))))  # foreign bin count: left out
    deliver(store, "r", 0, rows)
    Ingester(store).ingest_pending()
    with store.read() as cur:
        histograms = variance_histograms(cur, "r")
    assert [h.layer for h in histograms] == ["fc1", "fc2"]
    assert histograms[0].steps == (100, 200)
    assert histograms[0].counts.shape == (2, BINS)
    np.testing.assert_allclose(histograms[0].near_zero, [0.3, 0.3])
    np.testing.assert_allclose(histograms[1].near_zero, [0.0, 0.0])


def test_load_beyond_is_empty_for_a_plain_run(store: Store) -> None:
    write_atomically_run(store, "plain")
    Ingester(store).ingest_pending()
    with store.read() as cur:
        data = load_beyond(cur, "plain")
    assert data.replicas == () and data.slices is None and data.histograms == ()
    assert data.repro_budget == DEFAULT_BUDGET


def write_atomically_run(store: Store, run_id: str) -> None:
    store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
    payload = metrics_segment(run_id, 0, [(0, "loss", 1.0)])
    write_atomically(store.layout.segment_path(run_id, 0), payload)


def test_surface_is_read_with_nulls_and_reread_when_replaced(store: Store) -> None:
    cache = create_cache(Flask(__name__))
    path = store.layout.surface_path("r")
    assert cached_surface(cache, store.layout, "r") is None
    assert cached_surface(cache, store.layout, "bad/id") is None
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": "r",
        "checkpoint": "ck.pt",
        "points": 3,
        "span": 1.0,
        "alphas": [-1, 0, 1],
        "betas": [-1, 1],
        "losses": [[1, None, 3], [4, 5, 6]],
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    write_atomically(path, json.dumps(document).encode())
    first = cached_surface(cache, store.layout, "r")
    assert first is not None and first.losses.shape == (2, 3) and math.isnan(first.losses[0, 1])
    again = cached_surface(cache, store.layout, "r")
    assert again is not None and again.stamp == first.stamp and again.alphas == first.alphas
    document["losses"] = [[0, 0, 0], [0, 0, 0, 0]]  # malformed: wrong row length
    write_atomically(path, json.dumps(document).encode())
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    assert cached_surface(cache, store.layout, "r") is None


def test_thin_keeps_ends_and_bounds_count() -> None:
    steps = list(range(1000))
    picked = thin(steps, 50)
    assert len(picked) == 50 and picked[0] == 0 and picked[-1] == 999
    assert thin(steps[:10], 50) == steps[:10]
    assert thin(steps, 1) == [999]
