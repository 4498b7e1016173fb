"""Weir implementation of the orchestrator benchmark workloads.

Same contract as ``../shared/bench/prefect_workloads/workloads.py``:

    python workloads.py <workload> [options]

prints exactly one line starting with ``RESULT `` followed by a JSON object.
Keys common to all workloads: workload, wall_s (the timed region: the flow
call(s) only), import_s, rss_end_mb, maxrss_mb, max_threads.

Workloads:
    seq     --n N               one flow, N sequential trivial tasks (x+1)
    submit  --n N               one flow, N tasks via task.submit(), wait all
    map     --n N               one flow, N tasks via task.map(), wait all
    flows   --runs R --tasks T  R flow runs one after another, T seq tasks each
    retry   --k K               K tasks with retries=2 failing twice, vs clean

(``concurrency`` is not implemented: Weir has no global concurrency limits in
the SDK yet.) Needs WEIR_API_ADDRESS (host:grpc_port); persist lag is read
through the typed client, as the API shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time

T_PROC0 = time.perf_counter()

import psutil  # noqa: E402

_T_IMP0 = time.perf_counter()
from weir import flow, task, wait  # noqa: E402
from weir.context import flow_run_ctx  # noqa: E402

IMPORT_S = time.perf_counter() - _T_IMP0


class Sampler(threading.Thread):
    """Samples thread count and RSS of this process every `interval` seconds."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.max_threads = threading.active_count()  # Python threads, as the Prefect side counts
        self.proc = psutil.Process()
        self.max_os_threads = self.proc.num_threads()  # also gRPC C-core threads
        self.max_rss = self.proc.memory_info().rss
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            self.max_threads = max(self.max_threads, threading.active_count())
            try:
                self.max_os_threads = max(self.max_os_threads, self.proc.num_threads())
                self.max_rss = max(self.max_rss, self.proc.memory_info().rss)
            except Exception:
                pass
            self._stop_ev.wait(self.interval)

    def stop(self) -> None:
        self._stop_ev.set()
        self.join()


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_CLIENT = None


def client():
    global _CLIENT
    if _CLIENT is None:
        from weir.client import WeirClient

        _CLIENT = WeirClient(os.environ["WEIR_API_ADDRESS"])
    return _CLIENT


def count_task_runs(flow_run_ids: list[str], completed_only: bool = True) -> list:
    from weir.client.types import StateType, TaskRunFilter

    flt = TaskRunFilter(flow_run_ids=tuple(flow_run_ids), state_types=(StateType.COMPLETED,) if completed_only else ())
    return list(client().iter_task_runs(flt, page_size=1000))


def persisted_task_runs(flow_run_ids: list[str], expected: int, timeout: float = 120.0):
    """After the flow returned, wait until the API shows `expected` COMPLETED
    task runs for it. Returns (seconds waited, count seen). Weir acknowledges
    task runs after commit and the flow waits for the acks, so this should be
    the time of a single read (one list call per 1000 task runs)."""
    if not os.environ.get("WEIR_API_ADDRESS"):
        return None, None
    from weir.client.types import TaskRunFilter

    # connect the channel outside the timed region (one tiny read of another filter)
    client().list_task_runs(TaskRunFilter(ids=("00000000-0000-0000-0000-000000000000",)), page_size=1)
    t0 = time.perf_counter()
    n, reads = -1, 0
    while time.perf_counter() - t0 < timeout:
        n = len(count_task_runs(flow_run_ids))
        reads += 1
        if n >= expected:
            break
        time.sleep(0.05)
    _BODY["persist_reads"] = reads  # 1 = all COMPLETED at the first read after return
    return time.perf_counter() - t0, n


# --------------------------------------------------------------------------
@task
def inc(x: int) -> int:
    return x + 1


_BODY: dict = {}


def _note_run_id() -> None:
    ctx = flow_run_ctx.get()
    _BODY["flow_run_id"] = ctx.flow_run_id if ctx else None


@flow
def seq_flow(n: int) -> int:
    _note_run_id()
    t0 = time.perf_counter()
    s = 0
    for i in range(n):
        s += inc(i)
    _BODY["s"] = time.perf_counter() - t0
    return s


@flow
def submit_flow(n: int) -> int:
    _note_run_id()
    t0 = time.perf_counter()
    futs = [inc.submit(i) for i in range(n)]
    wait(futs)
    r = sum(f.result() for f in futs)
    _BODY["s"] = time.perf_counter() - t0
    return r


@flow
def map_flow(n: int) -> int:
    _note_run_id()
    t0 = time.perf_counter()
    futs = inc.map(range(n))
    r = sum(futs.result())
    _BODY["s"] = time.perf_counter() - t0
    return r


def _run_one_flow(fl, n: int, check_persist: bool = True) -> dict:
    t0 = time.perf_counter()
    state = fl(n, return_state=True)
    wall = time.perf_counter() - t0
    assert state.is_completed(), state
    assert state.result() == sum(range(1, n + 1)), state.result()
    out = {
        "wall_s": wall,
        "per_task_ms": wall / n * 1000,
        "n": n,
        "body_s": _BODY["s"],
        "per_task_ms_body": _BODY["s"] / n * 1000,
        "flow_fixed_s": wall - _BODY["s"],
    }
    fr = _BODY["flow_run_id"]
    if check_persist:
        lag, seen = persisted_task_runs([fr], n)
        out["persist_lag_s"] = lag
        out["task_runs_persisted"] = seen
        out["persist_reads"] = _BODY.get("persist_reads")
    out["flow_run_id"] = fr
    return out


