"""Settings of the deployments service (env prefix ``WEIR_DEPLOYMENTS_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploymentsSettings(BaseSettings):
    """Built once by the host (or by ``build`` from the environment) and passed down."""

    model_config = SettingsConfigDict(env_prefix="WEIR_DEPLOYMENTS_", extra="ignore")

    #: gRPC address of the orchestration service; empty means this process's own server.
    orchestration_address: str = ""

    #: How often the scheduler looks for schedules that need runs.
    scheduler_interval_seconds: float = 5.0
    #: The scheduler keeps at least this many future runs per schedule ...
    scheduler_min_runs: int = 3
    #: ... and every run due within this many seconds ...
    scheduler_min_horizon_seconds: float = 3600.0
    #: ... but never more than this many, nor further ahead than this.
    scheduler_max_runs: int = 50
    scheduler_max_horizon_seconds: float = 100 * 24 * 3600.0

    #: A worker is told to heartbeat this often.
    worker_heartbeat_interval_seconds: float = 5.0
    #: A worker with no heartbeat for this long is OFFLINE, and the runs it holds can be repaired.
    worker_offline_after_seconds: float = 30.0
    #: An assignment the worker has not acknowledged after this long goes back to SCHEDULED.
    assignment_ack_timeout_seconds: float = 30.0

    #: Fallback wake-up of the dispatcher (it is woken at once by new runs, credits and freed slots).
    dispatch_interval_seconds: float = 1.0
    #: How often the sweeper repairs assignments and workers.
    sweeper_interval_seconds: float = 2.0
    #: Finished runs are forgotten by this service (not by orchestration) after this long.
    done_retention_seconds: float = 24 * 3600.0

    #: The durable JetStream consumer that follows flow-run states (shared by replicas).
    tracker_consumer: str = "weir-deployments-run-states"
    tracker_batch_size: int = 256
