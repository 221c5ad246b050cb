"""The store's queries for the operations surface, on every implementation: event and delivery
filters, the attempt log, and the queue statistics of the metrics.

The same ``store`` fixture as tests/test_store.py: SQLite in ``tmp_path``, and PostgreSQL (marked
``postgres``) in a fresh schema when ``RECEIVER_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import pytest

from receiver.store import EventQuery, InboxItem, NewDelivery, Processed, Store

pytestmark = pytest.mark.anyio


def delivery(channel: str, rule: str = "r1") -> NewDelivery:
    return NewDelivery(rule=rule, channel=channel, title="t", body="b", severity="failure", body_format="text")


EVENTS = [
    # (event id, type, received_at, process, robot, source)
    ("e1", "job.faulted", 1000.0, "InvoiceBot", "BOT01", "uipath"),
    ("e2", "job.completed", 1010.0, "InvoiceBot", "BOT02", "uipath"),
    ("e3", "queueItem.transactionFailed", 1020.0, None, "BOT01", "finance"),
    ("e4", "job.faulted", 1030.0, "Payroll_100%", "bot_03", "uipath"),
    ("e5", "ping", 1040.0, None, None, "uipath"),
]


@pytest.fixture
async def events(store: Store) -> dict[str, int]:
    """Five processed events (the last one left new), with process and robot recorded."""
    ids: dict[str, int] = {}
    for event_id, type_, at, _, _, source in EVENTS:
        accepted = await store.accept(
            InboxItem(source=source, event_id=event_id, type=type_, body=b"{}", received_at=at)
        )
        ids[event_id] = accepted.inbox_id
    rows = await store.claim_inbox(limit=10, now=2000.0, lease=60)
    assert 5 == len(rows)
    await store.finish_inbox(
        [
            Processed(ids[e], "processed", "{}", process=process, robot=robot)
            for e, _, _, process, robot, _ in EVENTS[:4]
        ],
        now=2000.0,
    )
    return ids


def event_ids(rows: list[object], ids: dict[str, int]) -> list[str]:
    names = {v: k for k, v in ids.items()}
    return [names[r.id] for r in rows]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(EventQuery(), ["e5", "e4", "e3", "e2", "e1"], id="all-newest-first"),
        pytest.param(EventQuery(types=("job.faulted",)), ["e4", "e1"], id="type"),
        pytest.param(EventQuery(types=("JOB.Faulted",)), ["e4", "e1"], id="type-any-casing"),
        pytest.param(EventQuery(types=("job.*", "ping")), ["e5", "e4", "e2", "e1"], id="types-glob"),
        pytest.param(EventQuery(types=("queueItem.transaction?ailed",)), ["e3"], id="type-one-char"),
        pytest.param(EventQuery(process="invoicebot"), ["e2", "e1"], id="process-any-casing"),
        pytest.param(EventQuery(process="Payroll_100%"), ["e4"], id="process-like-chars-literal"),
        pytest.param(EventQuery(process="Payroll_1%"), [], id="process-percent-is-not-a-wildcard"),
        pytest.param(EventQuery(process="Pay*"), ["e4"], id="process-glob"),
        pytest.param(EventQuery(robot="BOT01"), ["e3", "e1"], id="robot"),
        pytest.param(EventQuery(robot="bot_0?"), ["e4"], id="robot-underscore-literal"),
        pytest.param(EventQuery(source="finance"), ["e3"], id="source"),
        pytest.param(EventQuery(state="new"), ["e5"], id="state"),
        pytest.param(EventQuery(since=1010.0, until=1030.0), ["e3", "e2"], id="time-range"),
        pytest.param(EventQuery(types=("job.faulted",), robot="BOT01"), ["e1"], id="combined"),
    ],
)
async def test_list_events_filters(
    store: Store, events: dict[str, int], query: EventQuery, expected: list[str]
) -> None:
    """Every filter narrows the events as documented; names match in any casing with * and ? only."""
    assert expected == event_ids(await store.list_events(query=query), events)


async def test_list_events_pages_with_before(store: Store, events: dict[str, int]) -> None:
    """limit and before page through the events newest first."""
    first = await store.list_events(limit=2)
    second = await store.list_events(limit=2, query=EventQuery(before=first[-1].id))
    assert ["e5", "e4", "e3", "e2"] == event_ids([*first, *second], events)


async def test_get_event_has_process_and_robot(store: Store, events: dict[str, int]) -> None:
    """get_event returns the row with what processing recorded; None for an unknown id."""
    row = await store.get_event(events["e1"])
    assert row is not None
    assert ("InvoiceBot", "BOT01", "processed") == (row.process, row.robot, row.state)
    assert await store.get_event(99999) is None


async def test_delivery_filters_attempts_and_queue_stats(store: Store, events: dict[str, int]) -> None:
    """Deliveries filter by state, failing, channel, rule and event; attempts are logged; the queue is counted."""
    e1, e2 = events["e1"], events["e2"]
    await store.finish_inbox(
        [
            Processed(e1, "processed", "{}", [delivery("ops"), delivery("mail")]),
            Processed(e2, "processed", "{}", [delivery("ops", rule="r2")]),
        ],
        now=3000.0,
    )
    rows = {(d.inbox_id, d.channel): d for d in await store.list_deliveries()}
    ops1, mail1, ops2 = rows[(e1, "ops")], rows[(e1, "mail")], rows[(e2, "ops")]
    await store.mark_failed(ops1.id, now=3001.0, reason="error=500", elapsed=0.2, next_attempt_at=3100.0)
    await store.mark_failed(mail1.id, now=3002.0, reason="error=404", elapsed=0.1, next_attempt_at=None)
    await store.mark_sent(ops2.id, now=3003.0, elapsed=0.3)

    assert [mail1.id] == [d.id for d in await store.list_deliveries(state="dead")]
    assert [ops1.id] == [d.id for d in await store.list_deliveries(failing=True)]
    assert {ops1.id, ops2.id} == {d.id for d in await store.list_deliveries(channel="ops")}
    assert [ops2.id] == [d.id for d in await store.list_deliveries(rule="r2")]
    assert {ops1.id, mail1.id} == {d.id for d in await store.list_deliveries(inbox_ids=[e1])}
    assert [] == await store.list_deliveries(inbox_ids=[])
    assert [min(ops1.id, mail1.id, ops2.id)] == [
        d.id for d in await store.list_deliveries(before=sorted([ops1.id, mail1.id, ops2.id])[1])
    ]
    found = await store.get_delivery(mail1.id)
    assert found is not None
    assert ("dead", "error=404") == (found.state, found.last_error)
    assert await store.get_delivery(99999) is None

    await store.retry_delivery(mail1.id, now=3200.0)
    await store.mark_failed(mail1.id, now=3201.0, reason="error=404 again", elapsed=0.1, next_attempt_at=None)
    log = await store.list_attempts([mail1.id, ops2.id])
    assert [(mail1.id, "dead", "error=404"), (ops2.id, "sent", None), (mail1.id, "dead", "error=404 again")] == [
        (a.delivery_id, a.status, a.reason) for a in log
    ]
    assert [] == await store.list_attempts([])

    stats = await store.queue_stats(now=3150.0)
    assert (1, 1040.0) == (stats.inbox_depth, stats.inbox_oldest_at)
    assert {"ops", "mail"} == set(stats.channels)
    assert (1, 0, 3100.0) == (
        stats.channels["ops"].pending,
        stats.channels["ops"].dead,
        stats.channels["ops"].oldest_due_at,
    )
    assert (0, 1, None) == (
        stats.channels["mail"].pending,
        stats.channels["mail"].dead,
        stats.channels["mail"].oldest_due_at,
    )
    not_due = await store.queue_stats(now=3050.0)
    assert not_due.channels["ops"].oldest_due_at is None
