"""The process worker daemon: runs what the server assigns, one subprocess per run.

Nothing is polled. The worker holds one ``WorkerService.Connect`` stream
(:mod:`weir.workers.stream`); the server pushes ``Assign`` and ``Cancel``,
the worker answers with acks, credits (:mod:`weir.workers.credits`) and
heartbeats naming its active runs. Each run is a subprocess
(:mod:`weir.workers.process`) running ``python -m weir.engine.execute``,
which proposes the run's states itself with the assignment's fencing token.
The worker only speaks for a run when its process could not: it proposes
CRASHED when the process exits and left the run unfinished, and CANCELLED
after it stopped the process for a cancel.

Stopping: the first SIGINT/SIGTERM drains (no new runs; the stream stays
open for cancels; the worker waits for its runs, up to ``drain_timeout``);
the second terminates the runs' processes (SIGTERM, SIGKILL after their
grace) and proposes CRASHED; a third kills them at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from weir._proto import struct_to_dict
from weir.client.types import FlowRun, State, StateType
from weir.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from weir.settings import Settings
from weir.v1 import deployments_pb2 as pb
from weir.v1 import deployments_pb2_grpc
from weir.workers.credits import CreditLedger
from weir.workers.forkserver import ForkedRunProcess, ForkServer, ForkServerUnavailable, fork_server_supported
from weir.workers.process import (
    FlowRunProcess,
    JobConfiguration,
    LaunchSpec,
    RunProcess,
    die_with_worker_prefix,
    launch_spec,
)
from weir.workers.stream import Backoff, WorkerStream

__all__ = ["PROCESS_POOL_TYPES", "ProcessWorker", "default_worker_name", "ensure_work_pool", "worker_env_for"]

log = logging.getLogger("weir.worker")
T = TypeVar("T")

#: How long the worker keeps retrying a call while the server is unreachable.
UNAVAILABLE_RETRY_SECONDS = 120.0
#: Pool types whose runs a process worker can run (their job template is the process one).
PROCESS_POOL_TYPES = ("process", "serve")


def default_worker_name() -> str:
    """``<hostname>-<pid>``: unique among the daemons of one host, stable across reconnects.

    A worker's identity on the server is (pool, name); a daemon that restarts
    has lost its runs' processes anyway (they die with it), so a new identity
    is right, while two daemons on one host never share one.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


def worker_env_for(settings: Settings, address: str | None = None) -> dict[str, str]:
    """How a run's process reaches the server the worker uses (``WEIR_API_ADDRESS`` ...)."""
    env = {"WEIR_API_ADDRESS": address or settings.api_address or ""}
    if settings.service_addresses:
        env["WEIR_SERVICE_ADDRESSES"] = json.dumps(settings.service_addresses)
    if settings.api_key:
        env["WEIR_API_KEY"] = settings.api_key
    return env


async def ensure_work_pool(client: Any, name: str, *, type: str = "process") -> Any:
    """The work pool ``name``, created with ``type`` when missing (as ``prefect worker start`` does).

    An existing pool is left as it is; one a process worker cannot serve is an ``InvalidArgument``.
    """
    try:
        pool = await client.read_work_pool(name)
    except NotFound:
        pool = await client.upsert_work_pool(name, type=type)
        log.info("created work pool %r (type %s)", name, type)
    if pool.type not in PROCESS_POOL_TYPES:
        raise InvalidArgument(
            f"work pool {name!r} is of type {pool.type!r}; a process worker serves pools of type "
            + " or ".join(PROCESS_POOL_TYPES),
            field="pool",
        )
    return pool


@dataclass
class _ActiveRun:
    assign: pb.Assign
    label: str
    process: RunProcess | None = None
    job: JobConfiguration = field(default_factory=JobConfiguration)
    cancelling: bool = False