def w_seq(a):
    return _run_one_flow(seq_flow, a.n)


def w_submit(a):
    return _run_one_flow(submit_flow, a.n)


def w_map(a):
    return _run_one_flow(map_flow, a.n)


# --------------------------------------------------------------------------
@flow
def flow_t(t: int) -> int:
    _note_run_id()
    s = 0
    for i in range(t):
        s += inc(i)
    return s


def w_flows(a):
    per, rss_track, ids = [], [], []
    t0 = time.perf_counter()
    for r in range(a.runs):
        t1 = time.perf_counter()
        st = flow_t(a.tasks, return_state=True)
        per.append(time.perf_counter() - t1)
        assert st.is_completed(), st
        ids.append(_BODY["flow_run_id"])
        if r % 10 == 9 or r == 0:
            rss_track.append([r + 1, round(rss_mb(), 1)])
    wall = time.perf_counter() - t0
    lag, seen = persisted_task_runs(ids, a.runs * a.tasks)
    s = sorted(per)
    return {
        "persist_lag_s": lag,
        "persist_reads": _BODY.get("persist_reads"),
        "task_runs_persisted": seen,
        "wall_s": wall,
        "runs": a.runs,
        "tasks_per_run": a.tasks,
        "per_run_ms_mean": wall / a.runs * 1000,
        "per_run_ms_median": s[len(s) // 2] * 1000,
        "per_run_ms_first": per[0] * 1000,
        "per_run_ms_max": s[-1] * 1000,
        "per_run_ms_last10_mean": sum(per[-10:]) / len(per[-10:]) * 1000,
        "per_run_ms_first10_mean": sum(per[:10]) / len(per[:10]) * 1000,
        "rss_mb_after_run": rss_track,
    }


# --------------------------------------------------------------------------
_attempts: dict = {}
_attempts_lock = threading.Lock()


@task(retries=2, retry_delay_seconds=0)
def flaky(key: str) -> int:
    with _attempts_lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        n = _attempts[key]
    if n <= 2:
        raise ValueError(f"planned failure {n} for {key}")
    return n


@task(retries=2, retry_delay_seconds=0)
def clean(key: str) -> int:
    return 1


@flow
def retry_flow(k: int, tag: str, use_flaky: bool) -> int:
    _note_run_id()
    fn = flaky if use_flaky else clean
    tot, durs = 0, []
    for i in range(k):
        t0 = time.perf_counter()
        tot += fn(f"{tag}-{i}")
        durs.append(time.perf_counter() - t0)
    _BODY["durs"] = durs
    return tot


def _median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def w_retry(a):
    """Per-task-call time (inside the flow) of a task with retries=2 that fails
    twice then succeeds, vs the same task succeeding first time."""
    retry_flow(1, "warmup", False)  # pay one-off client setup outside timing
    k = a.k
    t0 = time.perf_counter()
    assert retry_flow(k, "clean", False) == k
    t_clean = time.perf_counter() - t0
    clean_durs = _BODY["durs"]
    t0 = time.perf_counter()
    st = retry_flow(k, "flaky", True, return_state=True)
    t_flaky = time.perf_counter() - t0
    flaky_durs = _BODY["durs"]
    assert st.is_completed() and st.result() == 3 * k, st
    c_ms, f_ms = _median(clean_durs) * 1000, _median(flaky_durs) * 1000
    out = {
        "k": k,
        "clean_call_ms": c_ms,
        "flaky_call_ms": f_ms,
        "overhead_per_task_ms": f_ms - c_ms,
        "overhead_per_retry_ms": (f_ms - c_ms) / 2,
        "first_flaky_call_ms": flaky_durs[0] * 1000,
        "clean_flow_s": t_clean,
        "flaky_flow_s": t_flaky,
        "wall_s": t_flaky,
        "last_flow_run_id": _BODY["flow_run_id"],
    }
    if os.environ.get("WEIR_API_ADDRESS"):
        # no sleep needed (Prefect waits 2 s here): the flow returned after the acks
        trs = count_task_runs([out["last_flow_run_id"]], completed_only=False)
        out["server_run_counts"] = sorted({t.run_count for t in trs})
        out["server_task_runs_seen"] = len(trs)
    return out


# --------------------------------------------------------------------------
def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--k", type=int, default=20)
    a = p.parse_args()
    fn = globals()["w_" + a.workload]
    sampler = Sampler()
    sampler.start()
    out = fn(a)
    sampler.stop()
    out.update(
        workload=a.workload,
        import_s=IMPORT_S,
        rss_end_mb=rss_mb(),
        maxrss_mb=maxrss_mb(),
        max_threads=sampler.max_threads,
        max_os_threads=sampler.max_os_threads,
        proc_elapsed_before_exit_s=time.perf_counter() - T_PROC0,
    )
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
