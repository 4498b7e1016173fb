"""``Flow.serve``: deploy a flow and be its worker, in one blocking call.

::

    if __name__ == "__main__":
        etl.serve("nightly", cron="0 3 * * *", limit=2)

registers the deployment ``etl/nightly`` on a pool of its own,
``serve-<flow>-<name>`` (type ``serve``, created when missing), then runs
the same process worker as ``weir worker start`` in this process, until
SIGINT/SIGTERM (a first signal drains, a second stops the runs). Each run
executes in a subprocess that loads the flow from its source file, so the
flow must be defined at module level of a file.

A server is required (``WEIR_API_ADDRESS``): the runs' processes must reach
the same server, which the embedded no-server mode cannot offer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from weir.errors import FailedPrecondition, InvalidArgument
from weir.settings import Settings, get_settings

__all__ = ["serve_flow", "serve_pool_name"]

log = logging.getLogger("weir.worker")


def serve_pool_name(flow_name: str, deployment_name: str) -> str:
    """``serve-<flow slug>-<name slug>``: the pool that belongs to one served deployment."""
    return f"serve-{_slug(flow_name)}-{_slug(deployment_name)}"


def serve_flow(
    flow: Any,
    name: str,
    *,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str = "UTC",
    parameters: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    limit: int | None = None,
    description: str | None = None,
    version: str | None = None,
    paused: bool = False,
    concurrency_limit: int = 0,
    **extra: Any,
) -> None:
    """Deploy ``flow`` as ``name`` and run its runs in subprocesses of this process until interrupted.

    Schedules (``cron``, ``interval``, ``rrule`` in ``timezone``), default
    ``parameters``, ``tags``, ``description``, ``version``, ``paused`` and
    ``concurrency_limit`` go to the deployment, as do the other options of
    :func:`weir.deployments.deploy` passed in ``extra`` (``job_variables``,
    ``schedules`` ...). ``limit`` caps how many runs execute at once.
    """
    settings = get_settings()
    if not settings.api_address:
        raise FailedPrecondition(
            "Flow.serve needs a Weir server: start one with `weir server start` and set WEIR_API_ADDRESS "
            "to its address (the served runs execute in subprocesses that must reach the same server)"
        )
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}", field="limit")
    from weir.deployments import build_deployment

    pool = serve_pool_name(flow.name, name)
    try:
        draft = build_deployment(
            flow,
            name=name,
            work_pool_name=pool,
            cron=cron,
            interval=interval,
            rrule=rrule,
            timezone=timezone,
            parameters=parameters,
            tags=tags,
            description=description,
            version=version,
            paused=paused,
            concurrency_limit=concurrency_limit,
            **extra,
        )
    except TypeError as exc:  # an option deploy() does not have
        raise InvalidArgument(f"Flow.serve: {exc}") from None
    asyncio.run(_serve(settings, draft, pool, limit))


async def _serve(settings: Settings, draft: Any, pool: str, limit: int | None) -> None:
    from weir.client import AsyncWeirClient
    from weir.deployments import apply_deployment
    from weir.workers.worker import ProcessWorker, ensure_work_pool, log_to_stderr, worker_env_for

    log_to_stderr()
    async with AsyncWeirClient.from_settings(settings) as client:
        await ensure_work_pool(client, pool, type="serve")
        deployment = await apply_deployment(client, draft)
        full_name = f"{deployment.flow_name}/{deployment.name}"
        sys.stdout.write(f"serving deployment {full_name}; run it with: weir deployment run {full_name}\n")
        sys.stdout.flush()
        worker = ProcessWorker(
            client,
            pool=pool,
            limit=limit,
            worker_env=worker_env_for(settings),
            # Signal handlers can only be set from the main thread; elsewhere the caller stops us.
            handle_signals=threading.current_thread() is threading.main_thread(),
        )
        code = await worker.run()
        log.info("stopped serving %s (%s)", full_name, "drained" if code == 0 else "runs were stopped")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
