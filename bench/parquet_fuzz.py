"""Fuzz the server's segment readers with damaged Parquet: which inputs abort, raise or pass.

Why: pyarrow's Parquet reader is C++, and some damaged files make it throw where nothing catches
the exception (`terminate called after throwing an instance of 'parquet::ParquetException'`),
so the process dies of SIGABRT: one such POST killed `trainlight serve`. Each input is therefore
run in a forked child process, and the child's fate is recorded: "pass" (accepted), "raise"
(refused with the target's own exception, as it should be), "raise!" (another exception: a
500 from the API), "sig6"/"sig11" (the process died), "hang".

Inputs are valid segments from the real writer (`encode_segment`, zstd): 20 metric rows as
bench/ingest_throughput.py makes them, 4 rows with list values, or the 20 rows with a column
outside the schema; damaged by one of: byte flips anywhere or in the footer, truncation, or a
rewrite of one integer or list the Thrift footer or a page header declares (offsets, sizes,
value counts, types, encodings, codecs, lengths of lists of numbers such as level histograms;
tests/support/parquet_thrift.py).
The targets are the receive-path check (`check_segment`) and the ingester's `decode_segment`.
Bounded by --seconds; aborting inputs are saved under --out for tests and triage.

    python bench/parquet_fuzz.py --seconds 60 --out /tmp/parquet-fuzz
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # `python bench/parquet_fuzz.py`: make `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.segment_fuzz import (
    TARGETS,
    extra_column_segment,
    fate,
    list_segment,
    mutate,
    seed_segment,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="save aborting inputs here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = [seed_segment(), list_segment(), extra_column_segment()]
    counts: Counter[tuple[str, str, str]] = Counter()
    deadline = time.monotonic() + args.seconds
    inputs = 0
    while time.monotonic() < deadline:
        kind, payload = mutate(rng, rng.choice(seeds))
        inputs += 1
        for target in TARGETS:
            outcome = fate(target, payload)
            counts[target, kind, outcome] += 1
            if outcome not in ("pass", "raise") and args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                name = f"{outcome}-{target}-{kind}-{hashlib.sha1(payload).hexdigest()[:10]}"
                (args.out / f"{name}.parquet").write_bytes(payload)
    sizes = "/".join(str(len(seed)) for seed in seeds)
    print(f"{inputs} inputs in {args.seconds:.0f} s (seed {args.seed}, {sizes}-byte segments)")
    for (target, kind, outcome), n in sorted(counts.items()):
        print(f"  {target:15} {kind:12} {outcome:6} {n:6}")
    crashed = sum(n for (_, _, outcome), n in counts.items() if outcome not in ("pass", "raise"))
    print(f"inputs that killed or hung the reader: {crashed}")


if __name__ == "__main__":
    main()
