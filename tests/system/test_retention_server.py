"""Retention in a real ``receiver serve``: pruning in the background never holds a webhook's 202."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from support import ServerProcess, fault
from test_retention import RULES, SECRET, _count, _fill_old


def test_a_real_server_answers_webhooks_while_it_prunes(tmp_path: Path) -> None:
    """``receiver serve`` prunes 20,000 old events in the background while every webhook gets its 202 within 1 s."""
    database = tmp_path / "serve.db"
    _fill_old(database, events=20_000, days_ago=40)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = ServerProcess(
        rules=rules,
        database=database,
        env={
            "RECEIVER_WEBHOOK_SECRET": SECRET,
            "RECEIVER_PRUNE_INTERVAL_SECONDS": "0.5",
            "RECEIVER_PRUNE_PAUSE_SECONDS": "0.01",
        },
    ).start()
    try:
        slowest = 0.0
        for n in range(500):  # bounded: at most 500 webhooks, ~0.02 s apart
            started = time.monotonic()
            status, reply = server.post_signed(fault(f"live-{n}"), SECRET)
            slowest = max(slowest, time.monotonic() - started)
            assert (202, "accepted") == (status, reply["status"])
            if _count(database, "inbox", "event_id LIKE 'old-%'") == 0:
                break
            time.sleep(0.02)
        assert 0 == _count(database, "inbox", "event_id LIKE 'old-%'"), "not pruned while 500 webhooks were posted"
        assert n + 1 <= _count(database, "inbox")
        assert slowest < 1.0, f"the slowest webhook took {slowest:.3f} s"
        with urllib.request.urlopen(f"{server.base}/healthz", timeout=1) as reply:  # noqa: S310 - loopback
            assert 200 == reply.status
    finally:
        server.stop()
    assert '"store_pruned"' in server.log()
