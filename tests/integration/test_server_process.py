"""`weir server start` as a user runs it: a real process on an empty home,
ready when every service is SERVING, gone cleanly (nats-server included) on
SIGTERM, and never leaving a nats-server behind even when SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from weir_kit.jetstream import free_port

pytestmark = pytest.mark.slow


def _start(home: Path) -> tuple[subprocess.Popen[str], int, int]:
    """The server, its output going to home/../server.log (read it with _output)."""
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "WEIR_HOME": str(home)}
    env.pop("WEIR_DATABASE_URL", None)
    env.pop("WEIR_NATS_URL", None)
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / "server.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "weir.cli",
                "server",
                "start",
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(http_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return proc, grpc_port, http_port


def _output(home: Path) -> str:
    return (home.parent / "server.log").read_text()


def _wait_ready(proc: subprocess.Popen[str], grpc_port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert proc.poll() is None, "server exited early"
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)


def _http_health(proc: subprocess.Popen[str], http_port: int, deadline_s: float = 60) -> int:
    """The status of GET /api/health once the gateway listens."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, "server exited early"
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/api/health", timeout=10).status_code
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the gateway never listened"
            time.sleep(0.05)


def _nats_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "nats-server" in p.name()]


def test_server_start_on_empty_home_then_sigterm_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, grpc_port, http_port = _start(home)
    try:
        _wait_ready(proc, grpc_port)
        nats = _nats_children(proc.pid)
        assert len(nats) == 1
        # gRPC answers first; the gateway listens a moment later, before "Weir ready" is printed.
        assert _http_health(proc, http_port) == 200
        for service in ("orchestration", "deployments", "blocks", "concurrency", "events"):
            assert (home / f"{service}.db").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        output = _output(home)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, output
    assert "Weir ready" in output
    assert f"127.0.0.1:{grpc_port}" in output
    psutil.wait_procs(nats, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in nats)


def test_sigkilled_server_leaves_no_nats_server(tmp_path: Path) -> None:
    proc, grpc_port, _ = _start(tmp_path / "home")
    try:
        _wait_ready(proc, grpc_port)
        nats = _nats_children(proc.pid)
        assert nats
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    _, alive = psutil.wait_procs(nats, timeout=10)
    assert not alive, "nats-server outlived its SIGKILLed parent"
