"""The persister stores exactly the rows it stored when it wrote through SQLAlchemy's
executemany with ``json_format.MessageToDict`` payloads: same values, same JSON text
(3.0 stays 3.0), first write wins on a repeated event id, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, require_backend, unique_schema_prefix
from weir.v1 import common_pb2
from weir_events import DEFINITION
from weir_events.filters import timestamp_to_datetime
from weir_events.models import PRIMARY_ROLE, event_resources, events
from weir_events.persister import store_events
from weir_kit.db import Database
from weir_kit.events import RESOURCE_ID, RESOURCE_ROLE, new_event, resource
from weir_kit.migrations import upgrade
from weir_kit.settings import KitSettings

T0 = datetime(2030, 1, 1, 8, 30, 15, 123456, tzinfo=UTC)
RECEIVED = [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]

PAYLOADS: list[dict[str, Any] | None] = [
    None,
    {"n": 3, "x": 1.5, "neg": -7, "zero": 0, "big": 2**60, "tiny": 1e-300, "neg_zero": -0.0},
    {"ok": True, "no": False, "none": None, "s": 'héllo ✓ "quoted"', "empty_s": ""},
    {"nested": {"deeper": {"k": [1, 2.25, {"a": None}], "e": {}}, "list": []}, "tags": ["a", "b"]},
    {"intended": {"from": None, "to": "RUNNING"}, "validated_state": {"id": "s1", "type": "RUNNING"}},
]


def _events() -> tuple[list[common_pb2.Event], list[common_pb2.Event]]:
    """Two batches: varied payloads and resources, an id twice in the first batch (the later
    copy differs) and again in the second batch (which must not overwrite it)."""
    first = []
    for i, payload in enumerate(PAYLOADS):
        first.append(
            new_event(
                f"weir.flow-run.S{i}",
                resource(f"weir.flow-run.{i}", name=f"run-{i}", **{"weir.state-name": "Running"}),
                occurred=T0 + timedelta(seconds=i, microseconds=i),
                related=[
                    resource("weir.flow.f", name="etl", role="flow"),
                    resource("weir.flow.f", role="flow"),  # the same (id, role) again
                    resource(f"weir.flow-run.{i}", role="parent"),  # its own id, another role
                    {"no": "resource id"},
                    {RESOURCE_ID: "weir.tag.x"},  # no role
                ][: i + 1],
                payload=payload,
                follows="prev" if i % 2 else None,
            )
        )
    empty_payload = new_event("weir.empty", resource("weir.r.empty"), occurred=T0)
    empty_payload.payload.CopyFrom(Struct())  # set but empty
    first.append(empty_payload)
    repeated = first[0].id
    first.append(new_event("weir.later.copy", resource("weir.r.later"), occurred=T0, event_id=repeated))
    second = [
        new_event("weir.redelivered", resource("weir.r.again"), occurred=T0, event_id=repeated, payload={"n": 9}),
        new_event("weir.second", resource("weir.r.second"), occurred=T0 + timedelta(days=1), payload={"f": 0.1}),
    ]
    return first, second


def _old_event_row(event: common_pb2.Event, received: datetime) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred": timestamp_to_datetime(event.occurred),
        "event": event.event,
        "resource_id": event.resource.labels[RESOURCE_ID],
        "resource": dict(event.resource.labels),
        "related": [dict(r.labels) for r in event.related],
        "payload": json_format.MessageToDict(event.payload) if event.HasField("payload") else {},
        "follows": event.follows or None,
        "received": received,
    }


def _old_resource_rows(event: common_pb2.Event) -> list[dict[str, Any]]:
    occurred = timestamp_to_datetime(event.occurred)
    keys = {(event.resource.labels[RESOURCE_ID], PRIMARY_ROLE): None}
    for related in event.related:
        resource_id = related.labels.get(RESOURCE_ID)
        if resource_id:
            keys[(resource_id, related.labels.get(RESOURCE_ROLE, ""))] = None
    return [{"event_id": event.id, "resource_id": rid, "role": role, "occurred": occurred} for rid, role in keys]


async def _old_store_events(
    session: AsyncSession, db: Database, batch: Sequence[common_pb2.Event], received: datetime
) -> None:
    """The persister's writes before they moved to the driver connection, kept as the reference."""
    dialect = postgresql if db.is_postgres else sqlite
    unique = {e.id: e for e in batch}
    insert = dialect.insert(events).on_conflict_do_nothing(index_elements=["id"])
    await session.execute(insert, [_old_event_row(e, received) for e in unique.values()])
    rows = [row for e in unique.values() for row in _old_resource_rows(e)]
    insert = dialect.insert(event_resources).on_conflict_do_nothing(index_elements=["event_id", "resource_id", "role"])
    await session.execute(insert, rows)


