"""Portable SQL filter clauses shared by the services' list RPCs (SQLite and Postgres)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, cast

Clauses = list[ColumnElement[bool]]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_text(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, with LIKE's wildcards taken literally."""
    return column.ilike(f"%{_escape_like(text)}%", escape="\\")


def tags_all(column: Any, tags: Sequence[str]) -> Clauses:
    """Every tag present in a JSON list column (matched on its JSON text, portable)."""
    text = cast(column, String)
    return [text.like(f"%{_escape_like(json.dumps(tag))}%", escape="\\") for tag in tags]
