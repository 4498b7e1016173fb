"""Diagnostic: where a short flow run's time goes, per engine round trip.

    WEIR_API_ADDRESS=127.0.0.1:4270 python diag_flow_calls.py [--runs 50] [--tasks 10]

Wraps Runtime.submit (the unary calls: create_flow_run, set_flow_run_state,
read_flow_run) and RunSync.flush (the SyncRuns ack wait) with timers, runs R
flows of T sequential tasks, and prints the median milliseconds of each kind
of call per flow run, plus the rest (the flow body and engine code).
Prints one "RESULT {json}" line.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time

from weir import flow, task
from weir.engine import runtime as rt_mod
from weir.engine import sync_stream

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def _timed_future(name, fut):
    t0 = time.perf_counter()
    fut.add_done_callback(lambda _f: TIMES[name].append(time.perf_counter() - t0))
    return fut


_orig_submit = rt_mod.Runtime.submit


def submit(self, coro):
    return _timed_future(coro.__qualname__.split(".")[-1], _orig_submit(self, coro))


_orig_flush = sync_stream.RunSync.flush


def flush(self):
    return _timed_future("sync_flush", _orig_flush(self))


rt_mod.Runtime.submit = submit
sync_stream.RunSync.flush = flush


@task
def inc(x: int) -> int:
    return x + 1


@flow
def flow_t(t: int) -> int:
    return sum(inc(i) for i in range(t))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--tasks", type=int, default=10)
    a = p.parse_args()
    flow_t(a.tasks)  # warm-up: connect, first stream
    TIMES.clear()
    per = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        flow_t(a.tasks)
        per.append(time.perf_counter() - t0)
    out = {"per_run_ms_median": statistics.median(per) * 1000}
    calls = {}
    for name, v in TIMES.items():
        calls[name] = {
            "per_run": len(v) / a.runs,
            "median_ms": statistics.median(v) * 1000,
            "total_ms_per_run": sum(v) / a.runs * 1000,
        }
    out["calls"] = calls
    out["accounted_ms_per_run"] = sum(c["total_ms_per_run"] for c in calls.values())
    for name, c in sorted(calls.items(), key=lambda kv: -kv[1]["total_ms_per_run"]):
        print(
            f"{name:24s} x{c['per_run']:.1f}/run  median {c['median_ms']:6.2f} ms  "
            f"total {c['total_ms_per_run']:6.2f} ms/run"
        )
    print(f"flow run median {out['per_run_ms_median']:.2f} ms, accounted {out['accounted_ms_per_run']:.2f} ms")
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
