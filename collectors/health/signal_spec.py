"""What trainlight shows and says about one health signal, declared next to its rule.

A signal's rule module declares one `SignalSpec`; `registry.py` lists them. Plain Python: the app
(no torch) and the collectors (no dash) both import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainlight.collectors.health.settings import HealthSettings

if TYPE_CHECKING:
    from trainlight.collectors.health.judge import Judge


@dataclass(frozen=True)
class SignalSpec:
    name: str  # the wire name: `health.signal`, `prune_on`, API fields
    column: str  # the grid's badge column header and the terminal legend's word (short)
    title: str  # the run page's panel title
    summary: str  # one line: the grid header's tooltip
    explain: Callable[[HealthSettings], str]  # the panel's help text, from the run's settings
    missing: str  # shown while the signal was never judged: what the user has to call
    needs: tuple[str, ...] = ()  # what must be recorded: "watch", "lca", "roles", "outputs"...
    reads: tuple[str, ...] = ()  # metric keys the rule reads (beyond the roles)
    depends_on: tuple[str, ...] = ()  # signals whose windows it consults
    may_prune: bool = True  # may be named in `prune_on`
    # Judged on the segments' send times (`progress`), not on steps alone: its verdicts depend
    # on when rows arrived, so it is the one kind that differs when segments are cut otherwise.
    timed: bool = False
    # How rows reach its rule at ingest (and in the collector); None: judged at view time only.
    judge: type[Judge[Any]] | None = None

    def help_for(self, settings: HealthSettings) -> str:
        return self.explain(settings)
