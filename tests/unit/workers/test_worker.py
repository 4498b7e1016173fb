"""The worker against a scripted WorkerService (a real gRPC server in this test's loop).

The fake server plays the protocol of ``deployments.proto``; a fake
orchestration client records the worker's proposals. Runs are tiny Python
commands (the job's ``command``), so no engine and no database are involved.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from weir._proto import dict_to_struct
from weir.client._grpc import Transport
from weir.client.types import Decision, FlowRun, ProposalResult, State, StateType
from weir.errors import NotFound
from weir.v1 import deployments_pb2 as pb
from weir.v1 import deployments_pb2_grpc
from weir.workers import ProcessWorker

TIMEOUT = 10.0


class Connection:
    """One Connect stream as the fake server sees it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[pb.WorkerMessage] = asyncio.Queue()
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.hello: pb.Hello | None = None

    async def next(self, kind: str) -> Any:
        """The next message of ``kind`` from the worker (others are skipped)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.received.get()
                if message.WhichOneof("body") == kind:
                    return getattr(message, kind)

    async def nothing(self, kind: str, seconds: float = 0.5) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.next(kind)

    def push(self, **body: Any) -> None:
        self.outgoing.put_nowait(pb.ServerMessage(**body))


class FakeWorkerService(deployments_pb2_grpc.WorkerServiceServicer):
    def __init__(self) -> None:
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.refuse: grpc.StatusCode | None = None
        self.heartbeat_interval = 30.0

    async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ServerMessage]:
        conn = Connection()
        first = await anext(aiter(request_iterator))
        assert first.WhichOneof("body") == "hello"
        conn.hello = first.hello
        if self.refuse is not None:
            await context.abort(self.refuse, "refused by the test")
        self.connections.put_nowait(conn)

        async def read() -> None:
            async for message in request_iterator:
                conn.received.put_nowait(message)

        reader = asyncio.create_task(read())
        try:
            welcome = pb.Welcome(worker_id="w-1", heartbeat_interval_seconds=self.heartbeat_interval)
            yield pb.ServerMessage(welcome=welcome)
            while True:
                item = await conn.outgoing.get()
                if item is None:
                    return  # the server ends the stream
                if isinstance(item, grpc.StatusCode):
                    await context.abort(item, "dropped by the test")
                yield item
        finally:
            reader.cancel()

    async def connection(self) -> Connection:
        async with asyncio.timeout(TIMEOUT):
            return await self.connections.get()


class FakeOrchestration:
    """The worker's client: the transport reaches the fake server; runs and states live here."""

    def __init__(self, address: str) -> None:
        self._transport = Transport(address)
        self.address = address
        self.states: dict[str, State] = {}
        self.proposals: asyncio.Queue[tuple[str, State, str | None]] = asyncio.Queue()

    async def read_flow_run(self, flow_run_id: str) -> FlowRun:
        state = self.states.get(flow_run_id, State(type=StateType.RUNNING))
        return FlowRun(id=flow_run_id, flow_id="flow-1", name="run", state=state)

    async def set_flow_run_state(
        self, flow_run_id: str, state: State, *, fencing_token: str | None = None, **_: Any
    ) -> ProposalResult:
        self.proposals.put_nowait((flow_run_id, state, fencing_token))
        self.states[flow_run_id] = state
        return ProposalResult(decision=Decision.ACCEPT, state=state)

    async def proposal(self) -> tuple[str, State, str | None]:
        async with asyncio.timeout(TIMEOUT):
            return await self.proposals.get()


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeWorkerService, str]]:
    service = FakeWorkerService()
    grpc_server = aio.server()
    deployments_pb2_grpc.add_WorkerServiceServicer_to_server(service, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        await grpc_server.stop(0)


class Harness:
    def __init__(self, service: FakeWorkerService, worker: ProcessWorker, client: FakeOrchestration) -> None:
        self.service = service
        self.worker = worker
        self.client = client
        self.task = asyncio.create_task(worker.run())

    async def result(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            return await self.task


@pytest.fixture
async def harness(server: tuple[FakeWorkerService, str]) -> AsyncIterator[Any]:
    service, address = server
    started: list[Harness] = []

    def start(**options: Any) -> Harness:
        client = FakeOrchestration(address)
        options.setdefault("limit", 2)
        worker = ProcessWorker(
            client, pool="pool-a", name="w", queues=("q1",), handle_signals=False, out=io.StringIO(), **options
        )
        started.append(Harness(service, worker, client))
        return started[-1]

    yield start
    for h in started:
        if not h.task.done():
            for _ in range(3):
                h.worker.stop()
        await asyncio.gather(h.task, return_exceptions=True)
        await h.client._transport.close()


def assign(run_id: str, code: str, token: str = "tok", **job: Any) -> dict[str, Any]:
    job_configuration = {"command": f"{sys.executable} -c {code!r}", "terminate_grace_seconds": 5, **job}
    message = pb.Assign(
        flow_run_id=run_id,
        deployment_id="dep-1",
        entrypoint="flows.py:main",
        job_configuration=dict_to_struct(job_configuration),
        fencing_token=token,
        flow_name="etl",
        work_queue_name="q1",
    )
    return {"assign": message}


SLEEP = "import time; time.sleep(60)"


async def test_hello_welcome_and_a_first_heartbeat(harness: Any) -> None:
    h = harness(limit=3, labels={"zone": "a"})
    conn = await h.service.connection()
    assert conn.hello.worker_name == "w" and conn.hello.work_pool_name == "pool-a"
    assert list(conn.hello.work_queue_names) == ["q1"] and conn.hello.free_slots == 3
    assert conn.hello.labels["zone"] == "a" and conn.hello.labels["type"] == "process"
    beat = await conn.next("heartbeat")
    assert list(beat.active_flow_run_ids) == []


async def test_a_run_is_acked_runs_and_its_slot_comes_back(harness: Any, tmp_path: Path) -> None:
    h = harness()
    conn = await h.service.connection()
    marker = tmp_path / "ran"
    h.client.states["r1"] = State(type=StateType.COMPLETED)  # as the engine would have left it
    conn.push(**assign("r1", f"import os; open({str(marker)!r}, 'w').write(os.environ['WEIR_FENCING_TOKEN'])"))
    ack = await conn.next("ack")
    assert (ack.flow_run_id, ack.fencing_token) == ("r1", "tok")
    assert (await conn.next("credit")).free_slots == 1
    beat = await conn.next("heartbeat")
    assert list(beat.active_flow_run_ids) == []  # sent when the process exited
    assert marker.read_text() == "tok"
    assert h.client.proposals.empty()  # the run had finished: nothing to say


async def test_a_process_that_exits_leaving_the_run_unfinished_crashes_it(harness: Any) -> None:
    h = harness()
    conn = await h.service.connection()
    conn.push(**assign("r1", "import sys; sys.exit(3)", token="tok-9"))
    run_id, state, token = await h.client.proposal()
    assert (run_id, state.type, token) == ("r1", StateType.CRASHED, "tok-9")
    assert state.message == "flow run process exited with code 3"


async def test_a_run_waiting_for_a_retry_is_left_to_the_server(harness: Any) -> None:
    h = harness()
    conn = await h.service.connection()
    h.client.states["r1"] = State(type=StateType.SCHEDULED, name="AwaitingRetry")
    conn.push(**assign("r1", "import sys; sys.exit(1)"))
    assert (await conn.next("credit")).free_slots == 1
    assert list((await conn.next("heartbeat")).active_flow_run_ids) == []
    assert h.client.proposals.empty()


async def test_a_process_that_cannot_start_crashes_the_run(harness: Any, tmp_path: Path) -> None:
    h = harness()
    conn = await h.service.connection()
    conn.push(**assign("r1", "pass", working_dir=str(tmp_path / "missing")))
    _, state, _ = await h.client.proposal()
    assert state.type is StateType.CRASHED and "could not start" in (state.message or "")
    assert (await conn.next("credit")).free_slots == 1


async def test_a_duplicate_assign_is_acked_again_but_runs_once(harness: Any, tmp_path: Path) -> None:
    h = harness()
    conn = await h.service.connection()
    counter = tmp_path / "count"
    code = f"open({str(counter)!r}, 'a').write('x'); import time; time.sleep(60)"
    conn.push(**assign("r1", code))
    await conn.next("ack")
    conn.push(**assign("r1", code))
    assert (await conn.next("ack")).flow_run_id == "r1"
    assert (await conn.next("credit")).free_slots == 1  # the duplicate's credit is refunded
    await asyncio.sleep(0.5)
    assert counter.read_text() == "x"


async def test_never_more_than_the_limit(harness: Any) -> None:
    h = harness(limit=1)
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP))
    await conn.next("ack")
    conn.push(**assign("r2", SLEEP))  # the server overspends: not taken, not acked
    await conn.nothing("ack")
    conn.push(heartbeat_ack=pb.HeartbeatAck())
    assert set(h.worker._runs) == {"r1"}