class ProcessWorker:
    """Runs the flow runs a work pool's server assigns, each in a subprocess.

    ::

        async with AsyncWeirClient.from_settings(settings) as client:
            worker = ProcessWorker(client, pool="local", limit=4, worker_env=worker_env_for(settings))
            exit_code = await worker.run()   # until SIGINT/SIGTERM (or stop()) and the drain end

    ``run`` returns 0 after a clean drain, 1 when runs had to be stopped;
    it raises a ``weir.errors`` exception when the server refuses the worker
    at start (unknown pool, bad API key, no worker service).
    """

    def __init__(
        self,
        client: Any,
        *,
        pool: str,
        name: str | None = None,
        queues: Sequence[str] = (),
        limit: int | None = None,
        labels: Mapping[str, str] | None = None,
        drain_timeout: float | None = None,
        worker_env: Mapping[str, str] | None = None,
        handle_signals: bool = True,
        out: IO[str] | None = None,
        fork_server: bool | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.name = name or default_worker_name()
        self.queues = tuple(queues)
        self.labels = {"hostname": socket.gethostname(), "pid": str(os.getpid()), "type": "process", **(labels or {})}
        self.drain_timeout = drain_timeout
        self.worker_env = dict(worker_env or {"WEIR_API_ADDRESS": client.address})
        self._handle_signals = handle_signals
        self._out = out
        self._ledger = CreditLedger(limit)
        self._runs: dict[str, _ActiveRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stream: WorkerStream | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stops = 0
        #: Some run's process was stopped by the worker itself (a forced stop): exit code 1.
        self._stopped_runs = False
        use_forks = fork_server_supported() if fork_server is None else fork_server and fork_server_supported()
        #: The warm interpreter runs are forked from (weir.workers.forkserver); None: spawn each run.
        self._forks = (
            ForkServer(env={**os.environ, **self.worker_env}, die_with_worker_prefix=die_with_worker_prefix())
            if use_forks
            else None
        )
        self._forks_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        """Serve assignments until stopped, then drain; the exit code (see the class doc)."""
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if self._stops:
            self._stop_requested.set()  # stop() came before run()
        transport = self.client._transport
        stub = deployments_pb2_grpc.WorkerServiceStub(transport.channel_for("deployments"))
        self._stream = WorkerStream(
            lambda requests: stub.Connect(requests, metadata=transport.metadata),
            self,
            address=transport.service_addresses.get("deployments", transport.address),
            backoff=Backoff(first=0.1, cap=5.0),
        )
        if self._forks is not None:
            # Warm before the first credit goes out: runs pushed at once would otherwise queue behind its imports.
            await self._start_fork_server()
        signals = (signal.SIGINT, signal.SIGTERM) if self._handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop)
        stream_task = asyncio.create_task(self._stream.run(), name="weir-worker-stream")
        stop_task = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait({stream_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if stream_task.done():
                stream_task.result()  # refused at start: raise it
            return await self._drain()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            stop_task.cancel()
            self._stream.close()
            if not stream_task.done():
                stream_task.cancel()
            await asyncio.gather(stream_task, stop_task, return_exceptions=True)
            if self._forks is not None:
                await self._forks.close()

    def stop(self) -> None:
        """First call: drain. Second: terminate the runs. Third: kill them (signal-handler safe)."""
        self._stops += 1
        if self._stops == 1:
            log.info("draining: no new runs; waiting for %d active run(s) (signal again to stop them)", len(self._runs))
            self._ledger.draining = True
            if self._stream is not None and self._ledger.granted > 0:
                self._stream.reconnect()  # the next Hello grants nothing, so no assignment waits on us
            if self._stop_requested is not None:
                self._stop_requested.set()
        elif self._stops == 2:
            log.warning("stopping %d active run(s) (signal again to kill them)", len(self._runs))
            self._stopped_runs = bool(self._runs)
            for active in self._runs.values():
                if active.process is not None:
                    self._terminate(active)
        else:
            for active in self._runs.values():
                if active.process is not None:
                    active.process.signal_group(signal.SIGKILL)

    async def _drain(self) -> int:
        try:
            await asyncio.wait_for(self._runs_done(), self.drain_timeout)
        except TimeoutError:
            log.warning("drain timeout (%gs) reached with %d run(s) still active", self.drain_timeout, len(self._runs))
            while self._stops < 2:
                self.stop()
            await self._runs_done()
        return 1 if self._stopped_runs else 0

    async def _runs_done(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # ------------------------------------------------------- the stream's handler

    def hello(self) -> pb.Hello:
        return pb.Hello(
            worker_name=self.name,
            work_pool_name=self.pool,
            work_queue_names=list(self.queues),
            free_slots=self._ledger.hello(),
            labels=self.labels,
        )

    def heartbeat(self) -> pb.Heartbeat:
        return pb.Heartbeat(active_flow_run_ids=sorted(self._runs))

    def on_welcome(self, welcome: pb.Welcome) -> None:
        # At once, so runs that kept going while we were away are known to be ours.
        self._send(pb.WorkerMessage(heartbeat=self.heartbeat()))

    def on_message(self, message: pb.ServerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "assign":
            self._on_assign(message.assign)
        elif kind == "cancel":
            self._cancel(message.cancel.flow_run_id)
        elif kind == "heartbeat_ack":
            for run_id in message.heartbeat_ack.cancel_flow_run_ids:
                self._cancel(run_id)
        else:
            log.debug("ignoring server message %s", kind)

    # ---------------------------------------------------------------- assignments

    def _on_assign(self, assign: pb.Assign) -> None:
        self._ledger.assigned()
        run_id = assign.flow_run_id
        if run_id in self._runs:
            self._ack(assign)  # a resend (e.g. our ack was lost): confirm it, never start a second process
        elif not self._ledger.can_start():
            # Not acked: the server gives it back after its ack timeout.
            log.info("not taking flow run %s: %s", run_id, "draining" if self._ledger.draining else "at the limit")
        else:
            self._ledger.started()
            self._ack(assign)
            active = _ActiveRun(assign=assign, label=f"{assign.flow_name or 'flow'}/{run_id[:8]}")
            self._runs[run_id] = active
            self._spawn(self._supervise(active), name=f"weir-run-{run_id}")
        self._grant()

    def _ack(self, assign: pb.Assign) -> None:
        ack = pb.AssignmentAck(flow_run_id=assign.flow_run_id, fencing_token=assign.fencing_token)
        self._send(pb.WorkerMessage(ack=ack))

    def _grant(self) -> None:
        slots = self._ledger.top_up()
        if slots:
            self._send(pb.WorkerMessage(credit=pb.Credit(free_slots=slots)))

    def _send(self, message: pb.WorkerMessage) -> None:
        if self._stream is not None:
            self._stream.send(message)

    async def _supervise(self, active: _ActiveRun) -> None:
        assign = active.assign
        run_id = assign.flow_run_id
        try:
            try:
                active.job = JobConfiguration.from_dict(struct_to_dict(assign.job_configuration))
                spec = launch_spec(
                    active.job,
                    flow_run_id=run_id,
                    fencing_token=assign.fencing_token,
                    entrypoint=assign.entrypoint,
                    worker_env=self.worker_env,
                )
                process = await self._start_process(spec, active)
            except (OSError, ValueError) as exc:
                log.error("flow run %s: could not start its process: %s", run_id, exc)
                await self._settle(assign, StateType.CRASHED, f"could not start the flow run process: {exc}")
                return
            active.process = process
            started = asyncio.get_running_loop().time()
            how = "forked" if isinstance(process, ForkedRunProcess) else "spawned"
            log.info("flow run %s (%s) started, pid %s (%s)", run_id, active.label, process.pid, how)
            if active.cancelling or self._stops >= 2:  # a cancel or a forced stop came while it was starting
                self._terminate(active)
            code = await process.wait()
            elapsed = asyncio.get_running_loop().time() - started
            log.info("flow run %s process exited with code %d after %.3fs", run_id, code, elapsed)
            if active.cancelling:
                await self._settle(assign, StateType.CANCELLED, "cancelled: the worker stopped the flow run process")
            elif self._stops >= 2:
                message = f"the worker stopped; flow run process exited with code {code}"
                await self._settle(assign, StateType.CRASHED, message)
            else:
                await self._settle(assign, StateType.CRASHED, f"flow run process exited with code {code}")
        except Exception:
            log.exception("flow run %s: supervising its process failed", run_id)
        finally:
            del self._runs[run_id]
            self._ledger.finished()
            self._grant()
            self._send(pb.WorkerMessage(heartbeat=self.heartbeat()))

    async def _start_process(self, spec: LaunchSpec, active: _ActiveRun) -> RunProcess:
        """Fork the run from the warm interpreter when it can start there; else spawn a new one."""
        stream_output = active.job.stream_output
        forks = self._forks
        if forks is not None and forks.accepts(spec) and await self._start_fork_server():
            try:
                return await forks.launch(spec, label=active.label, stream_output=stream_output, out=self._out)
            except ForkServerUnavailable as exc:
                log.warning("flow run %s: %s; starting a new interpreter", active.assign.flow_run_id, exc)
        process = FlowRunProcess(spec, label=active.label, stream_output=stream_output, out=self._out)
        await process.start()
        return process

    async def _start_fork_server(self) -> bool:
        """Start (or restart) the fork server; False, and no fork server from now on, when it cannot start."""
        async with self._forks_lock:
            if self._forks is None:
                return False
            if self._forks.running:
                return True
            try:
                await self._forks.start()
                return True
            except (OSError, ForkServerUnavailable) as exc:
                log.warning("the fork server did not start (%s); every run starts a new interpreter", exc)
                self._forks = None
                return False

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
        # Kept until done (the loop holds tasks weakly), and waited for by the drain.
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _terminate(self, active: _ActiveRun) -> None:
        if active.process is not None:
            self._spawn(active.process.terminate(active.job.terminate_grace_seconds))

    def _cancel(self, run_id: str) -> None:
        active = self._runs.get(run_id)
        if active is None or active.cancelling:
            return  # not ours (our heartbeat tells the server so), or already being stopped
        active.cancelling = True
        log.info("cancelling flow run %s", run_id)
        if active.process is not None:
            self._terminate(active)
        # Not started yet: _supervise stops it as soon as it exists.

    # ------------------------------------------------------------------ proposals

    async def _settle(self, assign: pb.Assign, proposed: StateType, message: str) -> None:
        """Propose ``proposed`` for a run whose process is gone, unless the run already finished.

        A CANCELLING run becomes CANCELLED whatever ended its process; a run
        waiting for a retry is left alone. The proposal carries the assignment's token: if the run was handed to
        another worker meanwhile, the server rejects it.
        """
        run_id = assign.flow_run_id
        try:
            run: FlowRun = await self._retrying(lambda: self.client.read_flow_run(run_id))
        except NotFound:
            return
        state = run.state
        if state is not None and state.is_final():
            return
        if state is not None and state.type is StateType.SCHEDULED and proposed is StateType.CRASHED:
            # Waiting for a retry (AwaitingRetry) when its process died: once our heartbeat stops
            # listing it, the server hands the retry to a live worker. A crash here would end it.
            log.info("flow run %s is %s; leaving its retry to the server", run_id, state.display_name)
            return
        if state is not None and state.type is StateType.CANCELLING and proposed is not StateType.CANCELLED:
            proposed, message = StateType.CANCELLED, f"cancelled ({message})"
        key = str(uuid.uuid4())  # a resend after a lost answer gets the first answer back
        result = await self._retrying(
            lambda: self.client.set_flow_run_state(
                run_id,
                State(type=proposed, message=message),
                idempotency_key=key,
                fencing_token=assign.fencing_token or None,
            )
        )
        if not result.accepted and not (result.state is not None and result.state.type is StateType.SCHEDULED):
            log.info("flow run %s: %s not written (%s)", run_id, proposed.value, result.reason)

    async def _retrying(self, make: Callable[[], Awaitable[T]]) -> T:
        """One call, retried with backoff while the server is unreachable (the call must be idempotent)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNAVAILABLE_RETRY_SECONDS
        backoff = Backoff(first=0.1, cap=5.0)
        while True:
            try:
                return await make()
            except (Unavailable, DeadlineExceeded) as exc:
                delay = backoff.next()
                if loop.time() + delay > deadline:
                    raise
                log.warning("server unreachable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)


def log_to_stderr() -> logging.Logger:
    """Show the worker's INFO lines (runs started, exited, cancelled) on stderr; returns its logger."""
    import sys

    worker_log = logging.getLogger("weir.worker")
    if not any(getattr(h, "_weir_worker", False) for h in worker_log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | worker - %(message)s", "%H:%M:%S"))
        handler._weir_worker = True  # type: ignore[attr-defined]
        worker_log.addHandler(handler)
    worker_log.setLevel(logging.INFO)
    return worker_log