async def _stored(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row as the database holds it: JSON as its text, SQLite's timestamps as their text."""
    json_text = "CAST({} AS TEXT)" if db.is_postgres else "{}"
    columns = ", ".join(
        json_text.format(c.name) if c.name in ("resource", "related", "payload") else c.name for c in events.c
    )
    async with db.read() as session:
        event_rows = (await session.execute(text(f"SELECT {columns} FROM events ORDER BY id"))).all()
        resource_rows = (
            await session.execute(text("SELECT * FROM event_resources ORDER BY event_id, resource_id, role"))
        ).all()
    return [tuple(r) for r in event_rows], [tuple(r) for r in resource_rows]


async def _database(backend: str, home: Path) -> Database:
    if backend == "postgres":
        settings = KitSettings(home=home, database_url=POSTGRES_URL, database_schema_prefix=unique_schema_prefix())
    else:
        settings = KitSettings(home=home)
    db = Database(settings, DEFINITION.name)
    await upgrade(db, DEFINITION.migrations, DEFINITION.metadata)
    return db


@pytest.fixture(params=BACKENDS)
async def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    require_backend(request.param)
    dbs = [await _database(request.param, tmp_path / name) for name in ("old", "new")]
    try:
        yield dbs[0], dbs[1]
    finally:
        for db in dbs:
            if db.is_postgres:
                await db.drop_schema()
            await db.dispose()


async def test_stored_rows_are_what_the_sqlalchemy_writes_stored(two_databases: tuple[Database, Database]) -> None:
    old_db, new_db = two_databases
    batches = _events()
    for batch, received in zip(batches, RECEIVED, strict=True):
        async with old_db.transaction() as session:
            await _old_store_events(session, old_db, batch, received)
        async with new_db.transaction() as session:
            await store_events(session, new_db, batch, lambda received=received: received)

    old_events, old_resources = await _stored(old_db)
    new_events, new_resources = await _stored(new_db)
    assert new_events == old_events
    assert new_resources == old_resources
    # The reference itself behaved as the persister promises: first write wins, nothing twice.
    assert len(old_events) == len({e.id for batch in batches for e in batch})
    stored_names = {row[2] for row in old_events}
    assert "weir.later.copy" in stored_names and "weir.redelivered" not in stored_names
    assert any("3.0" in str(row[6]) for row in old_events)  # numbers stay floats in the JSON text
    assert len(old_resources) == len({(r[0], r[1], r[2]) for r in old_resources})


async def test_a_batch_of_only_known_events_changes_nothing(two_databases: tuple[Database, Database]) -> None:
    _, db = two_databases
    batch = [new_event("weir.once", resource(f"weir.r.{uuid.uuid4()}"), occurred=T0, payload={"n": 1})]
    async with db.transaction() as session:
        await store_events(session, db, batch, lambda: RECEIVED[0])
    before = await _stored(db)
    async with db.transaction() as session:
        await store_events(session, db, batch, lambda: RECEIVED[1])
    assert await _stored(db) == before
