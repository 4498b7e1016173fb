"""`weir deploy`: create or update the deployments a project file declares.

The project file (``weir.yaml`` by default) lists deployments with the same
fields as ``Flow.deploy``; paths are relative to the file's folder, which
becomes each deployment's working directory::

    deployments:
      - name: nightly
        entrypoint: flows/etl.py:etl          # or package.module:function
        work_pool:
          name: local
          work_queue_name: high               # optional
          job_variables: {env: {LOG_LEVEL: debug}}
        schedules:
          - cron: "0 3 * * *"
            timezone: Europe/Paris
          - interval: 3600                    # seconds
            active: false
        parameters: {full: true}
        tags: [prod]
        description: the nightly load
        version: "1.4"
        concurrency_limit: 1
        collision_strategy: CANCEL_NEW        # or ENQUEUE
        paused: false

Each flow is loaded from its entrypoint for its name, parameter schema and
retry policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, print_json, run, table
from weir.errors import InvalidArgument, WeirError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleSpec(_Spec):
    cron: str | None = None
    #: Seconds.
    interval: float | None = Field(default=None, gt=0)
    rrule: str | None = None
    timezone: str = "UTC"
    anchor: AwareDatetime | None = None
    active: bool = True


class WorkPoolSpec(_Spec):
    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentSpec(_Spec):
    name: str
    entrypoint: str
    work_pool: WorkPoolSpec
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    version: str | None = None
    concurrency_limit: int = Field(default=0, ge=0)
    collision_strategy: str = "ENQUEUE"
    paused: bool = False


class ProjectFile(_Spec):
    deployments: list[DeploymentSpec]


def _path(loc: tuple[int | str, ...]) -> str:
    """``("deployments", 0, "work_pool", "name")`` -> ``deployments[0].work_pool.name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_project(path: Path) -> ProjectFile:
    """The deployments a project file declares; any mistake is an InvalidArgument naming the field."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"no project file {path} (write one, or pass --file)", field="file") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}", field="file") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path} is not valid YAML: {exc}", field="file") from None
    try:
        return ProjectFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _path(first["loc"]) or "deployments"
        raise InvalidArgument(f"{path}: {field}: {first['msg']}", field=field) from None


def _choose(specs: list[DeploymentSpec], names: list[str], everything: bool) -> list[tuple[int, DeploymentSpec]]:
    indexed = list(enumerate(specs))
    if everything:
        return indexed
    if not names:
        if len(specs) == 1:
            return indexed
        listed = ", ".join(s.name for s in specs) or "none"
        raise InvalidArgument(f"the project file declares {len(specs)} deployments ({listed}): pick --name or --all")
    chosen = []
    for wanted in names:
        short = wanted.rpartition("/")[2]  # "flow/name" works too
        matches = [(i, s) for i, s in indexed if s.name == short]
        if not matches:
            listed = ", ".join(s.name for s in specs)
            raise InvalidArgument(f"no deployment {wanted!r} in the project file (it has: {listed})", field="name")
        chosen.extend(matches)
    return chosen


def _draft(index: int, spec: DeploymentSpec, base: Path) -> Any:
    from weir._entrypoints import load_flow
    from weir.client.types import Schedule
    from weir.deployments import build_deployment

    where = f"deployments[{index}]"
    try:
        schedules = []
        for number, s in enumerate(spec.schedules):
            try:
                schedules.append(
                    Schedule(
                        cron=s.cron,
                        rrule=s.rrule,
                        interval=s.interval,
                        timezone=s.timezone,
                        anchor=s.anchor,
                        active=s.active,
                    )
                )
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise InvalidArgument(message, field=f"schedules[{number}]") from None
        flow = load_flow(spec.entrypoint, base)
        return build_deployment(
            flow,
            name=spec.name,
            work_pool_name=spec.work_pool.name,
            work_queue_name=spec.work_pool.work_queue_name,
            job_variables=spec.work_pool.job_variables,
            schedules=schedules,
            parameters=spec.parameters,
            tags=spec.tags,
            description=spec.description,
            version=spec.version,
            concurrency_limit=spec.concurrency_limit,
            collision_strategy=spec.collision_strategy,
            paused=spec.paused,
            entrypoint=spec.entrypoint,
            working_directory=str(base),
        )
    except WeirError as exc:
        field = f"{where}.{exc.field}" if exc.field else where
        raise type(exc)(f"{where} ({spec.name}): {exc.message}", field=field) from None


def deploy(
    file: Annotated[Path, typer.Option("--file", "-f", help="The project file.")] = Path("weir.yaml"),
    name: Annotated[list[str] | None, typer.Option("--name", "-n", help="Deployment to deploy (repeatable).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Deploy every deployment of the file.")] = False,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Create or update deployments declared in a project file (weir.yaml)."""
    from weir.cli.deployments import describe_schedule
    from weir.deployments import apply_deployment

    if name and everything:
        raise typer.BadParameter("give --name or --all, not both", param_hint="--all")
    project = read_project(file)
    base = file.resolve().parent
    drafts = [_draft(i, spec, base) for i, spec in _choose(project.deployments, name or [], everything)]

    async def work(client: Any) -> list[Any]:
        return [await apply_deployment(client, draft) for draft in drafts]

    deployed = run(work)
    if output is OutputFormat.json:
        print_json(deployed)
        return
    rows = table("DEPLOYMENT", "ID", "POOL", "SCHEDULES")
    rows.columns[0].no_wrap = True
    for d in deployed:
        schedules = "\n".join(describe_schedule(s) for s in d.schedules) or "-"
        rows.add_row(d.full_name, d.id, d.work_pool_name or "-", schedules)
    console.print(rows)
    console.print(f"Deployed {len(deployed)}; run one with: weir deployment run {deployed[0].full_name}", markup=False)
