"""Runtime settings, read from the environment (prefix `ELMO_`) with defaults that run locally."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConnectionSettings(BaseSettings):
    """Where Kafka and Redis are; shared by services and the command-line tools."""

    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for idempotency keys and dialogue state.")


class RuntimeSettings(ConnectionSettings):
    """How a service built on `elmo.runtime` consumes, retries, reports and shuts down."""

    http_host: str = Field("127.0.0.1", description="Address of /healthz, /readyz and /metrics (0.0.0.0 in a pod).")
    http_port: int = Field(8080, description="Port of /healthz, /readyz and /metrics.")
    consumer_group: str | None = Field(None, description="Kafka consumer group; default `elmo-<service>`.")
    batch_max_records: int = Field(64, ge=1, description="Most records handed to the core in one call.")
    batch_wait_ms: int = Field(200, ge=1, description="Longest an idle poll waits; records are handed on as soon as they arrive.")
    fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        description="Longest the broker holds a fetch open. A partition drained while a fetch is open waits for "
        "that fetch to return before its next records are asked for, so this bounds the added latency.",
    )
    commit_interval_ms: int = Field(
        100,
        ge=0,
        description="Most time between finishing a record and committing its offset (0: after every batch). "
        "Redelivery after a crash is skipped by the idempotency check, so this only trades broker round trips.",
    )
    max_attempts: int = Field(3, ge=1, description="Tries of a failing record before it is dead-lettered.")
    max_crashes: int = Field(
        3, ge=1, description="An event the service died while handling this many times is dead-lettered instead of run again."
    )
    retry_backoff_s: float = Field(0.2, ge=0, description="First retry delay; doubles each try.")
    retry_backoff_max_s: float = Field(5.0, ge=0, description="Cap on the retry delay.")
    max_record_bytes: int = Field(
        768 * 1024,
        ge=1,
        description="Larger input records are dead-lettered as too_large without being parsed (an inline voice note of 512 KiB is about 700 KB).",
    )
    rewind_backoff_s: float = Field(
        0.5, ge=0, description="After a dependency failed (Redis or Kafka unreachable), first wait before re-reading the batch; doubles each time."
    )
    rewind_backoff_max_s: float = Field(5.0, ge=0, description="Cap on the wait before re-reading a rewound batch.")
    max_rereads: int = Field(50, ge=1, description="/healthz fails when the same batch was rewound more times in a row than this.")
    progress_stall_s: float = Field(
        300.0, gt=0, description="/healthz fails when a partition with records waiting has not advanced for this long."
    )
    idempotency_ttl_s: int = Field(24 * 3600, ge=1, description="How long a processed event id is remembered.")
    shutdown_grace_s: float = Field(20.0, ge=0, description="On SIGTERM, how long in-flight work may take.")
    stall_after_s: float = Field(120.0, gt=0, description="/healthz fails when one batch runs longer than this.")
    log_level: str = Field("INFO", description="Log level of the JSON logs.")
    model_store: Path = Field(Path(".local/model-store"), description="Directory of versioned model artefacts (a volume in a pod).")
    model_threads: int = Field(2, ge=1, description="CPU threads a service's model may use.")

    def group_for(self, service: str) -> str:
        return self.consumer_group or f"elmo-{service}"


def settings_table(settings_class: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for each field, as the docs list them."""
    prefix = settings_class.model_config.get("env_prefix", "")
    rows = []
    for name, field in settings_class.model_fields.items():
        default = "" if field.default is None else str(field.default)
        rows.append((f"{prefix}{name}".upper(), default, field.description or ""))
    return rows
