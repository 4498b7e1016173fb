"""GET /api/health."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from weir_gateway.deps import Client

router = APIRouter(tags=["health"])


class HealthReport(BaseModel):
    #: "ok" when every service is SERVING, else "degraded".
    status: str
    #: grpc.health.v1 status by service name.
    services: dict[str, str]


@router.get("/health", response_model=HealthReport, responses={503: {"model": HealthReport}})
async def health(client: Client, response: Response) -> HealthReport:
    """200 when every Weir service is SERVING, 503 otherwise."""
    services = await client.health()
    healthy = all(status == "SERVING" for status in services.values())
    if not healthy:
        response.status_code = 503
    return HealthReport(status="ok" if healthy else "degraded", services=services)
