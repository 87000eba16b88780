"""LCA heatmap frames: one pooled picture of a weight tensor's allocation per kept measurement.

Pooling. A weight tensor (dim ≥ 2) is viewed as [out, in·k·k] (dim 0 against everything else;
for transposed convolutions dim 0 is the input channels) and average-pooled with
`adaptive_avg_pool2d` to at most `cells` × `cells`: rows = min(out, cells), cols = min(in·k·k,
cells). Bin i of R over a length of N covers [floor(i·N/R), ceil((i+1)·N/R)), so bins overlap by
one element when R does not divide N. Values are float32, row-major.

Thinning (the contract with the store). Measurements have ordinals m = step // every. Frames are
kept only at ordinals with m % s == 0, for a stride s that starts at 1. When keeping the next
frame would make more than `max_frames` frames, s doubles (until it fits), and the allocator
writes, at that step, the metrics rows `lca/frame_stride` = s and `lca/every` = every. A reader
that sees such a row deletes the run's stored `lca_frames` rows whose (step // every) % s != 0
(after inserting the segment that carried the row, which may hold frames from before the change);
frames written afterwards already obey the stride. This class counts exactly the frames that
survive that rule, so once the store has applied it no layer holds more than `max_frames`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STRIDE_KEY = "lca/frame_stride"
EVERY_KEY = "lca/every"


def frame_name(parameter: str) -> str:
    """The `lca_frames.layer` of a parameter: its module's name for `weight`, else the full name.

    So the frame of `features.0.weight` lines up with the `features.0` rows of `layer_metrics`,
    and modules with several weight matrices (LSTM's `weight_ih_l0`, `weight_hh_l0`) get one
    series each.
    """
    owner, _, local = parameter.rpartition(".")
    return owner if local == "weight" else parameter


def frame_shape(shape: torch.Size | tuple[int, ...], cells: int) -> tuple[int, int]:
    """(rows, cols) of the frame of a tensor of `shape` (dim ≥ 2)."""
    rows = int(shape[0])
    cols = 1
    for size in shape[1:]:
        cols *= int(size)
    return min(rows, cells), min(cols, cells)


def pool_frame(values: torch.Tensor, cells: int) -> torch.Tensor:
    """`values` as [dim 0, rest], average-pooled to `frame_shape` (float32, on its device)."""
    if values.dim() < 2:
        raise ValueError(
            f"frames are drawn for tensors of dim >= 2, got shape {tuple(values.shape)}"
        )
    matrix = values.detach().reshape(values.shape[0], -1).float()
    rows, cols = frame_shape(values.shape, cells)
    if (rows, cols) == tuple(matrix.shape):
        return matrix
    return F.adaptive_avg_pool2d(matrix[None, None], (rows, cols))[0, 0]


class FrameThinner:
    """Decides, per measurement ordinal, whether frames are kept; doubles the stride as needed."""

    def __init__(self, max_frames: int) -> None:
        if not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
        self.max_frames = max_frames
        self.stride = 1
        self._kept: list[int] = []  # ordinals whose frames are stored (and survive the stride)

    @property
    def kept(self) -> int:
        """Frames per layer that the store holds once it has applied the current stride."""
        return len(self._kept)

    def admit(self, ordinal: int) -> tuple[bool, bool]:
        """(keep this ordinal's frames, the stride changed at this ordinal)."""
        if self._kept and ordinal == self._kept[-1]:
            return True, False  # the same measurement again
        changed = False
        while ordinal % self.stride == 0 and len(self._kept) + 1 > self.max_frames:
            self.stride *= 2
            self._kept = [m for m in self._kept if m % self.stride == 0]
            changed = True
        keep = ordinal % self.stride == 0
        if keep:
            self._kept.append(ordinal)
        return keep, changed
