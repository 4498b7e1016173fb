"""weir_kit.jetstream.Nats.publish_batch: atomic batches on a server that has them (the embedded
nats-server), one message at a time otherwise, and every message stored exactly once either way."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.errors import MaxPayloadError

from weir_kit.jetstream import ATOMIC_MAX, EmbeddedNats, Nats, stream_config
from weir_kit.settings import KitSettings

#: The machine's own nats-server (an older release, without atomic batches), where there is one.
MACHINE_NATS = ("127.0.0.1", 4222)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


def _settings(tmp_path: Path) -> KitSettings:
    # A stream of the test's own on the shared server.
    tag = uuid.uuid4().hex[:8]
    return KitSettings(home=tmp_path, events_stream=f"T{tag}", events_subject_prefix=f"t{tag}")


@pytest.fixture
async def nats(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Nats]:
    opened = await Nats.open(nats_server.url, _settings(tmp_path))
    yield opened
    await opened.js.delete_stream(opened.settings.events_stream)
    await opened.close()


def _messages(nats: Nats, count: int) -> list[tuple[str, bytes, str]]:
    prefix = nats.settings.events_subject_prefix
    return [(f"{prefix}.e", f"event {i}".encode(), str(uuid.uuid4())) for i in range(count)]


async def _stored(nats: Nats) -> list[str]:
    """The message ids in the stream, in order."""
    stream = nats.settings.events_stream
    count = (await nats.js.stream_info(stream)).state.messages
    ids = []
    for seq in range(1, count + 1):
        msg = await nats.js.get_msg(stream, seq)
        ids.append((msg.headers or {})["Nats-Msg-Id"])
    return ids


async def test_messages_go_as_atomic_batches_of_at_most_the_server_limit(nats: Nats) -> None:
    assert nats.atomic
    messages = _messages(nats, ATOMIC_MAX + 7)
    await nats.publish_batch(messages)
    assert await _stored(nats) == [m[2] for m in messages]
    stream = nats.settings.events_stream
    first, last = await nats.js.get_msg(stream, 1), await nats.js.get_msg(stream, ATOMIC_MAX + 7)
    assert first.headers and last.headers
    assert first.headers["Nats-Batch-Id"] != last.headers["Nats-Batch-Id"]  # two batches
    assert last.headers["Nats-Batch-Sequence"] == "7"


async def test_a_batch_with_messages_seen_before_stores_only_the_new_ones(nats: Nats) -> None:
    # What the relay sends again after a replica died between publishing and deleting.
    seen = _messages(nats, 5)
    await nats.publish_batch(seen)
    new = _messages(nats, 3)
    await nats.publish_batch(seen[2:] + new)
    assert await _stored(nats) == [m[2] for m in seen + new]
    assert nats.atomic  # a refused batch of duplicates does not turn batches off


async def test_a_stream_without_atomic_publish_gets_every_message_one_by_one(nats: Nats, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    await nats.js.add_stream(stream_config(settings))  # created by something that did not ask for batches
    other = Nats(nats.client, settings)
    other.atomic = True
    messages = _messages(other, 12)
    try:
        await other.publish_batch(messages)
        assert await _stored(other) == [m[2] for m in messages]
        assert not other.atomic
    finally:
        await nats.js.delete_stream(settings.events_stream)


async def test_a_stream_made_before_atomic_batches_takes_them_after_open(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    first = await Nats.open(nats_server.url, settings)
    await first.js.delete_stream(settings.events_stream)
    await first.js.add_stream(stream_config(settings))
    await first.close()
    again = await Nats.open(nats_server.url, settings)
    try:
        assert again.atomic
        assert (await again.js.stream_info(settings.events_stream)).config.allow_atomic
    finally:
        await again.js.delete_stream(settings.events_stream)
        await again.close()


async def test_no_answer_is_a_connection_error(nats: Nats) -> None:
    messages = [("nothing.listens.here", b"x", str(uuid.uuid4()))]  # no stream holds the subject
    with pytest.raises(ConnectionError):
        await nats.publish_batch(messages, ack_wait=2)


def _machine_nats_listens() -> bool:
    try:
        with socket.create_connection(MACHINE_NATS, timeout=0.5):
            return True
    except OSError:
        return False


async def test_an_older_server_gets_every_message_once(tmp_path: Path) -> None:
    if not _machine_nats_listens():
        pytest.skip("no nats-server of the machine's own on 127.0.0.1:4222 (the embedded one has batches)")
    nats = await Nats.open(f"nats://{MACHINE_NATS[0]}:{MACHINE_NATS[1]}", _settings(tmp_path))
    try:
        version = nats.client.connected_server_version
        if (version.major, version.minor) >= (2, 12):
            pytest.skip(f"the machine's nats-server {version} has atomic batches")
        assert not nats.atomic
        messages = _messages(nats, 9)
        await nats.publish_batch(messages)
        # Told it has batches, it finds out from the answer and sends each message again.
        nats.atomic = True
        more = _messages(nats, 4)
        await nats.publish_batch(more)
        await asyncio.sleep(0)
        assert await _stored(nats) == [m[2] for m in messages + more]
        assert not nats.atomic
    finally:
        await nats.js.delete_stream(nats.settings.events_stream)
        await nats.close()


async def test_an_event_larger_than_the_server_takes_is_refused_and_the_connection_stays(nats: Nats) -> None:
    huge = [(f"{nats.settings.events_subject_prefix}.e", b"x" * nats.client.max_payload, str(uuid.uuid4()))]
    with pytest.raises(MaxPayloadError):
        await nats.publish_batch(_messages(nats, 2) + huge)
    messages = _messages(nats, 3)
    await nats.publish_batch(messages)
    assert await _stored(nats) == [m[2] for m in messages]
