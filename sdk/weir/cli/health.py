"""`weir health`: is every Weir service up?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, print_json, run


def health(output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table) -> None:
    """Ask the server's grpc.health.v1 for each service; exit 1 unless all are SERVING."""
    statuses: dict[str, str] = run(lambda client: client.health())
    if output is OutputFormat.json:
        print_json(statuses)
    else:
        table = Table("SERVICE", "STATUS")
        for name, status in statuses.items():
            style = "green" if status == "SERVING" else "red"
            table.add_row(name, f"[{style}]{status}[/{style}]")
        console.print(table)
    if any(status != "SERVING" for status in statuses.values()):
        raise typer.Exit(1)
