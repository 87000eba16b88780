"""A decoded segment: the run header from the Parquet metadata and its normalised rows.

Its own module so that the ingest steps (rows, sparklines, health) can name it without importing
the orchestrating `ingest` module.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from trainlight.collectors.schema import RunHeader


@dataclass(frozen=True)
class Segment:
    header: RunHeader
    table: pa.Table  # SEGMENT_SCHEMA columns; the header still in the schema metadata
