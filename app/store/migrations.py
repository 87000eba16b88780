"""The store's DuckDB tables: forward-only migrations, applied when the server opens the store.

Only the server opens DuckDB, so the tables live on its side; collectors know the segment format
(collectors/schema.py), never the tables it lands in.
"""

from __future__ import annotations

import duckdb

# Forward-only migrations: MIGRATIONS[i] upgrades a store from version i to i + 1.
# A store is never downgraded; a newer store opened by older code is refused with a clear error.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs(
            run_id VARCHAR PRIMARY KEY, project VARCHAR, name VARCHAR, "group" VARCHAR,
            tags VARCHAR[], config JSON, status VARCHAR, started_at TIMESTAMP,
            updated_at TIMESTAMP, host VARCHAR, pid INTEGER, last_step BIGINT,
            stop_requested BOOLEAN DEFAULT false, stop_reason VARCHAR,
            dropped_rows BIGINT DEFAULT 0)""",
        """CREATE TABLE metrics(
            run_id VARCHAR, step BIGINT, key VARCHAR, value DOUBLE, wall_time TIMESTAMP)""",
        """CREATE TABLE layer_metrics(
            run_id VARCHAR, step BIGINT, layer VARCHAR, key VARCHAR, value DOUBLE)""",
        """CREATE TABLE lca_frames(
            run_id VARCHAR, step BIGINT, layer VARCHAR, n_rows INTEGER, n_cols INTEGER,
            "values" FLOAT[])""",
        """CREATE TABLE health(
            run_id VARCHAR, signal VARCHAR, state VARCHAR, step BIGINT, reason VARCHAR,
            updated_at TIMESTAMP)""",
        """CREATE TABLE latest(
            run_id VARCHAR, key VARCHAR, layer VARCHAR, step BIGINT, value DOUBLE,
            PRIMARY KEY (run_id, key, layer))""",
        # Exactly-once ingest: a (run_id, seq) recorded here is never ingested again.
        """CREATE TABLE segments(
            run_id VARCHAR, seq BIGINT, n_rows BIGINT, ingested_at TIMESTAMP,
            PRIMARY KEY (run_id, seq))""",
    ),
    (
        # The health rules' memory per run (JSON text; may hold NaN), saved in the same
        # transaction as the rows it was computed from, so evaluation resumes exactly.
        """CREATE TABLE health_state(run_id VARCHAR PRIMARY KEY, state VARCHAR)""",
    ),
    (
        # Transitions of one batch share updated_at: `seq` orders them ("the latest row per
        # (run_id, signal)" is the one with the highest seq).
        "CREATE SEQUENCE health_seq",
        "ALTER TABLE health ADD COLUMN seq BIGINT",
        "UPDATE health SET seq = nextval('health_seq')",
        # Which process namespace `pid` belongs to (boot id + pid namespace), so the server
        # only judges liveness by pid for processes it can actually see.
        "ALTER TABLE runs ADD COLUMN pid_namespace VARCHAR",
    ),
    (
        # The grid's main-loss sparklines, kept by ingest (store/ingest/sparklines.py) so the grid
        # never scans `metrics`: the main key and bucket width (a power of two, in steps) per
        # run, and the count and sum of that key's values per bucket = floor(step / width).
        "CREATE TABLE spark_runs(run_id VARCHAR PRIMARY KEY, key VARCHAR, width BIGINT)",
        """CREATE TABLE spark_buckets(
            run_id VARCHAR, bucket BIGINT, n BIGINT, total DOUBLE, PRIMARY KEY (run_id, bucket))""",
        # Backfill, once: main key = `loss` if logged, else the first non-reserved key (rowid);
        # width = the smallest power of two that spans the key's steps in at most 240 buckets.
        """INSERT INTO spark_runs
        WITH candidates AS (
            SELECT run_id, key, rowid AS rid, step FROM metrics
            WHERE key IS NOT NULL AND NOT (starts_with(key, 'runaway/')
                  OR starts_with(key, 'catch/') OR starts_with(key, 'lca/'))
        ), main AS (
            SELECT run_id,
                   CASE WHEN bool_or(key = 'loss') THEN 'loss' ELSE arg_min(key, rid) END AS key
            FROM candidates GROUP BY run_id
        ), span AS (
            SELECT run_id, key, min(step) AS lo, max(step) AS hi
            FROM candidates JOIN main USING (run_id, key) GROUP BY run_id, key
        )
        SELECT run_id, key, min(CAST(1 AS BIGINT) << k) AS width
        FROM span, range(0, 62) AS powers(k)
        WHERE floor(hi / (CAST(1 AS BIGINT) << k)) - floor(lo / (CAST(1 AS BIGINT) << k)) < 240
        GROUP BY run_id, key""",
        """INSERT INTO spark_buckets
        SELECT m.run_id, CAST(floor(m.step / s.width) AS BIGINT) AS bucket, count(m.value),
               coalesce(sum(m.value), 0)
        FROM metrics m JOIN spark_runs s ON m.run_id = s.run_id AND m.key = s.key
        GROUP BY m.run_id, bucket""",
    ),
    (
        # The grid's LCA layer lights in model order, kept by ingest (store/ingest/batch_rows.py):
        # each layer with an `lca` row gets `ord` by first appearance; its light is the
        # `latest` row (run_id, 'lca', layer), so the grid never scans `layer_metrics`.
        """CREATE TABLE lca_layers(
            run_id VARCHAR, layer VARCHAR, ord BIGINT, PRIMARY KEY (run_id, layer))""",
        # Backfill, once: first appearance = the smallest rowid (insertion order).
        """INSERT INTO lca_layers
        SELECT run_id, coalesce(layer, ''), min(rowid) FROM layer_metrics
        WHERE key = 'lca' GROUP BY run_id, coalesce(layer, '')""",
    ),
    (
        # Small matrices a step produces besides scalars, row-major float32 (NaN kept): a probe
        # set's predicted probabilities (`predictions`: examples x classes), loss-surface slices
        # (`landscape/slice`: 1 x points), per-layer unit-variance histograms (`act_var_hist`).
        """CREATE TABLE arrays(
            run_id VARCHAR, step BIGINT, key VARCHAR, layer VARCHAR,
            n_rows INTEGER, n_cols INTEGER, "values" FLOAT[])""",
    ),
    (
        # Alerts (app/alerts): one row per (run, signal, state change, destination), recorded
        # after the change is ingested and delivered from a thread of its own; `destination` is
        # a label (kind and hash), never the webhook URL. `alert_marks`: per destination, the
        # last `health.seq` turned into alerts, and when it was first configured (what happened
        # before is never sent to it).
        """CREATE TABLE alerts(
            run_id VARCHAR, signal VARCHAR, state VARCHAR, step BIGINT, destination VARCHAR,
            reason VARCHAR, created_at TIMESTAMP, status VARCHAR, attempts INTEGER,
            last_error VARCHAR, next_attempt TIMESTAMP, sent_at TIMESTAMP,
            PRIMARY KEY (run_id, signal, state, step, destination))""",
        """CREATE TABLE alert_marks(
            destination VARCHAR PRIMARY KEY, health_seq BIGINT, since TIMESTAMP,
            user_seq BIGINT)""",
        # `mon.alert()` messages, as ingested (`seq` orders them for the alert marks)
        "CREATE SEQUENCE user_alert_seq",
        """CREATE TABLE user_alerts(
            run_id VARCHAR, step BIGINT, level VARCHAR, title VARCHAR, text VARCHAR,
            raised_at TIMESTAMP, seq BIGINT)""",
        # The run's declared length (`Monitor(total_steps=...)`, or a total_steps/max_steps
        # config key): the steps a stop saved, on the grid's batch summary.
        "ALTER TABLE runs ADD COLUMN planned_steps BIGINT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The store was written by a newer trainlight than this one."""


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create or upgrade the store's tables in place; return the schema version now in force."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"this store has schema version {current}, newer than this trainlight understands "
            f"({SCHEMA_VERSION}); upgrade trainlight to read it"
        )
    for version in range(current, SCHEMA_VERSION):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
