"""One file per signal: a window of what the rule needs to remember, and the rule itself."""
