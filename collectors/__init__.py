"""trainlight collectors: health signals computed next to the model, written to a store.

Public names are re-exported lazily so that `import trainlight.collectors.schema` (which the
torch-free dashboard does) never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainlight.collectors.monitor import Monitor
    from trainlight.collectors.smelu import SmeLU

__all__ = ["Monitor", "SmeLU"]


def __getattr__(name: str) -> Any:
    if name == "Monitor":
        from trainlight.collectors.monitor import Monitor

        return Monitor
    if name == "SmeLU":
        from trainlight.collectors.smelu import SmeLU

        return SmeLU
    raise AttributeError(f"module 'trainlight.collectors' has no attribute {name!r}")
