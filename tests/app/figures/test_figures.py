"""Figure functions: pure data in, a plain figure dict out; checked on what users rely on."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from plotly.io.json import to_json_plotly

from trainlight.app.components.panels import saved_steps
from trainlight.app.figures.lca import compare_lca_figure, lca_layers_figure
from trainlight.app.figures.scalars import overlay_figure, scalar_figure
from trainlight.app.figures.signals import (
    dead_figure,
    distribution_figure,
    runaway_figure,
)
from trainlight.app.figures.style import AMBER, GREEN, RED, Figure, compact, ema
from trainlight.app.store.read.series import CatchMarks, Series
from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.rules.dead_relu import DeadReluWindow, undead_spikes
from trainlight.collectors.health.settings import HealthSettings


def series(
    name: str,
    values: list[float],
    nonfinite: tuple[tuple[int, float], ...] = (),
    count: int = 0,
    downsampled: bool = False,
) -> Series:
    steps = np.arange(len(values), dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    return Series(name, steps, v, v - 0.5, v + 0.5, nonfinite, count or len(values), downsampled)


def names(fig: Figure) -> list[str]:
    return [t.get("name", "") for t in fig["data"]]


def trace(fig: Figure, name: str) -> dict[str, Any]:
    [found] = [t for t in fig["data"] if t.get("name") == name]
    return found


def vlines(fig: Figure) -> list[float]:
    return [s["x0"] for s in fig["layout"].get("shapes", []) if s["x0"] == s["x1"]]


def test_figures_are_plain_json_for_dash() -> None:
    fig = scalar_figure(series("loss", [1.0, 2.5]), marks=CatchMarks(1, None))
    decoded = json.loads(to_json_plotly(fig))  # what Dash sends: no plotly objects inside
    assert decoded["data"][0]["x"] == [0, 1] and decoded["data"][0]["y"] == [1.0, 2.5]
    assert "template" not in decoded["layout"]  # no 8 kB default template per plot


def test_scalar_figure_marks_plateau_and_catch_and_keeps_zoom() -> None:
    fig = scalar_figure(series("content", [3, 2, 1, 1]), marks=CatchMarks(2, 3), uirevision="r")
    assert vlines(fig) == [2, 3]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["plateau 2", "catch 3"]
    assert fig["layout"]["annotations"][1]["font"]["color"] == GREEN
    assert fig["layout"]["uirevision"] == "r"
    assert names(fig) == ["content"]  # not downsampled: no band


def test_scalar_figure_smooths_draws_band_and_marks_nonfinite() -> None:
    s = series(
        "loss", [1.0, 3.0], nonfinite=((5, math.nan), (6, math.inf)), count=10, downsampled=True
    )
    fig = scalar_figure(s, smooth=0.5)
    assert names(fig) == ["loss min", "loss min/max", "loss (raw)", "loss", "loss NaN/Inf"]
    band = trace(fig, "loss min/max")
    assert band["fill"] == "tonexty" and list(band["y"]) == [1.5, 3.5]
    assert list(trace(fig, "loss min")["y"]) == [0.5, 2.5]
    assert list(trace(fig, "loss")["y"]) == pytest.approx(ema([1.0, 3.0], 0.5))
    assert list(trace(fig, "loss (raw)")["y"]) == [1.0, 3.0]
    crosses = trace(fig, "loss NaN/Inf")
    assert list(crosses["x"]) == [5, 6] and crosses["text"] == ["NaN", "+Inf"]
    assert crosses["marker"]["symbol"] == "x" and crosses["marker"]["color"] == RED
    assert crosses["yaxis"] == "y2" and fig["layout"]["yaxis2"]["overlaying"] == "y"


def test_constant_series_gets_a_readable_range() -> None:
    flat = Series("lr", np.arange(3.0), np.full(3, 0.1), np.full(3, 0.1), np.full(3, 0.1))
    low, high = scalar_figure(flat)["layout"]["yaxis"]["range"]
    assert low < 0.1 < high and high - low == pytest.approx(0.01)
    overlaid = overlay_figure("lr", [("a", flat), ("b", flat)])["layout"]["yaxis"]["range"]
    assert overlaid == [low, high]
    assert (
        "range"
        not in overlay_figure("lr", [("a", flat), ("b", series("lr", [1.0]))])["layout"]["yaxis"]
    )


def test_ema_and_compact() -> None:
    assert list(ema([1.0, 2.0], 0.0)) == [1.0, 2.0]
    assert list(ema([4.0, 4.0, 4.0], 0.9)) == pytest.approx([4.0, 4.0, 4.0])  # debiased
    assert list(ema([0.0, 1.0], 0.5)) == pytest.approx([0.0, 1.0 * 0.5 / 0.75])
    assert compact([1.0, 2.0, 30.0]).dtype == np.int32
    assert compact([0.5, 2.0]).dtype == np.float32
    assert compact([1e300, 1.0]).dtype == np.float64  # beyond float32: kept exact
    assert compact([1e-40, 1.0]).dtype == np.float64
    kept = compact([1.0, math.nan])  # NaN never becomes an integer
    assert kept.dtype == np.float32 and math.isnan(kept[1])


def test_runaway_figure_shows_critical_value() -> None:
    fig = runaway_figure(series("d", [0.5, 0.3]), series("c", [0.1, 0.1]))
    assert names(fig) == ["KS distance", "critical (α = 0.01)"]
    assert trace(fig, "critical (α = 0.01)")["line"]["color"] == AMBER


def test_distribution_figure_draws_both_cdfs() -> None:
    ref = np.quantile(np.random.default_rng(0).standard_normal(500), np.linspace(0, 1, 257))
    gen = np.linspace(1.0, 3.0, 33)
    fig = distribution_figure(ref, gen, generated_step=1200)
    assert names(fig) == ["reference (real data)", "generated (recent)"]
    cdf = trace(fig, "generated (recent)")
    assert list(cdf["x"]) == pytest.approx(gen)
    assert cdf["y"][0] == 0 and cdf["y"][-1] == 1 and len(cdf["y"]) == 33
    assert "step 1,200" in fig["layout"]["title"]["text"]
    assert names(distribution_figure(ref, None)) == ["reference (real data)"]


@pytest.mark.parametrize("settings", [HealthSettings(), HealthSettings(undead_k=100.0)])
def test_the_rings_are_the_windows_the_rule_judged_a_spike(settings: HealthSettings) -> None:
    """One history fed to the dead_relu rule and to the figure's helper: the same spikes."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(2, 60).astype(float)
    counts[[12, 30, 31, 50]] = [40, 25, 60, 9]
    window, judged = DeadReluWindow(), []
    for step, count in enumerate(counts):
        rows = SegmentRows(layers={"undead": {"fc1": ([step], [float(count)])}}, first_step=step)
        for _ in window.update(rows, settings):
            if window.spike is not None and window.spike[3] == step:
                judged.append((step, window.spike[1]))
    assert undead_spikes(range(60), counts.tolist(), settings) == judged
    assert (12, 40.0) in judged or settings.undead_k == 100.0
    assert undead_spikes(range(4), [0, 0, 0, 90], settings) == []  # not enough history yet


