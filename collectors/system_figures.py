"""System figures sampled by the flush thread: step rate, process CPU and memory, CUDA memory.

A `writer.RowSource` the Monitor installs: `collect` runs on the flush thread every flush, and
every `every` seconds it writes run-level metric rows at the latest logged step:

- `system/steps_per_s`: steps logged since the previous sample / seconds since;
- `system/cpu_percent`: the process's CPU time over wall time since (100 = one core busy);
- `system/rss_mb`: resident memory (Linux `/proc/self/statm`; elsewhere the peak from
  `getrusage`);
- on CUDA (only where torch is already imported and CUDA initialised: never initialised here),
  `system/cuda_allocated_mb` and `system/cuda_reserved_mb` of the current device, and
  `system/gpu_percent` where NVML (`pynvml`) is importable.

Nothing here touches the training thread; a figure that cannot be read is left out.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

STEPS_PER_S, CPU_PERCENT, RSS_MB = "system/steps_per_s", "system/cpu_percent", "system/rss_mb"
CUDA_ALLOCATED_MB, CUDA_RESERVED_MB = "system/cuda_allocated_mb", "system/cuda_reserved_mb"
GPU_PERCENT = "system/gpu_percent"
SYSTEM_KEYS = (STEPS_PER_S, CPU_PERCENT, RSS_MB, CUDA_ALLOCATED_MB, CUDA_RESERVED_MB, GPU_PERCENT)
SAMPLE_EVERY_S = 5.0
MB = 1024 * 1024


class SystemFigures:
    def __init__(self, step_of: Callable[[], int], every: float = SAMPLE_EVERY_S) -> None:
        self.step_of, self.every = step_of, every
        self._last: tuple[float, float, int] | None = None  # wall, cpu seconds, step
        self._nvml: Any = None

    def collect(self) -> dict[str, list[Any]] | None:
        now, cpu, step = time.monotonic(), time.process_time(), int(self.step_of())
        last = self._last
        if last is not None and now - last[0] < self.every:
            return None
        self._last = (now, cpu, step)
        if last is None or step < 0:
            return None
        elapsed = now - last[0]
        figures = {
            STEPS_PER_S: (step - last[2]) / elapsed,
            CPU_PERCENT: 100.0 * (cpu - last[1]) / elapsed,
            RSS_MB: rss_mb(),
            **self._cuda(),
        }
        keys = [k for k, v in figures.items() if v is not None]
        return {
            "table": ["metrics"] * len(keys),
            "step": [step] * len(keys),
            "key": keys,
            "value": [figures[k] for k in keys],
        }

    def _cuda(self) -> dict[str, float | None]:
        torch = sys.modules.get("torch")  # never import (or initialise) torch for this
        if torch is None or not torch.cuda.is_initialized():
            return {}
        try:
            device = torch.cuda.current_device()
            found: dict[str, float | None] = {
                CUDA_ALLOCATED_MB: torch.cuda.memory_allocated(device) / MB,
                CUDA_RESERVED_MB: torch.cuda.memory_reserved(device) / MB,
            }
        except Exception:  # a lost device: its figures are left out
            return {}
        found[GPU_PERCENT] = self._gpu_percent(device)
        return found

    def _gpu_percent(self, device: int) -> float | None:
        try:
            if self._nvml is None:
                pynvml = importlib.import_module("pynvml")  # optional: nvidia-ml-py
                pynvml.nvmlInit()
                self._nvml = pynvml
            handle = self._nvml.nvmlDeviceGetHandleByIndex(device)
            return float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # no NVML here: the figure is left out
            return None


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        import resource  # POSIX only; Linux has /proc anyway

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, B on macOS
        return peak / (MB if sys.platform == "darwin" else 1024)
