"""What the triage grid shows for every run, read with one query per kind of data.

The grid must stay fast for 1,000+ runs, so nothing here loops over runs in SQL: runs, current
health, LCA layer lights and loss sparklines are each one statement over the whole store, joined
in Python by run id. Sparklines come from the per-run buckets ingest keeps up to date
(`store.sparklines`: mean per step bucket, at most `SPARK_POINTS` per run) and layer lights from
the layer order ingest keeps (`lca_layers`) and `latest`, so a 1M-step run costs the same as a
100-step one and no query here scans `metrics` or `layer_metrics`. NaN and ±Inf survive the
aggregation (a bucket containing one is non-finite): they are alarms.

`status` is the stored status; the grid derives `stale` at view time (`queries.display_status`)
so a cached result never shows a stale run as running for longer than the cache lives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from trainlight.app.store.ingest.sparklines import SPARK_POINTS, Sparkline, read_sparklines
from trainlight.collectors.system_figures import STEPS_PER_S

__all__ = ["SPARK_POINTS", "GridRow", "LayerLight", "SignalState", "grid_rows"]


@dataclass(frozen=True)
class SignalState:
    """A signal's current state (latest `health` row by `seq`) and why."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class LayerLight:
    """One layer's latest LCA: negative helps (loss went down), positive hurts."""

    layer: str
    lca: float | None  # None: the layer has no LCA row yet

    @property
    def state(self) -> str:
        """`helping`, `hurting` or `none`; NaN/±Inf count as hurting (they are alarms)."""
        if self.lca is None:
            return "none"
        return "helping" if self.lca < 0 else "hurting"


@dataclass(frozen=True)
class GridRow:
    run_id: str
    name: str
    project: str
    group: str
    tags: tuple[str, ...]
    status: str  # as stored: running | finished | crashed | stopped
    last_step: int | None
    updated_at: datetime | None
    stop_requested: bool
    planned_steps: int | None = None  # the declared length, if any
    steps_per_s: float | None = None  # the latest step rate the collector sampled
    health: Mapping[str, SignalState] = field(default_factory=dict)
    lca_layers: tuple[LayerLight, ...] = ()
    spark_key: str = ""
    spark: tuple[float, ...] = ()  # bucket means of `spark_key`, in step order


# The step rate is the collector's own (`system/steps_per_s`, sampled every few seconds).
_RUNS = f"""SELECT r.run_id, r.name, r.project, r."group", r.tags, r.status, r.last_step,
                  r.updated_at, r.stop_requested, r.planned_steps, l.value
           FROM runs r LEFT JOIN latest l
             ON l.run_id = r.run_id AND l.key = '{STEPS_PER_S}' AND l.layer = ''
           ORDER BY r.run_id"""

_HEALTH = """SELECT run_id, signal, arg_max(state, seq), arg_max(reason, seq)
             FROM health GROUP BY run_id, signal"""

# Each run's layers with LCA in model order (`lca_layers`, kept by ingest) with their latest
# value (`latest`): no scan of `layer_metrics`, whose `lca` rows grow with every measured step.
_LCA_LIGHTS = """SELECT o.run_id, o.layer, l.value
                 FROM lca_layers o
                 LEFT JOIN latest l ON l.run_id = o.run_id AND l.key = 'lca' AND l.layer = o.layer
                 ORDER BY o.run_id, o.ord"""


def grid_rows(cur: duckdb.DuckDBPyConnection, points: int = SPARK_POINTS) -> list[GridRow]:
    """Every run with its current health, LCA layer lights and main-loss sparkline."""
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    runs = cur.execute(_RUNS).fetchall()
    health = _health(cur)
    lights = _lca_lights(cur)
    sparks = read_sparklines(cur, points)
    return [_row(r, health, lights, sparks) for r in runs]


def _health(cur: duckdb.DuckDBPyConnection) -> dict[str, dict[str, SignalState]]:
    out: dict[str, dict[str, SignalState]] = {}
    for run_id, signal, state, reason in cur.execute(_HEALTH).fetchall():
        out.setdefault(run_id, {})[signal] = SignalState(state, reason or "")
    return out


def _lca_lights(cur: duckdb.DuckDBPyConnection) -> dict[str, list[LayerLight]]:
    out: dict[str, list[LayerLight]] = {}
    for run_id, layer, lca in cur.execute(_LCA_LIGHTS).fetchall():
        out.setdefault(run_id, []).append(LayerLight(layer, lca))
    return out


def _row(
    row: tuple[Any, ...],
    health: Mapping[str, Mapping[str, SignalState]],
    lights: Mapping[str, list[LayerLight]],
    sparks: Mapping[str, Sparkline],
) -> GridRow:
    run_id, name, project, group, tags, status, last_step, updated_at, stop_requested = row[:9]
    planned, steps_per_s = row[9:]
    spark = sparks.get(run_id, Sparkline("", ()))
    return GridRow(
        run_id=run_id,
        name=name or run_id,
        project=project or "",
        group=group or "",
        tags=tuple(tags or ()),
        status=status or "",
        last_step=last_step,
        updated_at=updated_at,
        stop_requested=bool(stop_requested),
        planned_steps=planned,
        steps_per_s=steps_per_s if steps_per_s and math.isfinite(steps_per_s) else None,
        health=dict(health.get(run_id, {})),
        lca_layers=tuple(lights.get(run_id, ())),
        spark_key=spark.key,
        spark=spark.values,
    )
