"""Figures of the run page's replicas / landscape / layer-sizing panels, as plain dicts."""

from __future__ import annotations

import math

import numpy as np
from plotly.io.json import to_json_plotly

from trainlight.app.components.beyond import beyond_sections
from trainlight.app.figures.landscape import sharpness_figure, slice_animation, surface_contour
from trainlight.app.figures.layer_sizing import near_zero_note, variance_heatmap
from trainlight.app.figures.repro import pd_figure
from trainlight.app.store.beyond import BeyondData
from trainlight.app.store.landscape import LandscapeSlices
from trainlight.app.store.layer_sizing import BINS, LayerHistogram, bin_centres
from trainlight.app.store.replicas import Mate, ReplicaSeries
from trainlight.app.store.surfaces import StoredSurface
from trainlight.collectors.health.prediction_difference import PairDifference


def series(name: str, pds: list[float]) -> ReplicaSeries:
    diffs = tuple(PairDifference(p, p - 0.01, p + 0.01, p / 2, 100) for p in pds)
    return ReplicaSeries(Mate(f"id-{name}", name), tuple(range(0, 10 * len(pds), 10)), diffs)


def slices(n: int = 4) -> LandscapeSlices:
    alphas = (-1.0, -0.5, 0.0, 0.5, 1.0)
    losses = np.array([[2.0, 1.5, 1.0 + 0.1 * i, 1.5, 2.0] for i in range(n)])
    losses[1, 0] = math.nan
    steps = tuple(range(0, 100 * n, 100))
    return LandscapeSlices(steps, alphas, losses, steps, tuple(float(i) for i in range(n)))


def histogram() -> LayerHistogram:
    counts = np.zeros((3, BINS))
    counts[:, 0] = [1, 2, 4]
    counts[:, 10] = [9, 8, 6]
    return LayerHistogram("fc1", (10, 20, 30), counts)


def test_pd_figure_has_a_band_line_and_disagreement_per_mate() -> None:
    fig = pd_figure([series("b", [0.2, 0.1]), series("c", [0.3, 0.25])], 0.1, "u")
    traces = fig["data"]
    assert len(traces) == 8
    high, low, line, disagree = traces[:4]
    assert low["fill"] == "tonexty" and high["line"]["width"] == 0
    np.testing.assert_allclose(high["y"], [0.21, 0.11], rtol=1e-6)
    np.testing.assert_allclose(low["y"], [0.19, 0.09], rtol=1e-6)
    np.testing.assert_allclose(line["y"], [0.2, 0.1], rtol=1e-6)
    assert disagree["yaxis"] == "y2"
    np.testing.assert_allclose(disagree["y"], [0.1, 0.05], rtol=1e-6)
    assert fig["layout"]["shapes"][0]["y0"] == 0.1  # the budget line
    assert traces[4]["line"]["color"] != high["line"]["color"]  # one colour per mate


def test_slice_animation_has_a_frame_per_step_a_player_and_a_slider() -> None:
    fig = slice_animation(slices(4), "u")
    assert [f["name"] for f in fig["frames"]] == ["0", "100", "200", "300"]
    np.testing.assert_allclose(fig["data"][0]["y"], [2.0, 1.5, 1.3, 1.5, 2.0], rtol=1e-6)
    slider = fig["layout"]["sliders"][0]
    assert [s["args"][0] for s in slider["steps"]] == [["0"], ["100"], ["200"], ["300"]]
    assert slider["active"] == 3
    labels = [b["label"] for b in fig["layout"]["updatemenus"][0]["buttons"]]
    assert labels == ["▶ play", "❚❚ pause"]
    low, high = fig["layout"]["yaxis"]["range"]  # fixed over frames, NaN ignored
    assert low < 1.0 and high > 2.0
    assert math.isnan(fig["frames"][1]["data"][0]["y"][0])
    to_json_plotly(fig)  # serialisable as Dash sends it


def test_sharpness_and_contour() -> None:
    sharp = sharpness_figure(slices(3), "u")
    np.testing.assert_allclose(sharp["data"][0]["y"], [0.0, 1.0, 2.0])
    losses = np.array([[1.0, math.nan], [3.0, 4.0]])
    surface = StoredSurface("r", "ck.pt", "", (-1.0, 1.0), (-1.0, 1.0), losses)
    contour = surface_contour(surface, "u")["data"][0]
    assert contour["type"] == "contour"
    assert contour["z"].shape == (2, 2)
    assert '"z":[[1.0,null],[3.0,4.0]]' in to_json_plotly(surface_contour(surface, "u"))


def test_variance_heatmap_is_step_by_bin_with_the_near_zero_hint() -> None:
    fig = variance_heatmap(histogram(), "u")
    trace = fig["data"][0]
    assert trace["type"] == "heatmap"
    assert trace["z"].shape == (BINS, 3)
    np.testing.assert_array_equal(trace["z"][0], [1, 2, 4])
    assert list(trace["x"]) == [10, 20, 30]
    assert len(trace["y"]) == BINS and trace["y"][0] == bin_centres()[0] < trace["y"][1]
    assert near_zero_note(histogram()) == "40% of units near-zero variance"
    assert "40% of units near-zero variance" in fig["layout"]["title"]["text"]


def test_sections_appear_only_for_recorded_data() -> None:
    empty = BeyondData((), 0.1, None, ())
    assert beyond_sections(empty, None, "r") == []
    full = BeyondData((series("b", [0.3, 0.2]),), 0.1, slices(), (histogram(),))
    ids = [s.id for s in beyond_sections(full, None, "r")]
    assert ids == ["panel-repro", "panel-landscape", "panel-sizing"]
    repro = beyond_sections(full, None, "r")[0]
    assert "panel-red" in repro.className  # band 0.19–0.21 is above 0.1
