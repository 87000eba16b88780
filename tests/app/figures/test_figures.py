"""Figure functions: pure data in, plotly figure out; checked on the properties users rely on."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from trainlight.app.figures.lca import compare_lca_figure, heatmap_figure, lca_layers_figure
from trainlight.app.figures.scalars import overlay_figure, scalar_figure
from trainlight.app.figures.signals import dead_figure, runaway_figure, undead_spikes
from trainlight.app.figures.style import GREEN, RED, ema
from trainlight.app.store.frames import LcaFrame
from trainlight.app.store.series import CatchMarks, Series


def series(name: str, values: list[float], nonfinite: tuple = (), count: int = 0) -> Series:
    steps = tuple(float(i) for i in range(len(values)))
    v = tuple(values)
    return Series(name, steps, v, v, v, nonfinite, count or len(values))


def vlines(fig: go.Figure) -> list[float]:
    return [s.x0 for s in fig.layout.shapes if s.x0 == s.x1]


def test_scalar_figure_marks_plateau_and_catch_and_keeps_zoom() -> None:
    fig = scalar_figure(series("content", [3, 2, 1, 1]), marks=CatchMarks(2, 3), uirevision="r")
    assert vlines(fig) == [2, 3]
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["plateau 2", "catch 3"]
    assert fig.layout.uirevision == "r"
    assert [t.name for t in fig.data] == ["content"]


def test_scalar_figure_smooths_draws_band_and_marks_nonfinite() -> None:
    s = series("loss", [1.0, 3.0], nonfinite=((5, math.nan), (6, math.inf)), count=10)
    fig = scalar_figure(s, smooth=0.5)
    names = [t.name for t in fig.data]
    assert names == ["loss min/max", "loss (raw)", "loss", "loss NaN/Inf"]
    assert list(fig.data[2].y) == pytest.approx(ema([1.0, 3.0], 0.5))
    assert list(fig.data[3].x) == [5, 6] and list(fig.data[3].text) == ["NaN", "+Inf"]


def test_ema() -> None:
    assert ema([1.0, 2.0], 0.0) == [1.0, 2.0]
    assert ema([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # debiased


def test_runaway_figure_shows_critical_value() -> None:
    fig = runaway_figure(series("d", [0.5, 0.3]), series("c", [0.1, 0.1]))
    assert [t.name for t in fig.data] == ["KS distance", "critical (α = 0.01)"]


def test_undead_spikes_follow_the_rule() -> None:
    counts = [1, 2, 1, 2, 1, 30, 2, 1]
    assert undead_spikes(range(8), counts) == [(5, 30)]
    assert undead_spikes(range(4), [0, 0, 0, 90]) == []  # not enough history yet


def test_dead_figure_rings_spikes() -> None:
    dead = [series("1", [0.1, 0.2])]
    undead = [series("1", [1, 2, 1, 2, 1, 30, 2])]
    fig = dead_figure(dead, undead)
    spikes = [t for t in fig.data if t.name == "1 undead spike"]
    assert len(spikes) == 1 and list(spikes[0].x) == [5]


def test_lca_layers_figure_colours_by_sign() -> None:
    fig = lca_layers_figure({"a": -1.0, "b": 0.5}, [series("a", [-1])], [series("a", [0.6])])
    bars = fig.data[0]
    assert list(bars.y) == ["a", "b"] and list(bars.marker.color) == [GREEN, RED]


def test_heatmap_is_symmetric_green_negative() -> None:
    frame = LcaFrame("fc", 40, 2, 3, (-1.0, 0.0, 1.0, 2.0, -3.0, math.nan))
    fig = heatmap_figure(frame, 2.5, uirevision="u")
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax, heat.zmid) == (-2.5, 2.5, 0)
    assert list(heat.z[0]) == [-1.0, 0.0, 1.0] and len(heat.z) == 2
    colours = [c for _, c in heat.colorscale]
    assert colours[0] == "#1b7837" and colours[-1] == "#b2182b"  # low = green, high = red
    assert "step 40" in fig.layout.title.text and fig.layout.uirevision == "u"
    assert heatmap_figure(frame, 0.0).data[0].zmax > 0  # an all-zero layer still draws


def test_compare_figures() -> None:
    fig = overlay_figure("loss", [("a", series("loss", [1, 2])), ("b", series("loss", [2]))])
    assert [t.name for t in fig.data] == ["a", "b"]
    bars = compare_lca_figure([("a", {"0": -1.0}), ("b", {"0": 1.0})])
    assert [t.name for t in bars.data] == ["a", "b"]