async def test_cancel_stops_the_process_and_cancels_the_run(harness: Any) -> None:
    h = harness()
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP, token="tok-c"))
    await conn.next("ack")
    await asyncio.sleep(0.3)
    h.client.states["r1"] = State(type=StateType.CANCELLING)
    conn.push(cancel=pb.Cancel(flow_run_id="r1"))
    run_id, state, token = await h.client.proposal()
    assert (run_id, state.type, token) == ("r1", StateType.CANCELLED, "tok-c")
    assert (await conn.next("credit")).free_slots == 1


async def test_a_heartbeat_ack_can_carry_cancels(harness: Any) -> None:
    h = harness()
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP))
    await conn.next("ack")
    conn.push(heartbeat_ack=pb.HeartbeatAck(cancel_flow_run_ids=["r1", "not-mine"]))
    run_id, state, _ = await h.client.proposal()
    assert (run_id, state.type) == ("r1", StateType.CANCELLED)


async def test_runs_survive_a_dropped_stream_and_are_reported_after_reconnecting(harness: Any) -> None:
    h = harness(limit=3)
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP))
    await conn.next("ack")
    conn.outgoing.put_nowait(grpc.StatusCode.UNAVAILABLE)
    again = await h.service.connection()
    assert again.hello.free_slots == 2  # the credit starts over from what is free
    beat = await again.next("heartbeat")
    assert list(beat.active_flow_run_ids) == ["r1"]
    assert h.client.proposals.empty()  # the process never stopped


