"""The `repro` verdicts of runs whose replica group received new predictions.

The rule (collectors/health/rules/repro.py) is pure; this reads what it needs: each run's latest
reading with every mate (PD, and how much the predictions still move), and the budget the run
was judged with (its health settings, as saved by ingest). New predictions of one run change its
mates' verdicts too, so the runs judged are the given ones and every mate of theirs. The caller
(ingest) records the state changes.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from trainlight.app.store.read.replicas import latest_differences, replica_mates
from trainlight.app.store.read.series import run_judging
from trainlight.collectors.health.rules.repro import ReproRule
from trainlight.collectors.health.verdict import Verdict


def evaluate_repro(
    cur: duckdb.DuckDBPyConnection, run_ids: Iterable[str]
) -> list[tuple[str, Verdict]]:
    """(run_id, verdict) for each given run that has mates and for each of those mates,
    sorted by run id; a given run without mates gets a grey verdict."""
    judged = set(run_ids)
    for run_id in list(judged):
        judged.update(m.run_id for m in replica_mates(cur, run_id))
    out = []
    for run_id in sorted(judged):
        latest = latest_differences(cur, run_id)
        rule = ReproRule(run_judging(cur, run_id).settings.repro_budget)
        step = max((r.step for r in latest.values()), default=None)
        out.append((run_id, rule.evaluate(latest, step)))
    return out
