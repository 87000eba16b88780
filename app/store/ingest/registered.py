"""An Arrow table visible to one write transaction's SQL under a name, for a block.

Ingest hands DuckDB whole batches as registered Arrow tables (zero copy) and writes them with
set-based statements. The registration is dropped after the block only when the block succeeded:
after a failed statement DuckDB refuses every command, `unregister` included, until the rollback,
and that refusal would replace the block's own error (a data error, which ingest isolates) with a
transaction error (which it must not blame on the data). The registration belongs to the write
cursor, which `Store.write` closes in any case.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa


@contextmanager
def registered(cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    cur.register(name, table)
    yield
    cur.unregister(name)
