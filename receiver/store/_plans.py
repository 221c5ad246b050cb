"""What each store method does in the database, written once for both stores.

A plan is a generator: it yields ``(statement, parameters)`` and is sent back the statement's
rows (a SELECT or RETURNING) or the number of rows it changed; what it returns is the method's
answer. The executor of each store (``SQLiteStore._call``, ``PostgresStore._run``) runs one plan
in one transaction, so the logic between statements (which rows were new, what to notify) is
the same on both stores and only the driver calls differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from typing import Any, TypeVar

from receiver.errors import StoreError
from receiver.store import (
    Accepted,
    AlertTimer,
    AttemptRow,
    ChannelStats,
    DeliveryRow,
    EventQuery,
    EventRow,
    HeldDelivery,
    InboxItem,
    LateDelivery,
    NewDelivery,
    NewSilence,
    NoiseLogRow,
    NoiseRef,
    NoiseRow,
    NoiseWrite,
    Processed,
    QueueStats,
    SilenceRow,
)
from receiver.store._alerts import TIMER, write_alerts, write_trail
from receiver.store._queries import event_where, filter_name
from receiver.store._rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    LOG_COLUMNS,
    NOISE_COLUMNS,
    SILENCE_COLUMNS,
    as_requested,
    attempt_row,
    delivery_row,
    event_row,
    log_row,
    noise_refs,
    noise_row,
    silence_row,
)
from receiver.store._text import noise_ref, storable, stored_key
from receiver.store.sql import NOTIFY, Dialect, Sql, query, sql

__all__ = [
    "Plan",
    "accept",
    "acquire_lease",
    "add_silence",
    "bump_counter",
    "claim_deliveries",
    "claim_inbox",
    "deliveries_of",
    "due_channels",
    "due_noise",
    "expire_silence",
    "finish_inbox",
    "fire_alert_timers",
    "get_delivery",
    "get_event",
    "last_event",
    "list_attempts",
    "list_deliveries",
    "list_events",
    "list_noise_log",
    "list_silences",
    "load_noise",
    "mark_failed",
    "mark_sent",
    "next_noise_due",
    "ping",
    "queue_stats",
    "raise_counter",
    "read_counter",
    "release_claims",
    "release_held",
    "release_lease",
    "retry_dead",
    "retry_delivery",
]

_T = TypeVar("_T")
Plan = Generator[tuple[Sql, Any], Any, _T]
"""A store method's work in one transaction (see the module docstring)."""

_TEXT = "text"
_REAL = "float8"
_ID = "bigint"

# -- inbox --------------------------------------------------------------------------------

