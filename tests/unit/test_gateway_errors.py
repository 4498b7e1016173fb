"""The gateway's one WeirError -> HTTP mapping.

The client is a fake injected through ``create_app(client_factory=...)``:
here the gateway itself is the unit under test; the end-to-end tests drive it
over real gRPC.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from weir.client.types import Decision, FlowRun, Page, ProposalResult, State, StateType
from weir.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    WeirError,
)
from weir_gateway import create_app

RUN = FlowRun(id="r1", flow_id="f1", name="brave-otter", state=State(type=StateType.RUNNING))


class FakeClient:
    """Answers every call with ``answer`` (raised when it is an exception)."""

    def __init__(self, answer: Any = None, health: dict[str, str] | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._health = health or {}

    async def health(self) -> dict[str, str]:
        return self._health

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if isinstance(self.answer, BaseException):
                raise self.answer
            return self.answer

        return call


@pytest.fixture
def make_http() -> Any:
    """``make_http(fake)``: an HTTP client of a gateway whose client is ``fake``."""

    def make(fake: FakeClient) -> httpx.AsyncClient:
        app = create_app(client_factory=lambda: fake)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")

    return make


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("flow run r9 not found"), 404),
        (AlreadyExists("exists"), 409),
        (FailedPrecondition("not now"), 409),
        (Conflict("lost a race"), 409),
        (InvalidArgument("page_size must be positive", field="page_size"), 422),
        (ResourceExhausted("slow down"), 429),
        (Unavailable("no Weir server configured"), 503),
    ],
)
async def test_weir_errors_map_to_http(make_http: Any, error: WeirError, status: int) -> None:
    async with make_http(FakeClient(error)) as http:
        resp = await http.get("/api/flow_runs/r9")
    assert resp.status_code == status
    assert resp.json() == {"detail": error.message, "field": error.field}


async def test_field_travels_in_the_body(make_http: Any) -> None:
    async with make_http(FakeClient(InvalidArgument("bad id", field="flow_run_id"))) as http:
        resp = await http.get("/api/flow_runs/nope/states")
    assert resp.status_code == 422
    assert resp.json()["field"] == "flow_run_id"


async def test_request_validation_stays_422_and_never_reaches_the_client(make_http: Any) -> None:
    fake = FakeClient(Page[FlowRun](items=[]))
    async with make_http(fake) as http:
        bad_state = await http.get("/api/flow_runs", params={"state": "DONE"})
        naive_time = await http.get("/api/flow_runs", params={"created_after": "2025-01-01T00:00:00"})
        bad_size = await http.get("/api/flow_runs", params={"page_size": 0})
        bad_body = await http.post("/api/flow_runs/r1/set_state", json={"type": "NOPE"})
    assert [r.status_code for r in (bad_state, naive_time, bad_size, bad_body)] == [422] * 4
    assert fake.calls == []


async def test_list_builds_the_filter_and_returns_the_page(make_http: Any) -> None:
    fake = FakeClient(Page[FlowRun](items=[RUN], next_page_token="next"))
    async with make_http(fake) as http:
        resp = await http.get(
            "/api/flow_runs",
            params=[("state", "FAILED"), ("state", "CRASHED"), ("tag", "a"), ("page_size", "5")],
        )
    assert resp.status_code == 200
    body = resp.json()
    assert body["next_page_token"] == "next"
    assert body["items"][0]["id"] == "r1"
    ((name, args, kwargs),) = fake.calls
    assert name == "list_flow_runs"
    assert args[0].state_types == (StateType.FAILED, StateType.CRASHED)
    assert args[0].tags_all == ("a",)
    assert kwargs == {"page_size": 5, "page_token": None}


async def test_set_state_returns_the_decision(make_http: Any) -> None:
    result = ProposalResult(decision=Decision.REJECT, state=RUN.state, reason="already running")
    fake = FakeClient(result)
    async with make_http(fake) as http:
        resp = await http.post("/api/flow_runs/r1/set_state", json={"type": "RUNNING", "force": True})
    assert resp.status_code == 200
    assert resp.json()["decision"] == "REJECT"
    ((_, args, kwargs),) = fake.calls
    assert args[0] == "r1" and args[1].type is StateType.RUNNING and kwargs["force"] is True


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({"weir.v1.OrchestrationService": "SERVING", "weir.v1.EventService": "SERVING"}, 200),
        ({"weir.v1.OrchestrationService": "SERVING", "weir.v1.EventService": "NOT_SERVING"}, 503),
    ],
)
async def test_health_is_503_unless_all_serving(make_http: Any, statuses: dict[str, str], code: int) -> None:
    async with make_http(FakeClient(health=statuses)) as http:
        resp = await http.get("/api/health")
    assert resp.status_code == code
    assert resp.json()["services"] == statuses


async def test_openapi_document_is_typed(make_http: Any) -> None:
    async with make_http(FakeClient()) as http:
        doc = (await http.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "FlowRun" in schemas and "ProposalResult" in schemas and "ErrorBody" in schemas
    assert "/api/flow_runs/{flow_run_id}/set_state" in doc["paths"]