@pytest.mark.parametrize("how", ["reconnect", "end"])
async def test_reconnect_request_and_stream_end(harness: Any, how: str) -> None:
    h = harness()
    conn = await h.service.connection()
    if how == "reconnect":
        conn.push(reconnect=pb.Reconnect(reason="rebalancing"))
    else:
        conn.outgoing.put_nowait(None)
    again = await h.service.connection()
    assert again.hello.worker_name == "w"
    assert not h.task.done()


async def test_an_unknown_pool_at_start_is_an_error(harness: Any) -> None:
    h = harness()
    h.service.refuse = grpc.StatusCode.NOT_FOUND
    with pytest.raises(NotFound, match="refused by the test"):
        await h.result()


async def test_a_server_that_comes_later_is_waited_for() -> None:
    from weir_kit.jetstream import free_port  # the suite's own helper

    port = free_port()
    client = FakeOrchestration(f"127.0.0.1:{port}")
    worker = ProcessWorker(client, pool="p", name="w", limit=1, handle_signals=False)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)  # a few failed attempts
    service = FakeWorkerService()
    grpc_server = aio.server()
    deployments_pb2_grpc.add_WorkerServiceServicer_to_server(service, grpc_server)
    grpc_server.add_insecure_port(f"127.0.0.1:{port}")
    await grpc_server.start()
    try:
        conn = await service.connection()
        assert conn.hello.free_slots == 1
        worker.stop()
        async with asyncio.timeout(TIMEOUT):
            assert await task == 0
    finally:
        await grpc_server.stop(0)
        await client._transport.close()


async def test_drain_takes_no_new_runs_waits_for_the_active_ones_and_exits_0(harness: Any, tmp_path: Path) -> None:
    h = harness()
    conn = await h.service.connection()
    go = tmp_path / "go"
    code = f"import os, time; list(iter(lambda: os.path.exists({str(go)!r}) or time.sleep(0.02), True))"
    conn.push(**assign("r1", code))
    await conn.next("ack")
    h.worker.stop()
    again = await h.service.connection()  # reconnected so that the server holds no credit for us
    assert again.hello.free_slots == 0
    assert list((await again.next("heartbeat")).active_flow_run_ids) == ["r1"]
    again.push(**assign("r2", SLEEP))
    await again.nothing("ack")
    assert not h.task.done()
    go.write_text("")
    assert await h.result() == 0
    run_id, state, _ = await h.client.proposal()  # exited 0 but left the run RUNNING (fake engine)
    assert (run_id, state.type) == ("r1", StateType.CRASHED)


async def test_a_second_stop_terminates_the_runs_and_crashes_them(harness: Any) -> None:
    h = harness()
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP))
    await conn.next("ack")
    await asyncio.sleep(0.3)
    h.worker.stop()
    h.worker.stop()
    assert await h.result() == 1
    run_id, state, _ = await h.client.proposal()
    assert (run_id, state.type) == ("r1", StateType.CRASHED)
    assert (state.message or "").startswith("the worker stopped")


async def test_drain_timeout_terminates_what_is_left(harness: Any) -> None:
    h = harness(drain_timeout=0.3)
    conn = await h.service.connection()
    conn.push(**assign("r1", SLEEP))
    await conn.next("ack")
    h.worker.stop()
    assert await h.result() == 1
    _, state, _ = await h.client.proposal()
    assert state.type is StateType.CRASHED
