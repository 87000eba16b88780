"""The demo's terminal view: one row per training, redrawn as the trainings move.

Pure functions turn job statuses (and, while the dashboard runs, the badges it reports) into a
`rich` table and into the closing summary; the command only puts them on screen. Badges use the
shapes of `trainlight runs` (● ok ▲ warning ■ bad ○ no data), so they read without colour too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.console import Console, JustifyMethod
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from trainlight.collectors.health.registry import legend, signal_names
from trainlight.collectors.health.verdict import STATE_SHAPES
from trainlight.demo.jobs import (
    CANCELLED,
    CRASHED,
    FINISHED,
    RUNNING,
    STOPPED,
    WAITING,
    JobStatus,
)

Health = Mapping[str, Mapping[str, str]]  # run_id -> signal -> state
_STYLES = {"green": "green", "amber": "yellow", "red": "red", "grey": "bright_black"}
BAR_WIDTH = 16
NAME_WIDTH = 24
_STATE_STYLES = {
    RUNNING: "cyan",
    FINISHED: "green",
    STOPPED: "yellow",
    CRASHED: "bold red",
    CANCELLED: "bright_black",
}


def note(status: JobStatus) -> str:
    """What the row says beyond its numbers: what a stopped run saved and why, why one crashed."""
    if status.state == STOPPED:
        return f"saved {status.saved_steps:,} steps; {status.reason}"
    if status.state in (CRASHED, CANCELLED):
        return status.reason
    return ""


def badge_text(health: Mapping[str, str] | None) -> Text:
    """One coloured shape per signal, in the registry's order (blank before any data)."""
    text = Text()
    if not health:
        return text
    for signal in signal_names():
        state = health.get(signal, "grey")
        text.append(STATE_SHAPES.get(state, "?"), style=_STYLES.get(state, ""))
    return text


def render(statuses: Sequence[JobStatus], health: Health, title: str, width: int = 120) -> Table:
    """The live table: progress, state, badges (while a dashboard reports them), notes.

    Every column but the note has a fixed width; the note gets what is left of `width` (the
    terminal's), cut with an ellipsis, so that a narrow terminal never squeezes the numbers out.
    """
    name_width = min(NAME_WIDTH, max((len(s.name) for s in statuses), default=3))
    badges = max(6, len(signal_names()))  # one badge per registered signal
    fixed = [name_width, BAR_WIDTH, 11, 9] + ([badges] if health else [])
    note_width = max(0, width - sum(fixed) - len(fixed))
    table = Table(
        title=title, title_justify="left", box=None, pad_edge=False, collapse_padding=True
    )
    for header, column_width in zip(("run", "progress", "step", "state"), fixed, strict=False):
        justify: JustifyMethod = "right" if header == "step" else "left"
        table.add_column(header, width=column_width, no_wrap=True, justify=justify)
    if health:
        table.add_column("health", width=badges, no_wrap=True)
        table.caption = legend()
        table.caption_justify = "left"
    table.add_column("note", no_wrap=True)
    for status in statuses:
        total = max(status.total_steps, 1)
        cells: list[Text | ProgressBar | str] = [
            _fit(status.name, name_width),
            ProgressBar(total=total, completed=status.steps_done, width=BAR_WIDTH),
            f"{status.steps_done:,}/{status.total_steps:,}",
            Text(status.state, style=_STATE_STYLES.get(status.state, "")),
        ]
        if health:
            cells.append(badge_text(health.get(status.run_id)))
        cells.append(_fit(note(status), note_width))
        table.add_row(*cells)
    return table


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def summary_lines(statuses: Sequence[JobStatus]) -> list[str]:
    """The closing lines: what ran, what was pruned and the compute it saved, what crashed."""
    counts = {state: sum(s.state == state for s in statuses) for state in _STATE_STYLES}
    planned = sum(s.total_steps for s in statuses)
    saved = sum(s.saved_steps for s in statuses)
    lines = [
        f"{len(statuses)} trainings: {counts[FINISHED]} finished, {counts[STOPPED]} stopped, "
        f"{counts[CRASHED]} crashed, {counts[CANCELLED]} cancelled"
    ]
    for status in statuses:
        if status.state == STOPPED:
            lines.append(
                f"  {status.name}: stopped after {status.steps_done:,} of "
                f"{status.total_steps:,} steps, saved {status.saved_steps:,} ({status.reason})"
            )
    if saved:
        lines.append(f"auto-pruning saved {saved:,} of {planned:,} planned steps")
    for status in statuses:
        if status.state == CRASHED:
            lines.append(f"  {status.name}: CRASHED: {status.reason}")
    return lines


class LiveView:
    """A terminal: the table redrawn in place."""

    def __init__(self, console: Console, title: Callable[[], str]) -> None:
        self._console = console
        self._live = Live(console=console, auto_refresh=False)
        self._title = title

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def update(self, statuses: Sequence[JobStatus], health: Health) -> None:
        table = render(statuses, health, self._title(), self._console.width)
        self._live.update(table, refresh=True)


class LogView:
    """Not a terminal (a CI log, a pipe): a line per change of state, the table at the end."""

    def __init__(self, console: Console, title: Callable[[], str]) -> None:
        self._console = console
        self._title = title
        self._seen: dict[str, str] = {}
        self._last: tuple[Sequence[JobStatus], Health] = ((), {})

    def __enter__(self) -> LogView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        statuses, health = self._last
        self._console.print(render(statuses, health, self._title(), self._console.width))

    def update(self, statuses: Sequence[JobStatus], health: Health) -> None:
        self._last = (statuses, health)
        for status in statuses:
            if self._seen.get(status.name) != status.state and status.state != WAITING:
                self._seen[status.name] = status.state
                line = f"{self._title()}  {status.name}: {status.state} {note(status)}"
                self._console.print(line.rstrip(), highlight=False, soft_wrap=True)


def make_console(log_width: int = 160) -> Console:
    """A console for the terminal, or one wide enough for a log (rich assumes 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=log_width)


def view_for(console: Console, title: Callable[[], str]) -> LiveView | LogView:
    return LiveView(console, title) if console.is_terminal else LogView(console, title)
