"""Base job templates and job-variable layers: checking, merging, reporting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from weir.errors import InvalidArgument
from weir_deployments.job_variables import (
    PROCESS_TEMPLATE,
    Problem,
    check_template,
    defaults,
    merge_layers,
    raise_problem,
    validate_layers,
)

DOCKER_LIKE: dict[str, Any] = {
    "variables": {
        "type": "object",
        "$defs": {"pull": {"enum": ["always", "never", "if-not-present"]}},
        "properties": {
            "image": {"type": "string"},
            "pull_policy": {"$ref": "#/$defs/pull", "default": "if-not-present"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}, "default": {"LANG": "C.UTF-8"}},
            "labels": {"type": "object", "default": {"team": "data"}},
            "args": {"type": "array", "items": {"type": "string"}, "default": []},
        },
        "patternProperties": {"^x-": {}},
        "required": ["image"],
        "additionalProperties": False,
    }
}


def layers(pool: Any = None, deployment: Any = None, run: Any = None) -> list[tuple[str, Any]]:
    return [("work pool defaults", pool), ("deployment", deployment), ("flow run", run)]


# -- the process template


def test_process_template_is_valid_and_its_defaults_are_documented() -> None:
    check_template(PROCESS_TEMPLATE)
    assert defaults(PROCESS_TEMPLATE) == {
        "env": {},
        "working_dir": None,
        "command": None,
        "stream_output": True,
        "terminate_grace_seconds": 10,
    }


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({"env": {"FOO": 1}}, "env.FOO", "1 is not of type 'string'"),
        ({"env": "FOO=1"}, "env", "is not of type 'object'"),
        ({"working_dir": 3}, "working_dir", "is not of type 'string', 'null'"),
        ({"command": ["python", "x.py"]}, "command", "is not of type 'string', 'null'"),
        ({"stream_output": "yes"}, "stream_output", "is not of type 'boolean'"),
        ({"terminate_grace_seconds": -1}, "terminate_grace_seconds", "less than the minimum of 0"),
        (
            {"wokring_dir": "/srv"},
            "wokring_dir",
            "Additional properties are not allowed ('wokring_dir' was unexpected)",
        ),
    ],
)
def test_process_template_refuses_bad_values(values: dict[str, Any], field: str, fragment: str) -> None:
    problem = validate_layers(PROCESS_TEMPLATE, layers(deployment=values))
    assert problem is not None
    assert (problem.layer, problem.field) == ("deployment", field)
    assert fragment in problem.message


def test_process_template_accepts_a_full_set() -> None:
    values = {"env": {"A": "1"}, "working_dir": "/srv", "command": "uv run x.py", "stream_output": False}
    assert validate_layers(PROCESS_TEMPLATE, layers(deployment=values, run={"terminate_grace_seconds": 2.5})) is None


# -- check_template


@pytest.mark.parametrize(
    ("template", "field", "fragment"),
    [
        (["variables"], "work_pool.base_job_template", "must be a JSON object"),
        ({"job_configuration": {}}, "work_pool.base_job_template.variables", 'needs "variables"'),
        ({"variables": "object"}, "work_pool.base_job_template.variables", "must be a JSON schema object"),
        (
            {"variables": {"type": "object", "properties": {"n": {"type": "strin"}}}},
            "work_pool.base_job_template.variables.properties.n.type",
            "the variables schema is not valid",
        ),
        ({"variables": {"type": "array"}}, "work_pool.base_job_template.variables.type", '"type": "object"'),
        (
            {"variables": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}}},
            "work_pool.base_job_template.variables.properties.n.default",
            "the default of 'n' breaks its own schema: 0 is less than the minimum of 1",
        ),
    ],
)
def test_bad_templates_name_the_field(template: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_template(template)
    assert info.value.field == field
    assert fragment in info.value.message


def test_template_defaults_are_checked_through_refs() -> None:
    check_template(DOCKER_LIKE)
    bad = copy.deepcopy(DOCKER_LIKE)
    bad["variables"]["properties"]["pull_policy"]["default"] = "sometimes"
    with pytest.raises(InvalidArgument) as info:
        check_template(bad, field="pool.template")
    assert info.value.field == "pool.template.variables.properties.pull_policy.default"
    assert "'sometimes' is not one of" in info.value.message


# -- defaults and merge_layers


def test_defaults_are_fresh_copies() -> None:
    first = defaults(DOCKER_LIKE)
    first["env"]["X"] = "1"
    first["labels"]["team"] = "ml"
    assert defaults(DOCKER_LIKE)["env"] == {"LANG": "C.UTF-8"}
    assert DOCKER_LIKE["variables"]["properties"]["labels"]["default"] == {"team": "data"}


def test_merge_overlays_in_order_and_merges_env_by_variable() -> None:
    deployment = {"image": "app:1", "env": {"MODE": "batch"}, "labels": {"owner": "ana"}}
    run = {"image": "app:2", "env": {"MODE": "debug", "TRACE": "1"}, "args": ["--fast"]}
    merged = merge_layers(DOCKER_LIKE, layers({"pull_policy": "always"}, deployment, run))
    assert merged == {
        "image": "app:2",
        "pull_policy": "always",
        "env": {"LANG": "C.UTF-8", "MODE": "debug", "TRACE": "1"},
        "labels": {"owner": "ana"},  # replaced whole, not merged
        "args": ["--fast"],
    }
    merged["labels"]["owner"] = "bo"
    merged["args"].append("--slow")
    assert deployment == {"image": "app:1", "env": {"MODE": "batch"}, "labels": {"owner": "ana"}}  # inputs untouched
    assert run["args"] == ["--fast"]


def test_merge_keeps_an_explicit_null_and_skips_missing_layers() -> None:
    merged = merge_layers(PROCESS_TEMPLATE, layers(None, {"working_dir": "/srv"}, {"working_dir": None}))
    assert merged["working_dir"] is None
    assert merge_layers(PROCESS_TEMPLATE, layers()) == defaults(PROCESS_TEMPLATE)


# -- validate_layers


def test_layers_are_partial_but_the_merge_is_whole() -> None:
    # No layer alone gives the required image; together they do.
    assert validate_layers(DOCKER_LIKE, layers(deployment={"env": {"A": "1"}}, run={"image": "app:1"})) is None
    problem = validate_layers(DOCKER_LIKE, layers(deployment={"env": {"A": "1"}}))
    assert problem == Problem("merged", "image", "'image' is a required property")


def test_the_first_bad_layer_is_reported() -> None:
    both_bad = layers({"pull_policy": "sometimes"}, {"env": {"A": 1}}, {"args": ["ok", 2]})
    problem = validate_layers(DOCKER_LIKE, both_bad)
    assert problem is not None
    assert (problem.layer, problem.field) == ("work pool defaults", "pull_policy")
    assert "'sometimes' is not one of" in problem.message
    problem = validate_layers(DOCKER_LIKE, both_bad[1:])
    assert problem == Problem("deployment", "env.A", "1 is not of type 'string'")
    problem = validate_layers(DOCKER_LIKE, both_bad[2:])
    assert problem == Problem("flow run", "args[1]", "2 is not of type 'string'")


def test_unknown_variables_are_named_and_patterns_allowed() -> None:
    ok = {"image": "app:1", "x-note": "hi"}
    assert validate_layers(DOCKER_LIKE, layers(run=ok)) is None
    problem = validate_layers(DOCKER_LIKE, layers(run={**ok, "zeta": 1, "alpha": 2}))
    assert problem is not None
    assert (problem.layer, problem.field) == ("flow run", "alpha")
    assert "'alpha', 'zeta' do not match any of the regexes" in problem.message


def test_a_layer_that_is_not_an_object_is_reported_whole() -> None:
    problem = validate_layers(PROCESS_TEMPLATE, layers(deployment=["env"]))
    assert problem is not None
    assert (problem.layer, problem.field) == ("deployment", "")
    assert "is not of type 'object'" in problem.message


# -- raise_problem


def test_raise_problem_names_layer_and_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        raise_problem(Problem("deployment", "env.FOO", "1 is not of type 'string'"))
    assert info.value.message == "deployment job variables: env.FOO: 1 is not of type 'string'"
    assert info.value.field == "job_variables.env.FOO"
    with pytest.raises(InvalidArgument) as info:
        raise_problem(Problem("flow run", "", "[] is not of type 'object'"), field_prefix="flow_run.job_variables")
    assert info.value.message == "flow run job variables: [] is not of type 'object'"
    assert info.value.field == "flow_run.job_variables"
