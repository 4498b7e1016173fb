"""The client side of ``SyncRuns``: task-run records leave in batches.

Any thread may :meth:`RunSync.submit` records; they are numbered and sent
from the runtime loop in as few messages as possible (one loop wake-up per
burst, not per record). At most ``MAX_IN_FLIGHT`` messages are unacked at a
time: while the server is writing, new records wait on the client and leave
together with the next ack, so a fast loop of small tasks becomes a few
large batches (one transaction each) rather than hundreds of one-record
ones. The server acks the highest sequence it committed;
a record whose proposal needs a decision gets a ``concurrent.futures.Future``
that resolves with the server's answer. When the stream breaks, it is opened
again and everything not yet acked is sent again with the same numbers and
ids, which the server writes at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from weir.v1 import orchestration_pb2 as pb

log = logging.getLogger("weir.engine")

MAX_RECORDS_PER_MESSAGE = 1000
#: Messages sent and not yet acked. Two keep the server busy: it reads the
#: next message while it writes the current one.
MAX_IN_FLIGHT = 2
_RECONNECT_FIRST = 0.05
_RECONNECT_CAP = 2.0
#: Answers that resending cannot change: the stream gives up at once.
_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: A server bug. It may be one of the moment, so the unacked messages are sent again, but one
#: that a message sets off again on every resend would hold the tasks waiting on it forever:
#: after this many in a row with no reply between them, the stream gives up.
MAX_SERVER_ERRORS = 5
_SERVER_ERRORS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


@dataclass
class _Pending:
    seq: int
    message: pb.SyncRunsRequest
    #: Task runs whose proposal in this message waits for a decision.
    waiting: tuple[str, ...] = ()


class RunSync:
    """One SyncRuns stream per process, owned by the runtime loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_stream: Callable[[], Any]) -> None:
        self._loop = loop
        self._open_stream = open_stream
        self._lock = threading.Lock()
        self._creates: list[pb.CreateTaskRunRequest] = []
        self._proposals: list[pb.TaskRunStateProposal] = []
        self._logs: list[pb.LogRecord] = []
        self._waiters: dict[str, Future[pb.ProposalResult]] = {}
        self._scheduled = False
        self._seq = 0
        self._unacked: deque[_Pending] = deque()
        self._flushes: list[tuple[int, Future[None]]] = []
        #: Flushes waiting for records still held back by the window (no seq yet).
        self._unsent_flushes: list[Future[None]] = []
        self._outgoing: asyncio.Queue[pb.SyncRunsRequest | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.error: BaseException | None = None

    # ------------------------------------------------------------ any thread

    def submit(
        self,
        creates: tuple[pb.CreateTaskRunRequest, ...] = (),
        proposals: tuple[pb.TaskRunStateProposal, ...] = (),
        logs: tuple[pb.LogRecord, ...] = (),
    ) -> Future[pb.ProposalResult] | None:
        """Queue records; returns a future for the one proposal marked wait_for_decision."""
        waiter: Future[pb.ProposalResult] | None = None
        with self._lock:
            self._creates.extend(creates)
            self._proposals.extend(proposals)
            self._logs.extend(logs)
            for p in proposals:
                if p.wait_for_decision:
                    # A task run waits for one answer at a time, so its id names the waiter.
                    waiter = Future()
                    self._waiters[p.task_run_id] = waiter
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            self._loop.call_soon_threadsafe(self._drain)
        return waiter

    def flush(self) -> Future[None]:
        """A future that resolves once everything submitted so far is committed."""
        done: Future[None] = Future()
        self._loop.call_soon_threadsafe(self._flush_on_loop, done)
        return done

    # ----------------------------------------------------------- loop thread

    def _flush_on_loop(self, done: Future[None]) -> None:
        self._drain()
        if self.error is not None:
            done.set_exception(self.error)
        elif self._has_queued():
            self._unsent_flushes.append(done)  # given a seq when its records leave
        elif not self._unacked:
            done.set_result(None)
        else:
            self._flushes.append((self._seq, done))

    def _has_queued(self) -> bool:
        with self._lock:
            return bool(self._creates or self._proposals or self._logs)

    def _drain(self) -> None:
        """Turn queued records into numbered messages (on the loop thread).

        Held back while ``MAX_IN_FLIGHT`` messages await their ack; the ack
        drains again.
        """
        if len(self._unacked) >= MAX_IN_FLIGHT and self.error is None:
            with self._lock:
                self._scheduled = False
            # A stream that ended leaves its messages unacked: start another, which resends them.
            self._ensure_running()
            return
        with self._lock:
            creates, self._creates = self._creates, []
            proposals, self._proposals = self._proposals, []
            logs, self._logs = self._logs, []
            self._scheduled = False
        if not (creates or proposals or logs):
            return
        self._ensure_running()
        for start in range(0, max(len(creates), len(proposals), len(logs)), MAX_RECORDS_PER_MESSAGE):
            end = start + MAX_RECORDS_PER_MESSAGE
            self._seq += 1
            msg = pb.SyncRunsRequest(
                seq=self._seq, create_task_runs=creates[start:end], proposals=proposals[start:end], logs=logs[start:end]
            )
            waiting = tuple(p.task_run_id for p in proposals[start:end] if p.wait_for_decision)
            pending = _Pending(self._seq, msg, waiting)
            self._unacked.append(pending)
            assert self._outgoing is not None
            self._outgoing.put_nowait(msg)
        if self._unsent_flushes:
            self._flushes.extend((self._seq, fut) for fut in self._unsent_flushes)
            self._unsent_flushes = []

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._outgoing = asyncio.Queue()
            for pending in self._unacked:
                self._outgoing.put_nowait(pending.message)
            self._task = self._loop.create_task(self._run(), name="weir-sync-runs")

    async def _requests(self, queue: asyncio.Queue[pb.SyncRunsRequest | None]) -> AsyncIterator[pb.SyncRunsRequest]:
        while True:
            msg = await queue.get()
            if msg is None:  # this stream is over: end gRPC's request-consuming task with it
                return
            yield msg

    async def _run(self) -> None:
        backoff = _RECONNECT_FIRST
        server_errors = 0
        while not self._closed:
            queue = self._outgoing
            assert queue is not None
            call = self._open_stream(self._requests(queue))
            try:
                async for reply in call:
                    backoff, server_errors = _RECONNECT_FIRST, 0
                    self._on_reply(reply)
                return
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                server_errors = server_errors + 1 if code in _SERVER_ERRORS else 0
                if code in _REFUSED or server_errors >= MAX_SERVER_ERRORS:
                    from weir.client._grpc import translate_error

                    self._fail(translate_error(exc))
                    return
                log.warning("task-run stream lost (%s); resending %d unacked messages", code, len(self._unacked))
            finally:
                call.cancel()
                queue.put_nowait(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RECONNECT_CAP)
            # Resend everything not acked, in order, on a fresh stream.
            self._outgoing = asyncio.Queue()
            for pending in self._unacked:
                self._outgoing.put_nowait(pending.message)

    def _on_reply(self, reply: pb.SyncRunsResponse) -> None:
        for decision in reply.decisions:
            with self._lock:
                waiter = self._waiters.pop(decision.task_run_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(decision.result)
        for decision in reply.not_accepted:
            log.debug("task run %s: %s", decision.task_run_id, decision.result.reason)
        while self._unacked and self._unacked[0].seq <= reply.acked_seq:
            done = self._unacked.popleft()
            for task_run_id in done.waiting:
                with self._lock:
                    waiter = self._waiters.pop(task_run_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(RuntimeError(f"no decision came back for task run {task_run_id}"))
        still = []
        for seq, fut in self._flushes:
            if seq <= reply.acked_seq:
                fut.set_result(None)
            else:
                still.append((seq, fut))
        self._flushes = still
        if len(self._unacked) < MAX_IN_FLIGHT:
            self._drain()  # what waited for the window

    def _fail(self, error: BaseException) -> None:
        self.error = error
        with self._lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        for fut in [f for _, f in self._flushes] + self._unsent_flushes:
            fut.set_exception(error)
        self._flushes, self._unsent_flushes = [], []

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            # gRPC ends the call's request-consuming task on a later loop turn: let it, so
            # no pending task is left on a loop that is about to stop.
            for _ in range(5):
                await asyncio.sleep(0)
