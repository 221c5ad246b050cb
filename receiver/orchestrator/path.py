"""The webhook path of a source, proven end to end: the edge's one hook and each source's state.

:class:`PathSignals` is what ``POST /webhooks/{source}`` tells the heartbeat: a ``ping`` accepted
(one comparison of the event type, then a dict look-up) and a ``signature_mismatch`` refused.
:class:`PathState` is what one source's heartbeat knows (up or down, why, since when, the last
round trip) and what the alerts say; it decides when an outage begins and ends (one alert each).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from receiver.rules import Severity

__all__ = ["CAUSES", "Arrival", "Cause", "Notice", "PathSignals", "PathState", "Watch"]

Cause = Literal[
    "webhook_missing", "webhook_disabled", "signature_mismatch", "ping_refused", "api_unavailable", "nothing_arrived"
]

CAUSES: dict[str, str] = {
    "webhook_missing": "no webhook in Orchestrator has the URL {public_url} (deleted, or never registered)",
    "webhook_disabled": "the webhook is disabled in Orchestrator",
    "signature_mismatch": (
        "the ping arrived with a signature that does not match the source's secrets "
        "(the secret was changed on one side only)"
    ),
    "ping_refused": "Orchestrator did not accept the Ping request: {detail}",
    "api_unavailable": "Orchestrator's API did not answer: {detail}",
    "nothing_arrived": (
        "Orchestrator accepted the Ping but nothing arrived within {within:g} s while the webhook looks enabled: "
        "most likely Orchestrator suspended it after failed deliveries (about an hour, events dropped "
        "meanwhile), or the network path or a proxy is broken"
    ),
}
"""The reason each cause gives in the alert."""

_KEPT = 16  # arrivals kept per source: a round looks at those since its request only


@dataclass(frozen=True, slots=True)
class Arrival:
    """A signed ``ping`` accepted at the edge: its EventId and when (monotonic seconds)."""

    event_id: str
    at: float


@dataclass(slots=True)
class Watch:
    """What the edge recorded for one source since the heartbeat started watching it."""

    pings: deque[Arrival] = field(default_factory=lambda: deque(maxlen=_KEPT))
    mismatch_at: float | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class PathSignals:
    """The edge's one hook: pings accepted and signature mismatches, for watched sources only.

    Unwatched sources (no heartbeat) cost one dict look-up. Times are monotonic seconds.
    """

    def __init__(self) -> None:
        self._watched: dict[str, Watch] = {}

    def watch(self, source: str) -> Watch:
        """Start recording arrivals for ``source`` (the heartbeat calls this)."""
        return self._watched.setdefault(source, Watch())

    def unwatch(self, source: str) -> None:
        """Stop recording for ``source``."""
        self._watched.pop(source, None)

    def ping_accepted(self, source: str, event_id: str) -> None:
        """A signed ``ping`` was accepted at ``/webhooks/{source}``."""
        watch = self._watched.get(source)
        if watch is not None:
            watch.pings.append(Arrival(event_id, time.monotonic()))
            watch.arrived.set()

    def signature_mismatch(self, source: str) -> None:
        """A webhook of ``source`` was refused: its signature matches none of the secrets."""
        watch = self._watched.get(source)
        if watch is not None:
            watch.mismatch_at = time.monotonic()
            watch.arrived.set()


@dataclass(frozen=True, slots=True)
class Notice:
    """A message the heartbeat must send: the path went down, or came back.

    Attributes:
        kind: ``down`` or ``restored``.
        key: unique per outage and kind (the synthetic event's id: a retry writes it once).
        title: the message title.
        body: the message text.
        severity: ``failure`` for down, ``success`` for restored (apprise notify types).
    """

    kind: Literal["down", "restored"]
    key: str
    title: str
    body: str
    severity: Severity


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(slots=True)
class PathState:
    """One source's webhook path as the heartbeat last found it.

    Attributes:
        source: the source name.
        tenant: the Orchestrator URL (named in the messages).
        public_url: the URL Orchestrator calls.
        state: ``unknown`` before the first round, then ``up`` or ``down``.
        roundtrip: seconds from the Ping request to the ping's arrival, last success.
        last_ok_at: wall time of the last success.
        last_check_at: wall time of the last round's end.
        down_since: wall time the outage began (the first failed round's request).
        cause: why the last round failed.
        reason: the cause in words.
        matched_by: how the last arrival was matched: ``event_id`` or ``time``.
        webhook_id: the webhook found by ``public_url``.
        webhook_enabled: its ``Enabled`` as last read.
        missing_types: event types the rules need that the webhook does not subscribe to.
        auto_enabled_at: wall time receiver last enabled the webhook again.
        failures: failed rounds in a row.
    """

    source: str
    tenant: str
    public_url: str
    state: Literal["unknown", "up", "down"] = "unknown"
    roundtrip: float | None = None
    last_ok_at: float | None = None
    last_check_at: float | None = None
    down_since: float | None = None
    alerted: bool = False
    cause: Cause | None = None
    reason: str | None = None
    matched_by: str | None = None
    webhook_id: int | None = None
    webhook_enabled: bool | None = None
    missing_types: tuple[str, ...] = ()
    auto_enabled_at: float | None = None
    failures: int = 0

    def succeeded(self, *, asked_at: float, now: float, roundtrip: float, matched_by: str) -> Notice | None:
        """A ping came back; returns the "restored" notice when an alerted outage ends."""
        notice = None
        if self.state == "down" and self.alerted and self.down_since is not None:
            down_for = _duration(now - self.down_since)
            notice = Notice(
                "restored",
                f"restored:{self.source}:{self.down_since:.3f}",
                f"Webhook path of source {self.source!r} restored",
                f"Webhooks from Orchestrator {self.tenant} arrive again at {self.public_url}: "
                f"the path was down for {down_for} (events sent by Orchestrator meanwhile may be lost).",
                "success",
            )
        self.state, self.roundtrip, self.last_ok_at, self.last_check_at = "up", roundtrip, now, now
        self.down_since, self.alerted, self.cause, self.reason, self.failures = None, False, None, None, 0
        self.matched_by = matched_by
        return notice

    def failed(
        self, cause: Cause, *, asked_at: float, now: float, threshold: int = 1, note: str = "", **facts: Any
    ) -> Notice | None:
        """A round failed; returns the "down" notice once per outage, after ``threshold`` failed rounds."""
        self.failures += 1
        self.cause = cause
        self.reason = CAUSES[cause].format(public_url=self.public_url, **facts) + note
        self.last_check_at = now
        if self.down_since is None:
            self.down_since = asked_at
        self.state = "down"
        if self.alerted or self.failures < threshold:
            return None
        self.alerted = True
        since = self.down_since
        return Notice(
            "down",
            f"down:{self.source}:{since:.3f}",
            f"Webhook path of source {self.source!r} is down",
            f"No webhook from Orchestrator {self.tenant} arrived at {self.public_url} for the heartbeat "
            f"(for {_duration(now - since)}): {self.reason}. Until this is fixed, receiver sees none of "
            "Orchestrator's events for this source.",
            "failure",
        )

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON for ``/readyz`` (with the admin token) and the web page."""
        return {
            "state": self.state,
            "roundtrip_seconds": None if self.roundtrip is None else round(self.roundtrip, 3),
            "last_ok_at": self.last_ok_at,
            "last_check_at": self.last_check_at,
            "down_since": self.down_since,
            "reason": self.reason,
            "matched_by": self.matched_by,
            "webhook_id": self.webhook_id,
            "webhook_enabled": self.webhook_enabled,
            "missing_event_types": list(self.missing_types),
            "auto_enabled_at": self.auto_enabled_at,
        }
