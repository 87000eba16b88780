"""Which layer each watched parameter belongs to, and the per-layer rows of observed steps.

`GradientWatcher` (gradients.py) measures norms per parameter on the training thread; this sums
them per layer on the device (one `index_add_` per kind of norm) and, on the flush thread, turns
the per-layer vectors into `layer_metrics` rows. A layer is a module that owns parameters
(`encoder.layers.0.linear1`); its norms are over all its parameters together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.wire import GRAD_NORM, PARAM_COUNT, UPDATE_RATIO

GRAD, UPDATE, WEIGHT = 0, 1, 2  # rows of a step's per-layer result
# (row, parameter indices, their norms as one vector): what an observed step measured
Norms = list[tuple[int, list[int], torch.Tensor]]


def norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each tensor, as one float32 vector (one fused kernel per device)."""
    return torch.stack(torch._foreach_norm(list(tensors))).float()


class ParameterLayers:
    def __init__(self, model: nn.Module, prefix: str) -> None:
        self.params: list[torch.Tensor] = []
        self.layer_of: list[int] = []  # parameter index -> layer index
        self.layers: list[str] = []
        positions: dict[str, int] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad or param.is_meta:  # frozen, or holding no values
                continue
            owner = name.rpartition(".")[0]
            layer = prefix + (owner or type(model).__name__)
            if layer not in positions:
                positions[layer] = len(self.layers)
                self.layers.append(layer)
            self.layer_of.append(positions[layer])
            self.params.append(param)
        self.sizes = [0] * len(self.layers)  # elements per layer: its gradient's RMS is norm/√n
        for index, tensor in zip(self.layer_of, self.params, strict=True):
            self.sizes[index] += tensor.numel()
        self._indices: dict[tuple[Any, torch.device], torch.Tensor] = {}

    # -- training thread -------------------------------------------------------------------
    def per_layer(self, measured: Norms) -> torch.Tensor:
        """[3, layers]: ‖g‖, ‖Δθ‖, ‖θ‖ per layer (0 where a layer had no update): one
        `index_add_` of all the step's squared norms (each op costs ~10 µs on a CPU)."""
        device = measured[0][2].device
        squares = torch.cat([values for _, _, values in measured]).to(device, torch.float32)
        index = self._cell_index(measured, device)
        out = torch.zeros(3 * len(self.layers), device=device)
        return out.index_add_(0, index, squares.square_()).view(3, -1).sqrt_()

    def layers_with_gradients(self, measured: Norms) -> list[int]:
        return sorted({self.layer_of[i] for row, idx, _ in measured if row == GRAD for i in idx})

    def _cell_index(self, measured: Norms, device: torch.device) -> torch.Tensor:
        """The cell (row × layers + layer) of each measured norm, as a device tensor (cached:
        the same few layouts come back every observed step)."""
        key = (tuple((row, tuple(indices)) for row, indices, _ in measured), device)
        cached = self._indices.get(key)
        if cached is None:
            cells = [
                row * len(self.layers) + self.layer_of[i]
                for row, indices, _ in measured
                for i in indices
            ]
            cached = self._indices[key] = torch.tensor(cells, device=device)
        return cached

    # -- flush thread ----------------------------------------------------------------------
    def rows(
        self, queued: Iterable[tuple[int, list[int], torch.Tensor]], problems: Problems
    ) -> dict[str, list[Any]]:
        """`layer_metrics` rows `grad_norm`, `param_count` and `update_ratio` of the queued
        steps: (step, its layers with a gradient, its [3, layers] vector on the device)."""
        rows: dict[str, list[Any]] = {"step": [], "layer": [], "key": [], "value": []}
        for step, layers, values in queued:
            try:
                grad, update, weight = values.to("cpu", torch.float64).tolist()
            except Exception as exc:  # a lost device: skip its steps only
                problems.report(
                    "watch_gradients_host_copy", f"watch(): gradient norms unreadable: {exc!r}"
                )
                continue
            for layer in layers:
                name = self.layers[layer]
                found = [(GRAD_NORM, grad[layer]), (PARAM_COUNT, float(self.sizes[layer]))]
                if weight[layer] > 0:
                    found.append((UPDATE_RATIO, update[layer] / weight[layer]))
                for key, value in found:
                    rows["step"].append(step)
                    rows["layer"].append(name)
                    rows["key"].append(key)
                    rows["value"].append(value)
        return {"table": ["layer_metrics"] * len(rows["step"]), **rows}
