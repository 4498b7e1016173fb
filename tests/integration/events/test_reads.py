"""EmitEvents → outbox → JetStream → persister → ListEvents / GetEvent."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.integration.events.helpers import eventually, make_event
from weir.errors import FIELD_METADATA_KEY
from weir.v1 import common_pb2, events_pb2
from weir_kit.events import RESOURCE_ID, resource


def ts(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


async def emit(stack, *events: common_pb2.Event) -> None:
    reply = await stack.stub.EmitEvents(events_pb2.EmitEventsRequest(events=events), timeout=5)
    assert reply.accepted == len(events)


async def list_events(stack, **kwargs) -> events_pb2.ListEventsResponse:
    return await stack.stub.ListEvents(events_pb2.ListEventsRequest(**kwargs), timeout=5)


async def wait_for_ids(stack, ids: set[str], timeout: float = 5.0) -> None:
    async def stored() -> bool:
        reply = await list_events(stack, page=common_pb2.PageRequest(page_size=1000))
        return ids <= {e.id for e in reply.events}

    await eventually(stored, timeout, f"events {sorted(ids)} persisted")


def field_of(error: grpc.aio.AioRpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(FIELD_METADATA_KEY)


async def test_emitted_event_is_readable_within_a_second(events_stack) -> None:
    resource_id = f"weir.flow-run.{uuid.uuid4()}"
    related = [resource("weir.flow.abc", role="flow", name="etl")]
    event = make_event(resource_id=resource_id, related=related, payload={"rows": 3, "ok": True})
    await emit(events_stack, event)

    async def fetched() -> common_pb2.Event | None:
        try:
            return (await events_stack.stub.GetEvent(events_pb2.GetEventRequest(id=event.id), timeout=5)).event
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    stored = await eventually(fetched, 1.0, "event readable")
    assert stored.event == "weir.flow-run.Completed"
    assert stored.resource.labels[RESOURCE_ID] == resource_id
    assert [dict(r.labels) for r in stored.related] == related
    assert dict(stored.payload) == {"rows": 3, "ok": True}
    assert stored.occurred.ToDatetime(tzinfo=UTC) == event.occurred.ToDatetime(tzinfo=UTC)
    assert stored.HasField("received")
    assert await events_stack.outbox.pending() == 0


async def test_emit_fills_missing_id_and_occurred(events_stack) -> None:
    before = datetime.now(UTC)
    bare = common_pb2.Event(event="custom.thing.happened", resource=common_pb2.Resource(labels={RESOURCE_ID: "x.1"}))
    await emit(events_stack, bare)

    async def one() -> list[common_pb2.Event]:
        reply = await list_events(events_stack, filter=events_pb2.EventFilter(event_prefixes=["custom."]))
        return list(reply.events)

    (stored,) = await eventually(one, 5, "event persisted")
    uuid.UUID(stored.id)
    assert stored.occurred.ToDatetime(tzinfo=UTC) >= before - timedelta(seconds=1)


async def test_filters_by_prefix_resource_related_and_time(events_stack) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    flow_run = f"weir.flow-run.{uuid.uuid4()}"
    other_run = f"weir.flow-run.{uuid.uuid4()}"
    deployment = f"weir.deployment.{uuid.uuid4()}"
    a = make_event("weir.flow-run.Running", flow_run, occurred=base)
    b = make_event("weir.flow-run.Completed", flow_run, occurred=base + timedelta(minutes=1))
    c = make_event(
        "weir.task-run.Completed",
        f"weir.task-run.{uuid.uuid4()}",
        occurred=base + timedelta(minutes=2),
        related=[resource(flow_run, role="flow-run"), resource(deployment, role="deployment")],
    )
    d = make_event("weir.flow-run.Running", other_run, occurred=base + timedelta(minutes=3))
    # LIKE wildcards in a prefix are literal: "weir_flow" must not match "weir.flow-run...".
    e = make_event("weir_flow%x.created", f"odd.{uuid.uuid4()}", occurred=base + timedelta(minutes=4))
    await emit(events_stack, a, b, c, d, e)
    await wait_for_ids(events_stack, {x.id for x in (a, b, c, d, e)})

    async def ids(**filter_kwargs) -> list[str]:
        reply = await list_events(events_stack, filter=events_pb2.EventFilter(**filter_kwargs), ascending=True)
        assert reply.total == len(reply.events)
        return [x.id for x in reply.events]

    assert await ids(event_prefixes=["weir.flow-run."]) == [a.id, b.id, d.id]
    assert await ids(event_prefixes=["weir.flow-run.Running", "weir.task-run."]) == [a.id, c.id, d.id]
    assert await ids(event_prefixes=["weir_flow%"]) == [e.id]
    assert await ids(event_prefixes=["weir_"]) == [e.id]
    assert await ids(resource_ids=[flow_run]) == [a.id, b.id, c.id]
    assert await ids(resource_ids=[deployment]) == [c.id]
    assert await ids(resource_ids=[deployment, other_run]) == [c.id, d.id]
    assert await ids(resource_ids=[flow_run], event_prefixes=["weir.task-run."]) == [c.id]
    window = common_pb2.TimeRange(after=ts(base + timedelta(minutes=1)), before=ts(base + timedelta(minutes=3)))
    assert await ids(occurred=window) == [b.id, c.id]
    assert await ids(occurred=common_pb2.TimeRange(after=ts(base + timedelta(minutes=3)))) == [d.id, e.id]
    assert await ids(resource_ids=["nobody"]) == []


async def test_pages_newest_first_and_oldest_first(events_stack) -> None:
    base = datetime(2031, 5, 5, tzinfo=UTC)
    # Pairs share an occurred time, so the id breaks the tie across page edges.
    batch = [make_event("weir.page.test", occurred=base + timedelta(seconds=i // 2)) for i in range(7)]
    await emit(events_stack, *batch)
    await wait_for_ids(events_stack, {x.id for x in batch})
    expected_desc = [x.id for x in sorted(batch, key=lambda x: (x.occurred.ToDatetime(), x.id), reverse=True)]

    for ascending, expected in ((False, expected_desc), (True, expected_desc[::-1])):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            reply = await list_events(
                events_stack,
                filter=events_pb2.EventFilter(event_prefixes=["weir.page."]),
                page=common_pb2.PageRequest(page_size=3, page_token=token),
                ascending=ascending,
            )
            assert reply.total == 7
            seen += [x.id for x in reply.events]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert seen == expected
        assert pages == 3


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (events_pb2.ListEventsRequest(page=common_pb2.PageRequest(page_token="not-a-token")), "page.page_token"),
        (events_pb2.ListEventsRequest(page=common_pb2.PageRequest(page_size=-1)), "page.page_size"),
        (
            events_pb2.ListEventsRequest(
                filter=events_pb2.EventFilter(
                    occurred=common_pb2.TimeRange(
                        after=ts(datetime(2030, 1, 2, tzinfo=UTC)), before=ts(datetime(2030, 1, 1, tzinfo=UTC))
                    )
                )
            ),
            "filter.occurred",
        ),
    ],
)
async def test_bad_list_requests_are_invalid_argument(events_stack, request_, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await events_stack.stub.ListEvents(request_, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(info.value) == field


async def test_page_token_of_the_other_sort_order_is_refused(events_stack) -> None:
    batch = [make_event("weir.order.test") for _ in range(3)]
    await emit(events_stack, *batch)
    await wait_for_ids(events_stack, {x.id for x in batch})
    first = await list_events(events_stack, page=common_pb2.PageRequest(page_size=1))
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_events(
            events_stack, page=common_pb2.PageRequest(page_size=1, page_token=first.next_page_token), ascending=True
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(info.value) == "page.page_token"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (common_pb2.Event(event="", resource=common_pb2.Resource(labels={RESOURCE_ID: "x"})), "events[1].event"),
        (common_pb2.Event(event="a.b", resource=common_pb2.Resource(labels={"k": "v"})), "events[1].resource"),
        (common_pb2.Event(event="a.b"), "events[1].resource"),
        (
            common_pb2.Event(
                event="a.b",
                resource=common_pb2.Resource(labels={RESOURCE_ID: "x"}),
                related=[common_pb2.Resource(labels={"weir.resource.role": "r"})],
            ),
            "events[1].related[0]",
        ),
        (
            common_pb2.Event(id="x" * 37, event="a.b", resource=common_pb2.Resource(labels={RESOURCE_ID: "x"})),
            "events[1].id",
        ),
        # What the persister could never store would hold up every event after it.
        (make_event("a.b", payload={"rate": math.nan}), "events[1].payload"),
        (make_event("a.b", payload={"deep": [{"n": -math.inf}]}), "events[1].payload"),
        (make_event("a.b", payload={"text": "nul\x00here"}), "events[1].payload"),
        (make_event("a.b", resource_id="weir.flow-run.\x00"), "events[1].resource"),
        (make_event("a.b", related=[{RESOURCE_ID: "x", "weir.resource.role": "r\x00"}]), "events[1].related"),
        (make_event("a.\x00"), "events[1].event"),
    ],
)
async def test_bad_events_are_invalid_argument_and_nothing_is_accepted(events_stack, event, field) -> None:
    good = make_event("weir.good.one")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await events_stack.stub.EmitEvents(events_pb2.EmitEventsRequest(events=[good, event]), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(info.value) == field
    assert await events_stack.outbox.pending() == 0
    reply = await list_events(events_stack)
    assert good.id not in {e.id for e in reply.events}


async def test_unknown_event_is_not_found(events_stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await events_stack.stub.GetEvent(events_pb2.GetEventRequest(id=str(uuid.uuid4())), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_emitting_the_same_event_twice_stores_it_once(events_stack) -> None:
    event = make_event("weir.retry.test")
    await emit(events_stack, event, event)
    await emit(events_stack, event)
    await wait_for_ids(events_stack, {event.id})
    follow_up = make_event("weir.retry.test")
    await emit(events_stack, follow_up)
    await wait_for_ids(events_stack, {follow_up.id})
    reply = await list_events(events_stack, filter=events_pb2.EventFilter(event_prefixes=["weir.retry."]))
    assert sorted(e.id for e in reply.events) == sorted([event.id, follow_up.id])
    assert reply.total == 2
