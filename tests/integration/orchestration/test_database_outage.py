"""Postgres ends the service's connections (a restart, a failover, an administrator): the
service keeps serving on new ones. A call caught on a dropped connection fails with
UNAVAILABLE, never INTERNAL, so clients know to try again; nothing acknowledged is lost.

The connections are ended for real, with ``pg_terminate_backend``, for every backend of this
test process that the orchestration service opened (``application_name``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import psutil
import pytest

from tests.fixtures.backends import require_backend
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_kit.db import connection_lost

from .helpers import new_flow_run, proposal, set_flow_state

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def orch_backend() -> str:
    require_backend("postgres")
    return "postgres"


async def terminate_service_connections() -> int:
    """End every Postgres backend this process opened for the orchestration service."""
    ports = [c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == 5432]
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        ended = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'weir-orchestration' AND client_port = ANY($1::int[])",
            ports,
        )
    finally:
        await admin.close()
    return len(ended)


async def retried_while_unavailable(call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()``, tried again as a client would (after a pause) while it fails with UNAVAILABLE:
    a call that met a dropped connection must say so, and the service must serve again."""
    for _ in range(5):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            assert "database is unavailable" in (exc.details() or "")
        await asyncio.sleep(0.05)
    return await call()


async def test_the_service_serves_again_after_postgres_ends_its_connections(orch) -> None:
    runs = [await new_flow_run(orch.stub) for _ in range(3)]  # each is PENDING
    stream = orch.stub.ProposeStates()
    assert await terminate_service_connections() >= 1

    # Each kind of work, right away: a unary proposal, one over the stream, a read, a create.
    result = await retried_while_unavailable(lambda: set_flow_state(orch.stub, runs[0].id, common_pb2.RUNNING))
    assert result.decision == pb.ACCEPT

    async def over_the_stream(tag: int) -> pb.ProposalResult:
        req = pb.SetFlowRunStateRequest(flow_run_id=runs[1].id, proposal=proposal(common_pb2.RUNNING))
        await stream.write(pb.ProposeStatesRequest(tag=tag, flow_run=req))
        answer = await stream.read()
        assert answer.tag == tag
        if answer.HasField("error") and tag < 5:  # the stream itself goes on: only this answer failed
            assert answer.error.code == grpc.StatusCode.UNAVAILABLE.value[0], answer
            await asyncio.sleep(0.05)
            return await over_the_stream(tag + 1)
        return answer.result

    assert (await over_the_stream(1)).decision == pb.ACCEPT
    listed = await retried_while_unavailable(lambda: orch.stub.ListFlowRuns(pb.ListFlowRunsRequest()))
    assert {r.id for r in runs} <= {r.id for r in listed.flow_runs}
    created = await retried_while_unavailable(lambda: new_flow_run(orch.stub))

    # A second time, after the service had a moment to notice: no call fails at all.
    assert await terminate_service_connections() >= 1
    await asyncio.sleep(0.2)
    assert (await set_flow_state(orch.stub, runs[2].id, common_pb2.RUNNING)).decision == pb.ACCEPT
    assert (await set_flow_state(orch.stub, runs[0].id, common_pb2.COMPLETED)).decision == pb.ACCEPT
    stream.cancel()

    # What was acknowledged is there, once.
    for run, types in (
        (runs[0], [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]),
        (runs[1], [common_pb2.PENDING, common_pb2.RUNNING]),
        (runs[2], [common_pb2.PENDING, common_pb2.RUNNING]),
    ):
        history = await orch.stub.ListStates(pb.ListStatesRequest(flow_run_id=run.id))
        assert [s.type for s in history.states] == types
    assert (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=created.id))).flow_run.id == created.id


async def test_a_dropped_connection_is_told_apart_from_a_bad_statement() -> None:
    require_backend("postgres")
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        with pytest.raises(asyncpg.PostgresError) as bad:
            await conn.execute("SELECT * FROM no_such_table_here")
        assert not connection_lost(bad.value)  # the server answered: a bug or bad input, not an outage
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        finally:
            await admin.close()
        with pytest.raises(Exception) as dropped:
            await conn.execute("SELECT 1")
        assert connection_lost(dropped.value), repr(dropped.value)
        with pytest.raises(Exception) as closed:
            await conn.execute("SELECT 1")
        assert connection_lost(closed.value), repr(closed.value)
    finally:
        conn.terminate()
    assert not connection_lost(RuntimeError("a bug"))
    assert connection_lost(ConnectionRefusedError(111, "Connection refused"))
