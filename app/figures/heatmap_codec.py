"""LCA heatmap frames on the wire: 8 bits per cell against the layer's colour scale.

The heatmap animation fetches one frame per tick; as exact float32 a 64×64 frame is 16 KiB
(22 KiB in base64) and 200 frames were 4.8 MB. The colour scale is symmetric at ±scale (the
99th percentile of |LCA|) and saturates beyond it, so a cell needs no more than 8 bits to be
coloured exactly as before: code q = round(v / scale · 127) in [-127, 127], shown as
q / 127 · scale (resolution scale / 127, finer than two colours can be told apart).

The one code left over, OUTLIER (-128), marks the cells the scale cannot hold: beyond ±scale
(about 1% of cells, by the choice of the 99th percentile) or non-finite (NaN, ±Inf, which are
data). Their exact float32 values travel alongside, sparse, so hovering the reddest cell still
shows its real value and a NaN says NaN. The browser decodes a payload in
`assets/lca_heatmap.js`; `decode_payload` here is the same decoding, the reference its tests
and the benchmark compare against.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainlight.app.store.read.frames import LcaFrame

LEVELS = 127  # codes -LEVELS … LEVELS span -scale … scale
OUTLIER = -128  # the cell's exact value is among the outliers
MIN_SCALE = 1e-12  # an all-zero layer still gets a (tiny) scale to draw against


@dataclass(frozen=True, eq=False)
class QuantisedFrame:
    """One frame as the browser receives it: int8 codes plus the exact values of outliers."""

    layer: str
    step: int
    scale: float  # half-width of the symmetric colour scale, > 0
    codes: npt.NDArray[np.int8]  # n_rows × n_cols, row-major
    outlier_index: npt.NDArray[np.uint32]  # flat indices of the cells coded OUTLIER
    outlier_value: npt.NDArray[np.float32]  # their exact values (NaN and ±Inf included)

    def payload(self, title: str) -> dict[str, Any]:
        """The JSON the browser decodes (see `decode_payload`); `title` heads the plot."""
        rows, cols = self.codes.shape
        return {
            "layer": self.layer,
            "step": self.step,
            "title": title,
            "scale": self.scale,
            "note": scale_note(self.scale),
            "rows": rows,
            "cols": cols,
            "codes": _b64(self.codes.astype("i1")),
            "outlier_index": _b64(self.outlier_index.astype("<u4")),
            "outlier_value": _b64(self.outlier_value.astype("<f4")),
        }


def quantise(frame: LcaFrame, scale: float) -> QuantisedFrame:
    """8-bit codes of the frame against ±scale; cells beyond it or non-finite are outliers."""
    limit = scale if scale > MIN_SCALE else MIN_SCALE
    grid = frame.grid().astype(np.float64)
    with np.errstate(invalid="ignore"):
        outlier = ~np.isfinite(grid) | (np.abs(grid) > limit)
    scaled = np.where(outlier, 0.0, grid) / limit * LEVELS
    codes = np.clip(np.rint(scaled), -LEVELS, LEVELS).astype(np.int8)
    codes[outlier] = OUTLIER
    flat = np.flatnonzero(outlier).astype(np.uint32)
    return QuantisedFrame(
        frame.layer, frame.step, limit, codes, flat, frame.values.astype(np.float32)[flat]
    )


def decode_payload(payload: dict[str, Any]) -> npt.NDArray[np.float32]:
    """The values a payload stands for: q / 127 · scale, outliers exact (the browser's view)."""
    codes = np.frombuffer(base64.b64decode(payload["codes"]), dtype="i1")
    unit = float(payload["scale"]) / LEVELS  # as the browser computes it: float64, then float32
    values: npt.NDArray[np.float32] = (codes * unit).astype(np.float32)
    index = np.frombuffer(base64.b64decode(payload["outlier_index"]), dtype="<u4")
    values[index] = np.frombuffer(base64.b64decode(payload["outlier_value"]), dtype="<f4")
    return values.reshape(payload["rows"], payload["cols"])


def scale_note(scale: float) -> str:
    """How the colours were sent, for the colour bar and hover: `±0.0031, 8-bit`."""
    return f"±{scale:.2g}, 8-bit"


def _b64(data: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(data).tobytes()).decode("ascii")
