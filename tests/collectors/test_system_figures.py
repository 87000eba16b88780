"""System figures the flush thread samples: step rate, CPU, memory (CUDA where initialised)."""

from __future__ import annotations

import time

import pytest

from trainlight.collectors.system_figures import (
    CPU_PERCENT,
    RSS_MB,
    STEPS_PER_S,
    SystemFigures,
    rss_mb,
)


def test_a_sample_is_the_rate_cpu_and_memory_since_the_last_one() -> None:
    step = {"now": 0}
    figures = SystemFigures(lambda: step["now"], every=0.05)
    assert figures.collect() is None  # the first call only starts the clock
    start = time.monotonic()
    while time.monotonic() - start < 0.1:  # busy: the CPU figure has something to count
        pass
    step["now"] = 50
    rows = figures.collect()
    assert rows is not None and rows["table"] == ["metrics"] * len(rows["key"])
    found = dict(zip(rows["key"], rows["value"], strict=True))
    assert set(found) == {STEPS_PER_S, CPU_PERCENT, RSS_MB}  # no CUDA here
    assert rows["step"] == [50] * 3
    assert 100 < found[STEPS_PER_S] < 500  # 50 steps in ~0.1 s
    assert 30 < found[CPU_PERCENT] <= 110
    assert found[RSS_MB] == pytest.approx(rss_mb(), rel=0.2) and found[RSS_MB] > 10
    assert figures.collect() is None  # not due yet


def test_nothing_before_the_first_logged_step() -> None:
    figures = SystemFigures(lambda: -1, every=0.0)
    figures.collect()
    assert figures.collect() is None
