"""The client side of SyncRuns holds records back while the server writes.

The stream here is a loopback of the test's own: it records what the client
sends and acks when the test says so, so the windowing can be checked
message by message (the real server is exercised by the integration tests).
So is the server end that fails: a real server answers INTERNAL only when it
has a bug, which no test can set off on purpose.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import pytest

from weir.engine import sync_stream
from weir.engine.sync_stream import MAX_IN_FLIGHT, MAX_SERVER_ERRORS, RunSync
from weir.errors import InternalError, WeirError
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb


class Loopback:
    """A stand-in for the server end of one stream: collects requests, replies on demand."""

    def __init__(self) -> None:
        self.received: list[pb.SyncRunsRequest] = []
        self.replies: asyncio.Queue[pb.SyncRunsResponse] = asyncio.Queue()

    def open(self, requests: AsyncIterator[pb.SyncRunsRequest]) -> Call:
        return Call(self, requests)


class Call:
    def __init__(self, server: Loopback, requests: AsyncIterator[pb.SyncRunsRequest]) -> None:
        self.server = server
        self.reader = asyncio.ensure_future(self._read(requests))

    async def _read(self, requests: AsyncIterator[pb.SyncRunsRequest]) -> None:
        async for msg in requests:
            self.server.received.append(msg)

    def __aiter__(self) -> Call:
        return self

    async def __anext__(self) -> pb.SyncRunsResponse:
        return await self.server.replies.get()

    def cancel(self) -> None:
        self.reader.cancel()


def _create(i: int) -> pb.CreateTaskRunRequest:
    return pb.CreateTaskRunRequest(id=f"run-{i}", task_key="k", state=common_pb2.State(type=common_pb2.PENDING))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def loop_thread():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _on(loop: asyncio.AbstractEventLoop, coro):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(5)


def test_records_wait_for_an_ack_once_the_window_is_full(loop_thread: asyncio.AbstractEventLoop) -> None:
    server = Loopback()
    sync = RunSync(loop_thread, server.open)

    async def submit_one_by_one(start: int, count: int) -> None:
        for i in range(start, start + count):
            sync.submit(creates=(_create(i),))
            await _settle()  # each record gets its own loop turn, as from a fast flow body

    _on(loop_thread, submit_one_by_one(0, 50))
    # The first records leave at once, one message each; then the window is full.
    assert len(server.received) == MAX_IN_FLIGHT
    assert [len(m.create_task_runs) for m in server.received] == [1] * MAX_IN_FLIGHT
    flushed = sync.flush()
    _on(loop_thread, _settle())
    assert not flushed.done()

    # One ack frees one slot: everything held back leaves in one message.
    _on(loop_thread, server.replies.put(pb.SyncRunsResponse(acked_seq=server.received[0].seq)))
    _on(loop_thread, _settle())
    assert len(server.received) == MAX_IN_FLIGHT + 1
    assert len(server.received[-1].create_task_runs) == 50 - MAX_IN_FLIGHT
    sent = [r.id for m in server.received for r in m.create_task_runs]
    assert sent == [f"run-{i}" for i in range(50)]  # in order, none twice
    assert not flushed.done()  # the flush covers the held-back records too

    _on(loop_thread, server.replies.put(pb.SyncRunsResponse(acked_seq=server.received[-1].seq)))
    flushed.result(5)
    _on(loop_thread, sync.close())


def test_a_flush_with_nothing_held_back_resolves_on_the_last_ack(loop_thread: asyncio.AbstractEventLoop) -> None:
    server = Loopback()
    sync = RunSync(loop_thread, server.open)
    sync.submit(creates=(_create(1),))
    flushed = sync.flush()
    _on(loop_thread, _settle())
    assert len(server.received) == 1 and not flushed.done()
    _on(loop_thread, server.replies.put(pb.SyncRunsResponse(acked_seq=server.received[0].seq)))
    flushed.result(5)
    assert sync.flush().result(5) is None  # nothing outstanding: at once
    _on(loop_thread, sync.close())


class FailingServer:
    """A server end that answers each message it reads from a script: an ack (the stream stays
    open), or a gRPC status that ends the stream (as grpc.aio raises it to the client)."""

    def __init__(self, script: list[grpc.StatusCode | str]) -> None:
        self.script = script
        self.steps = 0
        self.opened = 0
        self.received: list[pb.SyncRunsRequest] = []

    def open(self, requests: AsyncIterator[pb.SyncRunsRequest]) -> FailingCall:
        self.opened += 1
        return FailingCall(self, requests)

    def next_step(self) -> grpc.StatusCode | str:
        step = self.script[min(self.steps, len(self.script) - 1)]
        self.steps += 1
        return step


class FailingCall:
    def __init__(self, server: FailingServer, requests: AsyncIterator[pb.SyncRunsRequest]) -> None:
        self.server, self.requests = server, requests

    def __aiter__(self) -> AsyncIterator[pb.SyncRunsResponse]:
        return self._replies()

    async def _replies(self) -> AsyncIterator[pb.SyncRunsResponse]:
        async for msg in self.requests:
            self.server.received.append(msg)
            step = self.server.next_step()
            if step != "ack":
                raise grpc.aio.AioRpcError(step, grpc.aio.Metadata(), grpc.aio.Metadata(), details="boom")
            yield pb.SyncRunsResponse(acked_seq=msg.seq)

    def cancel(self) -> None:
        pass


def _waiting_proposal(task_run_id: str) -> pb.TaskRunStateProposal:
    state = common_pb2.State(type=common_pb2.RUNNING)
    return pb.TaskRunStateProposal(
        task_run_id=task_run_id, proposal=pb.StateProposal(state=state), wait_for_decision=True
    )


@pytest.fixture
def quick_resends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_stream, "_RECONNECT_FIRST", 0.001)
    monkeypatch.setattr(sync_stream, "_RECONNECT_CAP", 0.002)


def test_a_server_error_on_every_resend_fails_the_waiting_tasks(
    loop_thread: asyncio.AbstractEventLoop, quick_resends: None
) -> None:
    server = FailingServer([grpc.StatusCode.INTERNAL])
    sync = RunSync(loop_thread, server.open)
    waiter = sync.submit(proposals=(_waiting_proposal("t1"),))
    flushed = sync.flush()
    assert waiter is not None
    with pytest.raises(InternalError, match="boom"):
        waiter.result(5)
    with pytest.raises(InternalError):
        flushed.result(5)
    # Sent again after each error (same number), then given up on: no endless resending.
    assert server.opened == MAX_SERVER_ERRORS
    assert {m.seq for m in server.received} == {1}
    _on(loop_thread, sync.close())


def test_server_errors_between_acks_and_outages_keep_the_stream_resending(
    loop_thread: asyncio.AbstractEventLoop, quick_resends: None
) -> None:
    internal, unavailable = grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE
    # Never MAX_SERVER_ERRORS server errors in a row: an ack, or an outage, comes between.
    script: list[grpc.StatusCode | str] = [internal] * (MAX_SERVER_ERRORS - 1) + ["ack"]
    script += [internal] * (MAX_SERVER_ERRORS - 1) + [unavailable] * 10 + ["ack"]
    server = FailingServer(script)
    sync = RunSync(loop_thread, server.open)
    first = sync.submit(proposals=(_waiting_proposal("t1"),))
    sync.flush().result(5)
    second = sync.submit(proposals=(_waiting_proposal("t2"),))
    sync.flush().result(5)
    assert server.steps == len(script)  # every error was followed by a resend
    assert sync.error is None
    for waiter in (first, second):  # acked without a decision for them: told so, not hung
        assert waiter is not None
        with pytest.raises(RuntimeError, match="no decision came back"):
            waiter.result(5)
    _on(loop_thread, sync.close())


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED])
def test_a_refusal_fails_at_once(
    loop_thread: asyncio.AbstractEventLoop, quick_resends: None, code: grpc.StatusCode
) -> None:
    server = FailingServer([code])
    sync = RunSync(loop_thread, server.open)
    waiter = sync.submit(proposals=(_waiting_proposal("t1"),))
    assert waiter is not None
    with pytest.raises(WeirError):
        waiter.result(5)
    assert server.opened == 1
    _on(loop_thread, sync.close())
