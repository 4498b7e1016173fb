"""The persister: idempotent on event id, survives NATS going away, shares
the stream with other replicas, and the retention pass deletes old events."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from tests.integration.events.helpers import eventually, make_event
from weir.v1 import common_pb2, events_pb2
from weir_events.models import event_resources, events
from weir_events.persister import Persister
from weir_kit.events import resource
from weir_kit.jetstream import event_subject

PERSISTER = "weir-events-persister"


async def count(stack, table, *where) -> int:
    async with stack.db.read() as session:
        return (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def acked_through(stack, seq: int) -> bool:
    info = await stack.nats.js.consumer_info(stack.settings.events_stream, PERSISTER)
    return info.ack_floor.stream_seq >= seq and info.num_ack_pending == 0


async def test_the_same_event_published_twice_is_stored_once(events_stack) -> None:
    js = events_stack.nats.js
    event = make_event("weir.dup.test", related=[resource("weir.flow.x", role="flow")])
    subject = event_subject(events_stack.settings, event.event)
    data = event.SerializeToString()
    # Different Nats-Msg-Ids (or none): the stream's dedup cannot help, the persister must.
    first = await js.publish(subject, data, headers={"Nats-Msg-Id": event.id})
    second = await js.publish(subject, data, headers={"Nats-Msg-Id": f"{event.id}-again"})
    third = await js.publish(subject, data)
    assert not second.duplicate and not third.duplicate
    assert first.seq < second.seq < third.seq

    await eventually(lambda: acked_through(events_stack, third.seq), 5, "all three messages acked")
    assert await count(events_stack, events, events.c.id == event.id) == 1
    assert await count(events_stack, event_resources, event_resources.c.event_id == event.id) == 2


async def test_a_message_that_is_not_an_event_does_not_block_the_rest(events_stack) -> None:
    js = events_stack.nats.js
    await js.publish(f"{events_stack.settings.events_subject_prefix}.junk", b"\xff\xff not protobuf")
    missing_resource = make_event("weir.bad.test")
    missing_resource.resource.labels.clear()
    await js.publish(event_subject(events_stack.settings, "weir.bad.test"), missing_resource.SerializeToString())
    good = make_event("weir.after.junk")
    ack = await js.publish(event_subject(events_stack.settings, good.event), good.SerializeToString())

    await eventually(lambda: acked_through(events_stack, ack.seq), 5, "messages settled")
    assert await count(events_stack, events, events.c.id == good.id) == 1
    assert await count(events_stack, events) == 1


async def test_an_event_that_can_never_be_stored_does_not_hold_up_the_rest(events_stack) -> None:
    # Published straight to the stream (EmitEvents refuses these): a payload that is not JSON, and a
    # NUL character, which Postgres text refuses (SQLite stores it). Each lands in a batch with good
    # events; before, the whole batch failed, was redelivered, and failed again, forever.
    js = events_stack.nats.js
    not_json = make_event("weir.poison.nan", payload={"rate": 1.5})
    not_json.payload.fields["rate"].number_value = math.nan
    nul = make_event("weir.poison.nul", resource_id="weir.flow-run.\x00nul")
    good = [make_event("weir.after.poison") for _ in range(3)]
    last = None
    for event in (good[0], not_json, good[1], nul, good[2]):
        last = await js.publish(event_subject(events_stack.settings, event.event), event.SerializeToString())
    assert last is not None

    await eventually(lambda: acked_through(events_stack, last.seq), 10, "all five messages settled")
    for event in good:
        assert await count(events_stack, events, events.c.id == event.id) == 1
    assert await count(events_stack, events, events.c.id == not_json.id) == 0
    stored_nul = await count(events_stack, events, events.c.id == nul.id)
    assert stored_nul == (0 if events_stack.db.is_postgres else 1)


async def test_events_emitted_while_nats_is_down_arrive_once_after_it_returns(events_stack) -> None:
    stub = events_stack.stub
    warm_up = make_event("weir.outage.before")
    await stub.EmitEvents(events_pb2.EmitEventsRequest(events=[warm_up]), timeout=5)
    await eventually(lambda: count(events_stack, events, events.c.id == warm_up.id), 5, "warm-up event stored")

    await asyncio.to_thread(events_stack.nats_server.stop)
    during = [make_event("weir.outage.during") for _ in range(20)]
    for chunk in (during[:10], during[10:]):
        reply = await stub.EmitEvents(events_pb2.EmitEventsRequest(events=chunk), timeout=5)
        assert reply.accepted == 10
    # NATS is away: the rows wait in the outbox.
    assert await events_stack.outbox.pending() == 20

    # Same port, same store: the stream and the durable consumer come back.
    await asyncio.to_thread(events_stack.nats_server.start)

    async def all_stored() -> bool:
        stored = await count(events_stack, events, events.c.event == "weir.outage.during")
        return stored >= 20 and await events_stack.outbox.pending() == 0

    await eventually(all_stored, 30, "events emitted during the outage stored")
    info = await events_stack.nats.js.stream_info(events_stack.settings.events_stream)
    await eventually(lambda: acked_through(events_stack, info.state.last_seq), 10, "persister caught up")
    assert await count(events_stack, events, events.c.event == "weir.outage.during") == 20
    assert await count(events_stack, events) == 21
    assert await count(events_stack, event_resources) == 21
    reply = await stub.ListEvents(
        events_pb2.ListEventsRequest(
            filter=events_pb2.EventFilter(event_prefixes=["weir.outage.during"]),
            page=common_pb2.PageRequest(page_size=100),
        ),
        timeout=5,
    )
    assert sorted(e.id for e in reply.events) == sorted(e.id for e in during)


async def test_two_replicas_share_the_stream_without_duplicates(events_stack) -> None:
    other = Persister(events_stack.db, events_stack.nats, events_stack.events_settings, events_stack.runtime.ctx.clock)
    other.start()
    try:
        js = events_stack.nats.js
        batch = [make_event("weir.replicas.test") for _ in range(60)]
        acks = await asyncio.gather(
            *(js.publish(event_subject(events_stack.settings, e.event), e.SerializeToString()) for e in batch)
        )
        last = max(a.seq for a in acks)
        await eventually(lambda: acked_through(events_stack, last), 10, "both replicas drained the stream")
        assert await count(events_stack, events) == 60
        # Work-queue semantics: each message went to exactly one replica.
        assert events_stack.runtime.persister.stored + other.stored == 60
    finally:
        await other.stop()


async def test_retention_pass_deletes_only_old_events(events_stack) -> None:
    now = datetime.now(UTC)
    keep_days = events_stack.events_settings.retention_days
    target = f"weir.flow-run.{uuid.uuid4()}"
    old = [
        make_event("weir.old", occurred=now - timedelta(days=keep_days + 1), related=[resource(target, role="run")])
        for _ in range(3)
    ]
    fresh = make_event(
        "weir.fresh", occurred=now - timedelta(days=keep_days - 1), related=[resource(target, role="run")]
    )
    await events_stack.stub.EmitEvents(events_pb2.EmitEventsRequest(events=[*old, fresh]), timeout=5)
    await eventually(lambda: _count_is(events_stack, 4), 5, "all four stored")

    deleted = await events_stack.runtime.persister.retention_pass()

    assert deleted == 3
    async with events_stack.db.read() as session:
        remaining = (await session.execute(select(events.c.id))).scalars().all()
        resource_event_ids = set((await session.execute(select(event_resources.c.event_id))).scalars().all())
    assert remaining == [fresh.id]
    assert resource_event_ids == {fresh.id}
    assert await events_stack.runtime.persister.retention_pass() == 0


async def _count_is(stack, expected: int) -> bool:
    return await count(stack, events) == expected
