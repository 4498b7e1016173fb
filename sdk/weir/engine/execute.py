"""``python -m weir.engine.execute``: run one flow run a worker was assigned.

The worker starts this module as a subprocess, with the assignment in the
environment:

- ``WEIR_FLOW_RUN_ID``: the run (created from a deployment, PENDING);
- ``WEIR_FENCING_TOKEN``: the assignment's token, carried by every proposal;
- ``WEIR_ENTRYPOINT``: ``path/to/file.py:flow_function`` (or ``module:attr``),
  relative to the working directory the worker chose;
- ``WEIR_API_ADDRESS``: the server (there is no no-server mode here).

It loads the flow, reads the run's parameters, validates them like a call
would, and runs the flow in adopt mode (``flow_engine.AdoptedRun``): no new
run is created. Exit code 0 when the run ended COMPLETED, 1 otherwise, 2 when
the environment is incomplete. A run that cannot even start (entrypoint does
not load, bad parameters) is proposed FAILED with the reason, so the worker
finds it terminal and does not report a crash on top.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from weir._entrypoints import load_flow
from weir.client.types import State, StateType
from weir.engine.flow_engine import AdoptedRun, flow_run
from weir.engine.runtime import Runtime, get_runtime, shutdown_runtime
from weir.engine.states import describe
from weir.engine.steps import drive_async, drive_sync
from weir.errors import WeirError
from weir.settings import get_settings

log = logging.getLogger("weir.engine")

ENV_FLOW_RUN_ID = "WEIR_FLOW_RUN_ID"
ENV_FENCING_TOKEN = "WEIR_FENCING_TOKEN"
ENV_ENTRYPOINT = "WEIR_ENTRYPOINT"


def main() -> int:
    run_id = os.environ.get(ENV_FLOW_RUN_ID, "")
    entrypoint = os.environ.get(ENV_ENTRYPOINT, "")
    token = os.environ.get(ENV_FENCING_TOKEN) or None
    missing = [name for name, value in ((ENV_FLOW_RUN_ID, run_id), (ENV_ENTRYPOINT, entrypoint)) if not value]
    if missing:
        sys.stderr.write(f"weir.engine.execute: {', '.join(missing)} not set (this module is started by a worker)\n")
        return 2
    if not get_settings().api_address:
        # Never fall back to an embedded server: the run lives on the worker's server.
        sys.stderr.write("weir.engine.execute: WEIR_API_ADDRESS is not set\n")
        return 2
    runtime = get_runtime()
    try:
        return _execute(runtime, run_id, entrypoint, token)
    finally:
        shutdown_runtime()


def _execute(runtime: Runtime, run_id: str, entrypoint: str, token: str | None) -> int:
    try:
        run = runtime.call(runtime.client.read_flow_run(run_id))
    except WeirError as exc:
        sys.stderr.write(f"weir.engine.execute: cannot read flow run {run_id}: {exc}\n")
        return 1
    try:
        flow = load_flow(entrypoint)
        params = flow.validate((), dict(run.parameters))
    except Exception as exc:
        message = f"flow run {run_id} could not start: {describe(exc)}"
        log.error("%s", message)
        _fail(runtime, run_id, token, message)
        return 1
    steps = flow_run(flow, runtime, params, True, None, adopt=AdoptedRun(run, token))
    try:
        state: State = asyncio.run(drive_async(steps)) if flow.is_async else drive_sync(steps)
    except WeirError as exc:  # aborted, cancelled, a stale token: the run is not ours to finish
        log.error("flow run %s: %s", run_id, exc)
        return 1
    return 0 if state.is_completed() else 1


def _fail(runtime: Runtime, run_id: str, token: str | None, message: str) -> None:
    state = State(type=StateType.FAILED, message=message)
    try:
        runtime.call(runtime.client.set_flow_run_state(run_id, state, fencing_token=token))
    except WeirError as exc:
        log.warning("could not mark flow run %s failed: %s", run_id, exc)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
