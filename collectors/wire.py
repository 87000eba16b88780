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

# -- per-layer keys (`layer_metrics` rows) -------------------------------------------------------
DEAD_FRAC = "dead_frac"  # fraction of a layer's units that never fired in the window
UNDEAD = "undead"  # units that fired again after being dead
ACT_VAR_MEAN = "act_var_mean"
LOW_VAR_FRAC = "low_var_frac"
NONFINITE = "nonfinite"  # non-finite activations counted in the window
LCA = "lca"  # a layer's LCA at a measured step
LCA_HELPING = "lca_helping"  # its fraction of helping parameters
UNIT_STAT_KEYS = (DEAD_FRAC, UNDEAD, ACT_VAR_MEAN, LOW_VAR_FRAC, NONFINITE)

# -- roles: which logged keys play which part (`mon.roles(...)`) --------------------------------
ADVERSARY, GRADIENT_PENALTY, CONTENT = "adversary", "gradient_penalty", "content"
# -- and which is the main training loss and its validation twin (default keys: `loss`, ...)
LOSS, VAL_LOSS = "loss", "val_loss"
ROLE_NAMES = (ADVERSARY, GRADIENT_PENALTY, CONTENT, LOSS, VAL_LOSS)
