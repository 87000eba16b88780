"""Everything the run page shows, read in one pass over the store (and cached as one value).

The page used to ask a query per curve (~40 round trips for a five-key run); here every curve of
a table comes from one bucketed query (see `buckets.py`) and the run's small facts from a few
point lookups, so a cold page costs a handful of queries and a warm one none: the result is a
frozen value the page caches under the store's data version (`app/cache.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from trainlight.app.store.read.alerts import list_alerts
from trainlight.app.store.read.queries import RunDetail, get_run
from trainlight.app.store.read.series import (
    CatchMarks,
    HealthChange,
    Judging,
    OverfitMark,
    Series,
    SpikeMark,
    StepClock,
    StepRange,
    first_nonfinite,
    health_history,
    layer_series_of,
    layer_totals,
    marks_from,
    metric_series,
    overfit_marks,
    run_judging,
    spike_marks,
    step_clock,
)
from trainlight.collectors.health.ks import GENERATED_QUANTILES_KEY, REFERENCE_QUANTILES_KEY
from trainlight.collectors.health.rules.overfit import val_loss_keys
from trainlight.collectors.health.rules.spike import main_loss_key
from trainlight.collectors.schema import NO_LAYER, RESERVED_PREFIXES
from trainlight.collectors.wire import (
    DEAD_FRAC,
    GRAD_NORM,
    LCA,
    LCA_HELPING,
    PARAM_COUNT,
    RUNAWAY_CRITICAL,
    RUNAWAY_DISTANCE,
    UNDEAD,
    UPDATE_RATIO,
)

MAX_SCALAR_PLOTS = 12
RUN_PAGE_ALERTS = 20  # the newest alerts about the run, on its page
RUNAWAY_KEYS = (RUNAWAY_DISTANCE, RUNAWAY_CRITICAL)
LAYER_KEYS = (DEAD_FRAC, UNDEAD, LCA, LCA_HELPING, GRAD_NORM, UPDATE_RATIO, PARAM_COUNT)
CUMULATIVE_KEYS = ("lca",)


@dataclass(frozen=True, eq=False)
class Quantiles:
    """One distribution as stored by the runaway collector: ascending values at evenly spaced
    probabilities 0..1, as written at `step`."""

    step: int
    values: npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class RunPageData:
    detail: RunDetail
    keys: tuple[str, ...]  # every scalar the user logged, sorted
    scalars: dict[str, Series]  # the plotted ones: the first MAX_SCALAR_PLOTS and the roles
    marks: CatchMarks
    history: tuple[HealthChange, ...]
    judging: Judging
    runaway: dict[str, Series]  # RUNAWAY_KEYS that have rows
    reference: Quantiles | None
    generated: Quantiles | None
    layers: dict[str, tuple[Series, ...]]  # LAYER_KEYS -> per layer; `lca` cumulative
    lca_totals: dict[str, float]  # cumulative LCA per layer over the whole run
    nonfinite: tuple[tuple[str, int, float], ...]  # first NaN/±Inf of each scalar key
    spikes: tuple[SpikeMark, ...]  # main-loss spikes the `spike` rule found
    val_loss_key: str | None  # the validation loss the `overfit` rule reads, if logged
    overfits: tuple[OverfitMark, ...]  # its rises the `overfit` rule found
    clock: StepClock  # steps/s over the run, and where `progress` found it stalled or slowed
    alerts: tuple[dict[str, Any], ...] = ()  # the alerts sent (or failing) about it, newest first

    @property
    def plotted_keys(self) -> tuple[str, ...]:
        return self.keys[:MAX_SCALAR_PLOTS]


def load_run_page(
    cur: duckdb.DuckDBPyConnection, run_id: str, span: StepRange, now: datetime
) -> RunPageData | None:
    """The run page's data for `span`, or None when the store does not know the run."""
    detail = get_run(cur, run_id, now)
    if detail is None:
        return None
    latest = _latest(cur, run_id)
    values = {key: value for key, (_, value) in latest.items()}
    keys = tuple(sorted(k for k in latest if not k.startswith(RESERVED_PREFIXES)))
    judging = run_judging(cur, run_id)
    roles = [k for k in judging.roles.values() if k in latest]
    loss = main_loss_key(judging.roles)
    val_loss = next((k for k in val_loss_keys(judging.roles) if k in latest), None)
    main = [k for k in (loss, val_loss) if k in latest]
    wanted = list(dict.fromkeys([*keys[:MAX_SCALAR_PLOTS], *roles, *main, *RUNAWAY_KEYS]))
    series = metric_series(cur, run_id, wanted, span)
    # The first NaN/±Inf of a fetched series is its first cross; only the others need a query.
    unfetched = [k for k in keys if k not in wanted]
    first_bad = [(k, *series[k].nonfinite[0]) for k in keys if k in series and series[k].nonfinite]
    first_bad += first_nonfinite(cur, run_id, unfetched, span) if unfetched else ()
    reference, generated = _quantiles(cur, run_id, span, latest)
    return RunPageData(
        detail=detail,
        keys=keys,
        scalars={k: s for k, s in series.items() if k not in RUNAWAY_KEYS},
        marks=marks_from(values),
        history=health_history(cur, run_id),
        judging=judging,
        runaway={k: series[k] for k in RUNAWAY_KEYS if k in series},
        reference=reference,
        generated=generated,
        layers=layer_series_of(cur, run_id, LAYER_KEYS, span, cumulative=CUMULATIVE_KEYS),
        lca_totals=layer_totals(cur, run_id, "lca"),
        nonfinite=tuple(sorted(first_bad)),
        spikes=spike_marks(cur, run_id),
        val_loss_key=val_loss,
        overfits=overfit_marks(cur, run_id),
        clock=step_clock(cur, run_id, loss),
        alerts=tuple(list_alerts(cur, run_id, RUN_PAGE_ALERTS)),
    )


