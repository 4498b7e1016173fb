"""Building events: every state change and every create/update/delete of a
domain object emits one, written to the service's outbox in the same
transaction as the change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from google.protobuf.struct_pb2 import Struct

from weir._ids import new_id
from weir._proto import to_timestamp
from weir.v1 import common_pb2

RESOURCE_ID = "weir.resource.id"
RESOURCE_NAME = "weir.resource.name"
RESOURCE_ROLE = "weir.resource.role"


@dataclass(frozen=True, slots=True)
class Packed:
    """An event already serialized (see ``weir_kit.wire``): what the outbox stores of it.

    The outbox takes these and ``Event`` messages alike.
    """

    id: str
    event: str
    data: bytes

    def to_pb(self) -> common_pb2.Event:
        return common_pb2.Event.FromString(self.data)


#: What the outbox takes.
OutgoingEvent: TypeAlias = common_pb2.Event | Packed


def resource(resource_id: str, *, name: str | None = None, role: str | None = None, **labels: str) -> dict[str, str]:
    """Labels of a resource: ``resource("weir.flow-run.<id>", name="x", role="flow")``."""
    out = {RESOURCE_ID: resource_id}
    if name:
        out[RESOURCE_NAME] = name
    if role:
        out[RESOURCE_ROLE] = role
    out.update(labels)
    return out


def new_event(
    event: str,
    resource_labels: Mapping[str, str],
    *,
    occurred: datetime,
    related: Sequence[Mapping[str, str]] = (),
    payload: Mapping[str, Any] | None = None,
    follows: str | None = None,
    event_id: str | None = None,
) -> common_pb2.Event:
    msg = common_pb2.Event(
        id=event_id or new_id(),
        occurred=to_timestamp(occurred),
        event=event,
        resource=common_pb2.Resource(labels=dict(resource_labels)),
        related=[common_pb2.Resource(labels=dict(r)) for r in related],
        follows=follows or "",
    )
    if payload:
        s = Struct()
        s.update(dict(payload))
        msg.payload.CopyFrom(s)
    return msg
