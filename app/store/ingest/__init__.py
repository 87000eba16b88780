"""The store's write path: segments from the inbox, checked, decoded once and written into DuckDB
exactly once, with the health rules advanced in the same transaction. Only the server's ingest
thread (and `trainlight ingest`) runs it."""
