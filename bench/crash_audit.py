"""The crash bench's verdict: read the store with plain DuckDB SQL and hold it against the trainers.

Only facts from the store and from the trainers' own output are used: rows per run (trainer keys
`loss`, `step_copy`, `tensor_loss`, whose values are known functions of the step), duplicates,
statuses, and for killed runs the time their last stored step was logged versus the kill time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
from crash_trainer import TrainerProcess

if TYPE_CHECKING:
    from crash_safety import Plan, ServerKill

KEYS = ("loss", "step_copy", "tensor_loss")  # what tests/support/trainer.py logs each step
_PER_RUN = """
SELECT run_id, count(*), count(DISTINCT (step, key)), count(DISTINCT step), max(step),
       epoch_us(max(wall_time)),
       count(*) FILTER (WHERE NOT CASE key
           WHEN 'loss' THEN value = CAST(1 AS DOUBLE) / (step + 1)
           WHEN 'step_copy' THEN value = step
           ELSE abs(value - CAST(2 AS DOUBLE) / (step + 1)) <= 1e-6 / (step + 1) END)
FROM metrics WHERE key IN ('loss', 'step_copy', 'tensor_loss') GROUP BY run_id
"""
_EXACT_DUPLICATES = """SELECT coalesce(sum(n - 1), 0) FROM (
    SELECT count(*) AS n FROM metrics GROUP BY run_id, step, key, value, wall_time HAVING n > 1)"""
_KEY_DUPLICATES = """SELECT coalesce(sum(n - 1), 0) FROM (
    SELECT count(*) AS n FROM metrics WHERE key IN ('loss', 'step_copy', 'tensor_loss')
    GROUP BY run_id, step, key HAVING n > 1)"""
_SEGMENT_DUPLICATES = """SELECT count(*) FROM (
    SELECT run_id, seq FROM segments GROUP BY ALL HAVING count(*) > 1)"""


@dataclass(frozen=True)
class RunFacts:
    rows: int
    distinct_rows: int
    distinct_steps: int
    max_step: int
    last_wall: float  # unix seconds the last stored row was logged (the collector's clock)
    bad_values: int

    @property
    def gap_free(self) -> bool:
        steps = self.max_step + 1
        return (
            self.rows == self.distinct_rows == steps * len(KEYS) == self.distinct_steps * len(KEYS)
        )


@dataclass(frozen=True)
class KilledRun:
    trainer: TrainerProcess
    facts: RunFacts | None
    status: str | None
    lost_steps: int  # at least this many logged steps are not stored
    loss_progress_s: float  # kill time - when the last stored step was logged (progress lines)
    loss_store_s: float | None  # the same from the stored wall_time

    @property
    def loss_s(self) -> float:
        return max(self.loss_progress_s, self.loss_store_s or 0.0)

    def ok(self, bound_s: float) -> bool:
        return (
            self.facts is not None
            and self.facts.gap_free
            and self.status == "crashed"
            and self.loss_s <= bound_s
        )


@dataclass(frozen=True)
class Report:
    opened: bool
    killed: list[KilledRun]
    completed: int
    completed_ok: int
    other_exits: list[str]  # runs that ended neither killed by us nor with exit code 0
    bad_values: int
    exact_duplicates: int
    key_duplicates: int
    segment_duplicates: int
    rejected_files: int

    def ok(self, bound_s: float) -> bool:
        return (
            self.opened
            and all(k.ok(bound_s) for k in self.killed)
            and self.completed == self.completed_ok
            and not self.other_exits
            and self.bad_values == self.exact_duplicates == self.key_duplicates == 0
            and self.segment_duplicates == self.rejected_files == 0
        )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def read_store(db: Path) -> tuple[dict[str, RunFacts], dict[str, str], tuple[int, int, int]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        facts = {
            str(r[0]): RunFacts(r[1], r[2], r[3], r[4], r[5] / 1e6, r[6])
            for r in con.execute(_PER_RUN).fetchall()
        }
        status = {
            str(r[0]): str(r[1]) for r in con.execute("SELECT run_id, status FROM runs").fetchall()
        }
        duplicates = (
            _scalar(con, _EXACT_DUPLICATES),
            _scalar(con, _KEY_DUPLICATES),
            _scalar(con, _SEGMENT_DUPLICATES),
        )
    finally:
        con.close()
    return facts, status, duplicates


def _killed(t: TrainerProcess, facts: RunFacts | None, status: str | None) -> KilledRun:
    assert t.killed_at is not None
    max_step = facts.max_step if facts else -1
    logged_at = t.time_of_step(max(max_step, 0))
    if logged_at is None:  # killed before its first progress line: everything is lost
        logged_at = t.killed_at
    return KilledRun(
        trainer=t,
        facts=facts,
        status=status,
        lost_steps=max(t.last_printed_step - max_step, 0),
        loss_progress_s=t.killed_at - logged_at,
        loss_store_s=t.killed_at - facts.last_wall if facts else None,
    )


def audit(db: Path, launched: Sequence[TrainerProcess], flush: float) -> Report:
    try:
        facts, status, (exact, by_key, by_seq) = read_store(db)
        opened = True
    except duckdb.Error as exc:
        print(f"STORE DID NOT OPEN: {exc!r}")
        facts, status, (exact, by_key, by_seq), opened = {}, {}, (0, 0, 0), False
    killed, completed, completed_ok, other = [], 0, 0, []
    for t in launched:
        run = facts.get(t.run_id or "")
        if t.killed_at is not None:
            killed.append(_killed(t, run, status.get(t.run_id or "")))
        elif t.returncode == 0:
            completed += 1
            complete = run is not None and run.gap_free and run.max_step == t.spec.steps - 1
            completed_ok += complete and status.get(t.run_id or "") == "finished"
        else:
            other.append(f"{t.spec.name}: exit {t.returncode} {t.stderr_tail[-300:]!r}")
    rejected = db.parent / "rejected"
    return Report(
        opened=opened,
        killed=killed,
        completed=completed,
        completed_ok=completed_ok,
        other_exits=other,
        bad_values=sum(f.bad_values for f in facts.values()),
        exact_duplicates=exact,
        key_duplicates=by_key,
        segment_duplicates=by_seq,
        rejected_files=len(list(rejected.glob("*.parquet"))) if rejected.exists() else 0,
    )


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def print_report(
    report: Report,
    plan: Plan,
    server_kills: Sequence[ServerKill],
    unplanned: int,
    leftovers: int,
    drain_s: float,
) -> None:
    bound = plan.flush + plan.tolerance
    print(
        f"\n{'killed run':<22}{'via':<7}{'stored':>8}{'lost>=':>8}{'loss s':>8}"
        f"{'(store)':>9}  status    verdict"
    )
    for k in report.killed:
        f, t = k.facts, k.trainer
        store_s = f"{k.loss_store_s:.3f}" if k.loss_store_s is not None else "-"
        print(
            f"{t.spec.name:<22}{t.spec.transport:<7}{(f.max_step + 1) if f else 0:>8}"
            f"{k.lost_steps * len(KEYS):>8}{k.loss_progress_s:>8.3f}{store_s:>9}  "
            f"{k.status or 'absent':<9} {'ok' if k.ok(bound) else 'FAILED'}"
            + ("  (killed before its first segment was written)" if f is None else "")
        )
    losses = [k.loss_s for k in report.killed]
    rows = [float(k.lost_steps * len(KEYS)) for k in report.killed]
    restarts = [s.restart_s for s in server_kills if s.restart_s is not None]
    pending = [float(s.pending_segments) for s in server_kills]
    lines: list[tuple[str, Any]] = [
        ("trainer kills (kill -9)", len(report.killed)),
        ("server kills (kill -9)", len(server_kills)),
        ("server restart s p50 / max", f"{_pct(restarts, 50):.1f} / {_pct(restarts, 100):.1f}"),
        (
            "inbox segments pending at server kill (min/median)",
            f"{_pct(pending, 0):.0f} / {_pct(pending, 50):.0f}",
        ),
        (
            "loss per killed trainer, s: max / p95",
            f"{_pct(losses, 100):.3f} / {_pct(losses, 95):.3f}"
            f"  (bound {plan.flush} flush + {plan.tolerance} tolerance = {bound:.2f})",
        ),
        (
            "loss per killed trainer, rows: max / p95",
            f"{_pct(rows, 100):.0f} / {_pct(rows, 95):.0f}",
        ),
        (
            "killed runs gap-free prefix",
            sum(bool(k.facts and k.facts.gap_free) for k in report.killed),
        ),
        ("killed runs marked crashed", sum(k.status == "crashed" for k in report.killed)),
        ("completed runs complete & finished", f"{report.completed_ok} / {report.completed}"),
        ("duplicate rows (all columns)", report.exact_duplicates),
        ("duplicate (run_id, step, key)", report.key_duplicates),
        ("duplicate (run_id, seq) segments", report.segment_duplicates),
        ("wrong values", report.bad_values),
        ("rejected segment files", report.rejected_files),
        ("outbox leftovers delivered at the end", leftovers),
        ("final drain s", f"{drain_s:.1f}"),
        ("unplanned kills (hard time limit)", unplanned),
        ("store opened ok", report.opened),
    ]
    print()
    for name, value in lines:
        print(f"{name:<52}{value}")
    for line in report.other_exits:
        print(f"UNEXPECTED EXIT {line}")
    print(f"\nverdict: {'PASS' if report.ok(bound) else 'FAIL'}")
