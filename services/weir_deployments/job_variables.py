"""Job variables: a work pool's base job template and the layers over it.

A work pool's base job template is a JSON object whose ``"variables"`` is a
JSON schema (draft 2020-12 unless it names another ``$schema``) of type
object; each property may carry a ``"default"``. A flow run's job variables
are three layers over those defaults, in this order::

    layers = [("work pool defaults", pool_overrides), ("deployment", dep_vars), ("flow run", run_vars)]
    problem = validate_layers(template, layers)
    if problem:
        raise_problem(problem)                  # InvalidArgument: "deployment job variables: env.FOO: ..."
    variables = merge_layers(template, layers)

Each layer is checked on its own against the schema with the top-level
``required`` dropped (a layer may give only some variables; types, enums and
``additionalProperties`` still hold), and the first bad layer is reported by
name with the path of the bad field. The merged result is then checked
against the whole schema, ``required`` included, as layer ``"merged"``.

Merging is shallow per top-level key (a later layer's ``working_dir`` or
``resources`` replaces the earlier one whole), except ``env``, which merges
variable by variable, so a deployment can add one environment variable
without repeating the pool's. Nested ``required`` lists are kept when a layer
is checked, because a nested object is always replaced whole.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from weir.errors import InvalidArgument

if TYPE_CHECKING:  # jsonschema itself is imported where a schema is checked: ~35 ms off a cold start
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

__all__ = [
    "PROCESS_TEMPLATE",
    "Problem",
    "check_template",
    "defaults",
    "merge_layers",
    "raise_problem",
    "validate_layers",
]

#: The base job template of pools of type "process" and "serve".
PROCESS_TEMPLATE: dict[str, Any] = {
    "variables": {
        "type": "object",
        "properties": {
            "env": {
                "title": "Environment variables",
                "description": "Set in the flow run's process, over the worker's own environment.",
                "type": "object",
                "additionalProperties": {"type": "string"},
                "default": {},
            },
            "working_dir": {
                "title": "Working directory",
                "description": "Where the flow run's process starts; null for the worker's directory.",
                "type": ["string", "null"],
                "default": None,
            },
            "command": {
                "title": "Command",
                "description": "Runs instead of the default python command; null for the default.",
                "type": ["string", "null"],
                "default": None,
            },
            "stream_output": {
                "title": "Stream output",
                "description": "Copy the process's stdout and stderr to the worker's.",
                "type": "boolean",
                "default": True,
            },
            "terminate_grace_seconds": {
                "title": "Terminate grace period (seconds)",
                "description": "How long a cancelled process has after SIGTERM before SIGKILL.",
                "type": "number",
                "minimum": 0,
                "default": 10,
            },
        },
        "additionalProperties": False,
    }
}

_ENV = "env"


@dataclass(frozen=True)
class Problem:
    """The first bad layer: its name, the JSON path of the field ("" for the whole layer), why."""

    layer: str
    field: str
    message: str


def check_template(template: Mapping[str, Any], field: str = "work_pool.base_job_template") -> None:
    """Refuse a base job template that could not check job variables.

    ``InvalidArgument`` names ``field`` (or the place inside it): not an
    object, no ``"variables"``, a variables schema that is not a valid JSON
    schema or not of type object, a default that breaks its own property.
    """
    if not isinstance(template, Mapping):
        raise InvalidArgument("a base job template must be a JSON object", field=field)
    variables = template.get("variables")
    where = f"{field}.variables"
    if variables is None:
        raise InvalidArgument('a base job template needs "variables": a JSON schema of the job variables', field=where)
    if not isinstance(variables, Mapping):
        raise InvalidArgument('"variables" must be a JSON schema object', field=where)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError, best_match
    from jsonschema.validators import validator_for

    cls = validator_for(variables, default=Draft202012Validator)
    try:
        cls.check_schema(variables)
    except SchemaError as exc:
        raise InvalidArgument(
            f"the variables schema is not valid: {exc.message}", field=where + _json_path(exc.absolute_path, dot=True)
        ) from None
    if variables.get("type") != "object":
        raise InvalidArgument('the variables schema must have "type": "object"', field=f"{where}.type")
    validator = cls(variables)
    for name, prop in _properties(variables).items():
        if isinstance(prop, Mapping) and "default" in prop:
            error = best_match(validator.evolve(schema=prop).iter_errors(prop["default"]))
            if error is not None:
                raise InvalidArgument(
                    f"the default of {name!r} breaks its own schema: {error.message}",
                    field=f"{where}.properties.{name}.default",
                )


def defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template's property defaults (fresh copies, safe to change)."""
    return {
        name: copy.deepcopy(prop["default"])
        for name, prop in _properties(template.get("variables") or {}).items()
        if isinstance(prop, Mapping) and "default" in prop
    }


def validate_layers(
    template: Mapping[str, Any], layers: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> Problem | None:
    """The first problem with the layers, in order, then with their merge; None when all is well.

    The template must have passed ``check_template``. ``None`` layers are skipped.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    schema = template["variables"]
    cls = validator_for(schema, default=Draft202012Validator)
    partial = cls({key: value for key, value in schema.items() if key != "required"})
    for name, values in layers:
        if values is None:
            continue
        problem = _problem(partial, name, values)
        if problem:
            return problem
    return _problem(cls(schema), "merged", merge_layers(template, layers))


def merge_layers(template: Mapping[str, Any], layers: Sequence[tuple[str, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """The defaults overlaid by each layer in order (``env`` merges variable by variable)."""
    merged = defaults(template)
    for _, values in layers:
        for key, value in (values or {}).items():
            if key == _ENV and isinstance(value, Mapping) and isinstance(merged.get(_ENV), Mapping):
                merged[_ENV] = {**merged[_ENV], **copy.deepcopy(dict(value))}
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def raise_problem(problem: Problem, field_prefix: str = "job_variables") -> NoReturn:
    """Raise the problem as ``InvalidArgument`` on ``{field_prefix}.{problem.field}``."""
    where = f"{problem.field}: " if problem.field else ""
    raise InvalidArgument(
        f"{problem.layer} job variables: {where}{problem.message}",
        field=f"{field_prefix}.{problem.field}" if problem.field else field_prefix,
    )


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = schema.get("properties")
    return properties if isinstance(properties, Mapping) else {}


def _problem(validator: Validator, layer: str, values: Any) -> Problem | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(values))
    if error is None:
        return None
    return Problem(layer=layer, field=_json_path([*error.absolute_path, *_culprit(error)]), message=error.message)


def _culprit(error: ValidationError) -> list[str]:
    """The property an object-level error is about: the first unexpected or missing one."""
    instance, schema = error.instance, error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        return []
    if error.validator == "additionalProperties":
        known = _properties(schema)
        patterns = schema.get("patternProperties") or {}
        extra = [key for key in instance if key not in known and not _matches_any(key, patterns)]
        return sorted(extra, key=str)[:1]
    if error.validator == "required":
        return [name for name in error.validator_value if name not in instance][:1]
    return []


def _matches_any(key: str, patterns: Mapping[str, Any]) -> bool:
    return any(re.search(pattern, key) for pattern in patterns)


def _json_path(path: Sequence[str | int], dot: bool = False) -> str:
    """``env.FOO``, ``args[0]``; with ``dot`` a leading "." to append to a field name."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text if dot else text.removeprefix(".")
