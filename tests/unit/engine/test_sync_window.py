"""The client side of SyncRuns holds records back while the server writes.

The stream here is a loopback of the test's own: it records what the client
sends and acks when the test says so, so the windowing can be checked
message by message (the real server is exercised by the integration tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from weir.engine.sync_stream import MAX_IN_FLIGHT, RunSync
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
