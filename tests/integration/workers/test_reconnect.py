"""The server goes away and comes back on the same port: the worker reconnects
with backoff, its run's process keeps going and finishes, and new runs are
pushed to it again."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import build_settings
from tests.integration.workers.conftest import FAST, client_env, eventually, final_run, pid_alive, unique

pytestmark = pytest.mark.slow

#: Runs' heartbeats cannot reach a server that is down: its heartbeat timeout must outlast the outage.
OUTAGE_SETTINGS = {**FAST, "WEIR_ORCHESTRATION_HEARTBEAT_TIMEOUT_SECONDS": "30"}


class RestartableStack:
    def __init__(self, backend: str, home: Path) -> None:
        self.settings = build_settings(backend, home)
        self.runner: Any = None
        self.port = 0

    def start(self) -> None:
        from weir_server import Stack, StackThread

        settings = self.settings.model_copy(update={"grpc_port": self.port}) if self.port else self.settings
        saved = {k: os.environ.get(k) for k in OUTAGE_SETTINGS}
        os.environ.update(OUTAGE_SETTINGS)
        try:
            self.runner = StackThread(Stack(settings, http=False))
            self.runner.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.port = self.runner.stack.grpc_port

    def stop(self) -> None:
        self.runner.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def own_stack(backend: str, tmp_path: Path) -> Iterator[RestartableStack]:
    stack = RestartableStack(backend, tmp_path / "server")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        if backend == "postgres":
            from tests.fixtures.backends import drop_schemas

            asyncio.run(drop_schemas(stack.settings.database_schema_prefix))


def test_a_server_restart_loses_no_run(
    own_stack: RestartableStack, project: Path, start_worker: Any, tmp_path: Path
) -> None:
    from weir.client import WeirClient

    pool = unique("pool")
    env = client_env(own_stack.address, tmp_path / "home")
    worker = start_worker("--pool", pool, "--name", "steady", environment=env)
    with WeirClient(own_stack.address) as client:
        deployment = client.upsert_deployment(
            flow_name="sleepy",
            name=unique("dep"),
            entrypoint="flows.py:sleepy",
            working_directory=str(project),
            work_pool_name=pool,
        )
        marker = tmp_path / "pid"
        run_id = client.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 4, "marker": str(marker)})
        pid = int(eventually(lambda: marker.exists() and marker.read_text()))
    first_id = worker.output().split("connected as worker ")[1].split()[0]

    own_stack.stop()
    time.sleep(1.5)  # a few failed reconnects
    assert pid_alive(pid)  # the run's process does not depend on the stream
    own_stack.start()

    worker.wait_for_output("reconnecting")
    eventually(lambda: worker.output().count("connected as worker") >= 2, timeout=30)
    assert worker.output().split("connected as worker ")[2].split()[0] == first_id  # the same worker
    with WeirClient(own_stack.address) as client:
        run = final_run(client, run_id)
        assert run.state.is_completed(), (run.state, worker.output())
        again = client.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 0, "marker": str(marker)})
        assert final_run(client, again).state.is_completed()
