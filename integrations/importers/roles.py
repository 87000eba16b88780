"""Which imported key is the run's main loss, its validation twin and its validation score.

A training script using trainlight names them with `mon.roles(...)`; an imported run cannot, and
other tools spell them their own way (`train/loss`, `Loss/train`, `eval/loss`, ...). The rules
already recognise some names unaided (`loss`; VAL_LOSS_NAMES and VAL_METRIC_NAMES of wire.py);
for the others, a key is given the role when it is the ONLY key of the run spelled like one
(case-insensitive): two candidates are ambiguous, and a wrong main loss is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable

from trainlight.collectors.wire import LOSS, VAL_LOSS, VAL_LOSS_NAMES, VAL_METRIC, VAL_METRIC_NAMES

TRAIN_LOSS_ALIASES = frozenset(
    {
        "train/loss",
        "train_loss",
        "train-loss",
        "loss/train",
        "training/loss",
        "training_loss",
        "loss/training",
    }
)
VAL_LOSS_ALIASES = frozenset(
    {name.lower() for name in VAL_LOSS_NAMES}
    | {
        "val-loss",
        "valid/loss",
        "validation/loss",
        "eval/loss",
        "loss/val",
        "loss/valid",
        "loss/validation",
        "loss/eval",
    }
)
VAL_METRIC_ALIASES = frozenset(
    {name.lower() for name in VAL_METRIC_NAMES}
    | {
        "eval/acc",
        "eval/accuracy",
        "valid/acc",
        "valid/accuracy",
        "validation/acc",
        "validation/accuracy",
        "acc/val",
        "accuracy/val",
        "accuracy/valid",
        "accuracy/validation",
        "accuracy/eval",
    }
)

# role -> (names the rules recognise without a role, the spellings recognised here)
_RECOGNISED = {
    LOSS: ((LOSS,), TRAIN_LOSS_ALIASES),
    VAL_LOSS: (VAL_LOSS_NAMES, VAL_LOSS_ALIASES),
    VAL_METRIC: (VAL_METRIC_NAMES, VAL_METRIC_ALIASES),
}


def guess_roles(keys: Iterable[str]) -> dict[str, str]:
    """Role -> key for the roles the rules would not find by name alone, where one key fits."""
    present = set(keys)
    roles: dict[str, str] = {}
    for role, (known, aliases) in _RECOGNISED.items():
        if present.intersection(known):
            continue  # the rules find it themselves
        candidates = sorted(key for key in present if key.lower() in aliases)
        if len(candidates) == 1:
            roles[role] = candidates[0]
    return roles
