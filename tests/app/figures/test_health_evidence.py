"""Evidence figures of `overfit`, `gradients` and `progress`: they mark what the rules found."""

from __future__ import annotations

import json

import numpy as np
from plotly.io.json import to_json_plotly

from trainlight.app.figures.gradients import gradient_figures
from trainlight.app.figures.overfit import overfit_figure
from trainlight.app.figures.progress import progress_figure
from trainlight.app.store.read.series import OverfitMark, Series, StepClock
from trainlight.collectors.health.settings import HealthSettings


def series(name: str, steps: list[float], values: list[float]) -> Series:
    x, v = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return Series(name, x, v, v, v, (), len(values), False)


def test_overfit_figure_draws_both_losses_the_best_and_where_the_rise_was_seen() -> None:
    train = series("loss", [0, 10, 20, 30], [2.0, 1.0, 0.5, 0.2])
    val = series("val_loss", [0, 10, 20, 30], [2.1, 1.2, 1.4, 1.8])
    fig = overfit_figure(train, val, [OverfitMark(best_step=10, best=1.2, seen_at=30)])
    decoded = json.loads(to_json_plotly(fig))
    assert {"loss", "val_loss", "best val_loss"} <= {t.get("name") for t in decoded["data"]}
    [best] = [t for t in decoded["data"] if t.get("name") == "best val_loss"]
    assert (best["x"], best["y"]) == ([10], [1.2])
    assert [s["x0"] for s in decoded["layout"]["shapes"]] == [30]
    assert "rising since 10" in decoded["layout"]["annotations"][0]["text"]


def test_gradient_heatmaps_mark_the_cells_the_rule_flags() -> None:
    steps = [0, 10, 20, 30, 40, 50, 60, 70]
    healthy = series("head", steps, [1.0] * 8)
    vanishing = series("0", steps, [1.0] * 5 + [1e-6] * 3)  # from step 50 on
    exploding = series("1", steps, [1.0] * 6 + [500.0] * 2)  # from step 60 on
    counts = [series(s.name, steps, [100.0] * 8) for s in (healthy, vanishing, exploding)]
    ratios = [series("head", steps, [1e-3] * 7 + [0.5])]  # moves half its weights at step 70
    norms, moves = gradient_figures(
        [healthy, vanishing, exploding], ratios, counts, HealthSettings(), "r"
    )
    assert moves is not None
    heat = json.loads(to_json_plotly(norms))["data"]
    assert heat[0]["type"] == "heatmap" and heat[0]["y"] == ["head", "0", "1"]
    assert heat[0]["z"][0][0] == 0.0  # log10 of 1
    [marks] = [t for t in heat if t.get("name") == "out of range"]
    flagged = set(zip(marks["x"], marks["y"], strict=True))
    assert {(50, "0"), (60, "1"), (70, "1")} <= flagged
    assert all(layer != "head" for _, layer in flagged)  # the healthy layer is never marked
    [moved] = [t for t in json.loads(to_json_plotly(moves))["data"] if t.get("name")]
    assert list(zip(moved["x"], moved["y"], strict=True)) == [(70, "head")]


def test_progress_figure_draws_the_rate_and_marks_stalls_and_slowdowns() -> None:
    clock = StepClock((10.0, 20.0, 30.0), (50.0, 48.0, 10.0), ((30, 720.0),), ((20, 3.1),))
    decoded = json.loads(to_json_plotly(progress_figure(clock)))
    assert decoded["data"][0]["y"] == [50, 48, 10]
    labels = [a["text"] for a in decoded["layout"]["annotations"]]
    assert labels == ["stalled 12.0 min", "3.1x slower"]
    assert [s["x0"] for s in decoded["layout"]["shapes"]] == [30, 20]
