"""The gateway's deployment, work-pool, work-queue and worker routes over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.deployments_api.conftest import unique


@pytest.fixture(scope="module")
def http(stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.http_url}/api", timeout=30) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_work_pools_and_queues(http: httpx.Client) -> None:
    name = unique("pool")
    pool = ok(http.put(f"/work_pools/{name}", json={"concurrency_limit": 2, "description": "rest"}))
    assert (pool["name"], pool["type"], pool["concurrency_limit"], pool["default_queue_name"]) == (
        name,
        "process",
        2,
        "default",
    )
    assert ok(http.get(f"/work_pools/{name}")) == pool
    assert name in [p["name"] for p in ok(http.get("/work_pools", params={"page_size": 1000}))["items"]]
    assert ok(http.post(f"/work_pools/{name}/pause"))["paused"] is True
    assert ok(http.post(f"/work_pools/{name}/resume"))["paused"] is False

    queue = ok(http.put(f"/work_pools/{name}/queues/high", json={"priority": 2}))
    assert (queue["work_pool_name"], queue["name"], queue["priority"]) == (name, "high", 2)
    assert [q["name"] for q in ok(http.get(f"/work_pools/{name}/queues"))["items"]] == ["default", "high"]
    assert ok(http.get(f"/work_pools/{name}/queues/high")) == queue
    assert ok(http.post(f"/work_pools/{name}/queues/high/pause"))["paused"] is True
    assert ok(http.post(f"/work_pools/{name}/queues/high/resume"))["paused"] is False
    ok(http.delete(f"/work_pools/{name}/queues/high"), 204)
    assert http.get(f"/work_pools/{name}/queues/high").status_code == 404

    assert ok(http.get(f"/work_pools/{name}/workers"))["items"] == []
    assert ok(http.get("/workers", params={"work_pool_name": name}))["items"] == []

    ok(http.delete(f"/work_pools/{name}"), 204)
    missing = http.get(f"/work_pools/{name}")
    assert missing.status_code == 404 and missing.json()["detail"]


def test_deployments(http: httpx.Client, pool: str) -> None:
    flow_name = unique("flow")
    body = {
        "entrypoint": "flows/etl.py:etl",
        "parameters": {"day": "mon"},
        "parameter_schema": {"type": "object", "properties": {"limit": {"type": "integer"}}},
        "work_pool_name": pool,
        "schedules": [{"cron": "0 3 * * *", "timezone": "Europe/Paris"}, {"interval": 3600}],
        "tags": ["rest"],
        "collision_strategy": "CANCEL_NEW",
    }
    d = ok(http.put(f"/deployments/name/{flow_name}/nightly", json=body))
    assert (d["flow_name"], d["name"], d["collision_strategy"]) == (flow_name, "nightly", "CANCEL_NEW")
    assert [s["cron"] for s in d["schedules"]] == ["0 3 * * *", None]
    assert ok(http.put(f"/deployments/name/{flow_name}/nightly", json=body))["id"] == d["id"]
    assert ok(http.get(f"/deployments/{d['id']}")) == ok(http.get(f"/deployments/name/{flow_name}/nightly"))
    listed = ok(http.get("/deployments", params={"flow_name": flow_name, "tag": "rest"}))["items"]
    assert [x["id"] for x in listed] == [d["id"]]

    assert ok(http.post(f"/deployments/{d['id']}/pause"))["paused"] is True
    refused = http.post(f"/deployments/{d['id']}/runs")
    assert refused.status_code == 409, refused.text
    assert ok(http.post(f"/deployments/{d['id']}/resume"))["paused"] is False

    created = ok(http.post(f"/deployments/{d['id']}/runs", json={"parameters": {"limit": 2}, "tags": ["r"]}), 201)
    run = ok(http.get(f"/flow_runs/{created['flow_run_id']}"))
    assert (run["deployment_id"], run["parameters"]) == (d["id"], {"day": "mon", "limit": 2})
    assert ok(http.post(f"/deployments/{d['id']}/runs"), 201)["flow_run_id"]

    bad = http.post(f"/deployments/{d['id']}/runs", json={"parameters": {"limit": "many"}})
    assert bad.status_code == 422, bad.text
    assert "limit" in (bad.json()["field"] or "")

    check = ok(http.post("/deployments/validate_job_variables", json={"deployment_id": d["id"]}))
    assert check["valid"] is True
    draft = {"flow_name": "f", "name": "draft", "work_pool_name": pool, "job_variables": {"env": "x"}}
    check = ok(http.post("/deployments/validate_job_variables", json={"deployment": draft}))
    assert check["valid"] is False and "env" in check["field"]

    ok(http.delete(f"/deployments/{d['id']}"), 204)
    assert http.get(f"/deployments/{d['id']}").status_code == 404


def test_bad_schedule_is_a_422_naming_the_field(http: httpx.Client, pool: str) -> None:
    body = {"work_pool_name": pool, "schedules": [{"cron": "every day"}]}
    bad = http.put(f"/deployments/name/{unique('flow')}/x", json=body)
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"] == "deployment.schedules[0].cron"
    # A schedule with no kind is refused by the gateway's own validation.
    assert http.put(f"/deployments/name/{unique('flow')}/x", json={"schedules": [{}]}).status_code == 422
