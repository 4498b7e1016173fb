"""One computation per cache key across concurrent transactions.

``cache_lookup`` answers WAIT to a task run proposing RUNNING with a key
that another task run holds in RUNNING. That only works if the second
transaction can see the first one's RUNNING row: two SyncRuns streams (two
processes) proposing the same key at the same moment would each find no
holder and both run. So, before looking for hits and holders, a transaction
takes a Postgres transaction-level advisory lock per key it asks about; the
second waits for the first to commit and then sees its holder (READ
COMMITTED reads with a fresh snapshot per statement).

Keys are folded into :data:`BUCKETS` lock ids, taken in ascending order in
one statement (no deadlock between two batches with overlapping keys, and a
batch of a thousand keys takes at most ``BUCKETS`` locks of the shared lock
table). Two keys sharing a bucket only make one transaction wait for the
other's commit. SQLite needs nothing: its write transactions already run
one at a time (``BEGIN IMMEDIATE`` under the service's write lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

#: Lock ids the keys fold into.
BUCKETS = 256
#: A constant first half of the two-int advisory lock id, so these locks share no id with others.
_NAMESPACE = 0x57_43_4B  # "WCK"

_LOCK = text(
    "SELECT pg_advisory_xact_lock(:namespace, b) FROM unnest(CAST(:buckets AS integer[])) WITH ORDINALITY AS t(b, n) "
    "ORDER BY n"
)


def buckets(keys: Iterable[str]) -> list[int]:
    """The sorted lock ids of ``keys``."""
    return sorted({int.from_bytes(hashlib.blake2b(k.encode(), digest_size=4).digest()) % BUCKETS for k in keys})


async def lock_cache_keys(session: AsyncSession, keys: Iterable[str], *, is_postgres: bool) -> None:
    """Wait until no other open transaction is deciding on any of ``keys`` (Postgres)."""
    if not is_postgres:
        return
    ids = buckets(k for k in keys if k)
    if ids:
        await session.execute(_LOCK, {"namespace": _NAMESPACE, "buckets": ids})
