"""Flow parameters checked against a deployment's parameter schema (jsonschema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weir.errors import InvalidArgument


def check_schema(schema: Mapping[str, Any], field: str) -> None:
    if not schema:
        return
    import jsonschema  # here, not at module level: ~35 ms off every cold start

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidArgument(f"{field} is not a valid JSON schema: {exc.message}", field=field) from None


def check_parameters(schema: Mapping[str, Any], values: Mapping[str, Any], field: str, *, partial: bool) -> None:
    """InvalidArgument naming ``field.<parameter>`` when ``values`` break ``schema``.

    ``partial``: a deployment's defaults may leave required parameters to the run.
    """
    if not schema:
        return
    import jsonschema
    from jsonschema.exceptions import best_match

    if partial:
        schema = {k: v for k, v in schema.items() if k != "required"}
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = best_match(validator.iter_errors(dict(values)))
    if error is None:
        return
    path = ".".join(str(p) for p in error.absolute_path)
    if not path and error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path = missing
    name = f"{field}.{path}" if path else field
    raise InvalidArgument(f"parameter {path or '(all)'}: {error.message}", field=name)
