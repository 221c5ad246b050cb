"""The Orchestrator client against the fake Orchestrator (tests/fake_orchestrator.py), over loopback.

Token cache and renewal, the folder header, OData paging, 429 with Retry-After, 5xx backoff,
the time budget, the circuit breaker, and no secret in logs, errors or reprs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from fake_orchestrator import FakeOrchestrator
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from structlog.testing import capture_logs
from support import free_port

from receiver.orchestrator import (
    Circuit,
    OrchestratorAuthError,
    OrchestratorClient,
    OrchestratorError,
    OrchestratorUnavailableError,
    PrometheusObserver,
    RetryPolicy,
    create_webhook,
    endpoints,
    get_webhook,
    list_webhooks,
    ping_webhook,
    update_webhook,
)
from receiver.orchestrator.jobs import start_job
from receiver.rules import OrchestratorLink

pytestmark = pytest.mark.anyio

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
PUBLIC_URL = "http://127.0.0.1:9/webhooks/uipath"


class Clock:
    """A monotonic clock the test moves; sleeps are recorded and advance it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, "OR.Webhooks OR.Jobs.Read OR.Queues.Read")
    with fake:
        yield fake


def link(
    orch: FakeOrchestrator,
    *,
    secret: str = CLIENT_SECRET,
    scopes: str = "OR.Webhooks OR.Jobs.Read OR.Queues.Read",
    timeout: float = 5.0,
) -> OrchestratorLink:
    return OrchestratorLink(
        url=orch.orchestrator_url,
        client_id=CLIENT_ID,
        client_secret=SecretStr(secret),
        scopes=tuple(scopes.split()),
        public_url=PUBLIC_URL,
        timeout_seconds=timeout,
    )


def webhook_dto(**changes: object) -> dict[str, object]:
    """A WebhookDto with the fields POST requires (§5.4)."""
    dto = {"Name": "r", "Url": PUBLIC_URL, "Enabled": True, "SubscribeToAllEvents": True, "AllowInsecureSsl": False}
    return {**dto, **changes}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    orch: FakeOrchestrator, clock: Clock, registry: CollectorRegistry
) -> AsyncIterator[OrchestratorClient]:
    async with OrchestratorClient(
        "uipath",
        link(orch),
        policy=RetryPolicy(attempts=4, budget=30.0),
        circuit=Circuit(threshold=3, cooldown=30.0, clock=clock),
        observer=PrometheusObserver(registry),
        sleep=clock.sleep,
        clock=clock,
    ) as c:
        yield c


