"""Work pools and their queues.

A pool has a type (``process``, ``serve``, ...) and a base job template
(the JSON schema of its job variables with their defaults); every pool has a
queue named by ``default_queue_name`` (``default``). Create and update are
one idempotent upsert keyed by name. Pausing a pool or a queue stops claims
from it; its runs wait.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import FailedPrecondition, InvalidArgument, NotFound
from weir.v1 import deployments_pb2 as pb
from weir_deployments import job_variables
from weir_deployments.models import deployment_runs, deployments, work_pools, work_queues
from weir_deployments.proto import check_name, pool_to_pb, queue_to_pb, struct_to_dict
from weir_deployments.sql import insert_ignore
from weir_kit import paging
from weir_kit.events import new_event, resource
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text

DEFAULT_QUEUE = "default"
#: Pool types whose default template is the process template.
PROCESS_TYPES = ("process", "serve")
_ACTIVE = ("CLAIMED",)


def _pool_event(verb: str, row: Any, now: datetime) -> Any:
    return new_event(
        f"weir.work-pool.{verb}",
        resource(f"weir.work-pool.{row.id}", name=row.name, **{"weir.work-pool.type": row.type}),
        occurred=now,
    )


def _queue_event(verb: str, row: Any, now: datetime) -> Any:
    return new_event(
        f"weir.work-queue.{verb}",
        resource(f"weir.work-queue.{row.id}", name=row.name),
        occurred=now,
        related=[resource(f"weir.work-pool.{row.work_pool_name}", name=row.work_pool_name, role="work-pool")],
    )


async def fetch_pool(session: AsyncSession, name: str, field: str = "work_pool_name") -> Any:
    row = (await session.execute(select(work_pools).where(work_pools.c.name == name))).first()
    if row is None:
        raise NotFound(f"no work pool named {name!r}", field=field)
    return row


async def fetch_queue(session: AsyncSession, pool: str, name: str, field: str = "work_queue_name") -> Any:
    row = (
        await session.execute(
            select(work_queues).where(work_queues.c.work_pool_name == pool, work_queues.c.name == name)
        )
    ).first()
    if row is None:
        raise NotFound(f"work pool {pool!r} has no queue named {name!r}", field=field)
    return row


def _limit(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must be >= 0 (0 means no limit), got {value}", field=field)
    return value


async def upsert_pool(svc: ServiceContext, req: pb.UpsertWorkPoolRequest) -> pb.UpsertWorkPoolResponse:
    msg = req.work_pool
    name = check_name(msg.name, "work_pool.name")
    kind = short_text(msg.type.strip(), "work_pool.type", 64) or "process"
    template = struct_to_dict(msg.base_job_template) if msg.HasField("base_job_template") else {}
    if not template:
        if kind not in PROCESS_TYPES:
            raise InvalidArgument(
                f"a work pool of type {kind!r} needs a base_job_template", field="work_pool.base_job_template"
            )
        template = job_variables.PROCESS_TEMPLATE
    job_variables.check_template(template, field="work_pool.base_job_template")
    limit = _limit(msg.concurrency_limit, "work_pool.concurrency_limit")
    default_queue = check_name(msg.default_queue_name, "work_pool.default_queue_name", required=False) or DEFAULT_QUEUE
    now = svc.clock()
    values = {
        "type": kind,
        "description": short_text(msg.description, "work_pool.description", None),
        "base_job_template": template,
        "paused": msg.paused,
        "concurrency_limit": limit,
        "default_queue_name": default_queue,
        "updated": now,
    }
    async with svc.db.transaction() as session:
        inserted = await session.execute(
            insert_ignore(svc.db, work_pools).values(id=str(uuid.uuid4()), name=name, created=now, **values)
        )
        if inserted.rowcount == 0:
            await session.execute(update(work_pools).where(work_pools.c.name == name).values(**values))
        row = await fetch_pool(session, name)
        await ensure_queue(svc, session, name, default_queue, now)
        await svc.outbox.add(session, [_pool_event("created" if inserted.rowcount else "updated", row, now)])
    return pb.UpsertWorkPoolResponse(work_pool=pool_to_pb(row))


async def ensure_queue(svc: ServiceContext, session: AsyncSession, pool: str, name: str, now: datetime) -> None:
    inserted = await session.execute(
        insert_ignore(svc.db, work_queues).values(
            id=str(uuid.uuid4()),
            work_pool_name=pool,
            name=name,
            priority=1,
            concurrency_limit=0,
            paused=False,
            description="",
            created=now,
        )
    )
    if inserted.rowcount:
        await svc.outbox.add(session, [_queue_event("created", await fetch_queue(session, pool, name), now)])


async def get_pool(svc: ServiceContext, req: pb.GetWorkPoolRequest) -> pb.GetWorkPoolResponse:
    name = check_name(req.name, "name")
    async with svc.db.read() as session:
        return pb.GetWorkPoolResponse(work_pool=pool_to_pb(await fetch_pool(session, name, "name")))


async def list_pools(svc: ServiceContext, req: pb.ListWorkPoolsRequest) -> pb.ListWorkPoolsResponse:
    size = paging.page_size(req.page.page_size)
    after = paging.decode_token(req.page.page_token, 1)
    query = select(work_pools).order_by(work_pools.c.name).limit(size + 1)
    if after is not None:
        query = query.where(work_pools.c.name > after[0])
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()
    token = paging.encode_token(rows[size - 1].name) if len(rows) > size else ""
    return pb.ListWorkPoolsResponse(work_pools=[pool_to_pb(r) for r in rows[:size]], next_page_token=token)


async def delete_pool(svc: ServiceContext, req: pb.DeleteWorkPoolRequest) -> pb.DeleteWorkPoolResponse:
    name = check_name(req.name, "name")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = await fetch_pool(session, name, "name")
        active = await _count_active(session, deployment_runs.c.work_pool_name == name)
        if active:
            raise FailedPrecondition(
                f"work pool {name!r} has {active} runs in progress; cancel them or wait", field="name"
            )
        used = (await session.execute(select(func.count()).where(deployments.c.work_pool_name == name))).scalar_one()
        if used:
            raise FailedPrecondition(
                f"work pool {name!r} is used by {used} deployments; delete them first", field="name"
            )
        await session.execute(delete(work_queues).where(work_queues.c.work_pool_name == name))
        await session.execute(delete(work_pools).where(work_pools.c.name == name))
        await svc.outbox.add(session, [_pool_event("deleted", row, now)])
    return pb.DeleteWorkPoolResponse()


async def set_pool_paused(svc: ServiceContext, req: pb.SetWorkPoolPausedRequest) -> pb.SetWorkPoolPausedResponse:
    name = check_name(req.name, "name")
    now = svc.clock()
    async with svc.db.transaction() as session:
        await fetch_pool(session, name, "name")
        await session.execute(
            update(work_pools).where(work_pools.c.name == name).values(paused=req.paused, updated=now)
        )
        row = await fetch_pool(session, name, "name")
        await svc.outbox.add(session, [_pool_event("paused" if req.paused else "resumed", row, now)])
    return pb.SetWorkPoolPausedResponse(work_pool=pool_to_pb(row))


async def _count_active(session: AsyncSession, where: Any) -> int:
    query = select(func.count()).select_from(deployment_runs).where(where, deployment_runs.c.status.in_(_ACTIVE))
    return int((await session.execute(query)).scalar_one())


# ------------------------------------------------------------------ queues


async def upsert_queue(svc: ServiceContext, req: pb.UpsertWorkQueueRequest) -> pb.UpsertWorkQueueResponse:
    msg = req.work_queue
    pool = check_name(msg.work_pool_name, "work_queue.work_pool_name")
    name = check_name(msg.name, "work_queue.name")
    if msg.priority < 0:
        raise InvalidArgument(f"work_queue.priority must be >= 0, got {msg.priority}", field="work_queue.priority")
    values = {
        "priority": msg.priority or 1,
        "concurrency_limit": _limit(msg.concurrency_limit, "work_queue.concurrency_limit"),
        "paused": msg.paused,
        "description": short_text(msg.description, "work_queue.description", None),
    }
    now = svc.clock()
    async with svc.db.transaction() as session:
        await fetch_pool(session, pool, "work_queue.work_pool_name")
        inserted = await session.execute(
            insert_ignore(svc.db, work_queues).values(
                id=str(uuid.uuid4()), work_pool_name=pool, name=name, created=now, **values
            )
        )
        if inserted.rowcount == 0:
            await session.execute(
                update(work_queues)
                .where(work_queues.c.work_pool_name == pool, work_queues.c.name == name)
                .values(**values)
            )
        row = await fetch_queue(session, pool, name)
        await svc.outbox.add(session, [_queue_event("created" if inserted.rowcount else "updated", row, now)])
    return pb.UpsertWorkQueueResponse(work_queue=queue_to_pb(row))


async def get_queue(svc: ServiceContext, req: pb.GetWorkQueueRequest) -> pb.GetWorkQueueResponse:
    pool = check_name(req.work_pool_name, "work_pool_name")
    name = check_name(req.name, "name")
    async with svc.db.read() as session:
        await fetch_pool(session, pool)
        return pb.GetWorkQueueResponse(work_queue=queue_to_pb(await fetch_queue(session, pool, name, "name")))


async def list_queues(svc: ServiceContext, req: pb.ListWorkQueuesRequest) -> pb.ListWorkQueuesResponse:
    pool = check_name(req.work_pool_name, "work_pool_name")
    size = paging.page_size(req.page.page_size)
    after = paging.decode_token(req.page.page_token, 2, (int, str))
    c = work_queues.c
    query = select(work_queues).where(c.work_pool_name == pool).order_by(c.priority, c.name).limit(size + 1)
    if after is not None:
        query = query.where((c.priority > after[0]) | ((c.priority == after[0]) & (c.name > after[1])))
    async with svc.db.read() as session:
        await fetch_pool(session, pool)
        rows = (await session.execute(query)).all()
    token = paging.encode_token(rows[size - 1].priority, rows[size - 1].name) if len(rows) > size else ""
    return pb.ListWorkQueuesResponse(work_queues=[queue_to_pb(r) for r in rows[:size]], next_page_token=token)


async def delete_queue(svc: ServiceContext, req: pb.DeleteWorkQueueRequest) -> pb.DeleteWorkQueueResponse:
    pool_name = check_name(req.work_pool_name, "work_pool_name")
    name = check_name(req.name, "name")
    now = svc.clock()
    async with svc.db.transaction() as session:
        pool = await fetch_pool(session, pool_name)
        row = await fetch_queue(session, pool_name, name, "name")
        if name == pool.default_queue_name:
            raise FailedPrecondition(f"{name!r} is the default queue of work pool {pool_name!r}", field="name")
        where = (deployment_runs.c.work_pool_name == pool_name) & (deployment_runs.c.work_queue_name == name)
        waiting = (
            await session.execute(
                select(func.count()).where(where, deployment_runs.c.status.in_(("NEW", "SCHEDULED", "CLAIMED")))
            )
        ).scalar_one()
        if waiting:
            raise FailedPrecondition(f"work queue {name!r} still holds {waiting} runs", field="name")
        await session.execute(delete(work_queues).where(work_queues.c.id == row.id))
        await svc.outbox.add(session, [_queue_event("deleted", row, now)])
    return pb.DeleteWorkQueueResponse()


async def set_queue_paused(svc: ServiceContext, req: pb.SetWorkQueuePausedRequest) -> pb.SetWorkQueuePausedResponse:
    pool = check_name(req.work_pool_name, "work_pool_name")
    name = check_name(req.name, "name")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = await fetch_queue(session, pool, name, "name")
        await session.execute(update(work_queues).where(work_queues.c.id == row.id).values(paused=req.paused))
        row = await fetch_queue(session, pool, name, "name")
        await svc.outbox.add(session, [_queue_event("paused" if req.paused else "resumed", row, now)])
    return pb.SetWorkQueuePausedResponse(work_queue=queue_to_pb(row))
