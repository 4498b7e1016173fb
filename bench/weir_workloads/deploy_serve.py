"""Long-running process that serves a deployment with flow.serve().

    python deploy_serve.py [deployment-name]

Weir twin of ../shared/bench/prefect_workloads/deploy_serve.py: the same flow
(``dep-flow`` taking ``x``, one task ``inc``). Started in the background by the
harness and stopped by PID (SIGTERM drains). Needs WEIR_API_ADDRESS.

``Flow.serve`` is called at its defaults: no process limit (``limit=None``),
as ``Flow.serve`` in Prefect. Weir does not poll: the server pushes each run
to this process over its worker stream.

The worker loads this file again in each run's subprocess
(``python -m weir.engine.execute`` with entrypoint ``deploy_serve.py:dep_flow``);
the ``__main__`` guard keeps that from serving. The same file is the
entrypoint of the work-pool deployment (deploy_worker_setup.py).

Diagnostics only (deploy_diag.py): when BENCH_DEPLOY_DIAG_DIR is set, each run
writes one JSON file there with the wall-clock times of its process start,
the load of this module and the start of the flow body.
"""

import json
import os
import sys
import time
from pathlib import Path

T_MODULE = time.time()

from weir import flow, task  # noqa: E402

HERE = Path(__file__).resolve().parent


@task
def inc(x: int) -> int:
    return x + 1


@flow
def dep_flow(x: int = 0) -> int:
    diag = os.environ.get("BENCH_DEPLOY_DIAG_DIR")
    if diag:
        _diag_record(diag)
    return inc(x)


def _process_created() -> float:
    """Wall-clock time this process was forked (10 ms ticks): its age from /proc/self/stat
    against CLOCK_BOOTTIME (psutil's create_time() goes through the whole-second boot time
    and was off by ~0.7 s here)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    now_wall, now_boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
    return now_wall - (now_boot - start_ticks / os.sysconf("SC_CLK_TCK"))


def _diag_record(directory: str) -> None:
    from weir.context import flow_run_ctx

    run_id = flow_run_ctx.get().flow_run_id
    record = {
        "flow_run_id": run_id,
        "pid": os.getpid(),
        "process_created": _process_created(),  # fork of the run's process (10 ms resolution)
        "module_loaded": T_MODULE,  # after `import weir` + read_flow_run in weir.engine.execute
        "body_started": time.time(),
        "cpu_to_body_s": sum(os.times()[:2]),  # user+sys of this process until the body starts
    }
    Path(directory, f"{run_id}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "bench-serve"
    dep_flow.serve(name, working_directory=str(HERE))
