"""Query parameters several routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime

from weir.client.types import TimeRange

PageSize = Annotated[int | None, Query(ge=1, le=1000, description="Items per page (server default when omitted).")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]
# Aware only: a naive time in a query is ambiguous, so it is a 422, not a guess.
After = Annotated[AwareDatetime | None, Query(description="Inclusive lower bound (ISO 8601 with offset).")]
Before = Annotated[AwareDatetime | None, Query(description="Exclusive upper bound (ISO 8601 with offset).")]


def time_range(after: AwareDatetime | None, before: AwareDatetime | None) -> TimeRange | None:
    if after is None and before is None:
        return None
    return TimeRange(after=after, before=before)
