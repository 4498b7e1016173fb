"""Follows the states of deployment runs from orchestration's events.

One durable JetStream consumer on ``weir.flow-run.*`` events, shared by
every replica (each event is handled once, by some replica). For a run this
service created it copies the state onto ``deployment_runs`` (never going
back in time: an older event than the row's state is ignored) and acts:

* terminal state: the row is DONE, its concurrency slots are free (dispatcher woken);
* CANCELLING / CANCELLED while a worker holds it: a Cancel is pushed to that worker;
* SCHEDULED again after it finished (a rerun): back in the queue;
* ``weir.flow-run.deleted``: the row goes too.

Runs a worker holds that went back to SCHEDULED (a retry) are left to the
sweeper, which knows whether the worker is still running them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import delete, select, update

from weir._proto import timestamp_to_datetime
from weir.v1 import common_pb2
from weir_deployments.models import deployment_runs
from weir_deployments.settings import DeploymentsSettings
from weir_kit.events import RESOURCE_ID
from weir_kit.jetstream import ensure_stream, fetch_batch
from weir_kit.loops import BackgroundLoop
from weir_kit.runtime import ServiceContext

log = logging.getLogger("weir.deployments.tracker")

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
_PREFIX = "weir.flow-run."
#: An event about a deployment's run names ``weir.deployment.<id>`` among its related
#: resources, and protobuf stores strings as they are: without these bytes it is not one.
_DEPLOYMENT_ID = b"weir.deployment."


def _parse(event: common_pb2.Event) -> tuple[str, str, dict[str, Any]] | None:
    """(flow run id, verb, facts) of a flow-run event about a deployment run; None for others."""
    if not any(r.labels.get(RESOURCE_ID, "").startswith("weir.deployment.") for r in event.related):
        return None
    rid = event.resource.labels.get(RESOURCE_ID, "")
    if not rid.startswith(_PREFIX) or not event.event.startswith(_PREFIX):
        return None
    verb = event.event[len(_PREFIX) :]
    facts: dict[str, Any] = {
        "type": event.resource.labels.get("weir.state-type", ""),
        "name": event.resource.labels.get("weir.state-name", ""),
        "occurred": timestamp_to_datetime(event.occurred),
    }
    validated = event.payload.fields.get("validated_state")
    if validated is not None and validated.HasField("struct_value"):
        when = validated.struct_value.fields.get("scheduled_time")
        if when is not None and when.string_value:
            facts["scheduled_time"] = datetime.fromisoformat(when.string_value)
    return rid[len(_PREFIX) :], verb, facts


class Tracker(BackgroundLoop):
    loop_name = "deployments-tracker"

    def __init__(
        self,
        svc: ServiceContext,
        settings: DeploymentsSettings,
        on_freed: Callable[[str], None],
        on_cancel: Callable[[str, str], None],
    ) -> None:
        super().__init__()
        self.svc = svc
        self.settings = settings
        self.on_freed = on_freed
        self.on_cancel = on_cancel
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = False

    async def stop(self) -> None:
        self._stopping = True
        await super().stop()
        await self._unsubscribe()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        js = self.svc.nats.js
        kit = self.svc.settings
        await ensure_stream(js, kit, atomic=self.svc.nats.atomic)
        name = self.settings.tracker_consumer
        config = ConsumerConfig(
            name=name,
            durable_name=name,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            filter_subject=f"{kit.events_subject_prefix}.weir.flow-run.>",
            max_ack_pending=4096,
        )
        await js.add_consumer(kit.events_stream, config)
        return await js.pull_subscribe_bind(durable=name, stream=kit.events_stream)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("tracker unsubscribe: %s", exc)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                if self._sub is None:
                    self._sub = await self._subscribe()
                msgs = await fetch_batch(self._sub, self.settings.tracker_batch_size, 1.0)
                if msgs:
                    await self.handle([m.data for m in msgs])
                    for msg in msgs:
                        await msg.ack()
                backoff = 0.05
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("deployments tracker: %s; retrying in %.2fs", exc, backoff)
                await self._unsubscribe()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def handle(self, payloads: list[bytes]) -> None:
        """Apply a batch of serialised events (in stream order)."""
        parsed: list[tuple[str, str, dict[str, Any]]] = []
        for data in payloads:
            if _DEPLOYMENT_ID not in data:
                continue  # not about a deployment run (most runs): no need to decode it
            event = common_pb2.Event()
            try:
                event.ParseFromString(data)
            except DecodeError:
                continue
            item = _parse(event)
            if item is not None:
                parsed.append(item)
        if not parsed:
            return
        c = deployment_runs.c
        freed: set[str] = set()
        cancels: list[tuple[str, str]] = []
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            ids = list({p[0] for p in parsed})
            query = select(deployment_runs).where(c.flow_run_id.in_(ids))
            rows = {r.flow_run_id: dict(r._mapping) for r in (await session.execute(query)).all()}
            for flow_run_id, verb, facts in parsed:
                row = rows.get(flow_run_id)
                if row is None:
                    continue
                if verb == "deleted":
                    await session.execute(delete(deployment_runs).where(c.flow_run_id == flow_run_id))
                    rows.pop(flow_run_id)
                    freed.add(row["work_pool_name"])
                    continue
                kind = facts["type"]
                if not kind or (row["state_timestamp"] is not None and facts["occurred"] < row["state_timestamp"]):
                    continue
                values: dict[str, Any] = {
                    "state_type": kind,
                    "state_name": facts["name"],
                    "state_timestamp": facts["occurred"],
                    "updated": now,
                }
                if kind in TERMINAL:
                    values["status"] = "DONE"
                    if row["status"] == "CLAIMED":
                        freed.add(row["work_pool_name"])
                    if kind == "CANCELLED" and row["worker_id"] and row["status"] == "CLAIMED":
                        cancels.append((row["worker_id"], flow_run_id))
                elif kind == "CANCELLING" and row["worker_id"] and row["status"] == "CLAIMED":
                    cancels.append((row["worker_id"], flow_run_id))
                elif kind == "SCHEDULED" and row["status"] == "DONE":
                    values.update(status="SCHEDULED", worker_id=None, fencing_token=None, acked=False)
                    values["scheduled_time"] = facts.get("scheduled_time", now)
                    freed.add(row["work_pool_name"])
                await session.execute(update(deployment_runs).where(c.flow_run_id == flow_run_id).values(**values))
                row.update(values)
        for pool in freed:
            self.on_freed(pool)
        for worker, flow_run_id in cancels:
            self.on_cancel(worker, flow_run_id)
