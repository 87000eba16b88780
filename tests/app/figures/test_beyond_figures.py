"""Figures of the run page's replicas / landscape / layer-sizing panels, as plain dicts."""

from __future__ import annotations

import math

import numpy as np
from plotly.io.json import to_json_plotly

from trainlight.app.components.beyond import beyond_sections
from trainlight.app.figures.landscape import sharpness_figure, slice_animation, surface_contour
from trainlight.app.figures.layer_sizing import near_zero_note, variance_heatmap
from trainlight.app.figures.repro import pd_figure
from trainlight.app.store.read.beyond import BeyondData
from trainlight.app.store.read.landscape import LandscapeSlices
from trainlight.app.store.read.layer_sizing import BINS, LayerHistogram, bin_centres
from trainlight.app.store.read.replicas import Mate, ReplicaSeries
from trainlight.app.store.read.surfaces import StoredSurface
from trainlight.collectors.health.prediction_difference import Band, PairDifference
from trainlight.collectors.health.rules.repro import ReplicaReading


def series(name: str, pds: list[float]) -> ReplicaSeries:
    def diff(p: float) -> PairDifference:
        band = Band(p, p - 0.01, p + 0.01)
        return PairDifference(Band(p / 4, 0, p / 2), band, Band(p / 2, 0, p), 100, True)

    diffs = tuple(diff(p) for p in pds)
    steps = tuple(range(0, 10 * len(pds), 10))
    latest = ReplicaReading(steps[-1], diffs[-1], steps[-2], 0.01)
    return ReplicaSeries(Mate(f"id-{name}", name), steps, diffs, latest)


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


def test_pd_figure_has_absolute_relative_and_disagreement_bands_per_mate() -> None:
    fig = pd_figure([series("b", [0.2, 0.1]), series("c", [0.3, 0.25])], 0.1, "u")
    traces = fig["data"]
    assert len(traces) == 18  # 2 mates x 3 figures x (band top, band bottom, line)
    assert [t["yaxis"] for t in traces[:9]] == ["y"] * 3 + ["y2"] * 3 + ["y3"] * 3
    high, low, line = traces[3:6]  # relative PD
    assert low["fill"] == "tonexty" and high["line"]["width"] == 0
    np.testing.assert_allclose(high["y"], [0.21, 0.11], rtol=1e-6)
    np.testing.assert_allclose(low["y"], [0.19, 0.09], rtol=1e-6)
    np.testing.assert_allclose(line["y"], [0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(traces[2]["y"], [0.05, 0.025], rtol=1e-6)  # absolute
    np.testing.assert_allclose(traces[8]["y"], [0.1, 0.05], rtol=1e-6)  # disagreement
    np.testing.assert_allclose(traces[6]["y"], [0.2, 0.1], rtol=1e-6)  # its band top
    budget = fig["layout"]["shapes"][0]
    assert budget["y0"] == 0.1 and budget["yref"] == "y2"  # on the relative panel
    titles = [fig["layout"][a]["title"]["text"] for a in ("yaxis", "yaxis2", "yaxis3")]
    assert titles == ["absolute PD", "relative PD", "top-1 disagreement"]
    assert traces[9]["line"]["color"] != high["line"]["color"]  # one colour per mate
    to_json_plotly(fig)


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
    settled = BeyondData((series("b", [0.3, 0.05]),), 0.1, None, ())
    assert "panel-green" in beyond_sections(settled, None, "r")[0].className
