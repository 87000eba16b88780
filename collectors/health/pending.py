"""The watermark: the health rules see a step only once it is complete.

A segment ends wherever the flush clock cut the run, often in the middle of a step (the loss of
step 120 logged, its activation window not yet). Rules fed whatever a segment holds would judge
half a step and count their evaluations per segment, so the same rows cut differently gave
different verdicts. `Pending` holds back the rows of the highest step seen so far and releases
them once a row of a later step arrives (the run has moved on) or the run's final segment does.
Every step the rules see is therefore whole, and the rules' evaluation points (readings, window
closes) are functions of the steps alone. The held rows are few (one step's worth) and are saved
with the rules' state, so a server restart neither loses nor repeats them.

A row that arrives for a step already released (a source reporting late) is released with the
next segment: it cannot be judged before the steps that follow it any more.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from trainlight.collectors.health.observations import NonFinite, SegmentRows, Series


@dataclass
class Pending:
    """The rows of the highest step seen (`step`), not yet handed to the rules."""

    step: int | None = None
    metrics: dict[str, list[float]] = field(default_factory=dict)  # key -> values at `step`
    layers: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # key -> layer -> ..
    nonfinite: tuple[int, str] | None = None
    has_data: bool = False  # some held row is a metric or layer row

    def take(self, rows: SegmentRows, final: bool = False) -> SegmentRows:
        """Merge a segment's rows with those held; return the complete steps', hold the rest.

        `final`: the run ended with this segment, so every step is complete."""
        top = _max(self.step, rows.last_step)
        if top is None:
            return rows
        cut = None if final else top  # release the steps below `cut` (all, when None)
        metrics = {
            key: _split(self._held(self.metrics.get(key)), rows.metrics.get(key), cut)
            for key in _union(self.metrics, rows.metrics)
        }
        layers: dict[str, dict[str, tuple[Series, Series]]] = {}
        for key in _union(self.layers, rows.layers):
            mine, theirs = self.layers.get(key, {}), rows.layers.get(key, {})
            layers[key] = {
                layer: _split(self._held(mine.get(layer)), theirs.get(layer), cut)
                for layer in _union(mine, theirs)
            }
        out = self._release(rows, metrics, layers, top, cut)
        self._hold(rows, metrics, layers, top if cut is not None else None)
        return out

    def _held(self, values: list[float] | None) -> Series | None:
        return None if values is None or self.step is None else ([self.step] * len(values), values)

    def _release(
        self,
        rows: SegmentRows,
        metrics: dict[str, tuple[Series, Series]],
        layers: dict[str, dict[str, tuple[Series, Series]]],
        top: int,
        cut: int | None,
    ) -> SegmentRows:
        held_bad = NonFinite(*self.nonfinite) if self.nonfinite else None
        bad = min((b for b in (held_bad, rows.nonfinite) if b), key=lambda b: b.step, default=None)
        first = _min(self.step if self.has_data else None, rows.first_step)
        last = _max(self.step if self.has_data else None, rows.data_step)
        end = top if cut is None else cut - 1  # the highest step released

        def below(step: int | None) -> bool:
            return step is not None and step <= end

        return SegmentRows(
            metrics={k: out for k, (out, _) in metrics.items() if out[0]},
            layers={
                k: {layer: out for layer, (out, _) in by.items() if out[0]}
                for k, by in layers.items()
                if any(out[0] for out, _ in by.values())
            },
            nonfinite=bad if bad is not None and below(bad.step) else None,
            first_step=first if below(first) else None,
            data_step=(min(last, end) if last is not None else None) if below(first) else None,
            last_step=end,
        )

    def _hold(
        self,
        rows: SegmentRows,
        metrics: dict[str, tuple[Series, Series]],
        layers: dict[str, dict[str, tuple[Series, Series]]],
        top: int | None,
    ) -> None:
        bad = [b for b in (self.nonfinite, _pair(rows.nonfinite)) if b and b[0] == top]
        self.has_data = top is not None and (
            (self.has_data and self.step == top) or rows.data_step == top
        )
        self.step = top
        self.metrics = {k: held[1] for k, (_, held) in metrics.items() if held[0]}
        self.layers = {
            k: {layer: held[1] for layer, (_, held) in by.items() if held[0]}
            for k, by in layers.items()
        }
        self.layers = {k: by for k, by in self.layers.items() if by}
        self.nonfinite = bad[0] if bad else None

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "metrics": self.metrics,
            "layers": self.layers,
            "nonfinite": list(self.nonfinite) if self.nonfinite else None,
            "has_data": self.has_data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Pending:
        if not data:
            return cls()
        bad = data.get("nonfinite")
        return cls(
            step=data["step"],
            metrics=data["metrics"],
            layers=data["layers"],
            nonfinite=(int(bad[0]), str(bad[1])) if bad else None,
            has_data=bool(data["has_data"]),
        )


def _union(held: Iterable[str], new: Iterable[str]) -> list[str]:
    """Both's names, held ones first, each in its order: not a set, whose order changes with the
    process's hash seed and with it which layer a reason names first."""
    return list(dict.fromkeys(itertools.chain(held, new)))


def _split(held: Series | None, new: Series | None, cut: int | None) -> tuple[Series, Series]:
    """(rows with step < cut, rows at or above it): held rows first, then the segment's."""
    if held is None and new is None:
        return ([], []), ([], [])
    steps = (held[0] if held else []) + (new[0] if new else [])
    values = (held[1] if held else []) + (new[1] if new else [])
    if cut is None:
        return _ordered(steps, values), ([], [])
    if _is_sorted(steps):
        at = bisect.bisect_left(steps, cut)
        return (steps[:at], values[:at]), (steps[at:], values[at:])
    out = _ordered(*_where(steps, values, lambda s: s < cut))
    return out, _where(steps, values, lambda s: s >= cut)


def _where(steps: list[int], values: list[float], keep: Callable[[int], bool]) -> Series:
    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if keep(s)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _ordered(steps: list[int], values: list[float]) -> Series:
    """Sorted by step (stable: a step's values keep their logged order)."""
    if _is_sorted(steps):
        return steps, values
    order = sorted(range(len(steps)), key=steps.__getitem__)
    return [steps[i] for i in order], [values[i] for i in order]


def _is_sorted(steps: list[int]) -> bool:
    return steps == sorted(steps)  # linear on sorted input, in C


def _pair(bad: NonFinite | None) -> tuple[int, str] | None:
    return (bad.step, bad.what) if bad else None


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
