"""The public surface of `weir` is chosen, not accidental, and `import weir`
stays light (DESIGN.md: the SDK never loads services, databases or FastAPI)."""

import json
import subprocess
import sys

import weir


def test_exported_names_are_pinned() -> None:
    assert sorted(weir.__all__) == sorted(
        [
            "FLOW_PARAMETERS",
            "INPUTS",
            "NO_CACHE",
            "RUN_ID",
            "TASK_SOURCE",
            "Flow",
            "Task",
            "WeirError",
            "__version__",
            "as_completed",
            "exponential_backoff",
            "flow",
            "tags",
            "task",
            "unmapped",
            "wait",
        ]
    )
    public = {name for name in dir(weir) if not name.startswith("_")}
    # Submodules show up as attributes once imported; only listed names and modules may be public.
    modules = {
        "errors",
        "v1",
        "client",
        "settings",
        "cli",
        "engine",
        "flows",
        "tasks",
        "options",
        "context",
        "cache_policies",
        "results",
        "task_runners",
        "runtime",
        "logging",
        "testing",
        "deployments",
        "workers",
    }
    assert public - set(weir.__all__) <= modules


def test_import_weir_loads_no_server_side_code() -> None:
    code = (
        "import json, sys, weir; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy','fastapi','uvicorn','asyncpg','aiosqlite','alembic','weir_kit','weir_server',"
        "'weir_gateway','weir_orchestration','weir_events'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []


def test_defining_a_flow_loads_the_engine_so_its_first_call_does_not() -> None:
    # `import weir` stays light for the CLI and the server; the engine (and the typed client
    # under it, ~0.15 s of imports) loads when a flow is defined, not during the first call.
    code = (
        "import sys, weir\n"
        "before = 'weir.engine.flow_engine' in sys.modules or 'weir.client' in sys.modules\n"
        "@weir.flow\n"
        "def f() -> int:\n"
        "    return 1\n"
        "print(before, 'weir.engine.flow_engine' in sys.modules, 'weir.client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "True", "True"]
