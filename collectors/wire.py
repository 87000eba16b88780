"""Every public name on the wire, in one leaf module (it imports nothing of trainlight).

Metric keys the collectors write and the rules and pages read, per-layer keys, role names, the
environment variables collectors and server share. Health vocabulary (states, signal names) is
in collectors/health/verdict.py and the signal registry; table names and the segment format in
collectors/schema.py.
"""

from __future__ import annotations

# -- environment -------------------------------------------------------------------------------
TOKEN_ENV = "TRAINLIGHT_TOKEN"  # the server's token, read by `serve` and by HTTP collectors

# -- metric keys trainlight writes (all under RESERVED_PREFIXES) --------------------------------
RUNAWAY_DISTANCE = "runaway/distance"  # KS distance, generated vs reference
RUNAWAY_CRITICAL = "runaway/critical"  # its critical value at the samples' sizes
RUNAWAY_EFFECT = "runaway/effect"  # |median difference| / reference IQR
RUNAWAY_KEYS = (RUNAWAY_DISTANCE, RUNAWAY_CRITICAL, RUNAWAY_EFFECT)
LCA_TOTAL = "lca/total"  # the summed LCA of a measured step
CATCH_PLATEAU_STEP = "catch/plateau_step"  # where the catch rule found the content plateau
CATCH_STEP = "catch/catch_step"  # where it found the adversary's catch
SPIKE_ONSET = "spike/onset"  # a main-loss spike's first value, at its step
SPIKE_LEVEL = "spike/level"  # the loss level before it (the recent median), at the same step
SPIKE_RECOVERED = "spike/recovered"  # steps it took to come back, at the step it came back
PROGRESS_STALLED = "progress/stalled"  # seconds without a new step, when judged stalled
PROGRESS_SLOW = "progress/slowdown"  # baseline / recent steps per second, when judged slowed
OVERFIT_FROM = "overfit/from_step"  # where the validation loss was at its best, at the step the
OVERFIT_BEST = "overfit/best"  # rule saw it rising (amber) ... and that best (smoothed) value

# -- per-layer keys (`layer_metrics` rows) -------------------------------------------------------
DEAD_FRAC = "dead_frac"  # fraction of a layer's units that never fired in the window
UNDEAD = "undead"  # units that fired again after being dead
ACT_VAR_MEAN = "act_var_mean"
LOW_VAR_FRAC = "low_var_frac"
NONFINITE = "nonfinite"  # non-finite activations counted in the window
LCA = "lca"  # a layer's LCA at a measured step
LCA_HELPING = "lca_helping"  # its fraction of helping parameters
UNIT_STAT_KEYS = (DEAD_FRAC, UNDEAD, ACT_VAR_MEAN, LOW_VAR_FRAC, NONFINITE)
GRAD_NORM = "grad_norm"  # a layer's gradient norm (all its parameters) at an observed step
UPDATE_RATIO = "update_ratio"  # its ||delta theta|| / ||theta|| over that step's update
PARAM_COUNT = "param_count"  # its parameters (elements), beside each grad_norm row

# -- roles: which logged keys play which part (`mon.roles(...)`) --------------------------------
ADVERSARY, GRADIENT_PENALTY, CONTENT = "adversary", "gradient_penalty", "content"
# -- and which is the main training loss and its validation twin (default keys: `loss`, ...)
LOSS, VAL_LOSS, VAL_METRIC = "loss", "val_loss", "val_metric"
ROLE_NAMES = (ADVERSARY, GRADIENT_PENALTY, CONTENT, LOSS, VAL_LOSS, VAL_METRIC)
# Validation keys recognised by name when no role names them (first found wins). The metrics
# are higher-is-better scores; a role-named `val_metric` is taken to be one too.
VAL_LOSS_NAMES = ("val_loss", "valid_loss", "eval_loss", "val/loss", "validation_loss")
VAL_METRIC_NAMES = (
    "val_acc",
    "val_accuracy",
    "valid_acc",
    "valid_accuracy",
    "eval_acc",
    "eval_accuracy",
    "val/acc",
    "val/accuracy",
    "validation_accuracy",
    "val_f1",
    "eval_f1",
    "val/f1",
    "val_top1",
    "val_acc1",
)
