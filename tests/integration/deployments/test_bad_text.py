"""Names, keys and filter values that a column cannot hold (a NUL character, more characters
than the column has), sent to every service over real gRPC, on SQLite and Postgres.

Postgres refuses a NUL in any text, even in a comparison, and a value longer than its
``varchar``; SQLite stores both. Before these checks such requests failed with INTERNAL on
Postgres and were stored on SQLite, and a run created from a deployment with a name that
orchestration then refused was acknowledged but never existed. Each must now be
INVALID_ARGUMENT naming the field on both backends, and store nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from weir.v1 import common_pb2, events_pb2, events_pb2_grpc
from weir.v1 import deployments_pb2 as pb
from weir.v1 import orchestration_pb2 as opb

from .conftest import Api, unique
from .test_service import expect, make_deployment, make_pool

NUL = "a\x00b"
LONG = "x" * 256


def token(*key: Any) -> common_pb2.PageRequest:
    """A page token shaped like the server's own, holding ``key``."""
    raw = base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")
    return common_pb2.PageRequest(page_token=raw)


def _template() -> struct_pb2.Struct:
    template = struct_pb2.Struct()
    template.update({"job_configuration": {}, "variables": {"type": "object", "properties": {}}})
    return template


#: (what is sent, the call given a pool and a deployment, the field the error must name)
Case = tuple[str, Callable[[Api, str, str], Any], str]

DEPLOYMENT_CASES: list[Case] = [
    (
        "pool name with NUL",
        lambda api, pool, dep: api.deployments.UpsertWorkPool(
            pb.UpsertWorkPoolRequest(work_pool=pb.WorkPool(name=NUL))
        ),
        "work_pool.name",
    ),
    (
        "pool description with NUL",
        lambda api, pool, dep: api.deployments.UpsertWorkPool(
            pb.UpsertWorkPoolRequest(work_pool=pb.WorkPool(name=pool, description=NUL))
        ),
        "work_pool.description",
    ),
    (
        "pool type longer than its column",
        lambda api, pool, dep: api.deployments.UpsertWorkPool(
            pb.UpsertWorkPoolRequest(work_pool=pb.WorkPool(name=pool, type="t" * 65, base_job_template=_template()))
        ),
        "work_pool.type",
    ),
    (
        "queue name with NUL",
        lambda api, pool, dep: api.deployments.UpsertWorkQueue(
            pb.UpsertWorkQueueRequest(work_queue=pb.WorkQueue(work_pool_name=pool, name=NUL))
        ),
        "work_queue.name",
    ),
    (
        "queue description with NUL",
        lambda api, pool, dep: api.deployments.UpsertWorkQueue(
            pb.UpsertWorkQueueRequest(work_queue=pb.WorkQueue(work_pool_name=pool, name="q", description=NUL))
        ),
        "work_queue.description",
    ),
    (
        "pool looked up by a name with NUL",
        lambda api, pool, dep: api.deployments.GetWorkPool(pb.GetWorkPoolRequest(name=NUL)),
        "name",
    ),
    *[
        (
            f"deployment {field} with NUL",
            lambda api, pool, dep, field=field: api.deployments.UpsertDeployment(
                pb.UpsertDeploymentRequest(
                    deployment=pb.Deployment(**{"flow_name": "f", "name": "d", "work_pool_name": pool, field: NUL})
                )
            ),
            f"deployment.{field}",
        )
        for field in (
            "flow_name",
            "name",
            "version",
            "description",
            "entrypoint",
            "working_directory",
            "work_pool_name",
            "work_queue_name",
        )
    ],
    (
        "deployment version longer than its column",
        lambda api, pool, dep: api.deployments.UpsertDeployment(
            pb.UpsertDeploymentRequest(
                deployment=pb.Deployment(flow_name="f", name="d", work_pool_name=pool, version=LONG)
            )
        ),
        "deployment.version",
    ),
    (
        "deployment looked up by a full name with NUL",
        lambda api, pool, dep: api.deployments.GetDeployment(pb.GetDeploymentRequest(full_name="f/" + NUL)),
        "full_name",
    ),
    *[
        (
            f"deployments listed by {field} with NUL",
            lambda api, pool, dep, field=field: api.deployments.ListDeployments(
                pb.ListDeploymentsRequest(**{field: NUL})
            ),
            field,
        )
        for field in ("name_like", "flow_name", "work_pool_name")
    ],
    (
        "workers listed by a pool name with NUL",
        lambda api, pool, dep: api.deployments.ListWorkers(pb.ListWorkersRequest(work_pool_name=NUL)),
        "work_pool_name",
    ),
    (
        "deployments page token holding a NUL",
        lambda api, pool, dep: api.deployments.ListDeployments(pb.ListDeploymentsRequest(page=token(NUL, "x"))),
        "page.page_token",
    ),
    (
        "queues page token with a text where the priority goes",
        lambda api, pool, dep: api.deployments.ListWorkQueues(
            pb.ListWorkQueuesRequest(work_pool_name=pool, page=token("high", "x"))
        ),
        "page.page_token",
    ),
    (
        "run from a deployment named with NUL",
        lambda api, pool, dep: api.deployments.CreateFlowRunFromDeployment(
            pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep, name=NUL)
        ),
        "name",
    ),
    (
        "run from a deployment with a name longer than its column",
        lambda api, pool, dep: api.deployments.CreateFlowRunFromDeployment(
            pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep, name=LONG)
        ),
        "name",
    ),
    (
        "run from a deployment with an idempotency key with NUL",
        lambda api, pool, dep: api.deployments.CreateFlowRunFromDeployment(
            pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep, idempotency_key=NUL)
        ),
        "idempotency_key",
    ),
]

