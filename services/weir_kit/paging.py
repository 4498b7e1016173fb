"""Cursor paging shared by every list RPC.

A page token is an opaque, url-safe string holding the sort key and id of the
last row of the previous page (keyset paging: stable under inserts, no
OFFSET scans). A token that does not decode is an INVALID_ARGUMENT naming
``page_token``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from weir.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {requested}", field="page.page_size")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_token(*key: Any) -> str:
    raw = json.dumps(list(key), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, arity: int, kinds: tuple[type, ...] | None = None) -> list[Any] | None:
    """The key in ``token``, or None for the first page. ``kinds``: the type of each of the
    key's values (strings by default); a token whose values are of other types, or hold a NUL
    (which Postgres refuses in a comparison), was not issued by this server."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not a token this server issued", field="page.page_token") from exc
    kinds = kinds or (str,) * arity
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(type(value) is kind for value, kind in zip(key, kinds, strict=False))
        or any(isinstance(value, str) and "\x00" in value for value in key)
    ):
        raise InvalidArgument("page_token is not a token this server issued", field="page.page_token")
    return key
