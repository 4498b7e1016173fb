"""The spine's acceptance, as a user drives it: through the SDK client and
through the CLI, create a flow run, drive it PENDING -> RUNNING -> COMPLETED,
see a second PENDING rejected, read the state history, and read the persisted
weir.flow-run.* events within a second (on SQLite and on Postgres)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from weir.client import AsyncWeirClient
from weir.client.types import Decision, EventFilter, State, StateType


async def _events_for(client: AsyncWeirClient, run_id: str, expected: set[str], deadline_s: float = 1.0):
    deadline = time.monotonic() + deadline_s
    while True:
        page = await client.list_events(EventFilter(resource_ids=(f"weir.flow-run.{run_id}",)), page_size=100)
        names = {e.event for e in page.items}
        if expected <= names or time.monotonic() > deadline:
            return names
        await __import__("asyncio").sleep(0.02)


async def test_drive_a_flow_run_through_the_sdk(stack) -> None:
    async with AsyncWeirClient(stack.address) as client:
        run = await client.create_flow_run(flow_name=f"accept-{uuid.uuid4().hex[:6]}")
        assert run.state is not None and run.state.type == StateType.PENDING

        again = await client.set_flow_run_state(run.id, State(type=StateType.PENDING))
        assert again.decision == Decision.REJECT
        assert "PENDING" in again.reason

        running = await client.set_flow_run_state(run.id, State(type=StateType.RUNNING))
        assert running.decision == Decision.ACCEPT
        second_pending = await client.set_flow_run_state(run.id, State(type=StateType.PENDING))
        assert second_pending.decision == Decision.REJECT
        assert second_pending.state.type == StateType.RUNNING

        done = await client.set_flow_run_state(run.id, State(type=StateType.COMPLETED))
        assert done.decision == Decision.ACCEPT

        history = await client.list_states(flow_run_id=run.id)
        assert [s.type for s in history.items] == [StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
        final = await client.read_flow_run(run.id)
        assert final.state.type == StateType.COMPLETED
        assert final.run_count == 1

        # Written by orchestration, relayed through JetStream, stored by the events service.
        names = await _events_for(
            client, run.id, {"weir.flow-run.Pending", "weir.flow-run.Running", "weir.flow-run.Completed"}
        )
        assert {"weir.flow-run.Pending", "weir.flow-run.Running", "weir.flow-run.Completed"} <= names


def _weir(stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEIR_API_ADDRESS": stack.address}
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_drive_a_flow_run_through_the_cli(stack) -> None:
    created = _weir(stack, "flow-run", "create", "--flow", f"cli-{uuid.uuid4().hex[:6]}")
    assert created.returncode == 0, created.stderr
    run_id = created.stdout.strip().split()[-1]
    uuid.UUID(run_id)

    assert _weir(stack, "flow-run", "set-state", run_id, "RUNNING").returncode == 0
    rejected = _weir(stack, "flow-run", "set-state", run_id, "PENDING")
    assert rejected.returncode == 1
    assert "REJECT" in rejected.stdout + rejected.stderr
    assert _weir(stack, "flow-run", "set-state", run_id, "COMPLETED").returncode == 0

    inspected = _weir(stack, "flow-run", "inspect", run_id, "--output", "json")
    assert inspected.returncode == 0, inspected.stderr
    data = json.loads(inspected.stdout)
    assert data["flow_run"]["state"]["type"] == "COMPLETED"
    assert [s["type"] for s in data["states"]] == ["PENDING", "RUNNING", "COMPLETED"]

    listed = _weir(stack, "flow-run", "ls", "--output", "json", "--state", "COMPLETED")
    assert run_id in {r["id"] for r in json.loads(listed.stdout)}

    deadline = time.monotonic() + 5
    while True:
        events = _weir(stack, "events", "ls", "--resource", f"weir.flow-run.{run_id}", "--output", "json")
        names = {e["event"] for e in json.loads(events.stdout)}
        if "weir.flow-run.Completed" in names or time.monotonic() > deadline:
            break
    assert {"weir.flow-run.Running", "weir.flow-run.Completed"} <= names

    missing = _weir(stack, "flow-run", "inspect", str(uuid.uuid4()))
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "not found" in missing.stderr.lower()


def test_gateway_reads_through_grpc(stack) -> None:
    from weir.client import WeirClient

    with WeirClient(stack.address) as client:
        run = client.create_flow_run(flow_name=f"gw-{uuid.uuid4().hex[:6]}")
    base = stack.http_url
    assert httpx.get(f"{base}/api/health").status_code == 200
    got = httpx.get(f"{base}/api/flow_runs/{run.id}")
    assert got.status_code == 200 and got.json()["id"] == run.id
    assert httpx.get(f"{base}/api/flow_runs/{uuid.uuid4()}").status_code == 404
    bad = httpx.get(f"{base}/api/flow_runs", params={"page_token": "garbage!"})
    assert bad.status_code == 422
    assert "page_token" in bad.text
    assert httpx.get(f"{base}/openapi.json").json()["paths"]["/api/flow_runs"]
