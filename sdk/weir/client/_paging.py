"""Following cursor pages, written once for every ``iter_*`` helper."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from weir.client.types import Page

T = TypeVar("T")


async def follow_pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Yield every item of every page; ``fetch(token)`` reads one page."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = await fetch(token)
        for item in page.items:
            yield item
        token = page.next_page_token
        # A server that hands back a token it already gave would loop forever.
        if not token or token in seen:
            return
        seen.add(token)
