"""Request values every service checks the same way."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from weir.errors import InvalidArgument

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def parse_id(value: str, field: str, *, required: bool = True) -> str:
    """``value`` as a canonical UUID string; InvalidArgument naming ``field`` otherwise."""
    if not value:
        if required:
            raise InvalidArgument(f"{field} is required", field=field)
        return ""
    if _CANONICAL.match(value):
        return value  # already the form str(UUID) gives: most ids, and the hot paths parse many
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID: {value!r}", field=field) from None


def free_text(value: str) -> str:
    """Free text as a client sent it (a state's message, a log line), but with each NUL
    character replaced by U+FFFD: Postgres text cannot hold NUL, and one refused row fails
    its whole transaction (a SyncRuns batch). Exception messages and printed output do carry
    NULs. Both backends store the same text."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def short_text(value: str, field: str, limit: int | None = 255) -> str:
    """A name or key as given, refused with InvalidArgument naming ``field`` when it is longer
    than its column (``limit`` characters; None: a text column, no limit) or holds a NUL.
    Postgres refuses both, and a refused row failed its whole transaction with INTERNAL; SQLite
    stored them. Refused up front, both backends answer the same, and a SyncRuns client gets an
    error it stops on instead of one it resends."""
    if limit is not None and len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field} holds a NUL character", field=field)
    return value


def short_texts(values: Iterable[str], field: str, limit: int | None = 255) -> list[str]:
    """:func:`short_text` of each of ``values`` (a repeated field, or a filter's list)."""
    return [short_text(value, f"{field}[{i}]", limit) for i, value in enumerate(values)]
