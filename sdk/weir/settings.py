"""Settings of the Weir SDK, read from ``WEIR_*`` environment variables.

Build them once at the edge of a program and pass them in::

    from weir.settings import get_settings

    settings = get_settings()          # cached: one instance per process
    client = AsyncWeirClient.from_settings(settings)

Tests build their own ``Settings(api_address="127.0.0.1:4200")`` instead of
touching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """What the SDK needs to reach a Weir server."""

    model_config = SettingsConfigDict(env_prefix="WEIR_", extra="ignore")

    #: ``host:port`` of the gRPC endpoint (``WEIR_API_ADDRESS``). ``None``
    #: means no server is configured.
    api_address: str | None = None
    #: Per-service gRPC addresses for the distributed topology, overriding
    #: ``api_address`` for that service: ``WEIR_SERVICE_ADDRESSES='{"events": "10.0.0.5:4274"}'``.
    service_addresses: dict[str, str] = Field(default_factory=dict)
    #: Sent as ``authorization: Bearer <key>`` metadata when set (``WEIR_API_KEY``).
    api_key: str | None = None
    #: Where local state lives: embedded databases, results, NATS storage.
    home: Path = Field(default_factory=lambda: Path("~/.weir").expanduser())
    #: Deadline of each unary call.
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    #: How often a running flow run tells the server it is alive (the server's
    #: WEIR_ORCHESTRATION_HEARTBEAT_TIMEOUT_SECONDS must be several times this).
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    #: How many times an idempotent read is retried when the server is
    #: briefly UNAVAILABLE (0 disables retries).
    read_retries: int = Field(default=3, ge=0, le=10)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("api_address", "api_key")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        # `WEIR_API_ADDRESS=` in a shell or compose file means "unset".
        return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
