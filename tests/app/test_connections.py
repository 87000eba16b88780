"""The connection limit `trainlight serve` announces is one its descriptor limit can hold."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from trainlight.app.connections import FD_RESERVE, connection_limits

PROBE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from trainlight.app.connections import connection_limits
limits = connection_limits(int(sys.argv[3]))
print(json.dumps([limits.open_files, limits.connection_limit,
                  resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))
"""


def probe(soft: int, hard: int, requested: int) -> list[int]:
    """`connection_limits(requested)` in a fresh process started under (soft, hard)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(soft), str(hard), str(requested)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_the_soft_limit_is_raised_to_hold_the_requested_connections() -> None:
    hard = hard_limit()
    if hard < 4096 + FD_RESERVE:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} too low to raise anything")
    assert probe(1024, hard, 4096) == [4096 + FD_RESERVE, 4096, 4096 + FD_RESERVE]


def test_a_low_hard_limit_clamps_the_connection_limit_below_it() -> None:
    hard = min(hard_limit(), 1000)
    assert probe(hard, hard, 8192) == [hard, hard - FD_RESERVE, hard]
    assert probe(300, hard, 8192) == [hard, hard - FD_RESERVE, hard]


def test_never_lowers_a_soft_limit_that_is_already_high_enough() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = connection_limits(10)
    assert limits.connection_limit == 10
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft
