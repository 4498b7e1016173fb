"""Stopping a run's body from outside: a timeout, a cancel, a crash.

Python cannot kill a thread. What it can do, and what the engine does:

* **main thread**: a signal handler runs there between bytecodes and may
  raise, and a signal also breaks a blocking ``time.sleep`` or lock wait. A
  body on the main thread is stopped with a signal sent to that thread (a
  real-time signal on Linux, else ``SIGALRM``; only while nobody else
  handles it), so even a sleeping body stops at once;
* **other threads**: ``PyThreadState_SetAsyncExc`` makes the thread raise at
  its next bytecode. A body busy in Python stops at once; a body blocked in C
  (``time.sleep``, a socket read, a C extension) stops only when that call
  returns. This is the limit: nothing safe can do better;
* **async bodies** are their asyncio task: it is cancelled at its next await.

The exception raised into a body derives from ``BaseException`` (so a body's
``except Exception`` does not swallow it); when it leaves the body the engine
turns it into ``TimeoutError`` or :class:`RunCancelled`.

A :class:`Scope` groups the bodies of one flow run attempt (the flow's own and
its tasks', and its subflows' scopes): a cancel stops them all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import ctypes
import heapq
import itertools
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from weir.errors import WeirError


class Interrupted(BaseException):
    """Raised into a body to stop it (never caught by ``except Exception``)."""


class TimedOut(Interrupted):
    pass


class Cancel(Interrupted):
    pass


class Terminate(Interrupted):
    """The flow run crashed (a signal, an interrupt): its tasks stop too, and end Crashed."""


class RunCancelled(WeirError):
    """The run was cancelled while it ran (``weir flow-run cancel``, the API, a worker)."""


class TerminationSignal(SystemExit):
    """SIGTERM reached the process while a flow ran: the run ends Crashed (or Cancelled when a
    cancel was asked for), its hooks run, and the process exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _main() -> int | None:
    # Read each time: after a fork (the worker's warm fork server) the main thread is the forking one.
    return threading.main_thread().ident


_local = threading.local()  # .stack: the bodies running on this thread, innermost last


def _stack() -> list[Body]:
    stack: list[Body] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


class Scope:
    """Bodies (and child scopes) stopped together; one per flow run attempt."""

    def __init__(self, parent: Scope | None = None, timeout: float | None = None) -> None:
        self._lock = threading.Lock()
        self._members: set[Any] = set()
        self.reason: type[Interrupted] | None = None
        self._parent = parent
        #: The flow run's timeout: when it passes, every body of the scope stops.
        self.timeout = timeout
        if parent is not None:
            parent.join(self)
        if timeout is not None:
            _watchdog.schedule(self, timeout)

    def expire(self) -> None:
        self.stop(TimedOut)

    def join(self, member: Any) -> None:
        with self._lock:
            reason = self.reason
            self._members.add(member)
        if reason is not None:
            member.stop(reason)

    def leave(self, member: Any) -> None:
        with self._lock:
            self._members.discard(member)

    def close(self) -> None:
        _watchdog.cancel(self)
        if self._parent is not None:
            self._parent.leave(self)

    def stop(self, reason: type[Interrupted]) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            members = list(self._members)
        for member in members:
            member.stop(reason)


