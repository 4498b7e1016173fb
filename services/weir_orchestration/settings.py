"""Settings of the orchestration service (env prefix ``WEIR_ORCHESTRATION_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class OrchestrationSettings(BaseSettings):
    """Built once by the host (or by ``build`` from the environment) and passed down."""

    model_config = SettingsConfigDict(env_prefix="WEIR_ORCHESTRATION_", extra="ignore")

    #: Most records (task-run creations + proposals + logs) one SyncRuns batch writes.
    sync_batch_max_records: int = 2000
    #: A RUNNING flow run whose last heartbeat is older than this becomes CRASHED.
    heartbeat_timeout_seconds: float = 90.0
    #: How often the sweeper looks for crashed, stuck-cancelling and late runs.
    sweeper_interval_seconds: float = 10.0
    #: Most runs the sweeper moves per kind and round.
    sweeper_batch_size: int = 200
    #: A CANCELLING run older than this becomes CANCELLED even if nobody confirms.
    cancelling_timeout_seconds: float = 300.0
    #: A SCHEDULED run this far past its scheduled time becomes SCHEDULED named "Late".
    late_after_seconds: float = 15.0
    #: Longer log messages are truncated to this many characters.
    log_max_message_length: int = 10_000
    #: At most this many buckets in one RunHistory answer.
    history_max_buckets: int = 10_000