_INSERT_INBOX = sql(
    "INSERT INTO inbox (source, event_id, type, body, received_at, event_time, lease_until, claims) {values} "
    "ON CONFLICT (source, event_id) DO NOTHING",
    values="@source, @event_id, @type, @body, @received_at, @event_time, @lease_until, @claims",
    inserted=("source", "event_id"),
    rows=[
        ("source", _TEXT),
        ("event_id", _TEXT),
        ("type", _TEXT),
        ("body", "bytea"),
        ("received_at", _REAL),
        ("event_time", _REAL),
        ("lease_until", _REAL),
        ("claims", _ID),
    ],
)
_FIND_INBOX = sql(
    "SELECT id, source, event_id FROM inbox WHERE (source, event_id) IN (SELECT @source, @event_id {from_rows})",
    rows=[("source", _TEXT), ("event_id", _TEXT)],
)
_CLAIM_INBOX = sql(
    "UPDATE inbox SET lease_until = :until, claims = claims + 1 WHERE id IN ("
    "SELECT id FROM inbox WHERE state = 'new' AND (lease_until IS NULL OR lease_until <= :now) "
    "ORDER BY id LIMIT :limit {skip_locked}) "
    f"RETURNING {EVENT_COLUMNS}"
)
# A delivery leased at its commit carries the lease a claim would set; RETURNING names the rows written.
_INSERT_DELIVERIES_TEXT = (
    "INSERT INTO deliveries (inbox_id, rule, channel, title, body, severity, body_format, created_at, "
    "budget_since, next_attempt_at, lease_until) {values} ON CONFLICT (inbox_id, rule, channel) DO NOTHING"
)
_DELIVERY_VALUES = (
    "@inbox_id, @rule, @channel, @title, @body, @severity, @body_format, :now, :now, :now + @hold, @lease_until"
)
_DELIVERY_ROWS = [
    ("inbox_id", _ID),
    ("rule", _TEXT),
    ("channel", _TEXT),
    ("title", _TEXT),
    ("body", _TEXT),
    ("severity", _TEXT),
    ("body_format", _TEXT),
    ("hold", _REAL),
    ("lease_until", _REAL),
]
_INSERT_DELIVERIES = sql(_INSERT_DELIVERIES_TEXT, values=_DELIVERY_VALUES, rows=_DELIVERY_ROWS)
# The same statement, answering id, inbox_id, rule, channel, lease_until of each row it wrote (only when
# some are leased: SQLite then runs it row by row, not in one executemany).
_INSERT_LEASED = sql(
    _INSERT_DELIVERIES_TEXT,
    values=_DELIVERY_VALUES,
    rows=_DELIVERY_ROWS,
    inserted=("inbox_id", "rule", "channel", "lease_until"),
)
_FINISH_INBOX = sql(
    "UPDATE inbox SET state = @state, outcome = @outcome, processed_at = :now, lease_until = NULL, "
    "process = @process, robot = @robot {from_rows} WHERE inbox.id = @id",
    rows=[("id", _ID), ("state", _TEXT), ("outcome", _TEXT), ("process", _TEXT), ("robot", _TEXT)],
)
_ACQUIRE_LEASE = sql(
    "INSERT INTO leases (name, owner, expires_at) VALUES (:name, :owner, :until) ON CONFLICT (name) DO UPDATE "
    "SET owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE leases.owner = excluded.owner OR leases.expires_at <= :now"
)
_RELEASE_LEASE = sql("DELETE FROM leases WHERE name = :name AND owner = :owner")
# A claim given back unprocessed (a clean stop) does not count.
_RELEASE_INBOX = sql(
    lambda d: (
        "UPDATE inbox SET lease_until = NULL, claims = CASE WHEN claims > 0 THEN claims - 1 ELSE 0 END "
        f"WHERE {d.in_ids('id', 'ids')} AND state = 'new'"
    )
)
_RELEASE_DELIVERIES = sql(
    lambda d: f"UPDATE deliveries SET lease_until = NULL WHERE {d.in_ids('id', 'ids')} AND state = 'pending'"
)
_READ_COUNTER = sql("SELECT value FROM counters WHERE name = :name")
_BUMP_COUNTER = sql(
    "INSERT INTO counters (name, value) VALUES (:name, 1) "
    "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value"
)
_RAISE_COUNTER = sql(
    "INSERT INTO counters (name, value) VALUES (:name, :value) ON CONFLICT (name) DO UPDATE "
    "SET value = CASE WHEN excluded.value > counters.value THEN excluded.value ELSE counters.value END "
    "RETURNING value"
)
_PING = sql("SELECT 1")


def ping() -> Plan[None]:
    """Read nothing, but from the database."""
    yield _PING, {}


def accept(take: Callable[[], list[InboxItem]]) -> Plan[list[Accepted]]:
    """Insert the items ``take`` gives (a group commit's batch), finding the rows of those already there.

    An item with ``lease_until`` is inserted claimed (one claim, that lease): its worker takes it from
    the edge's hand, so no wake-up goes out for it.
    """
    items = take()
    rows = [
        {
            "source": storable(i.source),
            "event_id": storable(i.event_id),
            "type": storable(i.type),
            "body": i.body,
            "received_at": i.received_at,
            "event_time": i.event_time,
            "lease_until": i.lease_until,
            "claims": 0 if i.lease_until is None else 1,
        }
        for i in items
    ]
    keys = [(r["source"], r["event_id"]) for r in rows]
    inserted = {(str(s), str(e)): int(i) for i, s, e in (yield _INSERT_INBOX, (rows, {}))}
    unclaimed = {(r["source"], r["event_id"]) for r in rows if r["lease_until"] is None}
    if not unclaimed.isdisjoint(inserted):
        yield NOTIFY, ["inbox"]
    # Rows that conflicted were committed by someone else (another request, another replica, which
    # the INSERT waited for), so a fresh statement in READ COMMITTED sees them.
    missing = sorted({key for key in keys if key not in inserted})
    found: dict[tuple[str, str], int] = {}
    if missing:
        wanted = [{"source": s, "event_id": e} for s, e in missing]
        found = {(str(s), str(e)): int(i) for i, s, e in (yield _FIND_INBOX, (wanted, {}))}
    results: list[Accepted] = []
    first_seen: set[tuple[str, str]] = set()
    for key in keys:
        if key in inserted and key not in first_seen:
            first_seen.add(key)
            results.append(Accepted(inbox_id=inserted[key], duplicate=False))
        elif key in inserted or key in found:
            results.append(Accepted(inbox_id=inserted[key] if key in inserted else found[key], duplicate=True))
        else:
            raise StoreError(f"inbox row {key!r} conflicted but cannot be found")
    return results


