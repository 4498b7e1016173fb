"""Workers against a real stack: ``weir worker start`` (and ``Flow.serve``) as real
subprocesses, flows written into tmp_path, runs created through the client.

The stack is per module (both backends) with the deployments and
orchestration timeouts shortened, so heartbeats, unacked assignments and
crashed runs are seen in a second or two.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.backends import BACKENDS, drop_schemas, require_backend
from tests.fixtures.stack import build_settings

FAST = {
    "WEIR_DEPLOYMENTS_ASSIGNMENT_ACK_TIMEOUT_SECONDS": "1.5",
    "WEIR_DEPLOYMENTS_SWEEPER_INTERVAL_SECONDS": "0.3",
    "WEIR_DEPLOYMENTS_WORKER_OFFLINE_AFTER_SECONDS": "3",
    "WEIR_DEPLOYMENTS_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "WEIR_DEPLOYMENTS_SCHEDULER_INTERVAL_SECONDS": "0.5",
    "WEIR_ORCHESTRATION_SWEEPER_INTERVAL_SECONDS": "0.3",
    "WEIR_ORCHESTRATION_HEARTBEAT_TIMEOUT_SECONDS": "3",
}

#: The flows the tests deploy (``flows.py`` in the project directory).
FLOWS = """
import os, pathlib, sys, time
from weir import flow, task

@task
def plus(x: int, y: int) -> int:
    return x + y

@flow(persist_result=True)
def add(x: int, y: int = 1) -> int:
    print(f"adding {x} and {y}")
    return plus(x, y)

@flow
def sleepy(seconds: float, marker: str) -> str:
    pathlib.Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"

@flow
def dies(code: int) -> None:
    sys.stdout.flush()
    os._exit(code)
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=BACKENDS)
def wstack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from weir_server import Stack, StackThread

    require_backend(request.param)
    settings = build_settings(request.param, tmp_path_factory.mktemp(f"workers-{request.param}"))
    saved = {k: os.environ.get(k) for k in FAST}
    os.environ.update(FAST)  # read by the services' settings when the stack starts
    try:
        runner = StackThread(Stack(settings, http=False))
        runner.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield runner.stack
    finally:
        runner.stop()
        if request.param == "postgres":
            asyncio.run(drop_schemas(settings.database_schema_prefix))


@pytest.fixture(scope="module")
def client(wstack: Any) -> Iterator[Any]:
    from weir.client import WeirClient

    with WeirClient(wstack.address) as c:
        yield c


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with ``flows.py`` (the deployments' working directory)."""
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "flows.py").write_text(textwrap.dedent(FLOWS))
    return tmp_path / "project"


@pytest.fixture
def env(wstack: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of workers and served scripts: this stack, a private home."""
    return client_env(wstack.address, tmp_path / "home")


def client_env(address: str, home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    # Runs' heartbeats well inside the shortened orchestration timeout (FAST), so only dead runs crash.
    return {**base, "WEIR_API_ADDRESS": address, "WEIR_HOME": str(home), "WEIR_HEARTBEAT_INTERVAL_SECONDS": "0.5"}


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}) before {text!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the worker's output within {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)


@pytest.fixture
def start_worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``weir worker start ARGS...`` and wait until it serves (or any ``python ARGS...`` with ``script=True``)."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, script: bool = False, cwd: Path | None = None, environment: dict[str, str] | None = None
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        command = [sys.executable, *args] if script else [sys.executable, "-m", "weir.cli", "worker", "start", *args]
        with log.open("w") as out:
            proc = subprocess.Popen(
                command,
                # The module's stack unless told otherwise (only then is that stack started).
                env=environment or request.getfixturevalue("env"),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=cwd,
            )
        started.append(WorkerProcess(proc, log))
        if not script:
            started[-1].wait_for_output("serving pool")  # its pool exists from here on
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            for _ in range(2):  # drain, then stop the runs
                worker.signal(signal.SIGTERM)
                time.sleep(0.2)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.wait()


def eventually(probe: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def final_run(client: Any, run_id: str, timeout: float = 60.0) -> Any:
    """The run once it is in a final state."""
    return eventually(
        lambda: (r := client.read_flow_run(run_id)).state is not None and r.state.is_final() and r, timeout=timeout
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
