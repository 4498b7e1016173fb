"""Issue 5's acceptance, as the README walks a new user through it, with
real processes only: `weir server start` (SQLite, and Postgres), a process
pool, `weir worker start`, `weir deploy` of examples/weir.yaml (the
quickstart flow on a cron schedule and a slow flow on demand), runs reaching
COMPLETED in `weir flow-run ls`, a running run cancelled, the deployment
paused."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, drop_schemas, require_backend, unique_schema_prefix
from tests.integration.test_server_process import _wait_ready
from weir_kit.jetstream import free_port

pytestmark = pytest.mark.slow

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class User:
    """Runs `weir ...` the way a user at a terminal would."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def weir(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "weir.cli", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, f"weir {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.weir(*args, "-o", "json").stdout)

    def background(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "weir.cli", *args],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


def eventually(probe: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or probe}"
        time.sleep(0.2)


@pytest.fixture(params=BACKENDS)
def user(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[User]:
    require_backend(request.param)
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES, project)
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "WEIR_HOME": str(tmp_path / "home"), "WEIR_API_ADDRESS": f"127.0.0.1:{grpc_port}"}
    env.pop("WEIR_NATS_URL", None)
    args = ["server", "start", "--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    prefix = unique_schema_prefix()
    if request.param == "postgres":
        args += ["--database-url", POSTGRES_URL]
        env["WEIR_DATABASE_SCHEMA_PREFIX"] = prefix
    else:
        env.pop("WEIR_DATABASE_URL", None)
    u = User(env, project)
    server = u.background(*args, log=tmp_path / "server.log")
    try:
        _wait_ready(server, grpc_port)  # type: ignore[arg-type]
        yield u
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if request.param == "postgres":
            asyncio.run(drop_schemas(prefix))


def state_of(user: User, run_id: str) -> dict[str, Any]:
    return user.json("flow-run", "inspect", run_id)["flow_run"]["state"]


def runs_of(user: User, flow: str) -> list[dict[str, Any]]:
    return user.json("flow-run", "ls", "--flow", flow, "--limit", "100")


def test_the_readme_walk_through(user: User, tmp_path: Path) -> None:
    user.weir("work-pool", "create", "local", "--type", "process")
    worker = user.background("worker", "start", "--pool", "local", "--limit", "4", log=tmp_path / "worker.log")
    try:
        deployed = user.weir("deploy", "--all")
        assert "weather-report/daily" in deployed.stdout and "countdown/demo" in deployed.stdout

        # The cron schedule puts runs of the quickstart flow ahead of time.
        scheduled = eventually(
            lambda: [r for r in runs_of(user, "weather-report") if r["state"]["type"] == "SCHEDULED"],
            what="scheduled runs",
        )
        assert all(r["deployment_id"] for r in scheduled)

        # On demand: the worker runs it in a subprocess, to COMPLETED.
        run = user.weir("deployment", "run", "weather-report/daily", "--watch")
        assert "Completed" in run.stdout, run.stdout
        done = [r for r in runs_of(user, "weather-report") if r["state"]["type"] == "COMPLETED"]
        assert len(done) == 1

        # A slow one: cancel it while it runs; the worker stops its process.
        started = user.weir("deployment", "run", "countdown/demo", "--param", "seconds=120")
        run_id = UUID_RE.search(started.stdout).group(0)  # type: ignore[union-attr]
        eventually(lambda: state_of(user, run_id)["type"] == "RUNNING", what="RUNNING")
        user.weir("flow-run", "cancel", run_id)
        final = eventually(
            lambda: (s := state_of(user, run_id))["type"] == "CANCELLED" and s,
            timeout=60,
            what="CANCELLED",
        )
        assert final["type"] == "CANCELLED"

        # Pausing the deployment: no new runs, and its scheduled ones are withdrawn.
        user.weir("deployment", "pause", "weather-report/daily")
        refused = user.weir("deployment", "run", "weather-report/daily", check=False)
        assert refused.returncode != 0 and "paused" in (refused.stdout + refused.stderr)
        assert "Traceback" not in refused.stderr
        assert not [r for r in runs_of(user, "weather-report") if r["state"]["type"] == "SCHEDULED"]
        workers = user.json("worker", "ls")
        assert [w["status"] for w in workers] == ["ONLINE"]
    finally:
        worker.send_signal(signal.SIGTERM)  # drains: waits for its runs ...
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGTERM)  # ... a second one stops them
            worker.wait(timeout=30)
            raise
