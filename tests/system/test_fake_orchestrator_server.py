"""The fake Orchestrator's Ping into a real ``receiver serve`` (the path the heartbeat relies on)."""

from __future__ import annotations

from pathlib import Path

from fake_orchestrator import FakeOrchestrator
from support import ServerProcess
from test_fake_orchestrator import PING, api, bearer, orch

__all__ = ["orch"]  # the fixture, shared with the unit tests of the fake


def test_ping_reaches_a_real_receiver_serve(orch: FakeOrchestrator, tmp_path: Path) -> None:
    """From the pytest process to a ``receiver serve`` subprocess: the ping is accepted; after a secret
    change on Orchestrator's side it is refused, which counts as a failed delivery and opens the breaker (§7)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("channels:\n  hook: {url: 'json://127.0.0.1:9/none'}\nrules: []\n")
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env={"RECEIVER_WEBHOOK_SECRET": "e2e-secret"})
    server.start()
    try:
        hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret="e2e-secret", events=["job.faulted"])
        headers = bearer(orch)
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers)
        [accepted] = orch.wait_for_deliveries(1)
        assert ("delivered", 202) == (accepted.outcome, accepted.status)
        orch.edit_webhook(hook["Id"], Secret="rotated-on-orchestrator-only")
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers)
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers)
        outcomes = [(d.outcome, d.status) for d in orch.wait_for_deliveries(3)]
        assert [("delivered", 202), ("failed", 401), ("suspended", None)] == outcomes
    finally:
        server.stop()