def acquire_lease(name: str, owner: str, now: float, ttl: float) -> Plan[bool]:
    """Take or renew the named lease; False while another owner's lease runs."""
    changed = yield _ACQUIRE_LEASE, {"name": name, "owner": owner, "until": now + ttl, "now": now}
    return bool(changed == 1)


def release_lease(name: str, owner: str) -> Plan[None]:
    """Give up the named lease if ``owner`` holds it."""
    yield _RELEASE_LEASE, {"name": name, "owner": owner}


def release_claims(d: Dialect, inbox_ids: Collection[int], delivery_ids: Collection[int]) -> Plan[None]:
    """Clear the leases of unprocessed events and of still pending deliveries among these ids."""
    if inbox_ids:
        yield _RELEASE_INBOX, {"ids": d.ids(inbox_ids)}
    if delivery_ids:
        yield _RELEASE_DELIVERIES, {"ids": d.ids(delivery_ids)}


def read_counter(name: str) -> Plan[int]:
    """The named counter's value (0 before its first bump)."""
    rows = yield _READ_COUNTER, {"name": name}
    return int(rows[0][0]) if rows else 0


def bump_counter(name: str) -> Plan[int]:
    """Add one to the named counter; its new value."""
    rows = yield _BUMP_COUNTER, {"name": name}
    return int(rows[0][0])


def raise_counter(name: str, value: int) -> Plan[int]:
    """Set the named counter to ``value`` unless it is higher already (a watermark); its value after."""
    rows = yield _RAISE_COUNTER, {"name": name, "value": value}
    return int(rows[0][0])


def claim_inbox(limit: int, now: float, lease: float) -> Plan[list[EventRow]]:
    """Lease up to ``limit`` events still ``new`` whose lease is free, oldest first."""
    rows = yield _CLAIM_INBOX, {"until": now + lease, "now": now, "limit": limit}
    return sorted(map(event_row, rows), key=lambda r: r.id)


def finish_inbox(processed: Sequence[Processed], now: float, noise: NoiseWrite | None) -> Plan[list[DeliveryRow]]:
    """Write the deliveries (ignoring ones already written), the noise changes, and mark the events done.

    Returns the rows of the deliveries written leased (``NewDelivery.lease``), as a claim returns them (in its order).
    """
    # In inbox id order, so two replicas finishing the same events lock them in the same order.
    ordered = sorted(processed, key=lambda p: p.inbox_id)
    late: Sequence[LateDelivery] = () if noise is None else noise.deliveries
    deliveries = [_delivery(p.inbox_id, d, now) for p in ordered for d in p.deliveries]
    deliveries += [_delivery(x.inbox_id, x.delivery, now) for x in late]
    leased: list[DeliveryRow] = []
    if deliveries:
        yield from _insert_deliveries(deliveries, now, leased)
    latest = {p.inbox_id: p for p in ordered}  # a repeated id: the last one wins
    if latest:
        events = [
            {
                "id": p.inbox_id,
                "state": p.state,
                "outcome": storable(p.outcome),
                "process": filter_name(p.process),
                "robot": filter_name(p.robot),
            }
            for p in latest.values()
        ]
        yield _FINISH_INBOX, (events, {"now": now})
    if noise is not None:
        yield from _write_noise(noise, now)
    return fair_order(leased) if len(leased) > 1 else leased


def _insert_deliveries(deliveries: Sequence[dict[str, Any]], now: float, leased: list[DeliveryRow]) -> Plan[None]:
    """Insert the deliveries, adding to ``leased`` the rows of those written leased; wake the channels of the rest."""
    # The first of a repeated (event, rule, channel) is the one written.
    wanted = {(r["inbox_id"], r["rule"], r["channel"]): r for r in reversed(deliveries) if r["lease_until"] is not None}
    if wanted:
        for delivery_id, inbox_id, rule, channel, lease_until in (yield _INSERT_LEASED, (deliveries, {"now": now})):
            row = None if lease_until is None else wanted.pop((inbox_id, rule, channel), None)
            if row is not None:
                leased.append(_leased_row(int(delivery_id), row, now))
    else:
        yield _INSERT_DELIVERIES, (deliveries, {"now": now})
    # Every channel written to unleased, also where the delivery was there already: a wake-up is a hint.
    # A channel whose rows were all written leased gets none: their writer sends them, no claim would find them.
    unleased = [r["channel"] for r in deliveries if r["lease_until"] is None] + [r["channel"] for r in wanted.values()]
    if unleased:
        yield NOTIFY, sorted({f"deliveries:{channel}" for channel in unleased})


