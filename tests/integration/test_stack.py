"""The host brings every service up on one port, with health and reflection,
scaffold services answer UNIMPLEMENTED clearly, and the API key is enforced."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from weir.client import AsyncWeirClient
from weir.client.types import State, StateType
from weir.errors import Unimplemented
from weir.v1 import (
    blocks_pb2,
    blocks_pb2_grpc,
    concurrency_pb2,
    concurrency_pb2_grpc,
)

ALL_SERVICES = {
    "weir.v1.OrchestrationService",
    "weir.v1.DeploymentService",
    "weir.v1.WorkerService",
    "weir.v1.BlockService",
    "weir.v1.ConcurrencyService",
    "weir.v1.EventService",
}


def test_every_service_answers_serving(stack) -> None:
    with grpc.insecure_channel(stack.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in [*ALL_SERVICES, ""]:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    # The gRPC services answered before the gateway started (it imports after them).
    assert 0 < stack.serving_seconds <= stack.ready_seconds


def test_unknown_service_health_is_not_found(stack) -> None:
    with grpc.insecure_channel(stack.address) as channel, pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="weir.v1.Nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service(stack) -> None:
    with grpc.insecure_channel(stack.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(replies).list_services_response.service}
    assert names >= ALL_SERVICES
    assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize(
    ("call", "rpc"),
    [
        (
            lambda ch: blocks_pb2_grpc.BlockServiceStub(ch).ListBlockTypes(blocks_pb2.ListBlockTypesRequest()),
            "BlockService.ListBlockTypes",
        ),
        (
            lambda ch: concurrency_pb2_grpc.ConcurrencyServiceStub(ch).Acquire(concurrency_pb2.AcquireRequest()),
            "ConcurrencyService.Acquire",
        ),
    ],
)
def test_scaffold_rpcs_say_they_are_not_built(stack, call, rpc) -> None:
    with grpc.insecure_channel(stack.address) as channel, pytest.raises(grpc.RpcError) as info:
        call(channel)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert rpc in info.value.details()
    assert "not available yet" in info.value.details()


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory):
    from tests.fixtures.stack import build_settings
    from weir_server import Stack, StackThread

    settings = build_settings("sqlite", tmp_path_factory.mktemp("keyed"), api_key="s3cret")
    runner = StackThread(Stack(settings, services=("blocks",), http=False))
    runner.start()
    yield runner.stack
    runner.stop()


def test_api_key_is_required_when_configured(keyed_stack) -> None:
    request = blocks_pb2.ListBlockTypesRequest()
    with grpc.insecure_channel(keyed_stack.address) as channel:
        stub = blocks_pb2_grpc.BlockServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.ListBlockTypes(request, timeout=5)
        with pytest.raises(grpc.RpcError) as wrong:
            stub.ListBlockTypes(request, metadata=[("authorization", "Bearer nope")], timeout=5)
        with pytest.raises(grpc.RpcError) as right:
            stub.ListBlockTypes(request, metadata=[("authorization", "Bearer s3cret")], timeout=5)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # With the key, the call gets through to the (scaffold) service itself.
    assert right.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_proposals_go_unary_when_the_server_has_no_proposal_stream(keyed_stack) -> None:
    # This host serves blocks only: ProposeStates answers UNIMPLEMENTED, and so does the unary call
    # the client falls back to, which names the server it asked. Twenty new clients: a first write
    # racing the server's UNIMPLEMENTED left the status at INTERNAL about one time in six.
    for _ in range(20):
        async with AsyncWeirClient(keyed_stack.address, api_key="s3cret") as client:
            with pytest.raises(Unimplemented) as info:
                await client.set_flow_run_state("0b5a8f0e-3c36-4a8e-9a56-1f1c7b1d2e3f", State(type=StateType.RUNNING))
            assert client._proposals.unsupported
        assert keyed_stack.address in info.value.message
