"""What the demo prints: progress rows with badges, and the compute saved by pruning."""

from __future__ import annotations

from rich.console import Console

from trainlight.collectors.health.registry import signal_names
from trainlight.demo.jobs import CRASHED, FINISHED, RUNNING, STOPPED, JobStatus
from trainlight.demo.progress import note, render, summary_lines

STATUSES = (
    JobStatus("healthy", 300, FINISHED, step=299, run_id="healthy-1"),
    JobStatus("pruned", 900, STOPPED, step=436, run_id="pruned-1", reason="auto-pruned: catch red"),
    JobStatus("broken", 600, CRASHED, step=2, reason="RuntimeError: boom", returncode=1),
    JobStatus("moving", 600, RUNNING, step=99, run_id="moving-1"),
)


def test_a_stopped_run_says_what_it_saved_and_why() -> None:
    assert note(STATUSES[1]) == "saved 463 steps; auto-pruned: catch red"
    assert note(STATUSES[2]) == "RuntimeError: boom"
    assert note(STATUSES[0]) == note(STATUSES[3]) == ""


def test_the_summary_counts_runs_and_the_steps_pruning_saved() -> None:
    assert summary_lines(STATUSES) == [
        "4 trainings: 1 finished, 1 stopped, 1 crashed, 0 cancelled",
        "  pruned: stopped after 437 of 900 steps, saved 463 (auto-pruned: catch red)",
        "auto-pruning saved 463 of 2,400 planned steps",
        "  broken: CRASHED: RuntimeError: boom",
    ]


LEGEND = "spike overfit gradients progress catch runaway dead_relu lca nonfinite"


def test_the_table_shows_progress_and_the_dashboard_badges() -> None:
    health = {
        "healthy-1": {"dead_relu": "green", "nonfinite": "green"},
        "pruned-1": {"catch": "red", "runaway": "green", "nonfinite": "green"},
    }
    console = Console(record=True, width=200, color_system=None)
    console.print(render(STATUSES, health, "12s"))
    text = console.export_text()
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    # badges in the registry's order
    assert " ".join(signal_names()) == LEGEND, "the expected badges below follow this order"
    assert "○○○○○○●○●" in rows["healthy"] and "300/300" in rows["healthy"]
    assert "○○○○■●○○●" in rows["pruned"] and "437/900" in rows["pruned"]
    assert "saved 463 steps" in rows["pruned"]
    assert f"health: {LEGEND}" in text
    without = Console(record=True, width=200, color_system=None)
    without.print(render(STATUSES, {}, "12s"))
    header = next(line for line in without.export_text().splitlines() if line.startswith("run"))
    assert header.split() == ["run", "progress", "step", "state", "note"]
