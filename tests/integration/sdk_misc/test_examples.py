"""Every example runs as a user runs it: `python examples/X.py` on a fresh
home with no server configured (no-server mode), printing its result, leaving
no nats-server behind, and its runs are there for a server started later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow

EXPECTED = {
    "quickstart.py": "result: 3 cities; warmest is Nairobi at 21.7",
    "retries.py": "succeeded on attempt 3",
    "caching.py": "the body ran 1 time(s)",
    "concurrency.py": str(sum(i * 10 for i in range(100)) + sum(range(100))),
    "subflows.py": "{'alpha': 15, 'beta': 12, 'gamma': 15}",
    "async_flow.py": str(sum(i * 2 for i in range(10))),
}


def _run_example(name: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["WEIR_HOME"] = str(home)
    return subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=120)


def _nats_servers_for(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "nats-server" in (proc.info.get("name") or "") and any(str(home) in part for part in cmdline):
            found.append(proc)
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_with_no_server(name: str, tmp_path: Path) -> None:
    result = _run_example(name, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert EXPECTED[name] in result.stdout
    assert "Traceback" not in result.stderr
    assert _nats_servers_for(tmp_path / "home") == []


def test_no_server_runs_are_there_for_a_server_started_later(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _run_example("quickstart.py", home).returncode == 0

    from tests.fixtures.stack import build_settings
    from weir.client import WeirClient
    from weir.client.types import FlowRunFilter, StateType, TaskRunFilter
    from weir_server import Stack, StackThread

    runner = StackThread(Stack(build_settings("sqlite", home), http=False))
    runner.start()
    try:
        with WeirClient(runner.stack.address) as client:
            runs = client.list_flow_runs(FlowRunFilter(flow_names=("weather-report",))).items
            assert len(runs) == 1
            assert runs[0].state.type == StateType.COMPLETED
            task_runs = client.list_task_runs(TaskRunFilter(flow_run_ids=(runs[0].id,))).items
            assert sorted(t.name.split("-")[0] for t in task_runs) == ["fetch", "fetch", "fetch", "summarise"]
            logs = client.list_logs(
                __import__("weir.client.types", fromlist=["LogFilter"]).LogFilter(flow_run_id=runs[0].id)
            ).items
            assert any("warmest is Nairobi" in log.message for log in logs)
    finally:
        runner.stop()
