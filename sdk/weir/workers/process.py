"""One assigned flow run as a subprocess: how it is started, watched and stopped.

The command is ``python -m weir.engine.execute`` (or the job's ``command``),
in the job's working directory, with the worker's environment, the job's
``env`` on top, and the assignment in ``WEIR_*`` variables on top of that.
The child leads its own session (its process group is what cancellation
signals), and dies with the worker even when the worker is SIGKILLed: on
Linux it is started through ``setpriv --pdeathsig KILL`` (the same choice as
the embedded nats-server, see docs/architecture.md: a ``preexec_fn`` would
force a fork() inside a gRPC process). User code never runs on the worker's
event loop; only its output lines pass through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["FlowRunProcess", "JobConfiguration", "LaunchSpec", "RunProcess", "die_with_worker_prefix", "launch_spec"]

log = logging.getLogger("weir.worker")

#: Longest output line forwarded whole; longer lines are cut, never allowed to stall the reader.
MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class JobConfiguration:
    """The process job template's variables, as the server merged them into an Assign."""

    #: Added to the worker's environment; a ``None`` value removes the variable.
    env: Mapping[str, str | None] = field(default_factory=dict)
    #: Where the run starts (the deployment's working directory when the server folded it in).
    working_dir: str | None = None
    #: Replaces ``python -m weir.engine.execute`` (split like a shell would, never run by one).
    command: str | None = None
    #: Forward the run's stdout/stderr lines to the worker's stdout.
    stream_output: bool = True
    #: Between SIGTERM and SIGKILL when the run is cancelled.
    terminate_grace_seconds: float = 30.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JobConfiguration:
        """Build from the Assign's ``job_configuration``; unknown keys (other templates' fields) are ignored."""
        env = values.get("env") or {}
        if not isinstance(env, Mapping):
            raise ValueError(f"job variable 'env' must be a mapping, not {type(env).__name__}")
        grace = values.get("terminate_grace_seconds")
        stream = values.get("stream_output")
        return cls(
            env={str(k): (None if v is None else str(v)) for k, v in env.items()},
            working_dir=values.get("working_dir") or None,
            command=values.get("command") or None,
            stream_output=True if stream is None else bool(stream),
            terminate_grace_seconds=30.0 if grace is None else max(float(grace), 0.0),
        )


@dataclass(frozen=True)
class LaunchSpec:
    """Everything ``create_subprocess_exec`` needs for one run."""

    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    #: The command is Weir's own ``python -m weir.engine.execute``: a warm fork server may start it instead.
    runs_engine: bool = False


def launch_spec(
    job: JobConfiguration,
    *,
    flow_run_id: str,
    fencing_token: str,
    entrypoint: str,
    worker_env: Mapping[str, str],
    base_env: Mapping[str, str] | None = None,
    die_with_worker: bool = True,
) -> LaunchSpec:
    """The command, environment and directory of a run's process.

    Precedence, lowest first: ``base_env`` (the worker's own environment),
    the job's ``env``, ``worker_env`` (how to reach the server), then the
    assignment (``WEIR_FLOW_RUN_ID``, ``WEIR_FENCING_TOKEN``, ``WEIR_ENTRYPOINT``),
    which nothing may override.
    """
    env = dict(os.environ if base_env is None else base_env)
    for key, value in job.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.update(worker_env)
    env.update({"WEIR_FLOW_RUN_ID": flow_run_id, "WEIR_FENCING_TOKEN": fencing_token, "WEIR_ENTRYPOINT": entrypoint})
    if job.stream_output:
        # Lines reach the worker as they are printed, not when a buffer fills.
        env.setdefault("PYTHONUNBUFFERED", "1")
    command = shlex.split(job.command) if job.command else [sys.executable, "-m", "weir.engine.execute"]
    if not command:
        raise ValueError("job variable 'command' is empty")
    prefix = die_with_worker_prefix() if die_with_worker else []
    return LaunchSpec(args=(*prefix, *command), env=env, cwd=job.working_dir, runs_engine=not job.command)


def die_with_worker_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --``: the kernel kills the child when the worker dies, however it dies."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv and sys.platform.startswith("linux") else []


class RunProcess:
    """A started run's process, however it was started: its output, its exit, stopping it.

    Subclasses start the process and say how its exit code is awaited;
    stopping signals the process group, which each run leads.
    """

    def __init__(self, *, label: str, stream_output: bool, out: IO[str] | None = None) -> None:
        self.label = label
        self.stream_output = stream_output
        self._out = out
        self._pid: int | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    async def start(self) -> None:
        """Start the process (raises ``OSError`` when it cannot: bad command or directory)."""
        raise NotImplementedError

    async def _exit_code(self) -> int:
        raise NotImplementedError

    async def wait(self) -> int:
        """Wait for the process to exit; its return code (negative: killed by that signal)."""
        assert self._pid is not None, "start() first"
        code = await self._exit_code()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump  # the last lines before exit still reach the worker's output
        return code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the run's whole process group (the child and whatever it started)."""
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signum)

    async def terminate(self, grace_seconds: float) -> None:
        """SIGTERM to the group; SIGKILL to what is left after ``grace_seconds``."""
        if self._pid is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exit_code()), grace_seconds)
        except TimeoutError:
            log.warning("%s did not stop within %gs of SIGTERM; killing it", self.label, grace_seconds)
        # Also after a graceful exit: grandchildren left in the group must not outlive a cancelled run.
        self.signal_group(signal.SIGKILL)

    def _pump_output(self, stream: asyncio.StreamReader) -> None:
        self._pump = asyncio.create_task(self._forward(stream))

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        out = self._out or sys.stdout
        prefix = f"[{self.label}] "
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than MAX_LINE_BYTES: asyncio dropped it
                line = b"<output line too long, dropped>\n"
            if not line:
                return
            out.write(prefix + line.decode(errors="replace").rstrip("\r\n") + "\n")
            out.flush()


class FlowRunProcess(RunProcess):
    """A run in a new interpreter: ``create_subprocess_exec`` of the launch spec.

    Start and stop from the worker's event loop thread: the parent-death
    signal follows the thread that spawned the child.
    """

    def __init__(self, spec: LaunchSpec, *, label: str, stream_output: bool, out: IO[str] | None = None) -> None:
        super().__init__(label=label, stream_output=stream_output, out=out)
        self.spec = spec
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        output = asyncio.subprocess.PIPE if self.stream_output else asyncio.subprocess.DEVNULL
        self._proc = await asyncio.create_subprocess_exec(
            *self.spec.args,
            cwd=self.spec.cwd,
            env=self.spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT if self.stream_output else asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a cancel reaches its children too
            limit=MAX_LINE_BYTES,
        )
        self._pid = self._proc.pid
        if self.stream_output and self._proc.stdout is not None:
            self._pump_output(self._proc.stdout)

    async def _exit_code(self) -> int:
        assert self._proc is not None
        return await self._proc.wait()