def requests_total(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("receiver_orchestrator_requests_total", {"source": "uipath", "outcome": outcome})
    return value or 0.0


class TestToken:
    async def test_token_is_cached(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """Several calls share one token: the identity server is asked once."""
        for _ in range(3):
            await list_webhooks(client)
        assert 1 == orch.tokens_issued
        assert 1 == sum(1 for r in orch.request_log if r.path.endswith("/connect/token"))

    async def test_token_renewed_before_expiry(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock
    ) -> None:
        """Past four fifths of its life the token is renewed before the call, with no 401 on the way."""
        await list_webhooks(client)
        clock.now += 3600 - 300 + 1  # 5 min before the end of a 1 h token
        await list_webhooks(client)
        assert 2 == orch.tokens_issued
        assert [] == [r for r in orch.request_log if r.status == 401]

    async def test_identity_down_at_renewal_time_keeps_the_valid_token(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock
    ) -> None:
        """The identity server failing (5xx, 429) while the token still has minutes to live: calls go on with it.

        The renewal is tried once within a few seconds, then again only after a pause, not before every call.
        """
        await list_webhooks(client)
        clock.now += 3600 - 300 + 1  # in the renewal window: 5 min of life left
        orch.fail_for(60, status=503, scope="token")
        for _ in range(3):
            assert [] == await list_webhooks(client)
        assert 1 == orch.tokens_issued
        assert sum(clock.slept) < 5.0
        token_calls = [r for r in orch.request_log if r.path.endswith("/connect/token") and r.status == 503]
        assert 1 <= len(token_calls) <= 4  # one renewal attempt (with its quick retries), not one per call
        clock.now += 60
        orch.clear_faults()
        assert [] == await list_webhooks(client)
        assert 2 == orch.tokens_issued  # renewed once the identity server answers again

    async def test_identity_down_once_the_token_expired_fails_the_call(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock
    ) -> None:
        """Past the token's end there is nothing to fall back on: the call fails, saying why."""
        await list_webhooks(client)
        clock.now += 3600
        orch.fail_for(60, status=503, scope="token")
        with pytest.raises(OrchestratorUnavailableError) as caught:
            await list_webhooks(client)
        assert "token request" in str(caught.value)

    async def test_scopes_granted_are_reported(self, client: OrchestratorClient) -> None:
        """The token's granted scopes are what the token endpoint said."""
        token = await client.token()
        assert ("OR.Jobs.Read", "OR.Queues.Read", "OR.Webhooks") == tuple(sorted(token.scopes))

    async def test_401_renews_the_token_once(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """A token Orchestrator no longer accepts is replaced once and the call repeated."""
        await list_webhooks(client)
        orch.expire_tokens()
        assert [] == await list_webhooks(client)
        assert 2 == orch.tokens_issued
        assert 1 == sum(1 for r in orch.request_log if r.status == 401)

    async def test_second_401_is_an_auth_error(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """A fresh token refused too ends the call: no loop of token requests."""
        await list_webhooks(client)
        orch.fail_next(2, status=401, retry_after=None)
        with pytest.raises(OrchestratorAuthError) as caught:
            await list_webhooks(client)
        assert 401 == caught.value.status
        assert 2 == orch.tokens_issued

    async def test_wrong_secret_is_refused_without_echo(self, orch: FakeOrchestrator, clock: Clock) -> None:
        """invalid_client is an auth error that names the cause; the secret is in no log line, error or repr."""
        wrong = "wr0ng-secret-zzz"
        with capture_logs() as logs:
            async with OrchestratorClient("uipath", link(orch, secret=wrong), sleep=clock.sleep, clock=clock) as c:
                with pytest.raises(OrchestratorAuthError) as caught:
                    await c.token()
                shown = repr(c) + repr(c.link) + str(caught.value) + repr(caught.value)
        assert "invalid_client" in str(caught.value)
        assert wrong not in shown
        assert wrong not in repr(logs)
        assert any(e["event"] == "orchestrator_token_refused" for e in logs)


class TestCalls:
    async def test_folder_header_on_folder_scoped_calls(
        self, orch: FakeOrchestrator, client: OrchestratorClient
    ) -> None:
        """A folder-scoped read carries X-UIPATH-OrganizationUnitId and gets that folder's entities only."""
        finance, hr = orch.add_folder("Finance"), orch.add_folder("HR")
        orch.add_job(finance["Id"], State="Faulted", ReleaseName="Invoices")
        orch.add_job(hr["Id"], State="Faulted", ReleaseName="Payroll")
        jobs = await client.collection("odata/Jobs", params={"$filter": "State eq 'Faulted'"}, folder_id=finance["Id"])
        assert ["Invoices"] == [j["ReleaseName"] for j in jobs.items]
        last = [r for r in orch.request_log if r.path.endswith("/odata/Jobs")][-1]
        assert str(finance["Id"]) == last.header("X-UIPATH-OrganizationUnitId")

    async def test_folder_required_error_carries_the_code(
        self, orch: FakeOrchestrator, client: OrchestratorClient
    ) -> None:
        """Without the header a folder-only entity answers 400 errorCode 1101, kept on the error."""
        with pytest.raises(OrchestratorError) as caught:
            await client.collection("odata/QueueItems")
        assert (400, 1101) == (caught.value.status, caught.value.error_code)

    async def test_paging_reads_every_page(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """250 queue items come in three pages of $top=100 (the QueueItems maximum), with $skip 0, 100, 200."""
        folder = orch.add_folder("Shared")
        for i in range(250):
            orch.add_queue_item(folder["Id"], Reference=f"item-{i}")
        found = await client.collection("odata/QueueItems", folder_id=folder["Id"])
        assert 250 == len(found.items) == found.count
        assert [f"item-{i}" for i in range(250)] == [item["Reference"] for item in found.items]
        pages = [r.query for r in orch.request_log if r.path.endswith("/odata/QueueItems")]
        assert [["100"]] * 3 == [q["$top"] for q in pages]
        assert [["0"], ["100"], ["200"]] == [q["$skip"] for q in pages]

    async def test_paging_stops_at_max_items(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """max_items bounds the reading and says the result is truncated."""
        for i in range(30):
            orch.add_webhook(f"http://127.0.0.1:9/w/{i}")
        found = await client.collection("odata/Webhooks", page_size=10, max_items=20)
        assert (20, True, 30) == (len(found.items), found.truncated, found.count)

    async def test_webhook_round_trip(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """Create, find by URL, update (whole DTO, secret kept), get and ping return what the API holds."""
        made = await create_webhook(
            client,
            {
                "Name": "r",
                "Url": PUBLIC_URL,
                "Enabled": True,
                "Secret": "wh-secret",
                "SubscribeToAllEvents": False,
                "AllowInsecureSsl": False,
                "Events": [{"EventType": "job.faulted"}],
            },
        )
        [found] = await list_webhooks(client, url=PUBLIC_URL)
        assert (made.id, ("job.faulted",)) == (found.id, found.events)
        assert "wh-secret" not in repr(found)
        changed = await update_webhook(client, found, {"Enabled": False})
        assert False is changed.enabled
        assert "wh-secret" == orch.webhook(made.id)["Secret"]
        assert False is (await get_webhook(client, made.id)).enabled
        await update_webhook(client, changed, {"Enabled": True})
        ping = await ping_webhook(client, made.id)
        assert ping.event_id


class TestFaults:
    async def test_429_waits_retry_after(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock, registry: CollectorRegistry
    ) -> None:
        """Two 429s with Retry-After: 2 are waited out (2 s each), then the call succeeds; logged and counted."""
        await client.token()
        orch.fail_next(2, status=429, retry_after=2)
        with capture_logs() as logs:
            assert [] == await list_webhooks(client)
        assert [2.0, 2.0] == clock.slept
        assert 2 == requests_total(registry, "rate_limited")
        retried = [e for e in logs if e["event"] == "orchestrator_request_retried"]
        assert ["rate_limited", "rate_limited"] == [e["outcome"] for e in retried]

    async def test_retry_after_beyond_the_budget_ends_the_call(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock
    ) -> None:
        """A Retry-After longer than the call's budget is not slept: the error carries it for the caller."""
        await client.token()
        orch.fail_next(1, status=429, retry_after=100)
        with pytest.raises(OrchestratorUnavailableError) as caught:
            await list_webhooks(client)
        assert 100 == caught.value.retry_after
        assert [] == clock.slept

    async def test_5xx_backoff_then_success(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock, registry: CollectorRegistry
    ) -> None:
        """Two 503s are retried after growing backoff delays, then the answer arrives."""
        await client.token()
        orch.fail_next(2, status=503, retry_after=None)
        assert [] == await list_webhooks(client)
        assert 2 == len(clock.slept)
        assert 0.25 <= clock.slept[0] <= 0.5 <= clock.slept[1] <= 1.0
        assert (2, 2) == (requests_total(registry, "server_error"), requests_total(registry, "ok"))

    async def test_503_waits_its_retry_after(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock
    ) -> None:
        """A 503 with Retry-After (maintenance) is retried after that time, not the short backoff (§6 SDK policy)."""
        await client.token()
        orch.fail_next(1, status=503, retry_after=5)
        assert [] == await list_webhooks(client)
        assert [5.0] == clock.slept

    async def test_408_is_retried(self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock) -> None:
        """408 Request Timeout is retried like a timeout (the SDK retries 408 too, §6)."""
        await client.token()
        orch.fail_next(1, status=408)
        assert [] == await list_webhooks(client)
        assert 1 == len(clock.slept)

    async def test_create_is_not_repeated_after_a_5xx(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """A POST that may have been carried out is not sent twice (a retry could create two webhooks)."""
        await client.token()
        orch.fail_next(1, status=500, retry_after=None)
        with pytest.raises(OrchestratorUnavailableError):
            await create_webhook(
                client,
                {
                    "Name": "r",
                    "Url": PUBLIC_URL,
                    "Enabled": True,
                    "SubscribeToAllEvents": True,
                    "AllowInsecureSsl": False,
                },
            )
        assert 1 == sum(1 for r in orch.request_log if r.method == "POST" and r.path.endswith("/odata/Webhooks"))

    @pytest.mark.parametrize("what", ["start a job", "create a webhook"])
    async def test_a_post_answered_late_is_not_sent_again(self, orch: FakeOrchestrator, what: str) -> None:
        """A POST that timed out may have been carried out: it is not repeated (one job started, one webhook made)."""
        folder = orch.add_folder("Shared")
        orch.add_client(CLIENT_ID, CLIENT_SECRET, "OR.Webhooks OR.Jobs")  # StartJobs needs OR.Jobs(.Write)
        connection = link(orch, scopes="OR.Webhooks OR.Jobs", timeout=0.5)
        async with OrchestratorClient("uipath", connection, policy=RetryPolicy(budget=10.0)) as real:
            await real.token()
            orch.slow_down(2.0, count=1, after=True)  # carried out at once, answered after the client's timeout
            call = (
                start_job(real, release_key=str(uuid.uuid4()), robot_id=None, folder_id=folder["Id"])
                if what == "start a job"
                else create_webhook(real, webhook_dto())
            )
            with pytest.raises(OrchestratorUnavailableError) as caught:
                await call
        assert "timed out" in str(caught.value)
        assert "may have carried it out" in str(caught.value)
        assert caught.value.maybe_done
        expected = (1, 0) if what == "start a job" else (0, 1)
        assert expected == (len(orch.started_jobs()), len(orch.webhooks()))

    async def test_a_post_that_cannot_connect_is_tried_again(self, orch: FakeOrchestrator) -> None:
        """A refused connection sent nothing: the POST is tried again (and gives up within its budget)."""
        refused = OrchestratorLink(
            url=f"http://127.0.0.1:{free_port()}/acme/DefaultTenant/orchestrator_",
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            scopes=("OR.Webhooks",),
            public_url=PUBLIC_URL,
            token_url=orch.token_url,
            timeout_seconds=0.5,
        )
        async with OrchestratorClient("uipath", refused, policy=RetryPolicy(budget=10.0, backoff=0.01)) as real:
            with capture_logs() as logs, pytest.raises(OrchestratorUnavailableError) as caught:
                await create_webhook(real, webhook_dto())
        assert "network error" in str(caught.value)
        assert 3 == sum(1 for e in logs if e["event"] == "orchestrator_request_retried")

    async def test_a_trickled_answer_ends_within_the_budget(self, orch: FakeOrchestrator) -> None:
        """An answer that keeps coming a byte at a time is cut at the request's timeout, the call at its budget."""
        async with OrchestratorClient("uipath", link(orch, timeout=1.0), policy=RetryPolicy(budget=3.0)) as real:
            await real.token()
            orch.trickle(0.05)  # some 300 bytes: 15 s an answer, and no read waits long
            started = time.monotonic()
            async with asyncio.timeout(20):
                with pytest.raises(OrchestratorUnavailableError) as caught:
                    await list_webhooks(real)
            elapsed = time.monotonic() - started
            orch.clear_faults()
        assert "timed out" in str(caught.value)
        assert elapsed < 3.0 + 1.5

    async def test_a_redirect_is_an_error_naming_where_it_points(
        self, orch: FakeOrchestrator, client: OrchestratorClient
    ) -> None:
        """A proxy's 302 is no accepted Ping: the error names the target (no query), and it is not followed."""
        made = await create_webhook(client, webhook_dto())
        orch.redirect_next(1, "https://login.example.com/sso/start?state=s3cr3t-state")
        with pytest.raises(OrchestratorError) as caught:
            await ping_webhook(client, made.id)
        assert 302 == caught.value.status
        assert "https://login.example.com/sso/start" in str(caught.value)
        assert "s3cr3t-state" not in str(caught.value)
        assert not [r for r in orch.request_log if "login.example.com" in r.path]

    async def test_circuit_opens_says_so_and_closes(
        self, orch: FakeOrchestrator, client: OrchestratorClient, clock: Clock, registry: CollectorRegistry
    ) -> None:
        """After 3 failures the circuit opens: logged, gauged, calls refused unsent; after the cooldown it closes."""
        await client.token()
        orch.fail_for(60, status=503)
        with capture_logs() as logs:
            with pytest.raises(OrchestratorUnavailableError):
                await list_webhooks(client)
            sent = len(orch.request_log)
            with pytest.raises(OrchestratorUnavailableError) as caught:
                await list_webhooks(client)
        assert "circuit is open" in str(caught.value)
        assert sent == len(orch.request_log)
        assert any(e["event"] == "orchestrator_circuit_opened" and e["source"] == "uipath" for e in logs)
        assert 1 == registry.get_sample_value("receiver_orchestrator_circuit_open", {"source": "uipath"})
        assert 1 == requests_total(registry, "circuit_open")
        orch.clear_faults()
        clock.now += 31
        with capture_logs() as logs:
            assert [] == await list_webhooks(client)
        assert ["orchestrator_circuit_closed"] == [e["event"] for e in logs if "circuit" in e["event"]]
        assert 0 == registry.get_sample_value("receiver_orchestrator_circuit_open", {"source": "uipath"})

    async def test_no_secret_in_logs_through_faults(self, orch: FakeOrchestrator, client: OrchestratorClient) -> None:
        """Retries, renewals and failures log no client secret and no access token."""
        with capture_logs() as logs:
            token = await client.token()
            orch.fail_next(1, status=503, retry_after=None, scope="all")
            orch.expire_tokens()
            await list_webhooks(client)
            orch.fail_for(60, status=503)
            with pytest.raises(OrchestratorUnavailableError):
                await list_webhooks(client)
        text = repr(logs)
        assert CLIENT_SECRET not in text
        assert token.access_token.get_secret_value() not in text
        assert CLIENT_SECRET not in repr(client) + repr(client.link) + repr(token)


@pytest.mark.parametrize(
    ("url", "deployment", "token_url"),
    [
        pytest.param(
            "https://cloud.uipath.com/acme/DefaultTenant/orchestrator_",
            "cloud",
            "https://cloud.uipath.com/acme/identity_/connect/token",
            id="automation-cloud",
        ),
        pytest.param(
            "https://acme.dedicated.uipath.com/acme/Prod/orchestrator_/",
            "cloud",
            "https://acme.dedicated.uipath.com/acme/identity_/connect/token",
            id="cloud-dedicated",
        ),
        pytest.param(
            "https://rpa.example.com/acme/Prod/orchestrator_",
            "suite",
            "https://rpa.example.com/identity_/connect/token",
            id="automation-suite",
        ),
        pytest.param(
            "https://orchestrator.example.com",
            "standalone",
            "https://orchestrator.example.com/identity/connect/token",
            id="standalone",
        ),
    ],
)
def test_token_endpoint_from_the_url(url: str, deployment: str, token_url: str) -> None:
    """The token endpoint follows the reference's table for each deployment kind."""
    found = endpoints(
        OrchestratorLink(
            url=url.rstrip("/"),
            client_id="c",
            client_secret=SecretStr("s"),
            scopes=("OR.Webhooks",),
            public_url=PUBLIC_URL,
        )
    )
    assert (deployment, token_url, url.rstrip("/")) == (found.deployment, found.token_url, found.api_base)


def test_token_url_override() -> None:
    """An explicit token_url wins over the derived one."""
    found = endpoints(
        OrchestratorLink(
            url="https://orch.example.com",
            client_id="c",
            client_secret=SecretStr("s"),
            scopes=("OR.Webhooks",),
            public_url=PUBLIC_URL,
            token_url="https://id.example.com/connect/token",
        )
    )
    assert "https://id.example.com/connect/token" == found.token_url


async def test_standalone_layout_against_the_fake(orch: FakeOrchestrator) -> None:
    """A standalone base URL gets its token from {base}/identity/connect/token and lists webhooks at {base}/odata."""
    standalone = OrchestratorLink(
        url=orch.base_url,
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        scopes=("OR.Webhooks",),
        public_url=PUBLIC_URL,
    )
    orch.add_webhook(PUBLIC_URL, events=["job.faulted"])
    async with OrchestratorClient("uipath", standalone) as c:
        assert [PUBLIC_URL] == [w.url for w in await list_webhooks(c)]
    assert any(r.path == "/identity/connect/token" for r in orch.request_log)
