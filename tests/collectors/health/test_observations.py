"""`extract` against a naive row-by-row reference, on random segments shaped like hostile ones
too: several chunks, dictionaries that repeat a name, plain string columns, null values."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.observations import (
    LAYER_KEYS,
    NonFinite,
    SegmentRows,
    Series,
    extract,
)

KEYS = {"loss", "runaway/distance"}


def reference(table: pa.Table, keys: set[str]) -> SegmentRows:
    """One Python loop over the rows: what `extract` must return."""
    metrics: dict[str, Series] = {}
    layers: dict[str, dict[str, Series]] = {}
    bad: list[NonFinite] = []
    data_steps: list[int] = []
    rows = table.to_pylist()
    for row in rows:
        kind, step, key, value = row["table"], row["step"], row["key"], row["value"]
        if kind == "metrics":
            data_steps.append(step)
            if key in keys:
                metrics.setdefault(key, ([], []))[0].append(step)
                metrics[key][1].append(value)
            if value is not None and not math.isfinite(value):
                spelled = "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
                bad.append(NonFinite(step, f"{key} = {spelled}"))
        elif kind == "layer_metrics":
            data_steps.append(step)
            if key in LAYER_KEYS and row["layer"] is not None:
                series = layers.setdefault(key, {}).setdefault(row["layer"], ([], []))
                series[0].append(step)
                series[1].append(value)
    for layer, (steps, values) in layers.get("nonfinite", {}).items():
        for step, count in zip(steps, values, strict=True):
            if count != 0:
                what = f"non-finite activations in layer {layer!r} ({count:g})"
                bad.append(NonFinite(step, what))
    return SegmentRows(
        metrics=metrics,
        layers=layers,
        nonfinite=min(bad, key=lambda b: b.step) if bad else None,  # first of the earliest
        first_step=min(data_steps) if data_steps else None,
        data_step=max(data_steps) if data_steps else None,
        last_step=max((r["step"] for r in rows), default=None),
    )


def random_table(rng: np.random.Generator) -> pa.Table:
    n = int(rng.integers(0, 60))
    steps = sorted(rng.integers(0, 12, n).tolist())
    specials = [float("nan"), float("inf"), -float("inf")]
    metrics, layers = [], []
    for step in steps:
        value = float(rng.choice(specials)) if rng.random() < 0.05 else float(rng.normal())
        if rng.random() < 0.6:
            metrics.append((step, str(rng.choice(["loss", "runaway/distance", "lr"])), value))
        else:
            key = str(rng.choice([*LAYER_KEYS, "act_var"]))
            count = float(rng.integers(0, 2)) if key == "nonfinite" else value
            layers.append((step, str(rng.choice(["fc1", "fc2", "c1→relu"])), key, count))
    table = rows_table(metrics, layers)
    return table.take(pa.array(rng.permutation(table.num_rows)))  # rows in any order


def variants(table: pa.Table) -> list[pa.Table]:
    """The same rows as other writers may send them."""
    half = table.num_rows // 2
    chunked = pa.concat_tables([table.slice(0, half), table.slice(half)])
    plain = table.set_column(
        table.schema.get_field_index("key"), "key", table["key"].cast(pa.string())
    )
    return [table, chunked, plain]


@pytest.mark.parametrize("seed", range(10))
def test_a_slice_reads_like_its_rows(seed: int) -> None:
    """Arrays that start at an offset into their buffers (a slice of a larger segment)."""
    table = random_table(np.random.default_rng(100 + seed))
    part = table.slice(min(3, table.num_rows))
    assert repr(extract(part, KEYS)) == repr(reference(part, KEYS))


@pytest.mark.parametrize("seed", range(40))
def test_extract_matches_a_row_by_row_reading(seed: int) -> None:
    table = random_table(np.random.default_rng(seed))
    want = reference(table, KEYS)
    for variant in variants(table):
        assert repr(extract(variant, KEYS)) == repr(want)  # repr: NaN equals NaN, floats exact


def test_a_dictionary_repeating_a_name_and_null_values_read_as_written() -> None:
    keys = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 0, 2], pa.int32()), pa.array(["loss", "loss", "lr"])
    )
    table = rows_table([(0, "x", 0.0)] * 4)
    table = table.set_column(table.schema.get_field_index("key"), "key", keys)
    values = pa.array([1.0, None, float("nan"), 2.0], pa.float64())
    table = table.set_column(table.schema.get_field_index("value"), "value", values)
    got = extract(table, {"loss"})
    assert repr(got.metrics) == repr({"loss": ([0, 0, 0], [1.0, None, float("nan")])})
    assert got.nonfinite == NonFinite(0, "loss = NaN")  # the null is missing, not non-finite
    assert repr(got) == repr(reference(table, {"loss"}))
