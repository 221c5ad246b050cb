"""The fake Orchestrator (tests/fake_orchestrator.py) checked against the reference, not against our client.

Every expectation here comes from /work/shared/reference/orchestrator-api.md (§N) or uipath-webhooks.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from fake_orchestrator import FakeOrchestrator

CLIENT_ID, CLIENT_SECRET = "external-app", "app-secret"
SCOPES = "OR.Webhooks OR.Jobs.Read OR.Folders.Read OR.Monitoring.Read OR.Queues.Read"


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


def token(orch: FakeOrchestrator, scope: str = "OR.Webhooks OR.Jobs.Read", url: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": scope}
    reply = httpx.post(url or orch.token_url, data=form)
    assert 200 == reply.status_code, reply.text
    return str(reply.json()["access_token"])


def test_token_then_webhooks_list(orch: FakeOrchestrator) -> None:
    """A client-credentials token opens the tenant-level Webhooks collection (§2.1, §5.4)."""
    bearer = {"Authorization": f"Bearer {token(orch)}"}
    reply = httpx.get(f"{orch.orchestrator_url}/odata/Webhooks", headers=bearer)
    assert 200 == reply.status_code
    assert {"@odata.context", "@odata.count", "value"} == set(reply.json())


def test_reference_signature_vector() -> None:
    """The fake signs as webhooks.md §1.5's test vector says."""
    from fake_orchestrator import sign

    body = (
        b'{"Type":"ping","EventId":"3f2a9c1e5b7d4e8fa0c1d2e3f4a5b6c7",'
        b'"Timestamp":"2024-05-06T08:15:30.1234567Z","TenantId":1,"UserId":42}'
    )
    assert "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=" == sign(body, "my-webhook-secret")
    expected = base64.b64encode(hmac.new(b"my-webhook-secret", body, hashlib.sha256).digest()).decode()
    assert expected == sign(body, "my-webhook-secret")
