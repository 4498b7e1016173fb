"""A run's process: job configuration -> command, environment and directory; output; stopping."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from weir.workers.process import FlowRunProcess, JobConfiguration, LaunchSpec, launch_spec

ASSIGNMENT = {"flow_run_id": "run-1", "fencing_token": "tok-1", "entrypoint": "flows.py:main"}
WORKER_ENV = {"WEIR_API_ADDRESS": "server:4270"}


def spec_for(job: JobConfiguration, base_env: dict[str, str] | None = None, **kwargs: object) -> LaunchSpec:
    return launch_spec(
        job,
        worker_env=WORKER_ENV,
        base_env=base_env or {"PATH": "/bin"},
        die_with_worker=False,
        **ASSIGNMENT,
        **kwargs,  # type: ignore[arg-type]
    )


def test_defaults_run_the_engine_with_this_interpreter() -> None:
    spec = spec_for(JobConfiguration())
    assert spec.args == (sys.executable, "-m", "weir.engine.execute")
    assert spec.cwd is None
    assert spec.env == {
        "PATH": "/bin",
        "WEIR_API_ADDRESS": "server:4270",
        "WEIR_FLOW_RUN_ID": "run-1",
        "WEIR_FENCING_TOKEN": "tok-1",
        "WEIR_ENTRYPOINT": "flows.py:main",
        "PYTHONUNBUFFERED": "1",
    }


def test_job_variables_from_an_assign() -> None:
    job = JobConfiguration.from_dict(
        {
            "env": {"STAGE": "prod", "PATH": None, "RETRIES": 3},
            "working_dir": "/srv/flows",
            "command": "python -X dev -m weir.engine.execute --flag 'two words'",
            "stream_output": False,
            "terminate_grace_seconds": 5,
            "image": "ignored: another template's field",
        }
    )
    assert job == JobConfiguration(
        env={"STAGE": "prod", "PATH": None, "RETRIES": "3"},
        working_dir="/srv/flows",
        command="python -X dev -m weir.engine.execute --flag 'two words'",
        stream_output=False,
        terminate_grace_seconds=5.0,
    )
    spec = spec_for(job)
    assert spec.args == ("python", "-X", "dev", "-m", "weir.engine.execute", "--flag", "two words")
    assert spec.cwd == "/srv/flows"
    assert "PATH" not in spec.env and spec.env["STAGE"] == "prod" and spec.env["RETRIES"] == "3"
    assert "PYTHONUNBUFFERED" not in spec.env  # no output is read, nothing to hurry


def test_nulls_mean_defaults() -> None:
    job = JobConfiguration.from_dict(
        {"env": None, "working_dir": None, "command": None, "stream_output": None, "terminate_grace_seconds": None}
    )
    assert job == JobConfiguration()


def test_the_assignment_wins_over_job_env_and_the_worker_env_over_both() -> None:
    job = JobConfiguration(env={"WEIR_FLOW_RUN_ID": "forged", "WEIR_API_ADDRESS": "elsewhere:1", "A": "job"})
    spec = spec_for(job, base_env={"A": "worker", "WEIR_FENCING_TOKEN": "old"})
    assert spec.env["WEIR_FLOW_RUN_ID"] == "run-1" and spec.env["WEIR_FENCING_TOKEN"] == "tok-1"
    assert spec.env["WEIR_API_ADDRESS"] == "server:4270"
    assert spec.env["A"] == "job"


def test_bad_job_variables_are_value_errors() -> None:
    with pytest.raises(ValueError, match="env"):
        JobConfiguration.from_dict({"env": ["A=1"]})
    with pytest.raises(ValueError, match="command"):
        spec_for(JobConfiguration(command="   "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_process_dies_with_the_worker() -> None:
    spec = launch_spec(JobConfiguration(), worker_env=WORKER_ENV, **ASSIGNMENT)
    assert spec.args[1:4] == ("--pdeathsig", "KILL", "--")
    assert spec.args[4:] == (sys.executable, "-m", "weir.engine.execute")


def python(code: str, **job: object) -> LaunchSpec:
    return spec_for(JobConfiguration(command=f"{sys.executable} -c {code!r}", **job), base_env=dict(os.environ))  # type: ignore[arg-type]


async def test_output_lines_are_prefixed_with_the_run(tmp_path: Path) -> None:
    out = io.StringIO()
    code = "import os, sys; print('hello'); print(os.getcwd()); print('err', file=sys.stderr); sys.exit(3)"
    process = FlowRunProcess(python(code, working_dir=str(tmp_path)), label="etl/run-1", stream_output=True, out=out)
    await process.start()
    assert await process.wait() == 3
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(["[etl/run-1] hello", f"[etl/run-1] {tmp_path}", "[etl/run-1] err"])


async def test_no_stream_output_forwards_nothing() -> None:
    out = io.StringIO()
    process = FlowRunProcess(python("print('quiet')"), label="x", stream_output=False, out=out)
    await process.start()
    assert await process.wait() == 0
    assert out.getvalue() == ""


async def test_a_bad_working_directory_fails_to_start(tmp_path: Path) -> None:
    spec = spec_for(JobConfiguration(working_dir=str(tmp_path / "missing")), base_env=dict(os.environ))
    with pytest.raises(OSError):
        await FlowRunProcess(spec, label="x", stream_output=True).start()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_terminate_stops_the_whole_group_and_kills_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    # The child ignores SIGTERM and starts a grandchild that does too: only SIGKILL to the group stops both.
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    process = FlowRunProcess(python(code), label="x", stream_output=False)
    await process.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    await process.terminate(grace_seconds=0.3)
    assert await process.wait() == -signal.SIGKILL
    assert time.monotonic() - started >= 0.3
    deadline = time.monotonic() + 5
    while alive(grandchild):  # reparented to init, which reaps it
        assert time.monotonic() < deadline, "the grandchild survived"
        await asyncio.sleep(0.02)


async def test_terminate_lets_a_process_exit_on_sigterm() -> None:
    process = FlowRunProcess(python("import time; time.sleep(60)"), label="x", stream_output=False)
    await process.start()
    await asyncio.sleep(0.1)
    await process.terminate(grace_seconds=10)
    assert await process.wait() == -signal.SIGTERM
