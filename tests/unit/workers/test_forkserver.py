"""The warm fork server on its own (no Weir server): what its children get, how they end, and its failures.

A child always runs ``weir.engine.execute``; without a run in its environment
that module prints why and exits 2, which is enough to see the child's
output, environment handling and exit code reach the worker.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from weir.workers.forkserver import ForkServer, ForkServerUnavailable, fork_server_supported
from weir.workers.process import LaunchSpec

pytestmark = pytest.mark.skipif(not fork_server_supported(), reason="the fork server needs Linux (prctl)")

BASE = {"PATH": os.environ.get("PATH", "/bin"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def engine_spec(env: dict[str, str] | None = None, cwd: str | None = None) -> LaunchSpec:
    return LaunchSpec(args=(), env={**BASE, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd, runs_engine=True)


@pytest.fixture
async def forks() -> AsyncIterator[ForkServer]:
    server = ForkServer(env=BASE)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_a_child_runs_the_engine_and_its_output_and_exit_code_reach_the_worker(forks: ForkServer) -> None:
    out = io.StringIO()
    process = await forks.launch(engine_spec(), label="etl/1234", stream_output=True, out=out)
    assert process.pid is not None and process.pid != forks.helper_pid
    assert await process.wait() == 2
    assert out.getvalue() == (
        "[etl/1234] weir.engine.execute: WEIR_FLOW_RUN_ID, WEIR_ENTRYPOINT not set "
        "(this module is started by a worker)\n"
    )


async def test_the_child_reads_the_runs_environment_not_the_helpers(forks: ForkServer) -> None:
    # The run names itself but no server: execute refuses for that reason, so the env reached the child.
    out = io.StringIO()
    env = {"WEIR_FLOW_RUN_ID": "r1", "WEIR_ENTRYPOINT": "flows.py:f", "WEIR_API_ADDRESS": ""}
    process = await forks.launch(engine_spec(env), label="x", stream_output=True, out=out)
    assert await process.wait() == 2
    assert "WEIR_API_ADDRESS is not set" in out.getvalue()


async def test_no_output_is_relayed_when_streaming_is_off(forks: ForkServer) -> None:
    out = io.StringIO()
    process = await forks.launch(engine_spec(), label="x", stream_output=False, out=out)
    assert await process.wait() == 2
    assert out.getvalue() == ""


async def test_a_missing_working_directory_is_an_oserror_like_a_spawn(forks: ForkServer, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="does not exist"):
        await forks.launch(engine_spec(cwd=str(tmp_path / "gone")), label="x", stream_output=True)
    # The helper is still there for the next run.
    process = await forks.launch(engine_spec(cwd=str(tmp_path)), label="x", stream_output=False)
    assert await process.wait() == 2


async def test_children_lead_their_own_process_group_and_can_be_stopped(forks: ForkServer, tmp_path: Path) -> None:
    # A server address nobody answers: the child keeps retrying its first call until it is stopped.
    env = {"WEIR_FLOW_RUN_ID": "r1", "WEIR_ENTRYPOINT": "flows.py:f", "WEIR_API_ADDRESS": "127.0.0.1:9"}
    process = await forks.launch(engine_spec(env), label="x", stream_output=False)
    assert process.pid is not None
    assert os.getpgid(process.pid) == process.pid
    process.signal_group(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL


async def test_when_the_helper_dies_its_runs_end_killed_and_launch_says_spawn_instead() -> None:
    forks = ForkServer(env=BASE)
    await forks.start()
    try:
        env = {"WEIR_FLOW_RUN_ID": "r1", "WEIR_ENTRYPOINT": "flows.py:f", "WEIR_API_ADDRESS": "127.0.0.1:9"}
        process = await forks.launch(engine_spec(env), label="x", stream_output=False)
        assert forks.helper_pid is not None
        os.kill(forks.helper_pid, signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
        assert not forks.running
        with pytest.raises(ForkServerUnavailable):
            await forks.launch(engine_spec(), label="x", stream_output=False)
        await forks.start()  # and it comes back
        again = await forks.launch(engine_spec(), label="x", stream_output=False)
        assert await again.wait() == 2
    finally:
        await forks.close()


def test_only_the_engine_command_with_the_same_startup_environment_is_forked() -> None:
    forks = ForkServer(env={"PATH": "/bin", "PYTHONPATH": "/lib"})
    assert forks.accepts(
        LaunchSpec(args=(), env={"PATH": "/usr/bin", "PYTHONPATH": "/lib", "STAGE": "x"}, cwd=None, runs_engine=True)
    )
    # A job command of its own, or a different interpreter setup, needs a fresh interpreter.
    assert not forks.accepts(LaunchSpec(args=(), env={"PYTHONPATH": "/lib"}, cwd=None, runs_engine=False))
    assert not forks.accepts(LaunchSpec(args=(), env={"PYTHONPATH": "/other"}, cwd=None, runs_engine=True))
    assert not forks.accepts(LaunchSpec(args=(), env={}, cwd=None, runs_engine=True))  # PYTHONPATH removed
    assert not forks.accepts(
        LaunchSpec(args=(), env={"PYTHONPATH": "/lib", "PYTHONHASHSEED": "0"}, cwd=None, runs_engine=True)
    )
    assert forks.accepts(
        LaunchSpec(args=(), env={"PYTHONPATH": "/lib", "PYTHONUNBUFFERED": "1"}, cwd=None, runs_engine=True)
    )


def test_the_helper_refuses_to_run_by_hand() -> None:
    import subprocess

    main = "import sys; from weir.workers.forkserver import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", main], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "started by a worker" in proc.stderr
