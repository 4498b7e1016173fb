"""Subscribe: live events, backfill from ``since``, server-side filtering, and
no consumer left behind when a subscriber goes away (even by SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.integration.events.helpers import eventually, make_event
from weir.errors import FIELD_METADATA_KEY
from weir.v1 import common_pb2, events_pb2
from weir_kit.events import resource

PERSISTER = "weir-events-persister"


def since(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


async def emit(stack, *events: common_pb2.Event) -> None:
    await stack.stub.EmitEvents(events_pb2.EmitEventsRequest(events=events), timeout=5)


async def open_subscription(stack, request: events_pb2.SubscribeRequest):
    before = set(stack.runtime.subscriptions.active)
    call = stack.stub.Subscribe(request)

    async def started() -> set[str]:
        return stack.runtime.subscriptions.active - before

    (name,) = await eventually(started, 5, "subscription consumer created")
    return call, name


async def next_event(call, timeout: float = 5.0) -> common_pb2.Event:
    event = await asyncio.wait_for(call.read(), timeout)
    assert event is not grpc.aio.EOF
    return event


async def only_persister_left(stack) -> bool:
    names = await stack.consumer_names()
    return names == {PERSISTER}


async def test_live_events_arrive_and_the_filter_applies(events_stack) -> None:
    run_id = f"weir.flow-run.{uuid.uuid4()}"
    request = events_pb2.SubscribeRequest(
        filter=events_pb2.EventFilter(event_prefixes=["weir.sub.live."], resource_ids=[run_id])
    )
    call, _ = await open_subscription(events_stack, request)
    try:
        wrong_name = make_event("weir.other.thing", run_id)
        wrong_resource = make_event("weir.sub.live.Completed")
        related = make_event("weir.sub.live.TaskDone", related=[resource(run_id, role="flow-run")])
        direct = make_event("weir.sub.live.Completed", run_id)
        await emit(events_stack, wrong_name, wrong_resource, related)
        await emit(events_stack, direct)

        got = [await next_event(call), await next_event(call)]
        # Stream order, and the two non-matching events (published first) were skipped.
        assert [e.id for e in got] == [related.id, direct.id]
        assert got[1].resource.labels["weir.resource.id"] == run_id
    finally:
        call.cancel()
    await eventually(lambda: only_persister_left(events_stack), 5, "consumer deleted after cancel")


async def test_since_replays_earlier_events_then_goes_live(events_stack) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    earlier = [make_event("weir.sub.backfill.A") for _ in range(3)]
    noise = make_event("weir.sub.noise")
    await emit(events_stack, earlier[0], noise, *earlier[1:])
    await eventually(lambda: _outbox_empty(events_stack), 5, "earlier events published")

    request = events_pb2.SubscribeRequest(
        filter=events_pb2.EventFilter(event_prefixes=["weir.sub.backfill."]), since=since(start)
    )
    call, _ = await open_subscription(events_stack, request)
    try:
        replayed = [await next_event(call) for _ in earlier]
        assert [e.id for e in replayed] == [e.id for e in earlier]
        live = make_event("weir.sub.backfill.B")
        await emit(events_stack, live)
        assert (await next_event(call)).id == live.id
    finally:
        call.cancel()


async def test_without_since_only_new_events_arrive(events_stack) -> None:
    old = make_event("weir.sub.new.old")
    await emit(events_stack, old)
    await eventually(lambda: _outbox_empty(events_stack), 5, "old event published")
    call, _ = await open_subscription(
        events_stack, events_pb2.SubscribeRequest(filter=events_pb2.EventFilter(event_prefixes=["weir.sub.new."]))
    )
    try:
        new = make_event("weir.sub.new.fresh")
        await emit(events_stack, new)
        assert (await next_event(call)).id == new.id
    finally:
        call.cancel()


async def test_subscription_consumer_is_ephemeral_narrowed_and_expires(events_stack) -> None:
    call, name = await open_subscription(
        events_stack,
        events_pb2.SubscribeRequest(filter=events_pb2.EventFilter(event_prefixes=["weir.flow-run.Comp"])),
    )
    try:
        info = await events_stack.nats.js.consumer_info(events_stack.settings.events_stream, name)
        assert info.config.durable_name is None
        assert info.config.inactive_threshold == pytest.approx(
            events_stack.events_settings.subscriber_inactive_threshold_seconds
        )
        assert info.config.filter_subject == f"{events_stack.settings.events_subject_prefix}.weir.flow-run.>"
    finally:
        call.cancel()
    await eventually(lambda: only_persister_left(events_stack), 5, "consumer deleted after cancel")


async def test_bad_subscribe_filter_is_invalid_argument(events_stack) -> None:
    now = datetime.now(UTC)
    request = events_pb2.SubscribeRequest(
        filter=events_pb2.EventFilter(occurred=common_pb2.TimeRange(after=since(now), before=since(now - timedelta(1))))
    )
    call = events_stack.stub.Subscribe(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(await call.trailing_metadata() or ()).get(FIELD_METADATA_KEY) == "filter.occurred"
    assert await only_persister_left(events_stack)


SUBSCRIBER = textwrap.dedent(
    """
    import sys

    import grpc

    from weir.v1 import events_pb2, events_pb2_grpc

    with grpc.insecure_channel(sys.argv[1]) as channel:
        stub = events_pb2_grpc.EventServiceStub(channel)
        for event in stub.Subscribe(events_pb2.SubscribeRequest()):
            print(event.id, flush=True)
    """
)


async def test_subscriber_killed_with_sigkill_leaves_no_consumer(events_stack, tmp_path) -> None:
    script = tmp_path / "subscriber.py"
    script.write_text(SUBSCRIBER)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), events_stack.address, stdout=asyncio.subprocess.PIPE
    )
    try:
        await eventually(lambda: _consumer_count_is(events_stack, 2), 15, "subscriber's consumer created")
        # It is really live: an event reaches the subprocess.
        event = make_event("weir.sub.sigkill")
        await emit(events_stack, event)
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.decode().strip() == event.id
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Well inside the 30 s inactive threshold: the server noticed and deleted it.
    await eventually(lambda: only_persister_left(events_stack), 5, "consumer deleted after SIGKILL")
    info = await events_stack.nats.js.stream_info(events_stack.settings.events_stream)
    assert info.state.consumer_count == 1
    assert not events_stack.runtime.subscriptions.active


async def _consumer_count_is(stack, expected: int) -> bool:
    return len(await stack.consumer_names()) == expected


async def _outbox_empty(stack) -> bool:
    return await stack.outbox.pending() == 0
