"""Arrivals: the ingester starts a pass when a segment is acknowledged, not on its next poll.

The main process's intake sets an event; receiver processes write a byte into a pipe whose
read end a thread of the main process turns into the same event. The ingester still polls
every `ingest_interval` (collectors writing the inbox directly notify nobody), and keeps passes
at least `min_gap` apart so that a stream of arrivals is taken in batches, not one by one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable


class Arrivals:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # a full pipe already says "something arrived"
        threading.Thread(target=self._forward, name="trainlight-arrivals", daemon=True).start()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Until something arrived (True) or `timeout` passed (False); either way, re-armed."""
        arrived = self._event.wait(timeout)
        self._event.clear()
        return arrived

    def _forward(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 4096):
                self._event.set()


def pipe_notifier(fd: int) -> Callable[[], None]:
    """What a receiver calls after acknowledging a segment: a byte into the main's pipe."""

    def notify() -> None:
        with contextlib.suppress(OSError):  # full (the main will look anyway) or main gone
            os.write(fd, b"\0")

    return notify
