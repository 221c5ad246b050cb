"""Process settings: flags, then ``RECEIVER_*`` environment variables, then defaults.

Read only by ``logconfig``, ``app`` and ``cli``; the pure modules get values as arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything the server needs that is not in ``rules.yaml``.

    Secrets are ``SecretStr`` so that a repr, a log line or an error never shows them.
    """

    model_config = SettingsConfigDict(env_prefix="RECEIVER_", extra="ignore", frozen=True)

    rules: Path = Field(default=Path("rules.yaml"), description="path of rules.yaml")
    database_url: str = Field(default="sqlite:///./receiver.db", description="sqlite:///PATH or postgresql://...")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    webhook_secret: SecretStr | None = Field(default=None, description="secret of the default source 'uipath'")
    logs_token: SecretStr | None = Field(default=None, description="bearer token of POST /logs/uipath")
    admin_token: SecretStr | None = Field(default=None, description="bearer token of /api and /ui; unset = off")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="largest accepted request body")
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request body not received in full within this is answered 408"
    )
    keepalive_seconds: float = Field(
        default=5.0, gt=0, description="an idle keep-alive connection is closed after this"
    )
    max_concurrency: int = Field(
        default=1000, gt=0, description="connections and requests in progress at once; past it new requests get 503"
    )
    max_event_age_seconds: float = Field(
        default=24 * 3600, gt=0, description="an event whose Timestamp is older is refused as a replay"
    )
    watch_rules: bool = Field(default=True, description="reload rules.yaml when the file changes")
    lease_seconds: float = Field(default=60, gt=0, description="how long a claimed row stays with its worker")
    poll_seconds: float = Field(default=1.0, gt=0, description="idle poll interval of the workers")
    retry_initial_seconds: float = Field(default=30.0, gt=0, description="wait after a delivery's first failure")
    retry_max_seconds: float = Field(default=1800.0, gt=0, description="longest wait between two attempts")
    retain_events_days: float = Field(
        default=30.0,
        ge=0,
        description="processed events, their deliveries and attempts are kept this long; 0 = for ever",
    )
    retain_dead_days: float = Field(
        default=90.0, ge=0, description="dead deliveries (and their events) are kept this long; 0 = for ever"
    )
    retain_noise_log_days: float = Field(
        default=30.0, ge=0, description="noise decisions (/api/suppressions) are kept this long; 0 = for ever"
    )
    prune_interval_seconds: float = Field(default=300.0, gt=0, description="how often retention is applied")
    prune_pause_seconds: float = Field(
        default=0.25,
        ge=0,
        description="pause between two prune batches: longer is gentler on webhooks, slower to catch up",
    )
