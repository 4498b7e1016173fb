"""Return values, return_state, named states, and persisted results."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, only_flow_run, task_runs_of, unique
from weir import flow, task
from weir.results import JSONSerializer, LocalFileSystem


@task
def ok(x: int) -> int:
    return x + 1


@task
def boom(x: int) -> int:
    raise ValueError(f"bad {x}")


def test_return_state_of_flow_and_task() -> None:
    @flow(name=unique("rs"))
    def f() -> tuple[Any, Any]:
        return ok(1, return_state=True), boom(2, return_state=True)

    flow_state = f(return_state=True)
    assert flow_state.is_completed() and flow_state.display_name == "Completed"
    good, bad = flow_state.result()
    assert good.is_completed() and good.result() == 2
    assert bad.is_failed() and bad.display_name == "Failed"
    with pytest.raises(ValueError, match="bad 2"):
        bad.result()
    assert isinstance(bad.result(raise_on_failure=False), ValueError)


def test_a_flow_whose_task_failed_ends_failed(client: Any) -> None:
    name = unique("task-failed")

    @flow(name=name)
    def f() -> int:
        return boom(1)

    with pytest.raises(ValueError, match="bad 1"):
        f()
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_failed()
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.is_failed() and "bad 1" in (tr.state.message or "")


def test_a_flow_that_handles_its_task_failure_completes(client: Any) -> None:
    name = unique("handled")

    @flow(name=name)
    def f() -> str:
        try:
            boom(1)
        except ValueError:
            pass
        state = boom(2, return_state=True)
        future = boom.submit(3)
        future.wait()
        assert future.state.is_failed()  # looked at: handled
        return "fine" if state.is_failed() else "?"

    assert f() == "fine"
    assert only_flow_run(client, name).state.is_completed()  # type: ignore[union-attr]


def test_an_unobserved_failed_future_fails_the_flow(client: Any) -> None:
    name = unique("unobserved")

    @flow(name=name)
    def f() -> str:
        boom.submit(5)
        return "returned"

    state = f(return_state=True)
    assert state.is_failed() and "bad 5" in (state.message or "")
    assert only_flow_run(client, name).state.is_failed()  # type: ignore[union-attr]


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_persisted_task_result_is_read_back_from_the_server_state(client: Any, serializer: str) -> None:
    @task(persist_result=True, result_serializer=serializer)
    def make(n: int) -> dict[str, Any]:
        return {"n": n, "items": [1, 2, 3]}

    @flow(name=unique("persist"))
    def f() -> str:
        make(7)
        return current_flow_run_id()

    run_id = f()
    (tr,) = task_runs_of(client, run_id)
    assert tr.state is not None and tr.state.details.result_ref
    raw = Path(tr.state.details.result_ref.removeprefix("file://")).read_bytes()
    assert raw.startswith(serializer.encode() + b"\n")
    assert tr.state.result() == {"n": 7, "items": [1, 2, 3]}


def test_custom_storage_and_serializer_objects(client: Any, tmp_path: Path) -> None:
    storage = LocalFileSystem(tmp_path / "mine")

    @task(persist_result=True, result_storage=storage, result_serializer=JSONSerializer())
    def make() -> list[int]:
        return [4, 5]

    @flow(name=unique("storage"))
    def f() -> str:
        make()
        return current_flow_run_id()

    (tr,) = task_runs_of(client, f())
    assert str(tmp_path / "mine") in (tr.state.details.result_ref or "")  # type: ignore[union-attr]
    assert tr.state.result() == [4, 5]  # type: ignore[union-attr]


def test_flow_result_persists_and_outlives_the_process(client: Any, stack: Any, tmp_path: Path) -> None:
    name = unique("outlives")
    script = textwrap.dedent(
        f"""
        from weir import flow

        @flow(name={name!r}, persist_result=True)
        def f(n: int) -> dict:
            return {{"answer": n * 2}}

        print(f(21))
        """
    )
    env = {**os.environ, "WEIR_API_ADDRESS": stack.address, "WEIR_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "{'answer': 42}" in out.stdout
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_completed() and run.state.details.result_ref
    assert run.state.result() == {"answer": 42}


def test_states_read_back_have_the_server_names(client: Any) -> None:
    @task(retries=1)
    def once_bad(flag: list[int]) -> int:
        flag.append(1)
        if len(flag) == 1:
            raise OSError("first")
        return 1

    @flow(name=unique("names"))
    def f() -> str:
        once_bad([])
        return current_flow_run_id()

    (tr,) = task_runs_of(client, f())
    names = [s.display_name for s in client.iter_states(task_run_id=tr.id)]
    assert names == ["Pending", "Running", "AwaitingRetry", "Running", "Completed"]
