"""Refresh planning: what a browser's copy of a figure lacks, against a naive replay."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np

from trainlight.app.figures.patching import FigurePlan, memo, plan
from trainlight.app.figures.scalars import scalar_figure
from trainlight.app.figures.style import Figure
from trainlight.app.store.read.series import CatchMarks, Series


def curve(values: list[float], nonfinite: tuple[tuple[int, float], ...] = ()) -> Series:
    v = np.asarray(values, dtype=np.float64)
    steps = np.arange(len(values), dtype=np.float64) * 10
    return Series("loss", steps, v, v - 1, v + 1, nonfinite, 10 * len(values), True)


def apply(browser: Figure, figure_plan: FigurePlan, figure: Figure) -> Figure:
    """What the browser holds after the plan: Dash's Patch semantics, replayed on lists."""
    if figure_plan.kind == "full":
        return copy.deepcopy(figure)
    out = copy.deepcopy(browser)
    for edit in figure_plan.edits:
        values = list(edit.values)
        trace = out["data"][edit.trace]
        if edit.start is None:
            trace[edit.field] = values
        else:
            trace[edit.field] = list(trace[edit.field])[: edit.start] + values
    return out


def same_data(a: Figure, b: Figure) -> bool:
    def plain(fig: Figure) -> Any:
        return json.loads(json.dumps(fig, default=lambda v: np.asarray(v).tolist()))

    return bool(plain(a) == plain(b))


def test_identical_figure_sends_nothing() -> None:
    fig = scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.5)
    assert plan(memo(fig), scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.5)).kind == "same"


def test_a_growing_curve_sends_only_its_tail() -> None:
    old = scalar_figure(curve([3.5, 2.5, 1.5]), smooth=0.6, uirevision="r")
    grown = scalar_figure(curve([3.5, 2.5, 1.25, 1.2, 1.1]), smooth=0.6, uirevision="r")
    result = plan(memo(old), grown)
    assert result.kind == "patch"
    assert {e.start for e in result.edits} == {2}  # the last bucket the browser has, onwards
    assert all(len(e.values) == 3 for e in result.edits)
    assert same_data(apply(old, result, grown), grown)
    assert result.memo == memo(grown)


def test_changed_values_replace_the_array_and_layout_changes_send_everything() -> None:
    old = scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.6, uirevision="r")
    resmoothed = scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.9, uirevision="r")
    result = plan(memo(old), resmoothed)
    assert result.kind == "patch" and [(e.field, e.start) for e in result.edits] == [("y", None)]
    assert same_data(apply(old, result, resmoothed), resmoothed)
    marked = scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.6, uirevision="r", marks=CatchMarks(1))
    assert plan(memo(old), marked).kind == "full"
    rezoomed = scalar_figure(curve([3.0, 2.0, 1.0]), smooth=0.6, uirevision="other range")
    assert plan(memo(old), rezoomed).kind == "full"
    broke = scalar_figure(curve([3.0, 2.0, 1.0], ((40, math.nan),)), smooth=0.6, uirevision="r")
    assert plan(memo(old), broke).kind == "full"  # a new trace (the NaN crosses)
    assert plan(None, old).kind == "full"


def test_random_histories_always_end_equal() -> None:
    rng = np.random.default_rng(0)
    browser: Figure | None = None
    sent: dict[str, Any] | None = None
    values: list[float] = []
    for _ in range(40):
        if rng.random() < 0.7:
            values += rng.standard_normal(int(rng.integers(1, 4))).tolist()
        elif values:
            values[-1] = float(rng.standard_normal())  # the live bucket moved
        if rng.random() < 0.1 and len(values) > 2:
            values = values[1:]  # history itself changed: never patched as a tail
        fig = scalar_figure(curve(values), smooth=float(rng.choice([0.0, 0.5])), uirevision="r")
        result = plan(sent, fig)
        browser = apply(browser or fig, result, fig)
        sent = result.memo
        assert same_data(browser, fig)
