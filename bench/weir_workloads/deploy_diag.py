"""Where the time of one deployment run goes: created -> PENDING -> process -> RUNNING.

    python deploy_diag.py [--runs 5] [--gap 2.0] [--mode serve|worker]

Needs WEIR_API_ADDRESS (a running server) and is otherwise self-contained:
starts ``deploy_serve.py`` (serve mode) or deploys dep_flow to a process pool
and starts ``weir worker start`` (worker mode), with BENCH_DEPLOY_DIAG_DIR set
so each run's process records its own timestamps, triggers ``--runs`` runs one
at a time (``--gap`` seconds apart, each waited for), stops what it started (by
PID) and prints one "RESULT {json}" line with, per run and as medians (seconds):

    created_to_pending      server: CreateFlowRunFromDeployment -> orchestration
                            create -> dispatcher claim (PENDING, fencing token)
    pending_to_fork         worker: Assign received on its stream, ack, spawn
                            (setpriv + exec of python)
    fork_to_module_loaded   run process: interpreter start, `import weir` (+grpc,
                            pydantic), SDK runtime start, read_flow_run, import
                            of the flow's file
    module_loaded_to_running  flow engine: parameter validation, RUNNING proposal
                            (with the fencing token) accepted by the server
    running_to_body         engine after RUNNING until the flow body starts
    created_to_running      the total, as deploy_trigger.py measures it
    run_process_cpu_to_body user+sys CPU seconds the run's process used until
                            its flow body started (what a burst multiplies)

plus, measured apart, ``import_only_s``: a fresh ``python -m weir.engine.execute``
with no assignment (it exits 2 right after its imports), and ``bare_python_s``.
``process_created`` has 10 ms resolution (/proc/self/stat start time).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from weir.client import StateType, WeirClient
from weir.deployments import run_deployment
from weir.errors import NotFound

HERE = Path(__file__).resolve().parent
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def timed(cmd, reps=5):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in ("WEIR_FLOW_RUN_ID", "WEIR_ENTRYPOINT")},
        )
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _trigger(a, name, diag_dir, rows):
    with WeirClient() as c:
        deadline = time.time() + 60
        while True:
            try:
                dep = c.read_deployment(name=f"dep-flow/{name}")
                pool = dep.work_pool_name
                if any(w.status == "ONLINE" and w.free_slots > 0 for w in c.iter_workers(pool)):
                    break
            except NotFound:
                pass
            if time.time() > deadline:
                raise SystemExit("no worker came online")
            time.sleep(0.2)
        time.sleep(1.0)  # let the worker's first heartbeat settle
        for i in range(a.runs):
            fr = run_deployment(f"dep-flow/{name}", parameters={"x": i}, timeout=0)
            end = time.time() + 60
            while time.time() < end:
                fr = c.read_flow_run(fr.id)
                if fr.state and fr.state.type in TERMINAL:
                    break
                time.sleep(0.1)
            first = {}
            for s in sorted(c.iter_states(flow_run_id=fr.id), key=lambda s: s.timestamp):
                first.setdefault(s.type.value, s.timestamp.timestamp())
            rec_path = Path(diag_dir) / f"{fr.id}.json"
            rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
            created = fr.created.timestamp()
            row = {"flow_run_id": fr.id, "final": fr.state.type.value if fr.state else None}
            if rec and "PENDING" in first and "RUNNING" in first:
                row.update(
                    {
                        "created_to_pending": first["PENDING"] - created,
                        "pending_to_fork": rec["process_created"] - first["PENDING"],
                        "fork_to_module_loaded": rec["module_loaded"] - rec["process_created"],
                        "module_loaded_to_running": first["RUNNING"] - rec["module_loaded"],
                        "running_to_body": rec["body_started"] - first["RUNNING"],
                        "created_to_running": first["RUNNING"] - created,
                        "running_to_completed": first.get("COMPLETED", float("nan")) - first["RUNNING"],
                        "run_process_cpu_to_body": rec["cpu_to_body_s"],
                    }
                )
            rows.append(row)
            time.sleep(a.gap)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gap", type=float, default=2.0)
    ap.add_argument("--mode", choices=["serve", "worker"], default="serve")
    ap.add_argument("--pool", default="bench-diag")
    a = ap.parse_args()

    diag_dir = tempfile.mkdtemp(prefix="weir-deploy-diag-")
    env = {**os.environ, "BENCH_DEPLOY_DIAG_DIR": diag_dir}
    name = f"bench-diag-{a.mode}-{os.getpid()}"
    if a.mode == "serve":
        cmd = [sys.executable, str(HERE / "deploy_serve.py"), name]
    else:
        subprocess.run(
            [sys.executable, str(HERE / "deploy_worker_setup.py"), a.pool, name], check=True, stdout=subprocess.DEVNULL
        )
        cmd = [str(Path(sys.executable).parent / "weir"), "worker", "start", "--pool", a.pool]
    rows = []
    with open(Path(diag_dir) / "server-side.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _trigger(a, name, diag_dir, rows)
        finally:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    keys = [
        "created_to_pending",
        "pending_to_fork",
        "fork_to_module_loaded",
        "module_loaded_to_running",
        "running_to_body",
        "created_to_running",
        "running_to_completed",
        "run_process_cpu_to_body",
    ]
    med = {k: statistics.median([r[k] for r in rows if k in r]) for k in keys if any(k in r for r in rows)}
    out = {
        "mode": a.mode,
        "runs": rows,
        "median": med,
        "import_only_s": timed([sys.executable, "-m", "weir.engine.execute"]),
        "bare_python_s": timed([sys.executable, "-c", "pass"]),
        "diag_dir": diag_dir,
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
