"""Proto filters -> SQL conditions, validated on the way.

A bad value is an InvalidArgument naming the offending field
(``filter.created``, ``filter.state_types``, ``filter.ids``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select

from weir._proto import timestamp_to_datetime
from weir.errors import InvalidArgument
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.sqlfilters import contains_text, tags_all
from weir_kit.values import short_text, short_texts
from weir_orchestration.models import flow_runs, flows, logs, task_runs
from weir_orchestration.policy import type_name
from weir_orchestration.proto import parse_id, parse_state_type

Clauses = list[ColumnElement[bool]]


def text(value: str, field: str) -> str:
    """A text to match: Postgres refuses a NUL even in a comparison, so it is refused here on
    both backends (no stored name holds one)."""
    return short_text(value, field, None)


def texts(values: Sequence[str], field: str) -> list[str]:
    return short_texts(values, field, None)


def ids(values: Sequence[str], field: str) -> list[str]:
    return [parse_id(v, f"{field}[{i}]") for i, v in enumerate(values)]


def time_range(column: Any, rng: common_pb2.TimeRange, field: str) -> Clauses:
    after = timestamp_to_datetime(rng.after) if rng.HasField("after") else None
    before = timestamp_to_datetime(rng.before) if rng.HasField("before") else None
    if after is not None and before is not None and after > before:
        raise InvalidArgument(
            f"{field}: after ({after.isoformat()}) is later than before ({before.isoformat()})", field=field
        )
    out: Clauses = []
    if after is not None:
        out.append(column >= after)
    if before is not None:
        out.append(column < before)
    return out


def state_types(column: Any, values: Sequence[int], field: str) -> Clauses:
    names = [type_name(parse_state_type(v, f"{field}[{i}]")) for i, v in enumerate(values)]
    return [column.in_(names)] if names else []


def flow_filter(f: pb.FlowFilter, field: str = "filter") -> Clauses:
    out: Clauses = []
    if f.name_like:
        out.append(contains_text(flows.c.name, text(f.name_like, f"{field}.name_like")))
    if f.names:
        out.append(flows.c.name.in_(texts(f.names, f"{field}.names")))
    out += tags_all(flows.c.tags, f.tags_all)
    return out


def flow_run_filter(f: pb.FlowRunFilter, field: str = "filter") -> Clauses:
    c = flow_runs.c
    out: Clauses = []
    if f.ids:
        out.append(c.id.in_(ids(f.ids, f"{field}.ids")))
    out += state_types(c.state_type, f.state_types, f"{field}.state_types")
    if f.state_names:
        out.append(c.state_name.in_(texts(f.state_names, f"{field}.state_names")))
    if f.name_like:
        out.append(contains_text(c.name, text(f.name_like, f"{field}.name_like")))
    out += tags_all(c.tags, f.tags_all)
    if f.flow_ids:
        out.append(c.flow_id.in_(ids(f.flow_ids, f"{field}.flow_ids")))
    if f.flow_names:
        names = texts(f.flow_names, f"{field}.flow_names")
        out.append(c.flow_id.in_(select(flows.c.id).where(flows.c.name.in_(names))))
    if f.parent_task_run_id:
        out.append(c.parent_task_run_id == parse_id(f.parent_task_run_id, f"{field}.parent_task_run_id"))
    if f.deployment_id:
        out.append(c.deployment_id == parse_id(f.deployment_id, f"{field}.deployment_id"))
    if f.parent_flow_run_id:
        parent = parse_id(f.parent_flow_run_id, f"{field}.parent_flow_run_id")
        out.append(exists().where(task_runs.c.id == c.parent_task_run_id, task_runs.c.flow_run_id == parent))
    out += time_range(c.created, f.created, f"{field}.created")
    out += time_range(c.expected_start_time, f.expected_start_time, f"{field}.expected_start_time")
    out += time_range(c.start_time, f.start_time, f"{field}.start_time")
    return out


def task_run_filter(f: pb.TaskRunFilter, field: str = "filter") -> Clauses:
    c = task_runs.c
    out: Clauses = []
    if f.ids:
        out.append(c.id.in_(ids(f.ids, f"{field}.ids")))
    if f.flow_run_ids:
        out.append(c.flow_run_id.in_(ids(f.flow_run_ids, f"{field}.flow_run_ids")))
    out += state_types(c.state_type, f.state_types, f"{field}.state_types")
    if f.state_names:
        out.append(c.state_name.in_(texts(f.state_names, f"{field}.state_names")))
    if f.name_like:
        out.append(contains_text(c.name, text(f.name_like, f"{field}.name_like")))
    out += tags_all(c.tags, f.tags_all)
    out += time_range(c.created, f.created, f"{field}.created")
    out += time_range(c.start_time, f.start_time, f"{field}.start_time")
    return out


def log_filter(f: pb.LogFilter, field: str = "filter") -> Clauses:
    c = logs.c
    out: Clauses = []
    if f.flow_run_id:
        out.append(c.flow_run_id == parse_id(f.flow_run_id, f"{field}.flow_run_id"))
    if f.task_run_id:
        out.append(c.task_run_id == parse_id(f.task_run_id, f"{field}.task_run_id"))
    if f.level_ge:
        out.append(c.level >= f.level_ge)
    out += time_range(c.timestamp, f.timestamp, f"{field}.timestamp")
    if f.text_like:
        out.append(contains_text(c.message, text(f.text_like, f"{field}.text_like")))
    return out


# ----------------------------------------------------------------- paging


def after_key(sort: Any, id_col: Any, token: str, *, descending: bool) -> Clauses:
    """Keyset condition: rows strictly after the (time, id) key in ``token``."""
    key = paging.decode_token(token, 2)
    if key is None:
        return []
    try:
        when = datetime.fromisoformat(key[0])
        last_id = str(key[1])
    except (TypeError, ValueError) as exc:
        raise InvalidArgument("page_token is not a token this server issued", field="page.page_token") from exc
    if when.tzinfo is None:
        raise InvalidArgument("page_token is not a token this server issued", field="page.page_token")
    if descending:
        return [or_(sort < when, and_(sort == when, id_col < last_id))]
    return [or_(sort > when, and_(sort == when, id_col > last_id))]


def next_token(rows: Sequence[Any], size: int, sort_value: Any) -> str:
    """A token for the page after ``rows`` when the page came back full."""
    if len(rows) < size or not rows:
        return ""
    last = rows[-1]
    return paging.encode_token(sort_value(last).isoformat(), last.id)