class Body:
    """One call of the user's function that someone else may stop (timeout, cancel, crash)."""

    def __init__(self, timeout: float | None = None, scope: Scope | None = None) -> None:
        self.timeout = timeout
        self.scope = scope
        self._lock = threading.Lock()
        self._reason: type[Interrupted] | None = None
        self._delivered = False
        self._done = False
        self._thread: int | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ stopping

    def expire(self) -> None:
        self.stop(TimedOut)

    def stop(self, reason: type[Interrupted]) -> None:
        """Stop the body with ``reason`` (any thread); the first reason wins."""
        with self._lock:
            if self._done or self._reason is not None:
                return
            self._reason = reason
            started = self._thread is not None or self._task is not None
        if started:
            self._deliver()

    def _deliver(self) -> None:
        if self._task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_task)
        elif self._thread == _main() and _signal_owned():
            signal.pthread_kill(self._thread, INTERRUPT_SIGNAL)
        elif self._thread is not None:
            _set_async_exc(self._thread, self._reason)

    def _cancel_task(self) -> None:
        if not self._done and self._task is not None:  # on the loop thread: no race with the end of the body
            self._task.cancel()

    def _convert(self, kind: type[BaseException]) -> BaseException | None:
        if kind is TimedOut:
            if self.timeout is not None and (self.scope is None or self.scope.reason is not TimedOut):
                return TimeoutError(f"timed out after {self.timeout:g}s")
            limit = self.scope.timeout if self.scope is not None else None
            return TimeoutError(f"the flow run timed out after {limit:g}s" if limit else "the flow run timed out")
        if kind is Cancel:
            return RunCancelled("the run was cancelled while it ran")
        return None  # Terminate: the crash goes on up

    # ------------------------------------------------------------ running

    def run_sync(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.timeout is not None and not (threading.get_ident() == _main() and _signal_available()):
            return self._run_on_helper(fn, args, kwargs)
        return self._run_here(fn, args, kwargs)

    def _run_here(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        stack = _stack()
        self._thread = threading.get_ident()
        outermost_main = self._thread == _main() and not stack
        previous = _own_signal() if outermost_main else None
        stack.append(self)
        escaping = False
        try:
            self._start()
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):  # an async function called from a sync context
                result = asyncio.run(self.run_async(result))
            return result
        except Interrupted as exc:
            if self._reason is None:
                escaping = True
                raise  # meant for an enclosing body
            self._delivered = True
            converted = self._convert(type(exc))
            if converted is None:
                escaping = True
                raise
            raise converted from None
        finally:
            with self._lock:
                self._done = True
                undelivered = self._reason is not None and not self._delivered
            _watchdog.cancel(self)
            if undelivered and self._thread != _main():
                _set_async_exc(self._thread, None)  # it fired too late to matter: clear it
            stack.pop()
            if self.scope is not None:
                self.scope.leave(self)
            outer = stack[-1] if stack else None
            if outer is not None and not escaping and outer._reason is not None and not outer._delivered:
                outer._deliver()  # the enclosing body was stopped while this one ran
            if outermost_main:
                _restore_signal(previous)

    def _run_on_helper(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A timed sync body off the main thread runs on a helper thread, stopped at its deadline with
        ``PyThreadState_SetAsyncExc``. This thread waits ``HELPER_GRACE_SECONDS`` more for it to stop;
        a body blocked in C gets the exception when that call returns, but the run does not wait."""
        inner = Body(self.timeout, self.scope)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                done.set_result(context.run(inner._run_here, fn, args, kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        # A daemon thread: a body stuck in C must not hold the interpreter's exit.
        threading.Thread(target=run, name="weir-timed-body", daemon=True).start()
        assert self.timeout is not None
        try:
            return done.result(timeout=self.timeout + HELPER_GRACE_SECONDS)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"timed out after {self.timeout:g}s (the body is blocked outside Python; "
                "it stops when that call returns)"
            ) from None

    async def run_async(self, awaitable: Awaitable[Any]) -> Any:
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        try:
            self._start()
            return await awaitable
        except asyncio.CancelledError:
            if self._reason is None:
                raise
            assert self._task is not None
            self._task.uncancel()
            self._delivered = True
            converted = self._convert(self._reason)
            if converted is None:
                raise
            raise converted from None
        finally:
            self._done = True
            _watchdog.cancel(self)
            if self.scope is not None:
                self.scope.leave(self)

    def _start(self) -> None:
        if self.scope is not None:
            self.scope.join(self)  # a stopped scope stops the body before it starts
        if self.timeout is not None:
            _watchdog.schedule(self, self.timeout)
        if self._reason is not None:
            self._delivered = True
            raise self._reason()


# ------------------------------------------------------------------ helpers


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


#: Sent to the main thread to stop a body there (a real-time signal nobody else is likely to use).
INTERRUPT_SIGNAL = signal.SIGRTMIN + 1 if hasattr(signal, "SIGRTMIN") else signal.SIGALRM


def _on_signal(signum: int, frame: Any) -> None:
    """INTERRUPT_SIGNAL on the main thread: raise the reason of the innermost stopped body."""
    for body in reversed(_stack()):
        if body._reason is not None and not body._done and not body._delivered:
            raise body._reason()


def _signal_available() -> bool:
    return signal.getsignal(INTERRUPT_SIGNAL) in (signal.SIG_DFL, None, _on_signal)


def _signal_owned() -> bool:
    return signal.getsignal(INTERRUPT_SIGNAL) is _on_signal


def _own_signal() -> Any:
    """Handle INTERRUPT_SIGNAL while a body runs on the main thread, unless someone else handles it."""
    current = signal.getsignal(INTERRUPT_SIGNAL)
    if current in (signal.SIG_DFL, None):
        signal.signal(INTERRUPT_SIGNAL, _on_signal)
        return current
    return _NOT_TAKEN


_NOT_TAKEN = object()
#: How long past a timeout a caller waits for a timed body on a helper thread to stop.
HELPER_GRACE_SECONDS = 0.25


def _restore_signal(previous: Any) -> None:
    if previous is not _NOT_TAKEN and previous is not None:
        signal.signal(INTERRUPT_SIGNAL, previous)


class _Watchdog:
    """One thread for every timeout in the process: expires each body (or scope) at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, body: Any, seconds: float) -> None:
        with self._cond:
            n = next(self._ids)
            body._watch_id = n  # type: ignore[attr-defined]
            self._live.add(n)
            heapq.heappush(self._heap, (time.monotonic() + seconds, n, body))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="weir-timeouts", daemon=True)
                self._thread.start()
            self._cond.notify()

    def cancel(self, body: Any) -> None:
        n = getattr(body, "_watch_id", None)
        if n is not None:
            with self._cond:
                self._live.discard(n)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, n, body = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(n)
            body.expire()


_watchdog = _Watchdog()


@contextlib.contextmanager
def sigterm_as_crash() -> Iterator[None]:
    """While the outermost flow runs on the main thread, SIGTERM raises :class:`TerminationSignal`
    there (Prefect does the same), unless the program already handles SIGTERM itself."""
    if threading.get_ident() != _main() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM during the clean-up kills
        raise TerminationSignal(signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is on_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
