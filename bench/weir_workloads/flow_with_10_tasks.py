"""One-off script: a flow with 10 sequential trivial tasks.

Run it with no WEIR_API_ADDRESS to measure no-server mode (the first flow call
starts the embedded stack in-process under WEIR_HOME). Prints one
"RESULT {json}" line with in-process timings; the harness measures the whole
process externally, including interpreter exit (embedded stack shutdown).
"""

import json
import time

T0 = time.perf_counter()
from weir import flow, task  # noqa: E402

T_IMPORT = time.perf_counter() - T0


@task
def inc(x: int) -> int:
    return x + 1


@flow
def flow_with_10_tasks() -> int:
    return sum(inc(i) for i in range(10))


if __name__ == "__main__":
    t1 = time.perf_counter()
    assert flow_with_10_tasks() == 55
    t_flow = time.perf_counter() - t1
    print(
        "RESULT "
        + json.dumps({"import_s": T_IMPORT, "flow_call_s": t_flow, "to_flow_end_s": time.perf_counter() - T0}),
        flush=True,
    )