def _latest(cur: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, tuple[int, float]]:
    """key -> (step, value) of the run's newest run-level rows."""
    rows = cur.execute(
        "SELECT key, step, value FROM latest WHERE run_id = ? AND layer = ?", [run_id, NO_LAYER]
    ).fetchall()
    return {str(key): (int(step), value) for key, step, value in rows}


def _quantiles(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    span: StepRange,
    latest: dict[str, tuple[int, float]],
) -> tuple[Quantiles | None, Quantiles | None]:
    """The reference and the generated quantiles last written at or before the span's end."""
    keys = [k for k in (REFERENCE_QUANTILES_KEY, GENERATED_QUANTILES_KEY) if k in latest]
    if not keys:
        return None, None
    if span.end is None:  # the newest step of each key is known: a point lookup
        steps = [latest[k][0] for k in keys]
        rows = cur.execute(
            """WITH want AS (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::BIGINT[]) AS step)
               SELECT m.key, m.step, list(m.value ORDER BY m.value) FROM metrics m
               JOIN want ON m.key = want.key AND m.step = want.step
               WHERE m.run_id = ? GROUP BY m.key, m.step""",
            [keys, steps, run_id],
        ).fetchall()
    else:
        rows = cur.execute(
            """WITH last AS (SELECT key, max(step) AS step FROM metrics
                             WHERE run_id = ? AND list_contains(?, key) AND step <= ?
                             GROUP BY key)
               SELECT m.key, m.step, list(m.value ORDER BY m.value) FROM metrics m
               JOIN last ON m.key = last.key AND m.step = last.step
               WHERE m.run_id = ? GROUP BY m.key, m.step""",
            [run_id, keys, span.end, run_id],
        ).fetchall()
    found = {
        key: Quantiles(int(step), np.asarray(values, dtype=np.float64))
        for key, step, values in rows
        if len(values) >= 2
    }
    return found.get(REFERENCE_QUANTILES_KEY), found.get(GENERATED_QUANTILES_KEY)
