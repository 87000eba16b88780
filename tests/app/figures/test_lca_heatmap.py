"""The LCA heatmap on the wire: 8-bit frames (`heatmap_codec`), the figure they fill, and the
browser's decoder (`assets/lca_heatmap.js`, run in Node against the Python reference)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainlight.app.figures.heatmap_codec import (
    LEVELS,
    MIN_SCALE,
    OUTLIER,
    decode_payload,
    quantise,
    scale_note,
)
from trainlight.app.figures.lca import heatmap_figure, heatmap_title
from trainlight.app.store.read.frames import LcaFrame
from trainlight.assets import ASSETS_DIR

SPECIAL = np.asarray([-1.0, 0.0, 1.0, 2.0, -3.0, math.nan, math.inf, -math.inf], dtype=np.float32)


def random_frame(seed: int = 0, side: int = 64) -> tuple[LcaFrame, float]:
    """A 64×64 frame of heavy-tailed values and its 99th-percentile scale, as the store has."""
    values = np.random.default_rng(seed).standard_t(3, side * side).astype(np.float32) * 1e-3
    return LcaFrame("conv1", 300, side, side, values), float(np.quantile(np.abs(values), 0.99))


def test_cells_within_the_scale_come_back_within_half_a_level() -> None:
    frame, scale = random_frame()
    quantised = quantise(frame, scale)
    payload = quantised.payload(heatmap_title("conv1", 300))
    shown, exact = decode_payload(payload), frame.grid()
    inside = np.abs(exact) <= scale
    assert inside.mean() == pytest.approx(0.99, abs=0.005)
    assert np.abs(shown[inside] - exact[inside]).max() <= scale / (2 * LEVELS) * (1 + 1e-5)
    codes = quantised.codes
    assert codes[inside].min() >= -LEVELS and codes[inside].max() <= LEVELS
    assert (codes[~inside] == OUTLIER).all()
    assert np.array_equal(shown[~inside], exact[~inside])  # beyond the scale: exact float32
    assert (payload["rows"], payload["cols"], payload["step"]) == (64, 64, 300)
    assert payload["title"] == "conv1 — step 300" and payload["note"] == scale_note(scale)


def test_outliers_keep_their_exact_value_and_non_finite_stays_non_finite() -> None:
    frame = LcaFrame("fc", 40, 2, 4, SPECIAL)
    quantised = quantise(frame, 2.5)
    assert quantised.codes.ravel().tolist() == [-51, 0, 51, 102, OUTLIER, OUTLIER, OUTLIER, OUTLIER]
    assert quantised.outlier_index.tolist() == [4, 5, 6, 7]
    shown = decode_payload(quantised.payload("t")).ravel()
    assert shown[:4] == pytest.approx([-1.0, 0.0, 1.0, 2.0], abs=2.5 / LEVELS / 2)
    assert shown[4] == -3.0 and math.isnan(shown[5])
    assert shown[6] == math.inf and shown[7] == -math.inf


def test_an_all_zero_layer_still_gets_a_scale_to_draw_against() -> None:
    frame = LcaFrame("fc", 0, 2, 2, np.zeros(4, dtype=np.float32))
    quantised = quantise(frame, 0.0)
    assert quantised.scale == MIN_SCALE and not quantised.codes.any()
    assert not decode_payload(quantised.payload("t")).any()


def test_a_64x64_frame_is_a_third_of_its_float32_size() -> None:
    frame, scale = random_frame(1)
    sent = len(json.dumps(quantise(frame, scale).payload(heatmap_title("conv1", 300))))
    float32_base64 = 4 * 64 * 64 * 4 / 3
    assert sent < 7_500 < float32_base64 / 2.9  # 4 KiB of codes + ~1% outliers, in base64


def test_heatmap_figure_is_symmetric_green_negative_and_hovers_the_text() -> None:
    fig = heatmap_figure("fc", uirevision="u")
    heat = fig["data"][0]
    assert (heat["zmin"], heat["zmax"], heat["zmid"]) == (-1.0, 1.0, 0)
    colours = [c for _, c in heat["colorscale"]]
    assert colours[0] == "#1b7837" and colours[-1] == "#b2182b"  # low = green, high = red
    assert "%{text}" in heat["hovertemplate"] and "%{meta[0]}" in heat["hovertemplate"]
    assert heat["colorbar"]["title"]["text"] == "LCA<br>%{meta[0]}"  # ±scale, 8-bit
    assert heat["hoverongaps"] is True  # a NaN cell still says NaN
    layout = fig["layout"]
    assert layout["title"]["text"] == "fc" and layout["uirevision"] == "u"
    assert layout["plot_bgcolor"] != "#ffffff"  # gaps (non-finite) must not read as zero
    compact = heatmap_figure("fc", compact_view=True)
    assert compact["layout"]["height"] < layout["height"]
    assert compact["layout"]["xaxis"]["title"]["text"] == ""


NODE_DECODE = """
const fs = require("fs");
global.window = {};
eval(fs.readFileSync(process.argv[1], "utf8"));
const lca = window.dash_clientside.trainlight_lca;
window.dash_clientside.no_update = "NO_UPDATE";
const payloads = JSON.parse(fs.readFileSync(0, "utf8"));
const template = {data: [{type: "heatmap", z: []}], layout: {title: {text: "x", x: 0.01}}};
const figs = lca.figures(payloads, [{layer: "fc"}, {layer: "gone"}], [template, template]);
const trace = figs[0].data[0];
console.log(JSON.stringify({
  z: trace.z.map(row => Array.from(row, v => Number.isNaN(v) ? "NaN" : v)),
  text: trace.text, zmin: trace.zmin, zmax: trace.zmax, meta: trace.meta,
  title: figs[0].layout.title, other: figs[1],
  next: [lca.nextIndex(1, 2, [0, 1, 2]), lca.nextIndex(1, null, [0, 1]), lca.nextIndex(1, 0, [])],
}));
"""


def run_node_decoder(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (the browser test covers the decoder too)")
    script = str(Path(ASSETS_DIR) / "lca_heatmap.js")
    done = subprocess.run(
        [node, "-e", NODE_DECODE, script],
        input=json.dumps(payloads),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_browser_decoder_shows_what_the_python_reference_decodes() -> None:
    frame = LcaFrame("fc", 40, 2, 4, SPECIAL)
    payload = quantise(frame, 2.5).payload(heatmap_title("fc", 40))
    got = run_node_decoder([payload])
    reference = decode_payload(payload)
    finite = np.isfinite(reference)
    z = np.asarray([[math.nan if v == "NaN" else v for v in row] for row in got["z"]])
    assert np.array_equal(z[finite], reference[finite])  # the same float64 → float32 steps
    assert np.isnan(z[~finite]).all()  # non-finite cells are gaps, never a colour of the scale
    assert got["text"] == [
        ["≈ -1", "≈ 0", "≈ 1", "≈ 2.01"],  # 3 digits of q / 127 · 2.5
        ["-3 (beyond ±2.5)", "NaN", "+Inf", "−Inf"],
    ]
    assert (got["zmin"], got["zmax"], got["meta"]) == (-2.5, 2.5, ["±2.5, 8-bit"])
    assert got["title"] == {"text": "fc — step 40", "x": 0.01}
    assert got["other"] == "NO_UPDATE"  # a graph whose layer got no frame is left alone
    assert got["next"] == [0, 0, 0]


def test_the_browser_decoder_agrees_on_a_full_frame() -> None:
    frame, scale = random_frame(2)
    payload = quantise(frame, scale).payload("t")
    payload["layer"] = "fc"
    got = np.asarray(run_node_decoder([payload])["z"], dtype=np.float64)
    assert np.array_equal(got, decode_payload(payload))
