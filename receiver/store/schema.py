"""The versioned schema of both stores: migration N is the same change on SQLite and on PostgreSQL.

Each store applies, at ``open``, the migrations its database has not seen yet, in one transaction:
SQLite records the version in ``PRAGMA user_version``; PostgreSQL in the table ``receiver_migrations``
and under an advisory lock, so replicas starting together do not race. A database with a version
newer than ``len(SQLITE)`` was written by a newer receiver and is refused rather than damaged.

Append new migrations to *both* tuples; never edit one that has shipped. This module holds text
only, so it needs no database driver.
"""

from __future__ import annotations

__all__ = ["POSTGRES", "SQLITE"]

SQLITE: tuple[str, ...] = (
    # 1: inbox, outbox and the attempt log.
    """
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at REAL NOT NULL,
        event_time REAL,
        state TEXT NOT NULL DEFAULT 'new',
        lease_until REAL,
        processed_at REAL,
        outcome TEXT,
        UNIQUE (source, event_id)
    );
    CREATE INDEX inbox_new ON inbox (id) WHERE state = 'new';
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        inbox_id INTEGER NOT NULL REFERENCES inbox (id),
        rule TEXT NOT NULL,
        channel TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        severity TEXT NOT NULL,
        body_format TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        budget_since REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        lease_until REAL,
        last_error TEXT,
        sent_at REAL,
        UNIQUE (inbox_id, rule, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
    CREATE INDEX deliveries_inbox ON deliveries (inbox_id);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
        at REAL NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        elapsed REAL NOT NULL
    );
    CREATE INDEX attempts_delivery ON attempts (delivery_id);
    """,
    # 2: noise control: state rows (windows, counters, groups, timers, flags), ad-hoc silences, the decision log.
    """
    CREATE TABLE noise_state (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        due_at REAL,
        expires_at REAL,
        PRIMARY KEY (kind, name, key)
    );
    CREATE INDEX noise_state_due ON noise_state (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX noise_state_expires ON noise_state (expires_at) WHERE due_at IS NULL;
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        matchers TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL
    );
    CREATE INDEX silences_ends ON silences (ends_at);
    CREATE TABLE noise_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        recorded_at REAL NOT NULL,
        inbox_id INTEGER,
        rule TEXT,
        key TEXT,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        suppressed INTEGER NOT NULL
    );
    CREATE INDEX noise_log_inbox ON noise_log (inbox_id);
    CREATE INDEX noise_log_suppressed ON noise_log (id) WHERE suppressed = 1;
    """,
    # 3: named leases: one inbox worker (and so one noise engine) per database at a time.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 4: the operations surface: process and robot of each event (filters of the admin API), the
    # time index of its time-range filter, and the dead letters per channel (metrics).
    """
    ALTER TABLE inbox ADD COLUMN process TEXT;
    ALTER TABLE inbox ADD COLUMN robot TEXT;
    CREATE INDEX inbox_received ON inbox (received_at);
    CREATE INDEX deliveries_dead ON deliveries (channel) WHERE state = 'dead';
    """,
    # 5: named counters shared by every replica (the web page's session generation: log out ends sessions).
    """
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 6: fair claiming: each rule's due deliveries of a channel in order (a claim takes them round-robin);
    # a source's latest event (where the watch of a quiet source starts).
    """
    CREATE INDEX deliveries_fair ON deliveries (channel, rule, next_attempt_at) WHERE state = 'pending';
    CREATE INDEX inbox_source ON inbox (source, received_at);
    """,
    # 7: the overview's charts read a time range from indexes alone: the unparsed events, the faults
    # by process and robot, the latency of sent deliveries (only a sent delivery has a sent_at).
    # Partial, so that the other events (most of them) cost no index write.
    """
    CREATE INDEX inbox_unparsed ON inbox (received_at) WHERE state = 'unparsed';
    CREATE INDEX inbox_faults ON inbox (received_at, type, process, robot)
        WHERE type IN ('job.faulted', 'queueItem.transactionFailed', 'schedule.failed');
    CREATE INDEX deliveries_sent ON deliveries (sent_at, channel, created_at) WHERE sent_at IS NOT NULL;
    """,
    # 8: alerts: a rule's key that is firing, with its lifecycle (firing -> acknowledged -> resolved),
    # its reminder/escalation timer (due_at) and the trail of who did what when (alert_events).
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        shown_key TEXT NOT NULL,
        state TEXT NOT NULL,
        title TEXT NOT NULL,
        inbox_id INTEGER NOT NULL,
        last_inbox_id INTEGER NOT NULL,
        process TEXT,
        robot TEXT,
        count INTEGER NOT NULL,
        opened_at REAL NOT NULL,
        last_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        due_at REAL,
        next_repeat_at REAL,
        reminders INTEGER NOT NULL DEFAULT 0,
        escalations INTEGER NOT NULL DEFAULT 0,
        acked_at REAL,
        acked_by TEXT,
        resolved_at REAL,
        resolved_by TEXT,
        resolution TEXT,
        event_type TEXT NOT NULL
    );
    CREATE UNIQUE INDEX alerts_open ON alerts (rule, key) WHERE state <> 'resolved';
    CREATE INDEX alerts_due ON alerts (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX alerts_expires ON alerts (expires_at) WHERE state <> 'resolved';
    CREATE INDEX alerts_last ON alerts (last_at);
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        detail TEXT NOT NULL,
        inbox_id INTEGER
    );
    CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
    CREATE INDEX alert_events_inbox ON alert_events (inbox_id) WHERE inbox_id IS NOT NULL;
    CREATE UNIQUE INDEX alert_events_once ON alert_events (alert_id, action) WHERE action = 'retry_started';
    """,
    # 9: how often each event was claimed: one claimed again without being finished (the process died
    # on it, or lost its lease) is processed alone, and set aside past a few claims.
    """
    ALTER TABLE inbox ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: the overview's charts on a million events: each event's arrival by id from a narrow index
    # (not the wide rows), the suppressions by event (only suppressed rows), and the sent deliveries
    # per channel by time (a channel's count, slowest and most recent sample); this last replaces
    # migration 7's deliveries_sent, read by nothing else.
    """
    CREATE INDEX inbox_arrival ON inbox (id, received_at);
    CREATE INDEX noise_log_held ON noise_log (inbox_id) WHERE suppressed = 1;
    CREATE INDEX deliveries_latency ON deliveries (channel, sent_at, created_at) WHERE sent_at IS NOT NULL;
    DROP INDEX IF EXISTS deliveries_sent;
    """,
    # 11: fewer index writes per event: deliveries_inbox repeats the head of the unique (inbox_id, rule,
    # channel) index, which serves every lookup by event; deliveries_fair serves what read deliveries_due
    # (pending rows by channel); nothing reads alerts_last. Three pages fewer per notifying event.
    """
    DROP INDEX IF EXISTS deliveries_inbox;
    DROP INDEX IF EXISTS deliveries_due;
    DROP INDEX IF EXISTS alerts_last;
    """,
)

POSTGRES: tuple[str, ...] = (
    # 1: inbox, outbox and the attempt log. Times stay Unix seconds (float8) as on SQLite, so the
    # caller's clock drives both stores the same way.
    """
    CREATE TABLE inbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        body BYTEA NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        event_time DOUBLE PRECISION,
        state TEXT NOT NULL DEFAULT 'new',
        lease_until DOUBLE PRECISION,
        processed_at DOUBLE PRECISION,
        outcome TEXT,
        UNIQUE (source, event_id)
    );
    CREATE INDEX inbox_new ON inbox (id) WHERE state = 'new';
    CREATE TABLE deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        inbox_id BIGINT NOT NULL REFERENCES inbox (id),
        rule TEXT NOT NULL,
        channel TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        severity TEXT NOT NULL,
        body_format TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        budget_since DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION,
        last_error TEXT,
        sent_at DOUBLE PRECISION,
        UNIQUE (inbox_id, rule, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
    CREATE INDEX deliveries_inbox ON deliveries (inbox_id);
    CREATE TABLE attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
        at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        elapsed DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX attempts_delivery ON attempts (delivery_id);
    """,
    # 2: noise control: state rows (windows, counters, groups, timers, flags), ad-hoc silences, the decision log.
    """
    CREATE TABLE noise_state (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        due_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION,
        PRIMARY KEY (kind, name, key)
    );
    CREATE INDEX noise_state_due ON noise_state (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX noise_state_expires ON noise_state (expires_at) WHERE due_at IS NULL;
    CREATE TABLE silences (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        matchers TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        starts_at DOUBLE PRECISION NOT NULL,
        ends_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX silences_ends ON silences (ends_at);
    CREATE TABLE noise_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL,
        inbox_id BIGINT,
        rule TEXT,
        key TEXT,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        suppressed BOOLEAN NOT NULL
    );
    CREATE INDEX noise_log_inbox ON noise_log (inbox_id);
    CREATE INDEX noise_log_suppressed ON noise_log (id) WHERE suppressed;
    """,
    # 3: named leases: one inbox worker (and so one noise engine) per database at a time.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: the operations surface (as on SQLite).
    """
    ALTER TABLE inbox ADD COLUMN process TEXT;
    ALTER TABLE inbox ADD COLUMN robot TEXT;
    CREATE INDEX inbox_received ON inbox (received_at);
    CREATE INDEX deliveries_dead ON deliveries (channel) WHERE state = 'dead';
    """,
    # 5: named counters (as on SQLite).
    """
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    """,
    # 6: fair claiming (as on SQLite; the id orders a rule's rows of one due time, as SQLite's rowid does);
    # a source's latest event.
    """
    CREATE INDEX deliveries_fair ON deliveries (channel, rule, next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX inbox_source ON inbox (source, received_at, id);
    """,
    # 7: the overview's charts (as on SQLite).
    """
    CREATE INDEX inbox_unparsed ON inbox (received_at) WHERE state = 'unparsed';
    CREATE INDEX inbox_faults ON inbox (received_at, type, process, robot)
        WHERE type IN ('job.faulted', 'queueItem.transactionFailed', 'schedule.failed');
    CREATE INDEX deliveries_sent ON deliveries (sent_at, channel, created_at) WHERE sent_at IS NOT NULL;
    """,
    # 8: alerts and their trail (as on SQLite).
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        shown_key TEXT NOT NULL,
        state TEXT NOT NULL,
        title TEXT NOT NULL,
        inbox_id BIGINT NOT NULL,
        last_inbox_id BIGINT NOT NULL,
        process TEXT,
        robot TEXT,
        count INTEGER NOT NULL,
        opened_at DOUBLE PRECISION NOT NULL,
        last_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        due_at DOUBLE PRECISION,
        next_repeat_at DOUBLE PRECISION,
        reminders INTEGER NOT NULL DEFAULT 0,
        escalations INTEGER NOT NULL DEFAULT 0,
        acked_at DOUBLE PRECISION,
        acked_by TEXT,
        resolved_at DOUBLE PRECISION,
        resolved_by TEXT,
        resolution TEXT,
        event_type TEXT NOT NULL
    );
    CREATE UNIQUE INDEX alerts_open ON alerts (rule, key) WHERE state <> 'resolved';
    CREATE INDEX alerts_due ON alerts (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX alerts_expires ON alerts (expires_at) WHERE state <> 'resolved';
    CREATE INDEX alerts_last ON alerts (last_at);
    CREATE TABLE alert_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        detail TEXT NOT NULL,
        inbox_id BIGINT
    );
    CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
    CREATE INDEX alert_events_inbox ON alert_events (inbox_id) WHERE inbox_id IS NOT NULL;
    CREATE UNIQUE INDEX alert_events_once ON alert_events (alert_id, action) WHERE action = 'retry_started';
    """,
    # 9: how often each event was claimed (as on SQLite).
    """
    ALTER TABLE inbox ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: the overview's charts on a million events (as on SQLite; the arrival as an included column),
    # and the time index carries the id, as SQLite's does (its rowid): a range's ids without the rows.
    """
    CREATE INDEX inbox_arrival ON inbox (id) INCLUDE (received_at);
    DROP INDEX IF EXISTS inbox_received;
    CREATE INDEX inbox_received ON inbox (received_at) INCLUDE (id);
    CREATE INDEX noise_log_held ON noise_log (inbox_id) WHERE suppressed;
    CREATE INDEX deliveries_latency ON deliveries (channel, sent_at, created_at) WHERE sent_at IS NOT NULL;
    DROP INDEX IF EXISTS deliveries_sent;
    """,
    # 11: fewer index writes per event (as on SQLite; the unique (inbox_id, rule, channel) index also
    # serves the foreign key's lookups when events are pruned).
    """
    DROP INDEX IF EXISTS deliveries_inbox;
    DROP INDEX IF EXISTS deliveries_due;
    DROP INDEX IF EXISTS alerts_last;
    """,
)
