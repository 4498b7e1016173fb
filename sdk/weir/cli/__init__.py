"""The ``weir`` command line (console script ``weir = "weir.cli:main"``).

Command groups live one per module; the server-hosting commands import the
services only inside their function bodies, so ``weir flow-run ls`` never
loads SQLAlchemy, FastAPI or a service.
"""

import typer

from weir.cli import (
    deploy,
    deployments,
    events,
    flow_runs,
    gateway,
    health,
    server,
    service,
    task_runs,
    work_pools,
    work_queues,
    workers,
)
from weir.cli._common import WeirGroup

__all__ = ["app", "main"]

app = typer.Typer(
    name="weir",
    help="Weir: a workflow orchestrator. Point it at a server with WEIR_API_ADDRESS.",
    cls=WeirGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("health")(health.health)
app.add_typer(flow_runs.app, name="flow-run")
app.add_typer(task_runs.app, name="task-run")
app.add_typer(events.app, name="events")
app.add_typer(deployments.app, name="deployment")
app.add_typer(work_pools.app, name="work-pool")
app.add_typer(work_queues.app, name="work-queue")
app.add_typer(workers.worker_app, name="worker")
app.command("deploy")(deploy.deploy)
app.add_typer(server.app, name="server")
app.command("service")(service.service)
app.command("gateway")(gateway.gateway)


def main() -> None:
    """Entry point of the ``weir`` console script."""
    app()
