"""The authors' direction normalisation, copied as the reference our slices are tested against.

Copied from tomgoldstein/loss-landscape, net_plotter.py (commit 64ef4d57f8dabe79b57a637819c44e
48eda98f33): `normalize_direction` and `normalize_directions_for_weights`, with type hints added,
`strict=False` spelled out in zip for the linter, and nothing else changed (the in-place
operations on lists of tensors, the + 1e-10, the `ignore='biasbn'` zeroing of tensors with at
most one dimension). `get_random_weights` is the same file's random draw, given a generator so a
test can replay a seed.

Copyright (c) 2017 Hao Li, Zheng Xu, Gavin Taylor, Christoph Studer and Tom Goldstein.
MIT License: https://github.com/tomgoldstein/loss-landscape/blob/master/LICENSE
"""

from __future__ import annotations

import torch


def get_random_weights(
    weights: list[torch.Tensor], generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """
    Produce a random direction that is a list of random Gaussian tensors
    with the same shape as the network's weights, so one direction entry per weight.
    """
    return [torch.randn(w.size(), generator=generator) for w in weights]


def normalize_direction(
    direction: torch.Tensor, weights: torch.Tensor, norm: str = "filter"
) -> None:
    """
    Rescale the direction so that it has similar norm as their corresponding
    model in different levels.

    Args:
      direction: a variables of the random direction for one layer
      weights: a variable of the original model for one layer
      norm: normalization method, 'filter' | 'layer' | 'weight'
    """
    if norm == "filter":
        # Rescale the filters (weights in group) in 'direction' so that each
        # filter has the same norm as its corresponding filter in 'weights'.
        for d, w in zip(direction, weights, strict=False):
            d.mul_(w.norm() / (d.norm() + 1e-10))
    elif norm == "layer":
        # Rescale the layer variables in the direction so that each layer has
        # the same norm as the layer variables in weights.
        direction.mul_(weights.norm() / direction.norm())
    elif norm == "weight":
        # Rescale the entries in the direction so that each entry has the same
        # scale as the corresponding weight.
        direction.mul_(weights)
    elif norm == "dfilter":
        # Rescale the entries in the direction so that each filter direction
        # has the unit norm.
        for d in direction:
            d.div_(d.norm() + 1e-10)
    elif norm == "dlayer":
        # Rescale the entries in the direction so that each layer direction has
        # the unit norm.
        direction.div_(direction.norm())


def normalize_directions_for_weights(
    direction: list[torch.Tensor],
    weights: list[torch.Tensor],
    norm: str = "filter",
    ignore: str = "biasbn",
) -> None:
    """
    The normalization scales the direction entries according to the entries of weights.
    """
    assert len(direction) == len(weights)
    for d, w in zip(direction, weights, strict=False):
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.fill_(0)  # ignore directions for weights with 1 dimension
            else:
                d.copy_(w)  # keep directions for weights/bias that are only 1 per node
        else:
            normalize_direction(d, w, norm)
