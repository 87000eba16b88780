from __future__ import annotations

import math

import pytest

from trainlight.collectors.scalars import host_scalar, records_to_columns


def test_floats_and_tensor_slots_become_rows_in_logged_order() -> None:
    records = [
        (0, 100.0, {"loss": 10, "acc": 0.5}),  # slot 10
        (1, 101.0, {"loss": 11, "acc": 1.0, "bad": None}),
    ]
    cols = records_to_columns(records, slot_base=10, slot_values=[0.25, 3.0])
    assert cols.step == [0, 0, 1, 1]
    assert cols.key == ["loss", "acc", "loss", "acc"]
    assert cols.value == [0.25, 0.5, 3.0, 1.0]
    assert cols.wall_time == [100.0, 100.0, 101.0, 101.0]
    assert cols.max_slot == 11


def test_non_finite_values_are_kept_as_data() -> None:
    cols = records_to_columns([(0, 0.0, {"a": math.nan, "b": 0, "c": -math.inf})], 0, [math.inf])
    assert math.isnan(cols.value[0]) and cols.value[1] == math.inf and cols.value[2] == -math.inf


def test_a_slot_that_was_never_read_is_left_out_and_named_not_turned_into_nan() -> None:
    records = [(0, 0.0, {"loss": 0, "acc": 0.5}), (1, 1.0, {"loss": 5})]  # slot 5: not read
    cols = records_to_columns(records, slot_base=0, slot_values=[0.25])
    assert list(zip(cols.step, cols.key, cols.value, strict=True)) == [
        (0, "loss", 0.25),
        (0, "acc", 0.5),
    ]
    assert cols.missing == [("loss", 1)]


def test_non_numbers_are_refused() -> None:
    with pytest.raises(TypeError, match="expected a number or a 0-d tensor, got str"):
        host_scalar("0.5")
    with pytest.raises(TypeError, match="got list"):
        host_scalar([1.0])


def test_numbers_convert_to_float() -> None:
    import numpy as np

    assert [host_scalar(v) for v in (1, True, np.float32(0.5), np.int64(7))] == [1.0, 1.0, 0.5, 7.0]
