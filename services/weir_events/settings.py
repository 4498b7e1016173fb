"""Settings of the events service (env prefix ``WEIR_EVENTS_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class EventsSettings(BaseSettings):
    """How the events service persists, keeps and streams events."""

    model_config = SettingsConfigDict(env_prefix="WEIR_EVENTS_", extra="ignore")

    #: Persisted events older than this are deleted by the retention loop.
    retention_days: float = 7.0
    retention_interval_seconds: float = 3600.0
    #: Rows deleted per statement by the retention loop (keeps transactions short).
    retention_batch_size: int = 5000

    #: The persister's durable JetStream consumer, shared by every replica.
    persister_consumer: str = "weir-events-persister"
    persister_batch_size: int = 256
    #: How long one fetch waits for the first message before asking again.
    persister_fetch_timeout_seconds: float = 5.0
    #: How long the persister waits before retrying after NATS or the database failed.
    persister_max_backoff_seconds: float = 5.0
    #: Unacked messages come back after this long (a replica died mid-batch).
    persister_ack_wait_seconds: float = 30.0

    #: A live subscription's ephemeral consumer disappears after this long
    #: without a pull (covers an events server that died without cleaning up).
    subscriber_inactive_threshold_seconds: float = 10.0
    subscriber_batch_size: int = 256
    subscriber_fetch_timeout_seconds: float = 1.0
