#!/usr/bin/env python3
"""SyncRuns ingest end to end: the server's CPU per task run until every event is relayed and stored.

    python bench/spine_sustained.py [--backend postgres|sqlite] [--reps 3]

``spine.py``'s ingest figure times the burst, from the first message to the
last ack; the outbox relay and the events persister defer to that work and
finish after it. This script also waits for them: after each burst it waits
until the server process is back to its idle CPU, and prints the burst rate,
the server CPU per task run (idle CPU subtracted) and the rate to a drained
server. Prints one ``RESULT {json}`` line. No asserts: figures only.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psutil
from spine import Server, bench_ingest


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="postgres")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    server = Server(Path(tempfile.mkdtemp(prefix="weir-bench-")), args.backend)
    server.start()
    try:
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        bench_ingest(server, 2000, 500)  # warm up, then let it drain
        time.sleep(3)
        start = _cpu(proc)
        time.sleep(3)
        idle = (_cpu(proc) - start) / 3
        reps = []
        for _ in range(args.reps):
            cpu0, t0 = _cpu(proc), time.perf_counter()
            burst = bench_ingest(server, args.records, 500)
            while True:  # drained: a second at (about) idle CPU
                before = _cpu(proc)
                time.sleep(1.0)
                if _cpu(proc) - before < idle + 0.03:
                    break
            wall = time.perf_counter() - t0 - 1.0
            busy = before - cpu0 - idle * wall
            reps.append(
                {
                    "burst_per_s": burst["records_per_s"],
                    "cpu_us_per_record": busy / args.records * 1e6,
                    "drained_s": wall,
                    "drained_per_s": args.records / wall,
                }
            )
            print(
                f"[{args.backend}] burst {burst['records_per_s']:.0f}/s; server CPU "
                f"{busy / args.records * 1e6:.0f} us per task run with relay and persister; "
                f"drained in {wall:.2f}s ({args.records / wall:.0f}/s)"
            )
        print(f"RESULT {json.dumps({'backend': args.backend, 'idle_cpu': idle, 'reps': reps})}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
