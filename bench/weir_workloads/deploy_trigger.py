"""Trigger N runs of a deployment with run_deployment(..., timeout=0) and
measure, from the server's state history, creation -> Running -> Completed.

    python deploy_trigger.py --deployment dep-flow/bench-serve --n 20 \
        --mode burst|staggered [--gap 3.7] [--timeout 900]

Weir twin of ../shared/bench/prefect_workloads/deploy_trigger.py, same
measurement and the same RESULT keys:

burst:     create all N runs back to back, then wait for all.
staggered: create one run every --gap seconds.

Each run's first PENDING / RUNNING / COMPLETED state timestamp (the server's
``list_states`` history) is compared with the run's ``created``. Extra keys
(not on the Prefect side): ``pending_to_running_s`` and raw lists per run,
``first_created_to_last_running_s`` (burst: how long until all N are Running,
counted from the first creation) and ``ids``. Prints one "RESULT {json}" line.
Needs WEIR_API_ADDRESS.
"""

import argparse
import json
import math
import time

from weir.client import FlowRunFilter, StateType, WeirClient
from weir.deployments import run_deployment
from weir.errors import NotFound

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def pct(vals, p):
    s = sorted(vals)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(vals):
    s = sorted(vals)
    return {
        "median": s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2,
        "p95": pct(s, 95),
        "min": s[0],
        "max": s[-1],
        "n": len(s),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployment", default="dep-flow/bench-serve")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--mode", choices=["burst", "staggered"], default="burst")
    ap.add_argument("--gap", type=float, default=3.7)
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()

    with WeirClient() as c:
        # The serving process registers the deployment after it starts; its worker
        # stream connects right after. Wait for the deployment, then for a worker.
        t0 = time.time()
        while True:
            try:
                dep = c.read_deployment(name=a.deployment)
                break
            except NotFound:
                if time.time() - t0 > 120:
                    raise
                time.sleep(0.2)
        t_dep = time.time() - t0
        while True:
            # ONLINE with credit: a worker of an earlier rep that is draining has 0 free slots.
            workers = [w for w in c.iter_workers(dep.work_pool_name) if w.status == "ONLINE" and w.free_slots > 0]
            if workers or time.time() - t0 > 120:
                break
            time.sleep(0.2)
        t_worker = time.time() - t0

        ids = []
        t_start = time.perf_counter()
        for i in range(a.n):
            fr = run_deployment(a.deployment, parameters={"x": i}, timeout=0)
            ids.append(fr.id)
            if a.mode == "staggered" and i < a.n - 1:
                time.sleep(a.gap)
        t_created = time.perf_counter() - t_start

        deadline = time.time() + a.timeout
        while True:
            runs = c.list_flow_runs(FlowRunFilter(ids=tuple(ids)), page_size=len(ids)).items
            done = [r for r in runs if r.state and r.state.type in TERMINAL]
            if len(done) == len(ids) or time.time() > deadline:
                break
            time.sleep(0.25)
        t_all = time.perf_counter() - t_start

        to_pending, to_running, to_completed, run_dur, pend_to_run, bad = [], [], [], [], [], []
        created_all, running_all = [], []
        for fid in ids:
            fr = c.read_flow_run(fid)
            states = list(c.iter_states(flow_run_id=fid))
            first = {}
            for s in sorted(states, key=lambda s: s.timestamp):
                first.setdefault(s.type.value, s.timestamp)
            created = fr.created
            created_all.append(created)
            if "COMPLETED" not in first or "RUNNING" not in first:
                bad.append(
                    {
                        "id": fid,
                        "state": fr.state.type.value if fr.state else None,
                        "states": [s.type.value for s in states],
                    }
                )
                continue
            running_all.append(first["RUNNING"])
            if "PENDING" in first:
                to_pending.append((first["PENDING"] - created).total_seconds())
                pend_to_run.append((first["RUNNING"] - first["PENDING"]).total_seconds())
            to_running.append((first["RUNNING"] - created).total_seconds())
            to_completed.append((first["COMPLETED"] - created).total_seconds())
            run_dur.append((first["COMPLETED"] - first["RUNNING"]).total_seconds())

    out = {
        "mode": a.mode,
        "n": a.n,
        "wait_deployment_s": t_dep,
        "wait_worker_s": t_worker,
        "workers_online": len(workers),
        "create_all_s": t_created,
        "wall_s": t_all,
        "not_completed": bad,
        "created_to_pending_s": summary(to_pending) if to_pending else None,
        "created_to_running_s": summary(to_running) if to_running else None,
        "created_to_completed_s": summary(to_completed) if to_completed else None,
        "running_to_completed_s": summary(run_dur) if run_dur else None,
        "pending_to_running_s": summary(pend_to_run) if pend_to_run else None,
        "first_created_to_last_running_s": (
            (max(running_all) - min(created_all)).total_seconds() if running_all and not bad else None
        ),
        "raw_created_to_pending_s": to_pending,
        "raw_pending_to_running_s": pend_to_run,
        "raw_created_to_running_s": to_running,
        "raw_created_to_completed_s": to_completed,
        "ids": ids,
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
