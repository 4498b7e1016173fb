"""Two deployments-service replicas on one Postgres sharing one work pool,
as separate `weir service` processes (with one orchestration and one events
service, and NATS standing in for an external cluster). Workers connect to
either replica; every run reaches exactly one worker. A replica killed
mid-assignment and started again loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from tests.fixtures.backends import drop_schemas, require_backend, unique_schema_prefix
from tests.fixtures.services import Topology
from tests.integration.deployments.conftest import Api, FakeWorker
from weir.v1 import common_pb2, deployments_pb2_grpc, orchestration_pb2_grpc
from weir.v1 import deployments_pb2 as pb
from weir.v1 import orchestration_pb2 as opb

pytestmark = pytest.mark.slow

FAST = {
    "WEIR_DEPLOYMENTS_ASSIGNMENT_ACK_TIMEOUT_SECONDS": "2",
    "WEIR_DEPLOYMENTS_SWEEPER_INTERVAL_SECONDS": "0.3",
    "WEIR_DEPLOYMENTS_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    require_backend("postgres")
    from weir_kit.jetstream import EmbeddedNats

    base = tmp_path_factory.mktemp("distributed-deployments")
    nats = EmbeddedNats(base / "nats")
    prefix = unique_schema_prefix()
    env = {**os.environ, **FAST, "WEIR_DATABASE_SCHEMA_PREFIX": prefix, "WEIR_HOME": str(base / "home")}
    topo = Topology(base, nats.start(), env)
    try:
        topo.start("orchestration", "orchestration")
        topo.start("events", "events")
        orch = {"WEIR_DEPLOYMENTS_ORCHESTRATION_ADDRESS": topo.addresses["orchestration"]}
        topo.start("deployments-a", "deployments", **orch)
        topo.start("deployments-b", "deployments", **orch)
        yield topo
    finally:
        topo.stop_all()
        nats.stop()
        asyncio.run(drop_schemas(prefix))


def api_for(deployments_address: str, orchestration_address: str) -> Api:
    channel = grpc.aio.insecure_channel(deployments_address)
    orch = grpc.aio.insecure_channel(orchestration_address)
    return Api(
        channel,
        deployments_pb2_grpc.DeploymentServiceStub(channel),
        deployments_pb2_grpc.WorkerServiceStub(channel),
        orchestration_pb2_grpc.OrchestrationServiceStub(orch),
    )


async def work(worker: FakeWorker, api: Api, seen: Counter[str], stop: asyncio.Event) -> None:
    """Acts as a worker that runs each assignment to COMPLETED at once."""
    while not stop.is_set():
        try:
            assign = await worker.next("assign", timeout=0.3)
        except TimeoutError:
            continue
        seen[assign.flow_run_id] += 1
        await worker.send(ack=pb.AssignmentAck(flow_run_id=assign.flow_run_id, fencing_token=assign.fencing_token))
        for state_type in (common_pb2.RUNNING, common_pb2.COMPLETED):
            proposal = opb.StateProposal(state=common_pb2.State(type=state_type), fencing_token=assign.fencing_token)
            await api.orchestration.SetFlowRunState(
                opb.SetFlowRunStateRequest(flow_run_id=assign.flow_run_id, proposal=proposal)
            )
        await worker.send(credit=pb.Credit(free_slots=1))


async def all_completed(api: Api, ids: set[str], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        states = {}
        for run_id in ids:
            run = (await api.orchestration.GetFlowRun(opb.GetFlowRunRequest(id=run_id))).flow_run
            states[run_id] = run.state.type
        if all(s == common_pb2.COMPLETED for s in states.values()):
            return
        assert asyncio.get_running_loop().time() < deadline, Counter(states.values())
        await asyncio.sleep(0.2)


async def setup_pool(api: Api) -> tuple[str, str]:
    pool = f"shared-{uuid.uuid4().hex[:6]}"
    await api.deployments.UpsertWorkPool(pb.UpsertWorkPoolRequest(work_pool=pb.WorkPool(name=pool)))
    dep = pb.Deployment(flow_name=f"dist-{uuid.uuid4().hex[:6]}", name="d", work_pool_name=pool)
    created = await api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=dep))
    return pool, created.deployment.id


async def test_two_replicas_share_one_pool_and_each_run_runs_once(topology: Topology) -> None:
    a = api_for(topology.addresses["deployments-a"], topology.addresses["orchestration"])
    b = api_for(topology.addresses["deployments-b"], topology.addresses["orchestration"])
    pool, dep_id = await setup_pool(a)
    wa = await FakeWorker.connect(a, pool, "on-a", slots=2)
    wb = await FakeWorker.connect(b, pool, "on-b", slots=2)
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(work(wa, a, seen, stop)), asyncio.create_task(work(wb, b, seen, stop))]
    try:
        ids = set()
        for i in range(16):
            creator = (a, b)[i % 2]
            req = pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep_id)
            ids.add((await creator.deployments.CreateFlowRunFromDeployment(req)).flow_run_id)
        await all_completed(a, ids)
        assert set(seen) == ids and all(n == 1 for n in seen.values()), seen
        workers = await a.deployments.ListWorkers(pb.ListWorkersRequest(work_pool_name=pool))
        assert {w.name for w in workers.workers} == {"on-a", "on-b"}
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for w in (wa, wb):
            await w.close()
        for api in (a, b):
            await api.channel.close()


async def test_a_replica_killed_during_assignments_loses_and_duplicates_nothing(topology: Topology) -> None:
    a_address = topology.addresses["deployments-a"]
    a = api_for(a_address, topology.addresses["orchestration"])
    b = api_for(topology.addresses["deployments-b"], topology.addresses["orchestration"])
    pool, dep_id = await setup_pool(b)
    # The survivor connects without free slots, so that the runs go to the doomed worker first
    # (with a slot it could race the doomed worker for every run and win them all).
    wb = await FakeWorker.connect(b, pool, "survivor", slots=0)
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    task = asyncio.create_task(work(wb, b, seen, stop))
    doomed = await FakeWorker.connect(a, pool, "on-doomed-replica", slots=3)
    try:
        ids = set()
        for _ in range(8):
            req = pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep_id)
            ids.add((await a.deployments.CreateFlowRunFromDeployment(req)).flow_run_id)
        # The worker on replica A gets assignments but never acks; then A dies.
        await doomed.next("assign")
        topology.kill("deployments-a")
        await doomed.close()
        # Only now may the survivor work: it must get the doomed worker's runs back as well.
        await wb.send(credit=pb.Credit(free_slots=1))
        await all_completed(b, ids, timeout=60)
        assert set(seen) == ids and all(n == 1 for n in seen.values()), seen
        # A comes back on the same port; it serves again and nothing is created twice.
        port = int(a_address.rsplit(":", 1)[1])
        topology.start(
            "deployments-a",
            "deployments",
            port=port,
            WEIR_DEPLOYMENTS_ORCHESTRATION_ADDRESS=topology.addresses["orchestration"],
        )
        listed = await b.orchestration.ListFlowRuns(
            opb.ListFlowRunsRequest(filter=opb.FlowRunFilter(deployment_id=dep_id))
        )
        assert {r.id for r in listed.flow_runs} == ids
    finally:
        stop.set()
        await task
        await wb.close()
        for api in (a, b):
            await api.channel.close()
