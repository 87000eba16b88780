"""What a segment tells the health rules, extracted with vectorised Arrow operations.

A segment can hold 100k rows; the rules need a few series (the role losses, the runaway
distances, per-layer dead fractions), the first non-finite value and the steps spanned by data.
Filtering in Arrow keeps evaluation a small fraction of ingest time. `pending.Pending` then holds
back the rows of a step that is not complete yet, so the rules see whole steps only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

Series = tuple[list[int], list[float]]  # (steps, values) in logged order


@dataclass(frozen=True)
class NonFinite:
    step: int
    what: str  # "loss = NaN", "non-finite activations in layer 'fc1' (3)"


@dataclass(frozen=True)
class SegmentRows:
    metrics: dict[str, Series] = field(default_factory=dict)  # the requested keys only
    layers: dict[str, dict[str, Series]] = field(default_factory=dict)  # key -> layer -> series
    nonfinite: NonFinite | None = None  # the earliest in the segment
    first_step: int | None = None  # the lowest step of a metric or layer row (None: no such row)
    data_step: int | None = None  # the highest step of a metric or layer row
    last_step: int | None = None  # the highest step of any row

    @property
    def has_metrics(self) -> bool:
        return self.first_step is not None


LAYER_KEYS = ("dead_frac", "undead", "nonfinite", "lca")


def extract(table: pa.Table, metric_keys: Iterable[str]) -> SegmentRows:
    kinds = pc.cast(table["table"], pa.string())
    metrics = table.filter(pc.equal(kinds, "metrics"))
    layers = table.filter(pc.equal(kinds, "layer_metrics"))
    first_bad = _first_nonfinite_metric(metrics)
    layer_series = _layer_series(layers)
    bad_layer = _first_nonfinite_layer(layer_series.get("nonfinite", {}))
    candidates = [x for x in (first_bad, bad_layer) if x is not None]
    span = [pc.min_max(t["step"]).as_py() for t in (metrics, layers) if t.num_rows]
    return SegmentRows(
        metrics=_series_by_key(metrics, set(metric_keys)),
        layers=layer_series,
        nonfinite=min(candidates, key=lambda x: x.step) if candidates else None,
        first_step=min(s["min"] for s in span) if span else None,
        data_step=max(s["max"] for s in span) if span else None,
        last_step=pc.max(table["step"]).as_py() if table.num_rows else None,
    )


def _series_by_key(metrics: pa.Table, keys: set[str]) -> dict[str, Series]:
    if not keys or metrics.num_rows == 0:
        return {}
    key_col = pc.cast(metrics["key"], pa.string())
    wanted = metrics.filter(pc.is_in(key_col, value_set=pa.array(sorted(keys), pa.string())))
    if wanted.num_rows == 0:
        return {}
    wanted_keys = pc.cast(wanted["key"], pa.string())
    out: dict[str, Series] = {}
    for key in pc.unique(wanted_keys).to_pylist():
        rows = wanted.filter(pc.equal(wanted_keys, key))
        out[key] = (rows["step"].to_pylist(), rows["value"].to_pylist())
    return out


def _layer_series(layers: pa.Table) -> dict[str, dict[str, Series]]:
    if layers.num_rows == 0:
        return {}
    out: dict[str, dict[str, Series]] = {}
    for key, layer, step, value in zip(
        pc.cast(layers["key"], pa.string()).to_pylist(),
        pc.cast(layers["layer"], pa.string()).to_pylist(),
        layers["step"].to_pylist(),
        layers["value"].to_pylist(),
        strict=True,
    ):
        if key in LAYER_KEYS:
            steps, values = out.setdefault(key, {}).setdefault(layer, ([], []))
            steps.append(step)
            values.append(value)
    return out


def _first_nonfinite_metric(metrics: pa.Table) -> NonFinite | None:
    if metrics.num_rows == 0:
        return None
    bad = metrics.filter(pc.invert(pc.is_finite(metrics["value"])))
    if bad.num_rows == 0:
        return None
    index = pc.index(bad["step"], pc.min(bad["step"])).as_py()
    key = pc.cast(bad["key"], pa.string())[index].as_py()
    value = bad["value"][index].as_py()
    return NonFinite(int(bad["step"][index].as_py()), f"{key} = {_spell(value)}")


def _first_nonfinite_layer(series: dict[str, Series]) -> NonFinite | None:
    found: NonFinite | None = None
    for layer, (steps, values) in series.items():
        for step, count in zip(steps, values, strict=True):
            if count != 0 and (found is None or step < found.step):
                found = NonFinite(step, f"non-finite activations in layer {layer!r} ({count:g})")
    return found


def _spell(value: float) -> str:
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"
