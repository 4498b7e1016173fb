"""Bad input and faults: wrong or missing parameters, unserialisable results, recursive inputs,
the server going away mid-flow, and a process killed mid-flow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import build_settings
from tests.integration.engine.helpers import current_flow_run_id, eventually, only_flow_run, task_runs_of, unique
from weir import flow, task
from weir.errors import InvalidArgument


@flow
def typed(count: int, ratio: float = 0.5) -> float:
    return count * ratio


@task
def echo(value: Any) -> Any:
    return value


def test_wrong_parameter_type_names_the_parameter() -> None:
    with pytest.raises(InvalidArgument, match="parameter 'count'") as info:
        typed("many")  # type: ignore[arg-type]
    assert "many" in str(info.value)


def test_missing_parameter_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="count"):
        typed()  # type: ignore[call-arg]

    @flow(name=unique("missing-task-arg"))
    def f() -> Any:
        return echo()  # type: ignore[call-arg]

    with pytest.raises(InvalidArgument, match="value"):
        f()


def test_unserialisable_result_fails_the_run_with_a_clear_error(client: Any) -> None:
    @task(persist_result=True, result_serializer="json")
    def make_lock() -> Any:
        return threading.Lock()

    name = unique("unserialisable")

    @flow(name=name)
    def f() -> Any:
        return make_lock()

    with pytest.raises(InvalidArgument, match="make_lock") as info:
        f()
    assert "persist_result=False" in str(info.value)
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_failed() and not run.state.is_crashed()
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.is_failed() and "make_lock" in (tr.state.message or "")


def test_unserialisable_flow_result_fails_the_flow_run(client: Any) -> None:
    name = unique("unserialisable-flow")

    @flow(name=name, persist_result=True, result_serializer="json")
    def f() -> Any:
        return object()

    with pytest.raises(InvalidArgument, match=name):
        f()
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_failed()


def _cycle() -> list[Any]:
    a: list[Any] = [1]
    a.append(a)
    return a


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("make", [_cycle, lambda: _deep(5000)], ids=["cycle", "deep"])
def test_recursive_parameter_is_a_clear_error(make: Any) -> None:
    @flow(name=unique("recursive-flow"))
    def takes(value: Any) -> int:
        return 1

    with pytest.raises(InvalidArgument, match="value") as info:
        takes(make())
    assert not isinstance(info.value.__cause__, RecursionError)

    @flow(name=unique("recursive-task"))
    def calls_task() -> Any:
        return echo(make())

    with pytest.raises(InvalidArgument, match=r"cycle|nested"):
        calls_task()


def test_recursive_object_attribute_is_not_a_recursion_error() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    @flow(name=unique("node"))
    def f() -> Any:
        return type(echo(Node())).__name__

    assert f() == "Node"


# ------------------------------------------------------------ the server going away


@pytest.fixture
def own_stack(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A stack of this test's own (restartable on the same port), with the engine pointed at it."""
    from weir.engine import runtime
    from weir.settings import get_settings
    from weir_server import Stack, StackThread

    settings = build_settings(backend, tmp_path / "server", http_port=0)
    holder: dict[str, Any] = {"runner": StackThread(Stack(settings, http=False))}
    holder["runner"].start()
    port = holder["runner"].stack.grpc_port

    def restart_later(delay: float) -> threading.Thread:
        def run() -> None:
            time.sleep(delay)
            again = settings.model_copy(update={"grpc_port": port})
            holder["runner"] = StackThread(Stack(again, http=False))
            holder["runner"].start()

        thread = threading.Thread(target=run, name="restart-stack")
        thread.start()
        return thread

    def stop() -> None:
        holder["runner"].stop()

    def reset() -> None:
        current = runtime._runtime
        runtime.shutdown_runtime()
        if current is not None and not current.loop.is_running():
            current.loop.close()
        get_settings.cache_clear()

    reset()
    monkeypatch.setenv("WEIR_API_ADDRESS", holder["runner"].stack.address)
    monkeypatch.setenv("WEIR_HOME", str(tmp_path / "client"))
    try:
        address = holder["runner"].stack.address
        yield type("OwnStack", (), {"address": address, "stop": stop, "restart_later": restart_later})
    finally:
        reset()
        holder["runner"].stop()
        monkeypatch.undo()
        if backend == "postgres":
            import asyncio

            from tests.fixtures.backends import drop_schemas

            asyncio.run(drop_schemas(settings.database_schema_prefix))


def test_server_going_away_mid_flow_loses_nothing(own_stack: Any) -> None:
    from weir.client import WeirClient

    name = unique("outage")
    restarted: list[threading.Thread] = []

    @flow(name=name)
    def f() -> str:
        for i in range(20):
            echo(i)
        own_stack.stop()  # the server goes away with records in flight ...
        restarted.append(own_stack.restart_later(1.0))  # ... and comes back on the same port
        for i in range(20, 40):
            echo(i)
        return current_flow_run_id()

    run_id = f()
    restarted[0].join(30)
    with WeirClient(own_stack.address) as client:
        run = only_flow_run(client, name)
        assert run.id == run_id and run.state is not None and run.state.is_completed()
        runs = task_runs_of(client, run_id)
        assert len(runs) == 40
        assert all(r.state is not None and r.state.is_completed() for r in runs)


# ------------------------------------------------------------ a process killed mid-flow


@pytest.fixture
def crashy_stack(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A stack whose orchestration crashes runs after 2 s without a heartbeat, swept every 0.2 s."""
    from weir_server import Stack, StackThread

    monkeypatch.setenv("WEIR_ORCHESTRATION_HEARTBEAT_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("WEIR_ORCHESTRATION_SWEEPER_INTERVAL_SECONDS", "0.2")
    settings = build_settings(backend, tmp_path / "server")
    runner = StackThread(Stack(settings, http=False))
    runner.start()
    try:
        yield runner.stack
    finally:
        runner.stop()
        if backend == "postgres":
            import asyncio

            from tests.fixtures.backends import drop_schemas

            asyncio.run(drop_schemas(settings.database_schema_prefix))


def test_process_killed_mid_flow_ends_crashed(crashy_stack: Any, tmp_path: Path) -> None:
    from weir.client import WeirClient
    from weir.client.types import StateType

    name = unique("killed")
    marker = tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from weir import flow, task

        @task
        def quick(i: int) -> int:
            return i

        @task
        def hang() -> None:
            pathlib.Path({str(marker)!r}).write_text("x")
            time.sleep(600)

        @flow(name={name!r})
        def f() -> None:
            quick(1)
            hang()

        f()
        """
    )
    env = {**os.environ, "WEIR_API_ADDRESS": crashy_stack.address, "WEIR_HOME": str(tmp_path / "client")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    with WeirClient(crashy_stack.address) as client:

        def quick_is_written() -> bool:
            runs = [r for r in client.iter_flow_runs() if r.flow_name == name]
            return bool(runs) and any(
                t.name == "quick-1" and t.state is not None and t.state.is_completed()
                for t in task_runs_of(client, runs[0].id)
            )

        try:
            eventually(lambda: (marker.exists() and quick_is_written()) or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, "the flow process ended before it was killed"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        run = eventually(
            lambda: (r := only_flow_run(client, name)).state is not None and r.state.type is StateType.CRASHED and r,
            timeout=30,
        )
        assert run.state.display_name == "Crashed"
        names = {t.name: t.state.type for t in task_runs_of(client, run.id)}  # type: ignore[union-attr]
        assert names["quick-1"] is StateType.COMPLETED  # what was acknowledged before the kill stays written
