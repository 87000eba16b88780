"""Alerts: tell people when a run turns red or crashes, without them watching the grid.

`destinations` says where a message goes and how it is worded; `outbox` records, after each
ingest pass, one row per (run, signal, state change, destination) in the `alerts` table;
`sender` delivers those rows from a thread of its own, so sending never blocks ingest.
"""
