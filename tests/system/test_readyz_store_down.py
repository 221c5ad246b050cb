"""``/readyz`` of a real ``receiver serve`` whose PostgreSQL goes away and comes back (a private cluster)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fault_support import postgres_bin, private_postgres
from support import ServerProcess, wait_until, with_params

ADMIN = "readyz-admin"


def readyz(server: ServerProcess, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{server.base}/readyz", headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_readyz_is_503_while_the_store_is_down(tmp_path: Path) -> None:
    """PostgreSQL stopped: 503 naming the store (details with the token only); started again: 200."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL fault tests, but no pg_ctl is installed")
        pytest.skip("no PostgreSQL server binaries (pg_ctl) installed")
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    with private_postgres(bindir) as cluster:
        server = ServerProcess(
            rules=rules,
            database=tmp_path / "pg",
            env={"RECEIVER_WEBHOOK_SECRET": "s", "RECEIVER_ADMIN_TOKEN": ADMIN},
            database_url=with_params(cluster.url, schema="readyz"),
        ).start()
        try:
            assert (200, {"status": "ok"}) == readyz(server)
            cluster.stop()
            down = (503, {"status": "unavailable", "failing": ["store"]})
            assert wait_until(lambda: readyz(server) == down, timeout=30), readyz(server)
            status, detailed = readyz(server, {"Authorization": f"Bearer {ADMIN}"})
            assert 503 == status
            assert detailed["problems"]["store"]
            cluster.start()
            assert wait_until(lambda: readyz(server) == (200, {"status": "ok"}), timeout=60), readyz(server)
        finally:
            server.stop()