_LAST_EVENT = sql("SELECT id, received_at FROM inbox WHERE source = :source ORDER BY received_at DESC, id DESC LIMIT 1")


def last_event(source: str) -> Plan[tuple[int, float] | None]:
    """The source's latest event by arrival: (inbox id, received_at)."""
    rows = yield _LAST_EVENT, {"source": source}
    return (int(rows[0][0]), float(rows[0][1])) if rows else None


def _delivery(inbox_id: int, d: NewDelivery, now: float) -> dict[str, Any]:
    return {
        "inbox_id": inbox_id,
        "rule": storable(d.rule),
        "channel": storable(d.channel),
        "title": storable(d.title),
        "body": storable(d.body),
        "severity": storable(d.severity),
        "body_format": storable(d.body_format),
        "hold": d.hold,
        "lease_until": now + d.lease if d.lease > 0 else None,
    }


def _leased_row(delivery_id: int, row: dict[str, Any], now: float) -> DeliveryRow:
    """A delivery just written leased, as the claim's ``DELIVERY_COLUMNS`` read it back."""
    return DeliveryRow(
        delivery_id,
        row["inbox_id"],
        row["rule"],
        row["channel"],
        row["title"],
        row["body"],
        row["severity"],
        row["body_format"],
        "pending",
        0,
        now,  # created_at
        now,  # budget_since
        now + row["hold"],  # next_attempt_at
        None,  # last_error
        None,  # sent_at
    )


# -- noise state --------------------------------------------------------------------------

_REF = [("kind", _TEXT), ("name", _TEXT), ("key", _TEXT)]
_LOAD_NOISE = sql(
    f"SELECT {NOISE_COLUMNS} FROM noise_state WHERE (kind, name, key) IN (SELECT @kind, @name, @key {{from_rows}})",
    rows=_REF,
)
_PURGE_NOISE = sql("DELETE FROM noise_state WHERE due_at IS NULL AND expires_at IS NOT NULL AND expires_at <= :before")
_DELETE_NOISE = sql(
    "DELETE FROM noise_state WHERE (kind, name, key) IN (SELECT @kind, @name, @key {from_rows})", rows=_REF
)
_PUT_NOISE = sql(
    f"INSERT INTO noise_state ({NOISE_COLUMNS}) {{values}} "
    "ON CONFLICT (kind, name, key) DO UPDATE "
    "SET data = excluded.data, due_at = excluded.due_at, expires_at = excluded.expires_at",
    rows=[*_REF, ("data", _TEXT), ("due_at", _REAL), ("expires_at", _REAL)],
    values="@kind, @name, @key, @data, @due_at, @expires_at",
)
_LOG_NOISE = sql(
    "INSERT INTO noise_log (at, recorded_at, inbox_id, rule, key, action, reason, suppressed) {values}",
    values="@at, :now, @inbox_id, @rule, @key, @action, @reason, @suppressed",
    rows=[
        ("at", _REAL),
        ("inbox_id", _ID),
        ("rule", _TEXT),
        ("key", _TEXT),
        ("action", _TEXT),
        ("reason", _TEXT),
        ("suppressed", "boolean"),
    ],
)
_DUE_NOISE = sql(
    f"SELECT {NOISE_COLUMNS} FROM noise_state WHERE due_at IS NOT NULL AND due_at <= :until "
    "ORDER BY due_at, kind, name, key LIMIT :limit"
)
# The WHERE lets it read the partial index noise_state_due (one probe) rather than the table.
_NEXT_NOISE_DUE = sql("SELECT min(due_at) FROM noise_state WHERE due_at IS NOT NULL")


def load_noise(refs: Collection[NoiseRef]) -> Plan[list[NoiseRow]]:
    """The rows of these refs that exist (a long key comes back as it was asked for)."""
    wanted = noise_refs(refs)
    if not wanted:
        return []
    rows = yield _LOAD_NOISE, ([{"kind": k, "name": n, "key": key} for k, n, key in wanted], {})
    return as_requested(map(noise_row, rows), wanted)


def due_noise(until: float, limit: int) -> Plan[list[NoiseRow]]:
    """Timers due at or before ``until``, earliest first."""
    rows = yield _DUE_NOISE, {"until": until, "limit": limit}
    return [noise_row(r) for r in rows]


