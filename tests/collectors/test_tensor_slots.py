"""TensorSlots against the naive reference: `.item()` of every tensor, in the order put."""

from __future__ import annotations

import threading

import pytest
import torch

from trainlight.collectors.tensor_slots import TensorSlots


def test_values_come_back_in_slot_order_across_chunk_boundaries() -> None:
    slots = TensorSlots(chunk_size=4)
    tensors = [torch.tensor(float(i) / 3) for i in range(11)]
    firsts = [slots.put(tensors[i : i + 3]) for i in range(0, 11, 3)]
    assert firsts == [0, 3, 6, 9]
    start, values = slots.take_all()
    assert start == 0
    assert values == [t.double().item() for t in tensors]
    assert slots.take_all() == (11, [])


def test_mixed_dtypes_in_one_chunk_convert_exactly() -> None:
    slots = TensorSlots(chunk_size=3)
    tensors = [
        torch.tensor(1.5, dtype=torch.bfloat16),
        torch.tensor(2**40 + 1),  # would round if promoted to bfloat16
        torch.tensor(0.1, dtype=torch.float64),
        torch.tensor(True),
        torch.tensor(0.3, dtype=torch.float16),
    ]
    slots.put(tensors)
    _, values = slots.take_all()
    assert values == [t.double().item() for t in tensors]


def test_take_all_continues_where_the_last_take_ended() -> None:
    slots = TensorSlots(chunk_size=100)
    slots.put([torch.tensor(1.0)])
    assert slots.take_all() == (0, [1.0])
    slots.put([torch.tensor(2.0), torch.tensor(float("nan"))])
    start, values = slots.take_all()
    assert start == 1 and values[0] == 2.0 and values[1] != values[1]


def test_concurrent_puts_lose_nothing() -> None:
    slots = TensorSlots(chunk_size=16)
    taken: dict[int, float] = {}

    def producer(offset: int) -> None:
        for i in range(500):
            first = slots.put([torch.tensor(float(offset + i))])
            taken[first] = float(offset + i)

    threads = [threading.Thread(target=producer, args=(k * 10_000,)) for k in range(3)]
    for t in threads:
        t.start()
    collected: list[float] = []
    base = 0
    while any(t.is_alive() for t in threads):
        start, values = slots.take_all()
        if values:
            assert start == base
        base = start + len(values)
        collected += values
    start, values = slots.take_all()
    collected += values
    assert len(collected) == 1500
    assert collected == [taken[i] for i in range(1500)]


def test_chunk_size_is_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        TensorSlots(0)
