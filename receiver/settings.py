"""Process settings: flags, then ``RECEIVER_*`` environment variables, then defaults.

Read only by ``logconfig``, ``app`` and ``cli``; the pure modules get values as arguments.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.errors import ConfigError

__all__ = ["Settings", "load_settings"]

_FLAGS = {"rules": "--rules", "host": "--host", "port": "--port", "database_url": "--database"}
"""Settings that ``receiver serve`` and the admin commands also take as flags."""

_SECRETS = frozenset({"webhook_secret", "logs_token", "admin_token", "link_key", "database_url"})
"""Settings whose value is never shown, not even in the error about it (a database URL holds a password)."""


class Settings(BaseSettings):
    """Everything the server needs that is not in ``rules.yaml``.

    Secrets are ``SecretStr`` so that a repr, a log line or an error never shows them. An empty or
    blank secret or token is "not set" (docker-compose and Helm turn an unset value into ``""``):
    it must never be something a client can match.
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
        default=10.0, gt=0, description="a request head or body not received in full within this is answered 408"
    )
    keepalive_seconds: float = Field(
        default=5.0, gt=0, description="an idle connection (before or between requests) is closed after this"
    )
    max_concurrency: int = Field(
        default=1000, gt=0, description="connections and requests in progress at once; past it new requests get 503"
    )
    logs_max_entries: int = Field(
        default=1000, gt=0, description="robot-log entries per POST /logs request; more are refused whole (413)"
    )
    logs_rate_per_second: float = Field(
        default=100.0, ge=0, description="robot-log entries per second and source, sustained; past it 429; 0 = off"
    )
    logs_burst: int = Field(
        default=5000, ge=0, description="robot-log entries a source may send at once (below logs_max_entries: that)"
    )
    max_event_age_seconds: float = Field(
        default=24 * 3600, gt=0, description="an event whose Timestamp is older is refused as a replay"
    )
    watch_rules: bool = Field(default=True, description="reload rules.yaml when the file changes")
    lease_seconds: float = Field(default=60, gt=0, description="how long a claimed row stays with its worker")
    event_budget_seconds: float = Field(
        default=5.0, gt=0, description="matching and rendering one event past this sets it aside as budget_exceeded"
    )
    poll_seconds: float = Field(default=1.0, gt=0, description="idle poll interval of the workers")
    retry_initial_seconds: float = Field(default=30.0, gt=0, description="wait after a delivery's first failure")
    retry_max_seconds: float = Field(default=1800.0, gt=0, description="longest wait between two attempts")
    auth_failures_per_minute: int = Field(
        default=10, gt=0, description="failed admin-token checks per client address and minute before 429"
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; empty = none",
    )

    public_url: str = Field(
        default="",
        description="the receiver's own external URL (https://receiver.example.com); alert messages carry action "
        "links under it when a link key is set too; empty = no links",
    )
    link_key: SecretStr | None = Field(
        default=None, description="server key that signs action links; unset or blank = no links"
    )
    link_ttl_seconds: float = Field(default=24 * 3600, gt=0, description="how long an action link stays valid")
    trusted_user_header: str = Field(
        default="",
        description="header of the reverse proxy that names the signed-in person (e.g. X-Forwarded-User); "
        "believed only from RECEIVER_TRUSTED_PROXIES; empty = the action page asks",
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> Settings:
        # The first wait over the longest would be cut to the longest: the setting would silently do nothing.
        if self.retry_initial_seconds > self.retry_max_seconds:
            raise ValueError(
                f"RECEIVER_RETRY_INITIAL_SECONDS ({self.retry_initial_seconds:g}) is over "
                f"RECEIVER_RETRY_MAX_SECONDS ({self.retry_max_seconds:g}): the first wait cannot be longer "
                "than the longest"
            )
        return self

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_casing(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("host", mode="after")
    @classmethod
    def _blank_host_is_default(cls, value: str) -> str:
        # "" would make uvicorn listen on every interface: an unset value (compose, Helm) must not widen that.
        return value.strip() or "127.0.0.1"

    @field_validator("public_url", mode="after")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"RECEIVER_PUBLIC_URL: {value!r} must start with http:// or https://")
        return value

    @field_validator("webhook_secret", "logs_token", "admin_token", "link_key", mode="after")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("logs_token", "admin_token", mode="after")
    @classmethod
    def _strip_token(cls, value: SecretStr | None) -> SecretStr | None:
        # A bearer token arrives in a header, whose surrounding whitespace HTTP drops: keep it off the token too.
        if value is None or value.get_secret_value() == value.get_secret_value().strip():
            return value
        return SecretStr(value.get_secret_value().strip())

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        # uvicorn takes a value it cannot parse as a host name and silently never matches it: refuse it here.
        items = []
        for item in (part.strip() for part in value.split(",")):
            if item == "*":
                items.append(item)
            elif item:
                try:
                    parsed = ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
                except ValueError as exc:
                    raise ValueError(f"RECEIVER_TRUSTED_PROXIES: {item!r} is not an IP address or network") from exc
                items.append(str(parsed))
        return ",".join(items)

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


def load_settings(**flags: Any) -> Settings:
    """The settings from these flags (None = not given), then ``RECEIVER_*``, then the defaults.

    Raises:
        ConfigError: a value that cannot be used, naming the flag or the variable it came from and
            the value (never a secret's): ``RECEIVER_PORT='abc': Input should be a valid integer...``.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            if not err["loc"]:  # a check of several settings together names them itself
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = str(err["loc"][0])
            variable = f"RECEIVER_{name.upper()}"
            where = _FLAGS[name] if name in given and name in _FLAGS else variable
            shown = "" if name in _SECRETS else f"={err['input']!r}"
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix(f"{variable}: ")
            problems.append(f"{where}{shown}: {message}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