def next_noise_due() -> Plan[float | None]:
    """The earliest timer's due time."""
    rows = yield _NEXT_NOISE_DUE, {}
    return None if not rows or rows[0][0] is None else float(rows[0][0])


def _write_noise(noise: NoiseWrite, now: float) -> Plan[None]:
    """Noise changes inside the caller's transaction: purge, deletes, then writes."""
    if noise.purge_before is not None:
        yield _PURGE_NOISE, {"before": noise.purge_before}
    if noise.delete:
        refs = sorted({noise_ref(ref) for ref in noise.delete})
        yield _DELETE_NOISE, ([{"kind": k, "name": n, "key": key} for k, n, key in refs], {})
    if noise.put:
        # One row per ref: a later write of the same ref in the batch wins (PostgreSQL's ON CONFLICT
        # cannot touch one row twice in one statement).
        puts = {noise_ref((r.kind, r.name, r.key)): r for r in noise.put}
        rows = [
            {"kind": k, "name": n, "key": key, "data": storable(r.data), "due_at": r.due_at, "expires_at": r.expires_at}
            for (k, n, key), r in puts.items()
        ]
        yield _PUT_NOISE, (rows, {})
    if noise.log:
        entries = [
            {
                "at": e.at,
                "inbox_id": e.inbox_id,
                "rule": None if e.rule is None else storable(e.rule),
                "key": None if e.key is None else stored_key(e.key),
                "action": storable(e.action),
                "reason": storable(e.reason),
                "suppressed": e.suppressed,
            }
            for e in noise.log
        ]
        yield _LOG_NOISE, (entries, {"now": now})
    if noise.alerts:
        yield from write_alerts(noise.alerts)


def fire_alert_timers(timers: Sequence[AlertTimer], now: float) -> Plan[list[AlertTimer]]:
    """Write each fired alert timer whose alert is still firing and due as read, with its deliveries and trail."""
    fired: list[AlertTimer] = []
    for timer in timers:
        a = timer.alert
        params = {
            "id": a.id,
            "due_at": a.due_at,
            "next_repeat_at": a.next_repeat_at,
            "reminders": a.reminders,
            "escalations": a.escalations,
            "was_due": timer.was_due,
        }
        if not (yield TIMER, params):
            continue  # acknowledged, resolved or fired by someone else meanwhile: nothing is sent
        fired.append(timer)
        deliveries = [_delivery(x.inbox_id, x.delivery, now) for x in timer.deliveries]
        if deliveries:
            yield _INSERT_DELIVERIES, (deliveries, {"now": now})
            yield NOTIFY, sorted({f"deliveries:{row['channel']}" for row in deliveries})
        yield from write_trail(timer.trail)
    return fired


# -- silences -----------------------------------------------------------------------------