ORCHESTRATION_CASES: list[Case] = [
    (
        "flow run of a flow named with NUL",
        lambda api, pool, dep: api.orchestration.CreateFlowRun(opb.CreateFlowRunRequest(flow_name=NUL)),
        "flow_name",
    ),
    (
        "flow looked up by a name with NUL",
        lambda api, pool, dep: api.orchestration.GetFlow(opb.GetFlowRequest(name=NUL)),
        "name",
    ),
    (
        "flows listed by names with NUL",
        lambda api, pool, dep: api.orchestration.ListFlows(
            opb.ListFlowsRequest(filter=opb.FlowFilter(names=["ok", NUL]))
        ),
        "filter.names[1]",
    ),
    *[
        (
            f"flow runs listed by {field} with NUL",
            lambda api, pool, dep, field=field, value=value: api.orchestration.ListFlowRuns(
                opb.ListFlowRunsRequest(filter=opb.FlowRunFilter(**{field: value}))
            ),
            f"filter.{field}" + ("[0]" if isinstance(value, list) else ""),
        )
        for field, value in (("name_like", NUL), ("state_names", [NUL]), ("flow_names", [NUL]))
    ],
    (
        "task runs listed by name_like with NUL",
        lambda api, pool, dep: api.orchestration.ListTaskRuns(
            opb.ListTaskRunsRequest(filter=opb.TaskRunFilter(name_like=NUL))
        ),
        "filter.name_like",
    ),
    (
        "logs listed by text_like with NUL",
        lambda api, pool, dep: api.orchestration.ListLogs(opb.ListLogsRequest(filter=opb.LogFilter(text_like=NUL))),
        "filter.text_like",
    ),
]


def _events(api: Api) -> events_pb2_grpc.EventServiceStub:
    return events_pb2_grpc.EventServiceStub(api.channel)


EVENTS_CASES: list[Case] = [
    (
        "events listed by a prefix with NUL",
        lambda api, pool, dep: _events(api).ListEvents(
            events_pb2.ListEventsRequest(filter=events_pb2.EventFilter(event_prefixes=[NUL]))
        ),
        "filter.event_prefixes[0]",
    ),
    (
        "events listed by a resource id with NUL",
        lambda api, pool, dep: _events(api).ListEvents(
            events_pb2.ListEventsRequest(filter=events_pb2.EventFilter(resource_ids=["r", NUL]))
        ),
        "filter.resource_ids[1]",
    ),
    (
        "events page token holding a NUL",
        lambda api, pool, dep: _events(api).ListEvents(
            events_pb2.ListEventsRequest(page=token("desc", "2026-01-01T00:00:00+00:00", NUL))
        ),
        "page.page_token",
    ),
]

CASES = DEPLOYMENT_CASES + ORCHESTRATION_CASES + EVENTS_CASES


@pytest.mark.parametrize(("label", "call", "field"), CASES, ids=[case[0] for case in CASES])
async def test_a_value_no_column_can_hold_is_invalid_argument_naming_the_field(
    api: Api, label: str, call: Callable[[Api, str, str], Any], field: str
) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    error = await expect(call(api, pool.name, dep.id), grpc.StatusCode.INVALID_ARGUMENT, field)
    assert "NUL" in error.details() or "longer than" in error.details() or "token" in error.details(), label
    # Nothing was stored: the deployment has no run, and the pool is as it was made.
    runs = await api.orchestration.ListFlowRuns(opb.ListFlowRunsRequest(filter=opb.FlowRunFilter(deployment_id=dep.id)))
    assert list(runs.flow_runs) == []
    again = (await api.deployments.GetWorkPool(pb.GetWorkPoolRequest(name=pool.name))).work_pool
    assert (again.type, again.description) == ("process", "")
    # And the service goes on answering good calls.
    created = await api.deployments.CreateFlowRunFromDeployment(
        pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id, name=unique("run"))
    )
    assert created.created


async def test_long_free_text_and_tags_are_kept_as_sent(api: Api) -> None:
    """The checks refuse only what a column cannot hold: text columns take any length, and
    tags (JSON text, where a NUL is escaped) any character, and a tag filter finds them."""
    pool = await make_pool(api, description="d" * 5000)
    dep = await make_deployment(api, pool.name, description="e" * 5000, entrypoint="flows.py:" + "f" * 400)
    assert pool.description == "d" * 5000
    got = (await api.deployments.GetDeployment(pb.GetDeploymentRequest(id=dep.id))).deployment
    assert got.description == "e" * 5000 and got.entrypoint == "flows.py:" + "f" * 400
    tag = unique("tag") + NUL
    run = (await api.orchestration.CreateFlowRun(opb.CreateFlowRunRequest(flow_name=unique("f"), tags=[tag]))).flow_run
    assert list(run.tags) == [tag]
    found = await api.orchestration.ListFlowRuns(opb.ListFlowRunsRequest(filter=opb.FlowRunFilter(tags_all=[tag])))
    assert [r.id for r in found.flow_runs] == [run.id]
