"""The one exception tree of Weir.

Services raise these; one server interceptor maps them to gRPC status codes;
the gateway maps status codes to HTTP; the SDK turns ``grpc.RpcError`` back
into the same classes, so user code only ever catches ``WeirError``::

    WeirError
    ├── ServiceError                  the service could not be reached or failed
    │   ├── Unavailable               UNAVAILABLE (server down, connection lost)
    │   ├── DeadlineExceeded          DEADLINE_EXCEEDED
    │   ├── Unimplemented             UNIMPLEMENTED (feature not built yet)
    │   └── InternalError             INTERNAL / UNKNOWN (a bug: please report)
    └── DomainError                   the request was understood and refused
        ├── NotFound                  NOT_FOUND            HTTP 404
        ├── AlreadyExists             ALREADY_EXISTS       HTTP 409
        ├── InvalidArgument           INVALID_ARGUMENT     HTTP 422
        ├── FailedPrecondition        FAILED_PRECONDITION  HTTP 409
        ├── Conflict                  ABORTED              HTTP 409
        ├── ResourceExhausted         RESOURCE_EXHAUSTED   HTTP 429
        ├── Unauthenticated           UNAUTHENTICATED      HTTP 401
        └── PermissionDenied          PERMISSION_DENIED    HTTP 403

The mapping lives in one table here (``STATUS_BY_ERROR``) and is used by the
server interceptor, the SDK client and the gateway alike.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExists",
    "Conflict",
    "DeadlineExceeded",
    "DomainError",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WeirError",
    "error_for_status",
    "http_status_for",
]


class WeirError(Exception):
    """Base of every error Weir raises."""

    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    http_status: int = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request field the error is about, when there is one.
        self.field = field

    def __str__(self) -> str:
        return self.message


class ServiceError(WeirError):
    """The service could not be reached or could not answer."""


class Unavailable(ServiceError):
    status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(ServiceError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Unimplemented(ServiceError):
    status = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class InternalError(ServiceError):
    status = grpc.StatusCode.INTERNAL
    http_status = 500


class DomainError(WeirError):
    """The request was understood and refused."""


class NotFound(DomainError):
    status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(DomainError):
    status = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class InvalidArgument(DomainError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class FailedPrecondition(DomainError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class Conflict(DomainError):
    status = grpc.StatusCode.ABORTED
    http_status = 409


class ResourceExhausted(DomainError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unauthenticated(DomainError):
    status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(DomainError):
    status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


_BY_STATUS: dict[grpc.StatusCode, type[WeirError]] = {
    cls.status: cls
    for cls in (
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
        InternalError,
        NotFound,
        AlreadyExists,
        InvalidArgument,
        FailedPrecondition,
        Conflict,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
    )
}
_BY_STATUS[grpc.StatusCode.UNKNOWN] = InternalError
_BY_STATUS[grpc.StatusCode.CANCELLED] = Unavailable
_BY_STATUS[grpc.StatusCode.OUT_OF_RANGE] = InvalidArgument
_BY_STATUS[grpc.StatusCode.DATA_LOSS] = InternalError

FIELD_METADATA_KEY = "weir-field"


def error_for_status(code: grpc.StatusCode, message: str, *, field: str | None = None) -> WeirError:
    """The Weir error for a gRPC status code."""
    cls = _BY_STATUS.get(code, InternalError)
    return cls(message or code.name.lower(), field=field)


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP status the gateway answers for a gRPC status code."""
    return _BY_STATUS.get(code, InternalError).http_status
