"""Logged 0-d device tensors, kept on the device in stacked chunks until the flush copies them.

(CPU tensors never come here: `log()` reads them at once, which costs no synchronisation.)

Why not keep each tensor in its record: a record holding tensors is a container the garbage
collector must track, and a training loop logging 4 tensors per step piles up thousands of them
between flushes, which measurably triggered full collections (~200 ms each) and tripled the cost
of `log()`. Instead `log()` stores an integer slot in the record (records of numbers are not
tracked) and the tensor here; every `chunk_size` tensors are stacked into one (a device op, no
sync), so at most `chunk_size` tensor objects are alive at a time. The flush copies all chunks
of a device to the host in one transfer. A device whose values cannot be read (lost, or `meta`)
costs only its own slots: they come back as None and are counted, never the whole flush.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from trainlight.collectors.problems import Problems


class TensorSlots:
    """Numbered storage for detached single-element tensors; drained in slot order."""

    def __init__(self, chunk_size: int = 256, problems: Problems | None = None) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.problems = problems or Problems()
        self._lock = threading.Lock()
        self._next = 0  # slot number of the next tensor put
        self._open: list[torch.Tensor] = []  # tensors of slots [_next - len(_open), _next)
        self._chunks: list[tuple[int, list[tuple[list[int] | None, torch.Tensor]]]] = []

    def put(self, tensors: Sequence[torch.Tensor]) -> int:
        """Store detached 0-d tensors; returns the slot of the first."""
        with self._lock:
            first = self._next
            self._open.extend(tensors)
            self._next += len(tensors)
            if len(self._open) >= self.chunk_size:
                self._seal()
            return first

    def take_all(self) -> tuple[int, list[float | None]]:
        """(first slot, host values of every slot stored so far and not yet taken; None for a
        value whose device could not be read)."""
        with self._lock:
            self._seal()
            chunks, self._chunks = self._chunks, []
            end = self._next
        if not chunks:
            return end, []
        start = chunks[0][0]
        values: list[float | None] = [None] * (end - start)
        by_device: dict[torch.device, list[tuple[int, list[int] | None, torch.Tensor]]] = {}
        for chunk_start, parts in chunks:
            for positions, stacked in parts:
                by_device.setdefault(stacked.device, []).append((chunk_start, positions, stacked))
        for device, parts_on_device in by_device.items():
            # float64 holds every logged dtype's value exactly; one transfer per device
            joined = torch.cat([p[2] for p in parts_on_device])
            try:
                host = joined.cpu().to(torch.float64).tolist()  # MPS has no float64: on host
            except Exception as exc:  # a lost device, a meta tensor: these values only
                self.problems.report(
                    f"log_unreadable:{device}",
                    f"log(): {joined.numel()} value(s) on {device} could not be read: {exc!r}",
                    once_per="log_unreadable",
                )
                continue
            offset = 0
            for chunk_start, positions, stacked in parts_on_device:
                n = stacked.numel()
                slots = positions if positions is not None else range(n)
                base = chunk_start - start
                for position, value in zip(slots, host[offset : offset + n], strict=True):
                    values[base + position] = value
                offset += n
        return start, values

    def _seal(self) -> None:
        if not self._open:
            return
        tensors, self._open = self._open, []
        start = self._next - len(tensors)
        flat = tensors
        device = flat[0].device
        if all(t.device == device for t in flat):
            parts: list[tuple[list[int] | None, torch.Tensor]] = [(None, _stack(flat))]
        else:  # rare: tensors from several devices in one chunk
            groups: dict[torch.device, list[int]] = {}
            for i, t in enumerate(flat):
                groups.setdefault(t.device, []).append(i)
            parts = [(idx, _stack([flat[i] for i in idx])) for idx in groups.values()]
        self._chunks.append((start, parts))


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One tensor of the values (a device op, no sync), exact for every dtype mix."""
    if len({t.dtype for t in tensors}) > 1:
        # stack would promote int64 + bfloat16 to bfloat16 and round the integers
        wide = torch.float32 if tensors[0].device.type == "mps" else torch.float64
        tensors = [t.to(wide) for t in tensors]
    return torch.stack(tensors)
