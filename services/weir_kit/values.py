"""Request values every service checks the same way."""

from __future__ import annotations

import uuid

from weir.errors import InvalidArgument


def parse_id(value: str, field: str, *, required: bool = True) -> str:
    """``value`` as a canonical UUID string; InvalidArgument naming ``field`` otherwise."""
    if not value:
        if required:
            raise InvalidArgument(f"{field} is required", field=field)
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID: {value!r}", field=field) from None
