"""The one mapping of Weir errors to HTTP answers.

A ``WeirError`` from the client (a gRPC status from a service) becomes the
HTTP status of ``weir.errors.http_status_for`` with the body
``{"detail": message, "field": field}``. FastAPI's own request validation
keeps its 422 answer.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from weir.errors import WeirError, http_status_for


class ErrorBody(BaseModel):
    """The JSON body of every error the gateway answers itself."""

    detail: str
    #: The request field the error is about, when the service named one.
    field: str | None = None


async def weir_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WeirError)  # registered for WeirError only
    body = ErrorBody(detail=exc.message, field=exc.field)
    return JSONResponse(status_code=http_status_for(exc.status), content=body.model_dump())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WeirError, weir_error_handler)


#: Documented error answers, so /openapi.json shows the body shape.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (404, "Not found"),
        (409, "Conflict with the current state"),
        (429, "Limit reached"),
        (503, "A Weir service is unavailable"),
    )
}
