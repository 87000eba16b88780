"""Health verdicts: torch-free, dash-free rules shared by the server and the collector.

The server evaluates them on ingest (and records every state change in `health`); a collector
evaluates the same rules on the same rows to auto-prune when no server is running. Because both
feed the rules the same segments in the same order, they reach the same verdicts at the same steps.
"""
