"""Cache policies, cache_key_fn, expiration, refresh, and one run for concurrent calls with one key."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.engine.helpers import current_flow_run_id, task_runs_of, unique
from weir import FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE, flow, task
from weir.cache_policies import CallInfo, CompoundPolicy


def _counted(**options: Any) -> tuple[Any, list[Any]]:
    calls: list[Any] = []
    salt = unique("salt")  # a key no other test (or earlier session on the same database) shares

    @task(**options)
    def compute(x: int, salt: str = salt) -> int:
        calls.append(x)
        return x * 100

    return compute, calls


def test_inputs_policy_hits_across_flow_runs(client: Any) -> None:
    compute, calls = _counted(cache_policy=INPUTS)

    @flow(name=unique("cache"))
    def f(x: int) -> tuple[Any, str]:
        return compute(x, return_state=True), current_flow_run_id()

    first, _ = f(1)
    second, run_id = f(1)
    third, _ = f(2)
    assert calls == [1, 2]
    assert first.display_name == "Completed"
    assert second.display_name == "Cached" and second.is_completed() and second.result() == 100
    assert third.result() == 200
    (tr,) = task_runs_of(client, run_id)
    assert tr.state is not None and tr.state.name == "Cached"
    assert tr.state.details.cached_from_task_run_id


def test_cache_key_fn(client: Any) -> None:
    key = unique("k")
    compute, calls = _counted(cache_key_fn=lambda ctx, inputs: f"{key}-{inputs['x'] % 2}")

    @flow(name=unique("keyfn"))
    def f() -> list[int]:
        return [compute(1), compute(3), compute(2)]

    assert f() == [100, 100, 200]
    assert calls == [1, 2]


def test_run_id_policy_caches_within_one_flow_run_only() -> None:
    compute, calls = _counted(cache_policy=RUN_ID)

    @flow(name=unique("runid"))
    def f() -> list[int]:
        return [compute(1), compute(2)]

    assert f() == [100, 100]  # same run id, same key: the second call is a hit
    assert f() == [100, 100]
    assert calls == [1, 1]


def test_no_cache_and_policy_composition() -> None:
    compute, calls = _counted(cache_policy=NO_CACHE)

    @flow(name=unique("nocache"))
    def f() -> int:
        return compute(1) + compute(1)

    f()
    assert calls == [1, 1]
    combined = INPUTS + TASK_SOURCE + FLOW_PARAMETERS
    assert isinstance(combined, CompoundPolicy) and len(combined.policies) == 3
    assert (NO_CACHE + INPUTS) is NO_CACHE
    info = CallInfo("k", _counted, {"x": 1}, "run", {"p": 1})
    assert combined.compute_key(info) == combined.compute_key(info)
    assert combined.compute_key(info) != combined.compute_key(CallInfo("k", _counted, {"x": 1}, "run", {"p": 2}))


def test_flow_parameters_policy() -> None:
    compute, calls = _counted(cache_policy=FLOW_PARAMETERS + INPUTS)

    @flow(name=unique("flowparams"))
    def f(p: int) -> int:
        return compute(1)

    f(1)
    f(1)
    f(2)
    assert calls == [1, 1]


def test_cache_expiration_ends_the_hit() -> None:
    compute, calls = _counted(cache_policy=INPUTS, cache_expiration=0.3)

    @flow(name=unique("expire"))
    def f() -> int:
        return compute(1)

    f()
    f()
    assert calls == [1]
    time.sleep(0.4)  # past the expiration: the next call runs again
    f()
    assert calls == [1, 1]


def test_refresh_cache_runs_and_replaces_the_entry() -> None:
    compute, calls = _counted(cache_policy=INPUTS)
    refreshing = compute.with_options(refresh_cache=True)

    @flow(name=unique("refresh"))
    def f(refresh: bool) -> int:
        return (refreshing if refresh else compute)(1)

    f(False)
    f(True)
    f(False)
    assert calls == [1, 1]


def test_two_concurrent_calls_with_one_key_run_once(client: Any) -> None:
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []
    salt = unique("salt")

    @task(cache_policy=INPUTS)
    def slow(x: int, salt: str = salt) -> int:
        calls.append(x)
        started.set()
        release.wait(10)
        return x + 1

    @flow(name=unique("concurrent-cache"))
    def f() -> tuple[list[str], str]:
        a = slow.submit(1)
        assert started.wait(10)
        b = slow.submit(1)  # same key while the first is still running
        time.sleep(0.2)  # give b every chance to start on its own (it must not)
        release.set()
        return [a.state.display_name, b.state.display_name], current_flow_run_id()

    names, run_id = f()
    assert calls == [1]
    assert sorted(names) == ["Cached", "Completed"]
    assert sorted(t.state.display_name for t in task_runs_of(client, run_id)) == ["Cached", "Completed"]  # type: ignore[union-attr]


def test_concurrent_calls_in_two_flow_runs_run_once() -> None:
    calls: list[int] = []
    salt = unique("salt")
    gate = threading.Barrier(2)

    @task(cache_policy=INPUTS)
    def slow(x: int, salt: str = salt) -> int:
        calls.append(x)
        time.sleep(0.3)
        return x

    @flow(name=unique("two-flows"))
    def f() -> int:
        gate.wait(10)
        return slow(5)

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(f())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [5, 5]
    assert calls == [5]


_TWO_PROCESSES = """
import pathlib, sys, time
from weir import INPUTS, flow, task

calls, ready, salt, me = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]

@task(cache_policy=INPUTS)
def compute(key: int, salt: str = salt) -> int:
    with calls.open("a") as fh:  # one short append per body run: lines never interleave
        fh.write(f"{key}\\n")
    time.sleep(0.2)  # keep the key held while the other process asks for it
    return key * 10

@flow(name="two-processes-" + salt)
def f() -> list[int]:
    (ready / me).write_text("x")
    while len(list(ready.iterdir())) < 2:  # both processes call at the same moment
        time.sleep(0.01)
    return compute.map(range(12)).result()

print(f())
"""


def test_concurrent_calls_in_two_processes_run_once(stack: Any, tmp_path: Any) -> None:
    """Two processes (two SyncRuns streams, so two server transactions at once) and twelve keys:
    each body runs once; the other call of each key waits and ends Cached with the first's result."""
    import os
    import subprocess
    import sys

    from weir.client import WeirClient
    from weir.client.types import FlowRunFilter

    script = tmp_path / "two.py"
    script.write_text(_TWO_PROCESSES)
    calls, ready = tmp_path / "calls", tmp_path / "ready"
    ready.mkdir()
    salt = unique("salt")
    env = {**os.environ, "WEIR_API_ADDRESS": stack.address, "WEIR_HOME": str(tmp_path / "home")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(calls), str(ready), salt, str(i)], env=env, stdout=subprocess.PIPE
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str([k * 10 for k in range(12)])] * 2
    assert sorted(calls.read_text().split()) == sorted(str(k) for k in range(12))
    with WeirClient(stack.address) as client:
        runs = list(client.iter_flow_runs(FlowRunFilter(flow_names=(f"two-processes-{salt}",))))
        names = [t.state.display_name for r in runs for t in task_runs_of(client, r.id)]  # type: ignore[union-attr]
    assert sorted(names) == ["Cached"] * 12 + ["Completed"] * 12