_ADD_SILENCE = sql(
    "INSERT INTO silences (matchers, comment, created_by, created_at, starts_at, ends_at) "
    f"VALUES (:matchers, :comment, :created_by, :now, :starts_at, :ends_at) RETURNING {SILENCE_COLUMNS}"
)
_LIST_SILENCES = sql(f"SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id DESC LIMIT :limit")
_LIST_ACTIVE_SILENCES = sql(
    f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > :active_at ORDER BY id DESC LIMIT :limit"
)
_EXPIRE_SILENCE = sql(
    "UPDATE silences SET ends_at = :now, starts_at = {least}(starts_at, :now) WHERE id = :id AND ends_at > :now"
)
_GET_SILENCE = sql(f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = :id")


def add_silence(silence: NewSilence, now: float) -> Plan[SilenceRow]:
    """Store an ad-hoc silence; the row with its id."""
    rows = yield (
        _ADD_SILENCE,
        {
            "matchers": json.dumps([storable(m) for m in silence.matchers]),
            "comment": storable(silence.comment),
            "created_by": storable(silence.created_by),
            "now": now,
            "starts_at": silence.starts_at,
            "ends_at": silence.ends_at,
        },
    )
    return silence_row(rows[0])


def list_silences(active_at: float | None, limit: int) -> Plan[list[SilenceRow]]:
    """Newest first; with ``active_at`` only those not ended by then."""
    if active_at is None:
        rows = yield _LIST_SILENCES, {"limit": limit}
    else:
        rows = yield _LIST_ACTIVE_SILENCES, {"active_at": active_at, "limit": limit}
    return [silence_row(r) for r in rows]


def expire_silence(silence_id: int, now: float) -> Plan[SilenceRow | None]:
    """End a silence now, unless it has ended already; the row, or None."""
    yield _EXPIRE_SILENCE, {"now": now, "id": silence_id}
    rows = yield _GET_SILENCE, {"id": silence_id}
    return silence_row(rows[0]) if rows else None


# -- outbox -------------------------------------------------------------------------------


def _claim_deliveries(d: Dialect) -> str:
    """Round-robin across rules: each rule's due rows in their own order, one turn per rule at a time.

    The rules with pending rows are found by a skip scan of ``deliveries_fair`` (one index probe per
    rule), and of each only its first ``:limit`` due rows are read: a claim costs rules x limit
    index entries, not the whole backlog of a flooding rule.
    """
    due = (
        "x.state = 'pending' AND x.channel = :channel AND x.rule = k.rule AND x.next_attempt_at <= :now "
        "AND (x.lease_until IS NULL OR x.lease_until <= :now)"
    )
    first = f"FROM deliveries x WHERE {due} ORDER BY x.next_attempt_at, x.id LIMIT :limit"
    if d.row_locks:  # PostgreSQL: a lateral join, its rows locked (a window cannot sit beside FOR UPDATE)
        candidates = f"FROM k CROSS JOIN LATERAL (SELECT x.id, x.next_attempt_at {first} {{skip_locked}}) c"
    else:  # SQLite: no LATERAL; the correlated IN is run once per rule
        candidates = f"FROM k JOIN deliveries c ON c.id IN (SELECT x.id {first})"
    return (
        "WITH RECURSIVE k (rule) AS ("
        "SELECT min(rule) FROM deliveries WHERE state = 'pending' AND channel = :channel "
        "UNION ALL SELECT (SELECT min(rule) FROM deliveries WHERE state = 'pending' AND channel = :channel "
        "AND rule > k.rule) FROM k WHERE k.rule IS NOT NULL) "
        "UPDATE deliveries SET lease_until = :until WHERE id IN ("
        "SELECT id FROM (SELECT c.id AS id, c.next_attempt_at AS at, "
        "row_number() OVER (PARTITION BY k.rule ORDER BY c.next_attempt_at, c.id) AS turn "
        f"{candidates}) ranked ORDER BY turn, at, id LIMIT :limit) "
        # Checked again on the row itself: a replica that waited for this row's lock must not take it too.
        "AND state = 'pending' AND (lease_until IS NULL OR lease_until <= :now) "
        f"RETURNING {DELIVERY_COLUMNS}"
    )


_CLAIM_DELIVERIES = sql(_claim_deliveries)
_DUE_CHANNELS = sql(
    "SELECT DISTINCT channel FROM deliveries WHERE state = 'pending' AND next_attempt_at <= :now "
    "AND (lease_until IS NULL OR lease_until <= :now)"
)
_MARK_SENT = sql(
    "UPDATE deliveries SET state = 'sent', sent_at = @at, attempts = attempts + 1, lease_until = NULL, "
    "last_error = NULL {from_rows} WHERE deliveries.id = @id",
    rows=[("id", _ID), ("at", _REAL)],
)
_SENT_ATTEMPTS = sql(
    "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) {values}",
    values="@id, @at, 'sent', NULL, @elapsed",
    rows=[("id", _ID), ("at", _REAL), ("elapsed", _REAL)],
)
_MARK_DEAD = sql(
    "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, lease_until = NULL, last_error = :reason "
    "WHERE id = :id AND state = 'pending'"
)
_MARK_FAILED = sql(
    "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, last_error = :reason, "
    "next_attempt_at = :next_attempt_at WHERE id = :id AND state = 'pending'"
)
_ATTEMPT = sql(
    "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (:id, :now, :status, :reason, :elapsed)"
)
_RETRY_DELIVERY = sql(
    "UPDATE deliveries SET state = 'pending', next_attempt_at = :now, budget_since = :now, attempts = 0, "
    "lease_until = NULL WHERE id = :id AND state IN ('pending', 'dead') RETURNING channel"
)
_RETRY_DEAD = sql(
    "UPDATE deliveries SET state = 'pending', next_attempt_at = :now, budget_since = :now, attempts = 0, "
    "lease_until = NULL WHERE state = 'dead' RETURNING channel"
)


_RELEASE_HELD = sql(
    "UPDATE deliveries SET title = :title, body = :body, next_attempt_at = :now, budget_since = :now "
    "WHERE inbox_id = :inbox_id AND rule = :rule AND channel = :channel AND state = 'pending' AND attempts = 0 "
    "AND next_attempt_at > :now AND lease_until IS NULL RETURNING channel"
)


def release_held(held: HeldDelivery, title: str, body: str, now: float) -> Plan[bool]:
    """Replace a held delivery's text and make it due now, unless its hold has ended; wake its channel."""
    rows = yield (
        _RELEASE_HELD,
        {
            "title": storable(title),
            "body": storable(body),
            "now": now,
            "inbox_id": held.inbox_id,
            "rule": storable(held.rule),
            "channel": storable(held.channel),
        },
    )
    if rows:
        yield NOTIFY, [f"deliveries:{rows[0][0]}"]
    return bool(rows)


def claim_deliveries(channel: str, limit: int, now: float, lease: float) -> Plan[list[DeliveryRow]]:
    """Lease due, unleased deliveries of one channel, taken round-robin across rules (see ``_claim_deliveries``)."""
    rows = yield _CLAIM_DELIVERIES, {"until": now + lease, "now": now, "limit": limit, "channel": channel}
    return fair_order(map(delivery_row, rows))


def fair_order(rows: Iterable[DeliveryRow]) -> list[DeliveryRow]:
    """Rows round-robin across rules: every rule's first, then every rule's second...; each rule in its order."""
    by_rule: dict[str, list[DeliveryRow]] = {}
    for row in sorted(rows, key=lambda r: (r.next_attempt_at, r.id)):
        by_rule.setdefault(row.rule, []).append(row)
    turns = [(turn, row.next_attempt_at, row.id, row) for same in by_rule.values() for turn, row in enumerate(same)]
    return [row for *_, row in sorted(turns, key=lambda t: t[:3])]


def due_channels(now: float) -> Plan[set[str]]:
    """Channels with at least one delivery due and not leased."""
    rows = yield _DUE_CHANNELS, {"now": now}
    return {str(r[0]) for r in rows}


def mark_sent(take: Callable[[], list[tuple[int, float, float]]]) -> Plan[list[None]]:
    """Record the successes ``take`` gives, as (delivery id, now, elapsed): a group commit's batch."""
    sent = [{"id": i, "at": at, "elapsed": elapsed} for i, at, elapsed in take()]
    yield _MARK_SENT, (sent, {})
    yield _SENT_ATTEMPTS, (sent, {})
    return [None] * len(sent)


def mark_failed(delivery_id: int, now: float, reason: str, elapsed: float, next_attempt_at: float | None) -> Plan[None]:
    """Record a failed attempt and when to try again, or move the delivery to the dead letters."""
    reason = storable(reason)
    if next_attempt_at is None:
        yield _MARK_DEAD, {"reason": reason, "id": delivery_id}
    else:
        yield _MARK_FAILED, {"reason": reason, "next_attempt_at": next_attempt_at, "id": delivery_id}
    status = "dead" if next_attempt_at is None else "failed"
    yield _ATTEMPT, {"id": delivery_id, "now": now, "status": status, "reason": reason, "elapsed": elapsed}


def retry_delivery(delivery_id: int, now: float) -> Plan[bool]:
    """Make one unsent delivery due now, with a fresh attempt budget, and wake its channel."""
    rows = yield _RETRY_DELIVERY, {"now": now, "id": delivery_id}
    if rows:
        yield NOTIFY, [f"deliveries:{rows[0][0]}"]
    return bool(rows)


def retry_dead(now: float) -> Plan[int]:
    """Make every dead delivery due now, with a fresh attempt budget, and wake their channels."""
    rows = yield _RETRY_DEAD, {"now": now}
    yield NOTIFY, sorted({f"deliveries:{c}" for (c,) in rows})
    return len(rows)


# -- reads --------------------------------------------------------------------------------

_GET_EVENT = sql(f"SELECT {EVENT_COLUMNS} FROM inbox WHERE id = :id")
_GET_DELIVERY = sql(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = :id")
_DELIVERIES_OF = sql(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE inbox_id = :inbox_id ORDER BY id")
_ATTEMPTS_OF = sql(
    lambda d: f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {d.in_ids('delivery_id', 'ids')} ORDER BY id"
)
_INBOX_DEPTH = sql("SELECT count(*), min(received_at) FROM inbox WHERE state = 'new'")
_PENDING_BY_CHANNEL = sql(
    "SELECT channel, count(*), min(CASE WHEN next_attempt_at <= :now THEN next_attempt_at END) "
    "FROM deliveries WHERE state = 'pending' GROUP BY channel"
)
_DEAD_BY_CHANNEL = sql("SELECT channel, count(*) FROM deliveries WHERE state = 'dead' GROUP BY channel")
# Only open alerts are read (the partial indexes on state <> 'resolved'): resolved ones pile up, open ones stay few.
_OPEN_ALERTS_BY_STATE = sql(
    "SELECT state, count(*), min(opened_at) FROM alerts WHERE state <> 'resolved' GROUP BY state"
)
# Four spellings, so each can use its index: only suppressions, only one event's, both, neither.
_NOISE_LOG = {
    (suppressed, by_event): sql(
        f"SELECT {LOG_COLUMNS} FROM noise_log "
        + ("WHERE " if suppressed or by_event else "")
        + " AND ".join(
            part for part, wanted in (("suppressed = {true}", suppressed), ("inbox_id = :inbox_id", by_event)) if wanted
        )
        + " ORDER BY id DESC LIMIT :limit"
    )
    for suppressed in (False, True)
    for by_event in (False, True)
}


def get_event(inbox_id: int) -> Plan[EventRow | None]:
    """One event, or None."""
    rows = yield _GET_EVENT, {"id": inbox_id}
    return event_row(rows[0]) if rows else None


def list_events(d: Dialect, limit: int, events: EventQuery | None) -> Plan[list[EventRow]]:
    """Newest events first, those ``events`` admits."""
    where, params = event_where(events, d)
    params["limit"] = limit
    rows = yield query(f"SELECT {EVENT_COLUMNS} FROM inbox{where} ORDER BY id DESC LIMIT {d.param('limit')}"), params
    return [event_row(r) for r in rows]


def get_delivery(delivery_id: int) -> Plan[DeliveryRow | None]:
    """One delivery, or None."""
    rows = yield _GET_DELIVERY, {"id": delivery_id}
    return delivery_row(rows[0]) if rows else None


def deliveries_of(inbox_id: int) -> Plan[list[DeliveryRow]]:
    """The deliveries an event produced, in creation order."""
    rows = yield _DELIVERIES_OF, {"inbox_id": inbox_id}
    return [delivery_row(r) for r in rows]


def list_deliveries(d: Dialect, limit: int, where: str, params: dict[str, object]) -> Plan[list[DeliveryRow]]:
    """Newest deliveries first, those ``where`` (``delivery_where``) admits."""
    text = f"SELECT {DELIVERY_COLUMNS} FROM deliveries{where} ORDER BY id DESC LIMIT {d.param('limit')}"
    rows = yield query(text), {**params, "limit": limit}
    return [delivery_row(r) for r in rows]


def list_attempts(d: Dialect, delivery_ids: Collection[int]) -> Plan[list[AttemptRow]]:
    """The attempt log of these deliveries, in the order of the attempts."""
    if not delivery_ids:
        return []
    rows = yield _ATTEMPTS_OF, {"ids": d.ids(delivery_ids)}
    return [attempt_row(r) for r in rows]


def list_noise_log(limit: int, suppressed_only: bool, inbox_id: int | None) -> Plan[list[NoiseLogRow]]:
    """Newest decisions first."""
    rows = yield _NOISE_LOG[suppressed_only, inbox_id is not None], {"limit": limit, "inbox_id": inbox_id}
    return [log_row(r) for r in rows]


def queue_stats(now: float) -> Plan[QueueStats]:
    """Unprocessed events, per channel the pending (with the earliest due time among the due) and dead, open alerts."""
    ((depth, oldest),) = yield _INBOX_DEPTH, {}
    channels: dict[str, ChannelStats] = {}
    for channel, pending, due in (yield _PENDING_BY_CHANNEL, {"now": now}):
        channels[channel] = ChannelStats(pending=int(pending), oldest_due_at=due)
    for channel, dead in (yield _DEAD_BY_CHANNEL, {}):
        known = channels.get(channel, ChannelStats())
        channels[channel] = ChannelStats(known.pending, int(dead), known.oldest_due_at)
    open_alerts: dict[str, int] = {"firing": 0, "acknowledged": 0}
    oldest_firing: float | None = None
    for state, count, opened in (yield _OPEN_ALERTS_BY_STATE, {}):
        open_alerts[state] = int(count)
        if state == "firing" and opened is not None:
            oldest_firing = float(opened)
    return QueueStats(
        inbox_depth=int(depth),
        inbox_oldest_at=oldest,
        channels=channels,
        open_alerts=open_alerts,
        oldest_firing_at=oldest_firing,
    )