def test_dead_figure_rings_spikes_and_draws_the_runs_thresholds() -> None:
    dead = [series("1", [0.1, 0.2])]
    undead = [series("1", [1, 2, 1, 2, 1, 30, 2])]
    fig = dead_figure(dead, undead)
    [spikes] = [t for t in fig["data"] if t["name"] == "1 undead spike"]
    assert list(spikes["x"]) == [5] and (spikes["xaxis"], spikes["yaxis"]) == ("x2", "y2")
    assert [s["y0"] for s in fig["layout"]["shapes"]] == [0.10, 0.50]  # defaults
    own = dead_figure(dead, undead, settings=HealthSettings(dead_amber=0.2, dead_red=0.3))
    assert [s["y0"] for s in own["layout"]["shapes"]] == [0.2, 0.3]
    assert "amber ≥ 20%" in own["layout"]["annotations"][0]["text"]
    assert fig["layout"]["xaxis"]["matches"] == "x2"  # one step axis for both plots


def test_lca_layers_figure_colours_by_sign() -> None:
    fig = lca_layers_figure({"a": -1.0, "b": 0.5}, [series("a", [-1])], [series("a", [0.6])])
    bars = fig["data"][0]
    assert bars["y"] == ["a", "b"] and bars["marker"]["color"] == [GREEN, RED]
    lines = fig["data"][1:]
    assert [(t["xaxis"], t["showlegend"]) for t in lines] == [("x2", True), ("x3", False)]
    assert lines[0]["line"]["color"] == lines[1]["line"]["color"]  # one colour per layer
    domains = [fig["layout"][f"xaxis{n}"]["domain"] for n in ("", "2", "3")]
    assert domains[0][0] == 0 and domains[2][1] == pytest.approx(1.0)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(domains))


def test_compare_figures() -> None:
    fig = overlay_figure("loss", [("a", series("loss", [1, 2])), ("b", series("loss", [2]))])
    assert names(fig) == ["a", "b"] and fig["layout"]["showlegend"] is True
    bars = compare_lca_figure([("a", {"0": -1.0}), ("b", {"0": 1.0})])
    assert names(bars) == ["a", "b"]


def test_steps_saved_are_shown_for_stopped_runs_with_a_planned_length() -> None:
    assert saved_steps("stopped", 511, {"total_steps": 900}) == "388 of 900"
    assert saved_steps("finished", 899, {"total_steps": 900}) == ""
    assert saved_steps("stopped", 511, {}) == ""
    assert saved_steps("stopped", 899, {"total_steps": 900}) == ""
    assert saved_steps("stopped", None, {"total_steps": 900}) == ""
