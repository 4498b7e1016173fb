"""A warm interpreter that forks one child per flow run: the worker's fast start.

A new ``python -m weir.engine.execute`` spends ~250 ms importing Weir, gRPC
and pydantic before the flow's first line runs. So the worker keeps one
helper process (``main`` below, given one socket's fd) that imports the
engine once, holds no gRPC channel and no thread, and forks a child per
run. The child starts with those modules loaded and their pages shared with
the helper; it imports the user's flow module itself, so runs never see one
another's modules or globals.

The child looks to the worker like the process it would have spawned: it
leads its own process group (what a cancel signals), has the run's
environment and working directory, writes its output into a pipe the
worker reads, and dies with the helper (parent-death signal), which dies
with the worker. The helper reaps it and reports the exit code.

Protocol: one ``SOCK_SEQPACKET`` socket pair, one JSON object per message.

- worker → helper: ``{"id": n, "env": {...}, "cwd": "..."}`` with the write
  end of the output pipe attached (``SCM_RIGHTS``), or no fd for no output;
- helper → worker: ``{"ready": pid}`` once, then per request ``{"id": n, "pid": p}``
  or ``{"id": n, "error": "..."}``, and later ``{"id": n, "exit": code}``
  (negative: killed by that signal).

When the helper cannot be used (it died, it was never started, the job
changes what the interpreter reads at start such as ``PYTHONPATH``, or the
job has its own ``command``), the worker spawns a fresh interpreter as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import IO, Any

from weir.workers.process import MAX_LINE_BYTES, LaunchSpec, RunProcess

__all__ = ["ForkServer", "ForkServerUnavailable", "ForkedRunProcess", "fork_server_supported"]

log = logging.getLogger("weir.worker")

#: Largest request; an environment bigger than this is sent to a spawned interpreter instead.
MAX_REQUEST_BYTES = 1 << 20
#: Variables the interpreter reads while starting: a job that sets them differently gets a fresh one.
_STARTUP_PREFIXES = ("PYTHON", "LD_", "MALLOC_", "GRPC_", "VIRTUAL_ENV")
_STARTUP_EXEMPT = frozenset({"PYTHONUNBUFFERED"})  # applied in the child (line-buffered output)
_PR_SET_PDEATHSIG = 1
#: The helper's command line (not ``-m``: ``weir.workers`` imports this module already).
_HELPER_MAIN = "import sys; from weir.workers.forkserver import main; sys.exit(main())"


def fork_server_supported() -> bool:
    """Linux only: the child's parent-death signal (``prctl``) is what ties it to the worker."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "SOCK_SEQPACKET")


class ForkServerUnavailable(Exception):
    """The helper is not there (not started, exited, refused the request): spawn instead."""


