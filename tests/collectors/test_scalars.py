from __future__ import annotations

import math

import pytest
import torch

from trainlight.collectors.scalars import host_scalar, records_to_columns, tensors_to_floats


def test_tensors_and_floats_become_rows_in_logged_order() -> None:
    loss = torch.tensor(0.25, requires_grad=True) * 2
    records = [
        (0, 100.0, {"loss": host_scalar(loss), "acc": 0.5}),
        (1, 101.0, {"loss": host_scalar(torch.tensor([3.0])), "acc": host_scalar(1)}),
    ]
    cols = records_to_columns(records)
    assert cols.step == [0, 0, 1, 1]
    assert cols.key == ["loss", "acc", "loss", "acc"]
    assert cols.value == [0.5, 0.5, 3.0, 1.0]
    assert cols.wall_time == [100.0, 100.0, 101.0, 101.0]
    assert not cols.skipped


def test_non_finite_values_are_kept_as_data() -> None:
    records = [(0, 0.0, {"a": math.nan, "b": host_scalar(torch.tensor(math.inf)), "c": -math.inf})]
    values = records_to_columns(records).value
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


def test_multi_element_tensors_are_skipped_with_a_reason() -> None:
    cols = records_to_columns([(0, 0.0, {"vec": torch.ones(3), "ok": 1.0})])
    assert cols.key == ["ok"]
    assert "shape (3,)" in cols.skipped["vec"]


def test_logging_detaches_so_no_graph_is_kept_alive() -> None:
    x = torch.ones(2, requires_grad=True)
    kept = host_scalar((x * 3).sum())
    assert not kept.requires_grad and kept.grad_fn is None


def test_non_numbers_are_refused() -> None:
    with pytest.raises(TypeError, match="expected a number or a 0-d tensor, got str"):
        host_scalar("0.5")


def test_half_precision_and_ints_convert_exactly() -> None:
    values = tensors_to_floats(
        [torch.tensor(1.5, dtype=torch.bfloat16), torch.tensor(7, dtype=torch.int64)]
    )
    assert values == [1.5, 7.0]
