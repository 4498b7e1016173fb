"""The worker stream: one ``WorkerService.Connect`` per worker daemon.

The replica that holds a worker's stream keeps a :class:`WorkerConnection`
in its :class:`Hub`: the worker's credit (Hello grants, Credit adds, each
Assign spends one) and a queue of messages to send. The dispatcher claims
runs for connected workers with credit; cancels are pushed at once and
repeated in every HeartbeatAck until the run has ended, so a lost Cancel is
repaired at the next heartbeat.

A worker is keyed by (pool, name): a reconnect is the same worker, and the
runs it still holds stay its own. Its first Heartbeat after connecting lists
the runs it is running, which marks them acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update

from weir.errors import InvalidArgument
from weir.v1 import deployments_pb2 as pb
from weir_deployments.models import deployment_runs, workers
from weir_deployments.proto import check_name, worker_to_pb
from weir_deployments.settings import DeploymentsSettings
from weir_deployments.sql import insert_ignore
from weir_deployments.work_pools import fetch_pool
from weir_kit import paging
from weir_kit.events import new_event, resource
from weir_kit.runtime import ServiceContext

log = logging.getLogger("weir.deployments.workers")

WORKER_NAMESPACE = uuid.UUID("0d7e8f57-7a43-4c5e-9a53-61bd1b8e3a90")
#: How long a new stream may take to say Hello.
HELLO_TIMEOUT_SECONDS = 30.0
_CANCEL_STATES = ("CANCELLING",)


def worker_id(pool: str, name: str) -> str:
    return str(uuid.uuid5(WORKER_NAMESPACE, f"{pool}/{name}"))


@dataclass(eq=False)
class WorkerConnection:
    id: str
    name: str
    pool: str
    queues: tuple[str, ...]
    credit: int
    outgoing: asyncio.Queue[pb.ServerMessage | None] = field(default_factory=asyncio.Queue)

    def send(self, msg: pb.ServerMessage) -> None:
        self.outgoing.put_nowait(msg)

    def close(self) -> None:
        self.outgoing.put_nowait(None)


class Hub:
    """The workers connected to this replica."""

    def __init__(self) -> None:
        self.connections: dict[str, WorkerConnection] = {}
        #: Called when credit appears (a worker connected or sent Credit).
        self.on_credit: Callable[[str], None] = lambda pool: None

    def register(self, conn: WorkerConnection) -> None:
        old = self.connections.get(conn.id)
        if old is not None:  # the same worker connected again: the old stream is stale
            old.send(pb.ServerMessage(reconnect=pb.Reconnect(reason="replaced by a newer connection of this worker")))
            old.close()
        self.connections[conn.id] = conn

    def unregister(self, conn: WorkerConnection) -> bool:
        """Forget ``conn``; False when a newer connection of the same worker replaced it."""
        if self.connections.get(conn.id) is conn:
            del self.connections[conn.id]
            return True
        return False

    def cancel(self, worker: str, flow_run_id: str) -> bool:
        conn = self.connections.get(worker)
        if conn is None:
            return False
        conn.send(pb.ServerMessage(cancel=pb.Cancel(flow_run_id=flow_run_id)))
        return True

    def close_all(self, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.send(pb.ServerMessage(reconnect=pb.Reconnect(reason=reason)))
            conn.close()


class WorkerStreams:
    """Serves ``Connect``: registration, heartbeats, credits and acks."""

    def __init__(self, svc: ServiceContext, settings: DeploymentsSettings, hub: Hub, replica: str) -> None:
        self.svc = svc
        self.settings = settings
        self.hub = hub
        self.replica = replica

    async def connect(self, requests: AsyncIterator[pb.WorkerMessage]) -> AsyncIterator[pb.ServerMessage]:
        iterator = requests.__aiter__()
        try:
            first = await asyncio.wait_for(iterator.__anext__(), HELLO_TIMEOUT_SECONDS)
        except (StopAsyncIteration, TimeoutError):
            return
        if first.WhichOneof("body") != "hello":
            raise InvalidArgument("the first message of a worker stream must be Hello", field="hello")
        conn = await self._register(first.hello)
        yield pb.ServerMessage(
            welcome=pb.Welcome(
                worker_id=conn.id, heartbeat_interval_seconds=self.settings.worker_heartbeat_interval_seconds
            )
        )
        reader = asyncio.create_task(self._read(iterator, conn), name=f"worker-{conn.name}")
        try:
            while True:
                msg = await conn.outgoing.get()
                if msg is None:
                    return
                yield msg
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            if self.hub.unregister(conn):
                await self._offline(conn)

    async def _register(self, hello: pb.Hello) -> WorkerConnection:
        name = check_name(hello.worker_name, "hello.worker_name")
        pool = check_name(hello.work_pool_name, "hello.work_pool_name")
        if hello.free_slots < 0:
            raise InvalidArgument("hello.free_slots must be >= 0", field="hello.free_slots")
        queues = tuple(check_name(q, f"hello.work_queue_names[{i}]") for i, q in enumerate(hello.work_queue_names))
        now = self.svc.clock()
        wid = worker_id(pool, name)
        values = {
            "status": "ONLINE",
            "work_queue_names": list(queues),
            "labels": dict(hello.labels),
            "free_slots": hello.free_slots,
            "last_heartbeat": now,
            "replica": self.replica,
        }
        async with self.svc.db.transaction() as session:
            await fetch_pool(session, pool, "hello.work_pool_name")
            inserted = await session.execute(
                insert_ignore(self.svc.db, workers).values(
                    id=wid, work_pool_name=pool, name=name, active_flow_run_ids=[], created=now, **values
                )
            )
            if not inserted.rowcount:
                await session.execute(update(workers).where(workers.c.id == wid).values(**values))
            await self.svc.outbox.add(session, [_worker_event("connected", wid, name, pool, now)])
        conn = WorkerConnection(id=wid, name=name, pool=pool, queues=queues, credit=hello.free_slots)
        self.hub.register(conn)
        log.info("worker %s connected to pool %s with %d slots", name, pool, hello.free_slots)
        if conn.credit:
            self.hub.on_credit(pool)
        return conn

    async def _read(self, iterator: AsyncIterator[pb.WorkerMessage], conn: WorkerConnection) -> None:
        try:
            async for msg in iterator:
                kind = msg.WhichOneof("body")
                if kind == "heartbeat":
                    cancels = await self.heartbeat(conn, list(msg.heartbeat.active_flow_run_ids))
                    conn.send(pb.ServerMessage(heartbeat_ack=pb.HeartbeatAck(cancel_flow_run_ids=cancels)))
                elif kind == "credit":
                    if msg.credit.free_slots > 0:
                        conn.credit += msg.credit.free_slots
                        self.hub.on_credit(conn.pool)
                elif kind == "ack":
                    await self.ack(conn, msg.ack.flow_run_id, msg.ack.fencing_token)
                elif kind == "hello":
                    log.warning("worker %s sent a second Hello; ignored", conn.name)
        except Exception as exc:  # the stream broke: the writer side ends too
            log.info("worker %s stream ended: %s", conn.name, exc)
        finally:
            conn.close()

    async def heartbeat(self, conn: WorkerConnection, active: list[str]) -> list[str]:
        """Record a heartbeat; returns the runs this worker holds that must be cancelled."""
        now = self.svc.clock()
        c = deployment_runs.c
        async with self.svc.db.transaction() as session:
            await session.execute(
                update(workers)
                .where(workers.c.id == conn.id)
                .values(status="ONLINE", last_heartbeat=now, active_flow_run_ids=active, free_slots=conn.credit)
            )
            if active:
                # Runs it is running are its own, acknowledged (an ack lost with a dropped stream).
                await session.execute(
                    update(deployment_runs)
                    .where(and_(c.flow_run_id.in_(active), c.worker_id == conn.id, c.status == "CLAIMED"))
                    .values(acked=True, updated=now)
                )
            held = select(c.flow_run_id, c.state_type).where(c.worker_id == conn.id, c.status.in_(("CLAIMED", "DONE")))
            rows = (await session.execute(held.where(c.flow_run_id.in_(active) | (c.status == "CLAIMED")))).all()
        cancels = [r.flow_run_id for r in rows if r.state_type in _CANCEL_STATES]
        # A run that already ended as CANCELLED while the worker still runs it: stop that too.
        cancels += [r.flow_run_id for r in rows if r.state_type == "CANCELLED" and r.flow_run_id in active]
        return cancels

    async def ack(self, conn: WorkerConnection, flow_run_id: str, token: str) -> None:
        c = deployment_runs.c
        async with self.svc.db.transaction() as session:
            await session.execute(
                update(deployment_runs)
                .where(and_(c.flow_run_id == flow_run_id, c.worker_id == conn.id, c.fencing_token == token))
                .values(acked=True, updated=self.svc.clock())
            )

    async def _offline(self, conn: WorkerConnection) -> None:
        now = self.svc.clock()
        try:
            async with self.svc.db.transaction() as session:
                await session.execute(
                    update(workers)
                    .where(workers.c.id == conn.id, workers.c.replica == self.replica)
                    .values(status="OFFLINE", free_slots=0)
                )
                await self.svc.outbox.add(session, [_worker_event("disconnected", conn.id, conn.name, conn.pool, now)])
        except Exception as exc:  # shutting down: the sweeper marks it offline later
            log.debug("could not mark worker %s offline: %s", conn.name, exc)
        log.info("worker %s disconnected", conn.name)


def _worker_event(verb: str, wid: str, name: str, pool: str, now: datetime) -> Any:
    return new_event(
        f"weir.worker.{verb}",
        resource(f"weir.worker.{wid}", name=name),
        occurred=now,
        related=[resource(f"weir.work-pool.{pool}", name=pool, role="work-pool")],
    )


async def list_workers(svc: ServiceContext, req: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
    size = paging.page_size(req.page.page_size)
    after = paging.decode_token(req.page.page_token, 2)
    c = workers.c
    query = select(workers).order_by(c.work_pool_name, c.name).limit(size + 1)
    if req.work_pool_name:
        query = query.where(c.work_pool_name == check_name(req.work_pool_name, "work_pool_name"))
    if after is not None:
        query = query.where((c.work_pool_name > after[0]) | ((c.work_pool_name == after[0]) & (c.name > after[1])))
    async with svc.db.read() as session:
        if req.work_pool_name:
            await fetch_pool(session, req.work_pool_name)
        rows = (await session.execute(query)).all()
    token = paging.encode_token(rows[size - 1].work_pool_name, rows[size - 1].name) if len(rows) > size else ""
    return pb.ListWorkersResponse(workers=[worker_to_pb(r) for r in rows[:size]], next_page_token=token)
