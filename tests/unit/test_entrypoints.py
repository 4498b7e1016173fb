"""Loading flows from entrypoints (``path.py:func`` and ``module:func``)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from weir import Flow, flow
from weir._entrypoints import entrypoint_for, load_flow
from weir.errors import InvalidArgument

FLOW_SOURCE = """
from weir import flow
from greeting_words import GREETING  # a sibling module: the file's folder is importable

@flow(name="greeter", retries=2)
def greet(name: str = "world") -> str:
    return f"{GREETING}, {name}"

not_a_flow = 42
"""


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "greet.py").write_text(FLOW_SOURCE)
    (tmp_path / "flows" / "greeting_words.py").write_text('GREETING = "hello"\n')
    return tmp_path


def test_loads_a_flow_from_a_file_relative_to_the_working_directory(project: Path) -> None:
    loaded = load_flow("flows/greet.py:greet", working_directory=project)
    assert isinstance(loaded, Flow)
    assert loaded.name == "greeter"
    assert loaded.options.retries == 2
    assert loaded.fn("you") == "hello, you"


def test_loading_twice_gives_the_same_flow(project: Path) -> None:
    first = load_flow("flows/greet.py:greet", working_directory=project)
    assert load_flow("flows/greet.py:greet", working_directory=str(project)) is first


def test_relative_path_uses_the_current_directory_by_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "flows")
    assert load_flow("greet.py:greet").name == "greeter"


def test_missing_file(project: Path) -> None:
    with pytest.raises(InvalidArgument, match="no file") as info:
        load_flow("flows/nope.py:greet", working_directory=project)
    assert info.value.field == "entrypoint"


def test_missing_attribute(project: Path) -> None:
    with pytest.raises(InvalidArgument, match="has no attribute 'gret'"):
        load_flow("flows/greet.py:gret", working_directory=project)


def test_not_a_flow(project: Path) -> None:
    with pytest.raises(InvalidArgument, match="not_a_flow is a int, not a flow"):
        load_flow("flows/greet.py:not_a_flow", working_directory=project)


@pytest.mark.parametrize("entrypoint", ["flows/greet.py", "greet", ":greet", "flows/greet.py:"])
def test_malformed_entrypoint(entrypoint: str, project: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"expected 'path/to/file\.py:function'"):
        load_flow(entrypoint, working_directory=project)


def test_a_file_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(InvalidArgument, match="RuntimeError: boom at import"):
        load_flow("broken.py:anything", working_directory=tmp_path)
    (tmp_path / "syntax.py").write_text("def (:\n")
    with pytest.raises(InvalidArgument, match="SyntaxError"):
        load_flow("syntax.py:anything", working_directory=tmp_path)


def test_module_form(tmp_path: Path) -> None:
    package = f"pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "jobs.py").write_text(
        textwrap.dedent(
            """
            from weir import flow

            @flow
            def nightly_load(day: str) -> str:
                return day
            """
        )
    )
    loaded = load_flow(f"{package}.jobs:nightly_load", working_directory=tmp_path)
    assert loaded.name == "nightly-load"


def test_module_form_missing_module(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no module 'no_such_pkg_xyz'"):
        load_flow("no_such_pkg_xyz.jobs:f", working_directory=tmp_path)


def test_module_form_missing_attribute() -> None:
    with pytest.raises(InvalidArgument, match="has no attribute 'nothing_here'"):
        load_flow("weir.flows:nothing_here")


def test_entrypoint_for_a_loaded_flow_points_back_at_it(project: Path) -> None:
    loaded = load_flow("flows/greet.py:greet", working_directory=project)
    assert entrypoint_for(loaded, project) == "flows/greet.py:greet"
    # Outside the working directory the path stays absolute.
    other = project / "elsewhere"
    other.mkdir()
    assert entrypoint_for(loaded, other) == f"{project / 'flows' / 'greet.py'}:greet"


def test_entrypoint_for_a_flow_defined_in_a_function_is_refused() -> None:
    @flow
    def local() -> None: ...

    with pytest.raises(InvalidArgument, match="defined inside a function"):
        entrypoint_for(local)