class ForkServer:
    """The worker's side of the helper: start it, launch runs through it, stop it.

    Use from one event loop (the worker's). ``launch`` raises
    ``ForkServerUnavailable`` when the caller should spawn instead, and
    ``OSError`` for what would also stop a spawned process (a missing
    working directory).
    """

    def __init__(self, *, env: Mapping[str, str], die_with_worker_prefix: list[str] | None = None) -> None:
        self._env = dict(env)
        self._prefix = list(die_with_worker_prefix or [])
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[int] | None = None
        self._ids = itertools.count(1)
        self._started: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._send_lock = asyncio.Lock()
        self.helper_pid: int | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def accepts(self, spec: LaunchSpec) -> bool:
        """Whether a forked child would start exactly like ``spec``'s own interpreter."""
        if not spec.runs_engine:
            return False
        keys = {k for k in (*spec.env, *self._env) if k.startswith(_STARTUP_PREFIXES) and k not in _STARTUP_EXEMPT}
        return all(spec.env.get(k) == self._env.get(k) for k in keys)

    async def start(self) -> None:
        """Start the helper and wait until it has imported the engine (idempotent)."""
        if self.running:
            assert self._ready is not None
            await asyncio.shield(self._ready)
            return
        loop = asyncio.get_running_loop()
        await self._release()  # what is left of a helper that exited
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._prefix,
                sys.executable,
                "-c",
                _HELPER_MAIN,
                str(theirs.fileno()),
                env=self._env,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for the worker must not kill every run at once
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._closing = False
        self._ready = loop.create_future()
        self._reader = asyncio.create_task(self._read(ours, self._ready), name="weir-forkserver-reader")
        self.helper_pid = await asyncio.shield(self._ready)
        log.debug("fork server ready, pid %d", self.helper_pid)

    async def launch(
        self, spec: LaunchSpec, *, label: str, stream_output: bool, out: IO[str] | None = None
    ) -> ForkedRunProcess:
        """Fork a child for ``spec``; it is running when this returns."""
        if not self.running or self._sock is None:
            raise ForkServerUnavailable("the fork server is not running")
        assert self._ready is not None
        await asyncio.shield(self._ready)
        request_id = next(self._ids)
        payload = json.dumps({"id": request_id, "env": spec.env, "cwd": spec.cwd}).encode()
        if len(payload) > MAX_REQUEST_BYTES:
            raise ForkServerUnavailable("the run's environment is too large for the fork server")
        loop = asyncio.get_running_loop()
        started: asyncio.Future[int] = loop.create_future()
        exited: asyncio.Future[int] = loop.create_future()
        self._started[request_id] = started
        self._exits[request_id] = exited
        read_fd = write_fd = None
        try:
            if stream_output:
                read_fd, write_fd = os.pipe()
            await self._send(payload, [] if write_fd is None else [write_fd])
        except OSError as exc:
            self._forget(request_id)
            if read_fd is not None:
                os.close(read_fd)
            raise ForkServerUnavailable(f"could not reach the fork server: {exc}") from exc
        finally:
            if write_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(write_fd)  # the child holds it now: EOF comes when the child's side closes
        try:
            pid = await started
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            raise
        process = ForkedRunProcess(pid, exited, label=label, stream_output=stream_output, out=out)
        if read_fd is not None:
            await process.attach_output(read_fd)
        return process

    async def close(self) -> None:
        """Stop the helper (children it still has die with it)."""
        self._closing = True
        await self._release()

    async def _release(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close()  # the helper exits on EOF
            self._sock = None
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
            self._proc = None

    # ---------------------------------------------------------------- internals

    async def _send(self, payload: bytes, fds: list[int]) -> None:
        assert self._sock is not None
        sock = self._sock
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            while True:
                try:
                    socket.send_fds(sock, [payload], fds)
                    return
                except BlockingIOError:
                    writable = loop.create_future()
                    loop.add_writer(sock.fileno(), writable.set_result, None)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(sock.fileno())

    async def _read(self, sock: socket.socket, ready: asyncio.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    break
                self._on_message(json.loads(data), ready)
        except (OSError, ValueError) as exc:
            log.warning("fork server connection failed: %s", exc)
        finally:
            gone = ForkServerUnavailable("the fork server exited")
            if not ready.done():
                ready.set_exception(gone)
            for fut in self._started.values():
                if not fut.done():
                    fut.set_exception(gone)
            # Its children got SIGKILL from the kernel when it went (parent-death signal).
            for fut in self._exits.values():
                if not fut.done():
                    fut.set_result(-signal.SIGKILL)
            self._started.clear()
            self._exits.clear()
            if self.helper_pid is not None and not self._closing:
                log.warning("fork server (pid %d) exited; the next run starts a new one", self.helper_pid)

    def _on_message(self, message: dict[str, Any], ready: asyncio.Future[int]) -> None:
        if "ready" in message:
            if not ready.done():
                ready.set_result(int(message["ready"]))
            return
        request_id = int(message["id"])
        if "pid" in message:
            fut = self._started.pop(request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(int(message["pid"]))
        elif "error" in message:
            fut = self._started.pop(request_id, None)
            self._exits.pop(request_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(OSError(str(message["error"])))
        elif "exit" in message:
            exited = self._exits.pop(request_id, None)
            if exited is not None and not exited.done():
                log.debug(
                    "forked run process (request %d) used %.3fs CPU, max RSS %d kB",
                    request_id,
                    message.get("cpu", 0.0),
                    message.get("maxrss_kb", 0),
                )
                exited.set_result(int(message["exit"]))

    def _forget(self, request_id: int) -> None:
        self._started.pop(request_id, None)
        self._exits.pop(request_id, None)


class ForkedRunProcess(RunProcess):
    """A run forked by the helper: the worker is not its parent, the helper reports its exit."""

    def __init__(
        self, pid: int, exited: asyncio.Future[int], *, label: str, stream_output: bool, out: IO[str] | None = None
    ) -> None:
        super().__init__(label=label, stream_output=stream_output, out=out)
        self._pid = pid
        self._exited = exited

    async def start(self) -> None:
        """Already running: the fork server started it."""

    async def attach_output(self, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        self._pump_output(reader)

    async def _exit_code(self) -> int:
        return await asyncio.shield(self._exited)

    def signal_group(self, signum: int) -> None:
        if self._exited.done():
            return  # reaped: the pid may belong to someone else now
        super().signal_group(signum)


# ------------------------------------------------------------------ the helper


def _serve(sock: socket.socket) -> int:
    """The helper's loop: fork on request, reap on SIGCHLD, exit when the worker closes the socket."""
    import selectors

    # What every run needs, imported once here; nothing that starts a thread or opens a channel.
    import weir.engine.execute  # noqa: F401

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of exits
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, int] = {}
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    _reply(sock, {"ready": os.getpid()})
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                message, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST_BYTES, 1)
                if not message:
                    return 0
                request = json.loads(message)
                try:
                    pid = _fork_run(request, fds, close_in_child=(selector, sock, wake_r, wake_w))
                except OSError as exc:
                    _reply(sock, {"id": request["id"], "error": str(exc)})
                else:
                    children[pid] = request["id"]
                    _reply(sock, {"id": request["id"], "pid": pid})
                finally:
                    for fd in fds:
                        os.close(fd)
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(sock, children)


def _reap(sock: socket.socket, children: dict[int, int]) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request_id = children.pop(pid, None)
        if request_id is not None:
            cpu = usage.ru_utime + usage.ru_stime
            _reply(
                sock,
                {"id": request_id, "exit": os.waitstatus_to_exitcode(status), "cpu": cpu, "maxrss_kb": usage.ru_maxrss},
            )


def _reply(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _fork_run(request: dict[str, Any], fds: list[int], *, close_in_child: tuple[Any, ...]) -> int:
    cwd = request.get("cwd")
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(f"working directory {cwd!r} does not exist")
    parent = os.getpid()
    pid = os.fork()
    if pid:
        # Also here, so the group exists before the worker hears the pid (the child may not have run yet).
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return pid
    code = 1
    try:
        code = _run_child(request, fds[0] if fds else None, parent, close_in_child)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_child(request: dict[str, Any], out_fd: int | None, parent: int, close_in_child: tuple[Any, ...]) -> int:
    import atexit
    import ctypes

    # Die with the helper (which dies with the worker), as a spawned run dies with the worker.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return 1  # the helper is already gone
    # Its own process group (a cancel signals the group); the helper's session has no terminal already.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for resource in close_in_child:
        if isinstance(resource, int):
            os.close(resource)
        else:
            resource.close()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    target = devnull if out_fd is None else out_fd
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(devnull)
    if out_fd is not None:
        os.close(out_fd)
    env: dict[str, str] = request["env"]
    os.environ.clear()
    os.environ.update(env)
    cwd = request.get("cwd")
    if cwd:
        os.chdir(cwd)
    sys.path[0] = os.getcwd()  # as ``python -m`` would have it: the run's directory first
    sys.argv = [sys.argv[0]]
    if env.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    from weir.engine import execute
    from weir.settings import get_settings

    get_settings.cache_clear()  # read this run's environment, not the helper's
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return execute.main()
    finally:
        atexit._run_exitfuncs()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        sys.stderr.write("usage: python -m weir.workers.forkserver FD (started by a worker)\n")
        return 2
    sock = socket.socket(fileno=int(args[0]))
    try:
        return _serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
