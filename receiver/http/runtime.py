"""What the HTTP routes and the workers share: settings, store, the rules in force, sources.

Routes reach it through ``request.app.state.runtime``; ``create_app`` builds it at start-up.
A reload swaps the rule set and the sources with one assignment each, so a request or an
event never sees half of a rule set.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from receiver.actionlink import LinkSigner
from receiver.admin.charts import ChartCache
from receiver.admin.retention import StoreStatsCache
from receiver.delivery.notifier import check_url
from receiver.errors import ConfigError, RulesError, StoreError
from receiver.http.deadline import ReadDeadlines
from receiver.http.limiter import FailureLimiter
from receiver.http.quota import EntryQuota
from receiver.metrics import Metrics
from receiver.orchestrator.path import PathSignals
from receiver.pipeline.activity import EdgeActivity
from receiver.pipeline.alerts import Links
from receiver.pipeline.dispatch import Dispatcher
from receiver.pipeline.heartbeat import Heartbeats
from receiver.pipeline.worker import InboxWorker
from receiver.rules import RuleSet, load_rules
from receiver.settings import Settings
from receiver.store import Store

__all__ = [
    "DEFAULT_SOURCE",
    "SHORT_SECRET",
    "RulesInForce",
    "Runtime",
    "SourceAuth",
    "StoreWrites",
    "action_links",
    "load_rules_file",
    "resolve_sources",
    "short_secrets",
]

log = structlog.get_logger()

DEFAULT_SOURCE = "uipath"


@dataclass(frozen=True, slots=True)
class SourceAuth:
    """How one source proves itself: webhook secrets (rotation: several), robot-log token.

    ``key_job_ends``: the source talks back to Orchestrator (an ``orchestrator:`` block), so gap
    recovery may store its job ends too: the edge stores a job's end under ``job:<Key>:<State>``.
    """

    name: str
    secrets: tuple[str, ...]
    logs_token: str | None
    insecure: bool
    allow_hex: bool
    key_job_ends: bool = False

    def __repr__(self) -> str:  # never show secrets
        return f"SourceAuth(name={self.name!r}, secrets=<{len(self.secrets)}>, insecure={self.insecure})"


def action_links(settings: Settings) -> Links | None:
    """The action links of alert messages: both ``RECEIVER_PUBLIC_URL`` and ``RECEIVER_LINK_KEY`` set, else None."""
    key = settings.link_key
    if not settings.public_url or key is None:
        return None
    return Links(settings.public_url, LinkSigner(key.get_secret_value(), settings.link_ttl_seconds))


SHORT_SECRET = 16
"""Keys shorter than this (characters) are named at start-up as guessable."""


def short_secrets(ruleset: RuleSet, settings: Settings) -> list[tuple[str, int]]:
    """(where it is set, its length) of every key or token shorter than :data:`SHORT_SECRET`.

    A webhook secret and the link key can be tried offline by anyone holding one signed body or
    one action link (posted in a chat); the admin and robot-log tokens online, from many addresses.
    """
    found: list[tuple[str, int]] = []
    for setting, value in (
        ("RECEIVER_WEBHOOK_SECRET", settings.webhook_secret),
        ("RECEIVER_LOGS_TOKEN", settings.logs_token),
        ("RECEIVER_ADMIN_TOKEN", settings.admin_token),
        ("RECEIVER_LINK_KEY", settings.link_key if settings.public_url else None),
    ):
        if value is not None and 0 < len(value.get_secret_value().strip()) < SHORT_SECRET:
            found.append((setting, len(value.get_secret_value().strip())))
    for name, source in sorted(ruleset.sources.items()):
        for i, secret in enumerate(source.secret_values()):
            if 0 < len(secret.strip()) < SHORT_SECRET:
                found.append((f"sources.{name}.secrets[{i}]", len(secret.strip())))
        token = source.logs_token_value()
        if token is not None and 0 < len(token.strip()) < SHORT_SECRET:
            found.append((f"sources.{name}.logs_token", len(token.strip())))
    return found


def resolve_sources(ruleset: RuleSet, settings: Settings) -> dict[str, SourceAuth]:
    """Merge the sources of ``rules.yaml`` with the default source ``uipath`` from the environment.

    Args:
        ruleset: the loaded rules, whose ``sources:`` may also name ``uipath``.
        settings: supplies ``RECEIVER_WEBHOOK_SECRET`` and ``RECEIVER_LOGS_TOKEN`` for ``uipath``.

    Returns:
        Every source by name.

    Raises:
        ConfigError: a source without a secret that is not marked ``insecure: true``.
    """
    sources: dict[str, SourceAuth] = {}
    for name, source in ruleset.sources.items():
        blank = [i + 1 for i, secret in enumerate(source.secret_values()) if not secret.strip()]
        if blank:
            # A blank key is one anyone can sign with: refuse it rather than drop it silently.
            raise ConfigError(f"source {name!r}: secret #{blank[0]} in rules.yaml is empty or blank")
        sources[name] = SourceAuth(
            name=name,
            secrets=source.secret_values(),
            logs_token=_token(source.logs_token_value()),
            insecure=source.insecure,
            allow_hex=source.accept_hex_signature,
            key_job_ends=source.orchestrator is not None,
        )
    # Settings already read blank values as unset; checked again here, where they become keys.
    env_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    env_secret = env_secret if env_secret and env_secret.strip() else None
    env_token = _token(settings.logs_token.get_secret_value() if settings.logs_token else None)
    default = sources.get(DEFAULT_SOURCE)
    sources[DEFAULT_SOURCE] = SourceAuth(
        name=DEFAULT_SOURCE,
        secrets=(*((env_secret,) if env_secret else ()), *(default.secrets if default else ())),
        logs_token=env_token or (default.logs_token if default else None),
        insecure=default.insecure if default else False,
        allow_hex=default.allow_hex if default else False,
        key_job_ends=default.key_job_ends if default else False,
    )
    missing = sorted(name for name, s in sources.items() if not s.secrets and not s.insecure)
    if missing:
        raise ConfigError(
            "source(s) "
            + ", ".join(repr(m) for m in missing)
            + " have no webhook secret: set RECEIVER_WEBHOOK_SECRET for 'uipath', give others `secrets:` in "
            "rules.yaml, or mark a source `insecure: true` to accept unsigned webhooks (not recommended)"
        )
    return sources


@dataclass
class RulesInForce:
    """The rule set in force, the sources it gives and how its last reload went.

    The workers hold ``current`` and the routes the ``Runtime`` around this; a reload swaps the
    rule set and the sources together, so no request or event sees half of a rule set.
    """

    ruleset: RuleSet
    sources: dict[str, SourceAuth]
    loaded_at: float
    problems: list[str] = field(default_factory=list)
    """What the last reload found wrong (empty: it worked, or none happened)."""

    def current(self) -> RuleSet:
        """The rule set in force (workers call this once per batch)."""
        return self.ruleset


class StoreWrites:
    """Whether the store takes the edge's writes: the last accept that failed, until a write succeeds.

    A store that can be read but not written (disk full, a read-only file system, a lock held by
    another process) refuses every webhook with 503 while a read (``Store.ping``) still works: the
    readiness probe and ``receiver_store_up`` must not call that healthy. Without traffic nothing
    would clear the failure (a replica out of its Service gets none), so ``check`` tries a write of
    its own while one is recorded, as large as the body that failed: on a nearly full disk a small
    write can still fit where no webhook does.
    """

    _PROBE = "probe:"
    """Prefix of the probe's lease name (one per process, taken with no time and given back at once)."""

    _PROBE_EVERY = 1.0
    """Seconds between two probes: ``/readyz`` needs no token, so a caller must not set the pace of the writes."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self._size = 0
        self._probed_at = -math.inf  # time.monotonic() of the last probe's start
        self._probing = False

    def failed(self, error: str, size: int) -> None:
        """An accept of ``size`` bytes failed with ``error``."""
        self.failure = error
        self._size = max(self._size, size)

    def succeeded(self) -> None:
        self.failure = None
        self._size = 0

    async def check(self, store: Store, owner: str, now: float) -> str | None:
        """None when the store takes writes; else why not. Writes only while a failure is recorded."""
        if self.failure is None:
            return None
        started = time.monotonic()
        if self._probing or started - self._probed_at < self._PROBE_EVERY:
            return self.failure  # a probe is under way or just ended: its answer stands
        self._probed_at, self._probing = started, True
        name = self._PROBE + owner
        holder = owner.ljust(self._size, ".")  # the probe's row as large as the body that failed
        try:
            await store.acquire_lease(name, holder, now=now, ttl=0.0)
            await store.release_lease(name, holder)
        except StoreError as exc:
            self.failure = str(exc)
            return self.failure
        finally:
            self._probing = False
        self.succeeded()
        return None


@dataclass
class Runtime:
    """What the routes share: settings, store, the rules in force and the workers, built complete by ``create_app``."""

    settings: Settings
    store: Store
    rules: RulesInForce
    clock: Callable[[], float]
    metrics: Metrics
    worker: InboxWorker
    dispatcher: Dispatcher
    edge: EdgeActivity
    """Authenticated requests in hand at the edge: the workers give way to them (bounded)."""
    auth_failures: FailureLimiter
    """Failed admin-token checks per client address (``receiver.http.api``)."""
    logs_auth_failures: FailureLimiter
    """Failed robot-log token checks per client address: apart, so a robot with a stale token
    cannot lock the admin out of an address it shares."""
    store_stats: StoreStatsCache
    """Rows per table and size of the store, read at most once a minute (``/metrics``, ``/ui``)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reads: ReadDeadlines = field(default_factory=ReadDeadlines)
    """Body reads in progress, cancelled past ``settings.body_timeout_seconds`` (slow clients)."""
    webhook_path: PathSignals = field(default_factory=PathSignals)
    """The edge's one hook for the heartbeat: pings accepted, signature mismatches (``receiver.orchestrator.path``)."""
    charts: ChartCache = field(default_factory=ChartCache)
    """The overview's charts per range, read at most once a minute (``receiver.admin.charts``)."""
    heartbeats: Heartbeats | None = None
    """The heartbeat of the sources that have one, or None (``receiver.pipeline.heartbeat``)."""
    logs_quota: EntryQuota = field(default_factory=EntryQuota)
    """Robot-log entries each source may still post (``settings.logs_rate_per_second``, ``logs_burst``)."""
    store_writes: StoreWrites = field(default_factory=StoreWrites)
    """Whether the edge's last write to the store failed (``/readyz``, ``receiver_store_up``)."""
    signer: LinkSigner | None = None
    """Signs and checks the action links of alert messages, or None when they are off (``receiver.http.actions``)."""

    @property
    def ruleset(self) -> RuleSet:
        """The rule set in force."""
        return self.rules.ruleset

    @property
    def sources(self) -> dict[str, SourceAuth]:
        """The sources of the rule set in force."""
        return self.rules.sources

    @property
    def rules_loaded_at(self) -> float:
        """When the rule set in force was loaded."""
        return self.rules.loaded_at

    @property
    def reload_problems(self) -> list[str]:
        """What the last reload found wrong (empty: it worked)."""
        return self.rules.problems

    async def reload(self, reason: str) -> list[str]:
        """Load the rules file again and swap it in whole; on any problem keep the running rules."""
        path = self.settings.rules
        try:
            ruleset = await asyncio.to_thread(load_rules_file, path)
            sources = resolve_sources(ruleset, self.settings)
        except RulesError as exc:
            problems = [str(p) for p in exc.problems]
        except ConfigError as exc:
            problems = [f"{path}: {exc}"]
        else:
            # Swapped whole, with no await between: a request or a batch sees the old set or the new one.
            rules = self.rules
            rules.ruleset, rules.sources, rules.loaded_at, rules.problems = ruleset, sources, self.clock(), []
            self.metrics.rules_loaded.set(len(ruleset.rules))
            log.info("rules_reloaded", reason=reason, rules=len(ruleset.rules), channels=len(ruleset.channels))
            self.dispatcher.wake()  # new channels get their send loops now, not at the next poll
            return []
        self.rules.problems = problems
        self.metrics.rules_reload_failures.inc()
        log.error("rules_reload_failed", reason=reason, problems=problems)
        return problems


def load_rules_file(path: str | Path) -> RuleSet:
    """Load ``path`` with the environment as it is now (a reload must see current variables)."""
    return load_rules(path, environ=dict(os.environ), check_url=check_url)


def _token(value: str | None) -> str | None:
    """A bearer token as it can arrive in a header (no surrounding whitespace); blank is None (route off)."""
    value = (value or "").strip()
    return value or None
