"""Size caps on a run's free text: refused before the acknowledgement, with the field named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.segments import metrics_segment
from trainlight.app.factory import create_app
from trainlight.app.store.database import Store
from trainlight.collectors.http_sink import SEGMENT_CONTENT_TYPE
from trainlight.collectors.run_header import MAX_CONFIG_BYTES, MAX_LABEL_CHARS, MAX_TAGS
from trainlight.collectors.schema import StoreLayout


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    yield opened
    opened.close()


def _post(client: FlaskClient, payload: bytes) -> tuple[int, str]:
    reply = client.post(
        "/api/v1/ingest?run_id=r-1&seq=0", data=payload, content_type=SEGMENT_CONTENT_TYPE
    )
    return reply.status_code, (reply.get_json() or {}).get("error", "")


OVERSIZED: list[tuple[dict[str, object], str]] = [
    ({"name": "n" * (MAX_LABEL_CHARS + 1)}, "run name"),
    ({"project": "p" * 10_000}, "run project"),
    ({"group": "g" * (MAX_LABEL_CHARS + 1)}, "run group"),
    ({"tags": ("t",) * (MAX_TAGS + 1)}, "run tags"),
    ({"tags": ("t" * (MAX_LABEL_CHARS + 1),)}, "run tag"),
    ({"config": {"blob": "x" * MAX_CONFIG_BYTES}}, "run config"),
    ({"roles": {"adversary": "k" * (MAX_LABEL_CHARS + 1)}}, "run role key"),
]


@pytest.mark.parametrize(("fields", "named"), OVERSIZED)
def test_oversized_text_is_refused_before_the_ack_naming_the_field(
    store: Store, fields: dict[str, object], named: str
) -> None:
    client = create_app(store).server.test_client()
    name = str(fields.pop("name", "a run"))
    status, message = _post(client, metrics_segment("r-1", 0, [(0, "x", 1.0)], name=name, **fields))
    assert status == 422 and named in message, (status, message)
    assert not list(store.layout.inbox.glob("*/*"))


def test_text_at_the_caps_is_accepted(store: Store) -> None:
    client = create_app(store).server.test_client()
    fields = {
        "tags": ("t" * MAX_LABEL_CHARS,) * MAX_TAGS,
        "config": {"blob": "x" * (MAX_CONFIG_BYTES - 100)},
    }
    segment = metrics_segment("r-1", 0, [(0, "x", 1.0)], name="n" * MAX_LABEL_CHARS, **fields)
    assert _post(client, segment)[0] == 202


def test_the_collector_refuses_an_oversized_description_up_front() -> None:
    from trainlight.collectors.run_description import describe_run

    common: dict[str, object] = {"project": "", "group": "", "health": None, "prune_on": ()}
    with pytest.raises(ValueError, match="run config"):
        describe_run("r-1", "n", tags=(), config={"x": "y" * MAX_CONFIG_BYTES}, **common)
    with pytest.raises(ValueError, match="run name"):
        describe_run("r-1", "n" * 1000, tags=(), config=None, **common)
