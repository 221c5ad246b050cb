"""The fake Orchestrator (tests/fake_orchestrator.py) checked against the reference, not against our client.

Every expectation comes from /work/shared/reference/orchestrator-api.md (cited as §N) or from
uipath-webhooks.md (cited as "webhooks.md §N"); the calls are plain HTTP, as any client would send them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2 as httpx
import pytest
from fake_orchestrator import FakeOrchestrator, sign

CLIENT_ID, CLIENT_SECRET = "external-app", "app-secret"
SCOPES = "OR.Webhooks OR.Jobs.Read OR.Folders.Read OR.Monitoring.Read OR.Queues.Read"
PING = "UiPath.Server.Configuration.OData.Ping"


@dataclass
class RawSink:
    """A loopback webhook endpoint that keeps each POST's raw body and headers (what a signature check needs)."""

    status: Callable[[], int] = lambda: 202
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RawSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = sink.status()
                if 200 <= status < 300:
                    with sink._lock:
                        sink.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/uipath"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[bytes, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)


_http = httpx.Client(timeout=10)  # one client: building one per call costs ~80 ms of TLS setup


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    _http.close()


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


@pytest.fixture
def sink() -> Iterator[RawSink]:
    server = RawSink().start()
    yield server
    server.stop()


def token_reply(url: str, scope: str = "OR.Webhooks", secret: str = CLIENT_SECRET, **extra: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret, "scope": scope}
    return _http.post(url, data={**form, **extra})


def bearer(orch: FakeOrchestrator, scope: str = SCOPES) -> dict[str, str]:
    reply = token_reply(orch.token_url, scope)
    assert 200 == reply.status_code, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def api(orch: FakeOrchestrator, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
    return _http.request(method, f"{orch.orchestrator_url}/{path}", headers=headers, **kwargs)


def webhook_body(url: str, **changes: Any) -> dict[str, Any]:
    body = {
        "Name": "receiver",
        "Url": url,
        "Enabled": True,
        "Secret": "hook-secret",
        "SubscribeToAllEvents": False,
        "AllowInsecureSsl": False,
        "Events": [{"EventType": "job.faulted"}, {"EventType": "ping"}],
    }
    return {**body, **changes}


def expected_signature(body: bytes, secret: str) -> str:
    """webhooks.md §1.1, computed here from the text: Base64(HMAC-SHA256(UTF-8 secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class TestTokens:
    @pytest.mark.parametrize("which", [0, 1, 2], ids=["cloud-org", "cloud-unprefixed", "standalone"])
    def test_client_credentials_give_a_bearer_token(self, orch: FakeOrchestrator, which: int) -> None:
        """Each token endpoint of §2.1 answers a form-encoded client-credentials request with the documented fields."""
        reply = token_reply(orch.token_urls[which], "OR.Webhooks OR.Jobs.Read")
        assert 200 == reply.status_code
        body = reply.json()
        assert {"access_token", "expires_in", "token_type", "scope"} == set(body)
        assert (3600, "Bearer", {"OR.Webhooks", "OR.Jobs.Read"}) == (
            body["expires_in"],
            body["token_type"],
            set(body["scope"].split()),
        )

    def test_wrong_secret_is_invalid_client(self, orch: FakeOrchestrator) -> None:
        """A wrong client secret gets no token (§2.1: 400/401 "invalid client credentials")."""
        reply = token_reply(orch.token_url, secret="wrong")
        assert reply.status_code in {400, 401}
        assert "invalid_client" == reply.json()["error"]

    def test_scope_the_app_lacks_fails(self, orch: FakeOrchestrator) -> None:
        """Asking for a scope not granted to the app makes the token request fail (§2.1)."""
        reply = token_reply(orch.token_url, "OR.Webhooks OR.Jobs.Write")
        assert 400 == reply.status_code
        assert "access_token" not in reply.json()

    def test_only_form_encoded_client_credentials(self, orch: FakeOrchestrator) -> None:
        """Another grant type is refused."""
        reply = token_reply(orch.token_url, grant_type="password")
        assert 400 == reply.status_code

    def test_api_without_token_is_401(self, orch: FakeOrchestrator) -> None:
        """No bearer, or an unknown one, gets 401 (§6)."""
        assert 401 == api(orch, "GET", "odata/Webhooks", {}).status_code
        assert 401 == api(orch, "GET", "odata/Webhooks", {"Authorization": "Bearer made-up"}).status_code

    def test_expired_token_is_401(self, orch: FakeOrchestrator) -> None:
        """A token that worked gets 401 once expired, and a new one works again (§2.1: no refresh token)."""
        headers = bearer(orch)
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code
        orch.expire_tokens()
        assert 401 == api(orch, "GET", "odata/Webhooks", headers).status_code
        assert 200 == api(orch, "GET", "odata/Webhooks", bearer(orch)).status_code

    def test_short_lifetime_expires_by_itself(self, orch: FakeOrchestrator) -> None:
        """A token lives ``expires_in`` seconds."""
        orch.token_lifetime = 1
        reply = token_reply(orch.token_url)
        assert 1 == reply.json()["expires_in"]
        headers = {"Authorization": f"Bearer {reply.json()['access_token']}"}
        time.sleep(1.1)
        assert 401 == api(orch, "GET", "odata/Webhooks", headers).status_code

    def test_token_without_the_scope_is_refused(self, orch: FakeOrchestrator) -> None:
        """A token without OR.Webhooks(.Read) cannot list webhooks; a .Read token cannot ping (§2.1 scope table)."""
        assert 403 == api(orch, "GET", "odata/Webhooks", bearer(orch, "OR.Jobs.Read")).status_code
        orch.add_client("reader", "pw", "OR.Webhooks.Read")
        form = {"grant_type": "client_credentials", "client_id": "reader", "client_secret": "pw"}
        headers = {"Authorization": f"Bearer {_http.post(orch.token_url, data=form).json()['access_token']}"}
        hook = orch.add_webhook("http://127.0.0.1:9/x")
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code
        assert 403 == api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers).status_code


class TestFolders:
    @pytest.mark.parametrize("entity", ["RobotLogs", "QueueItems"])
    def test_folder_scoped_entity_needs_the_folder_header(self, orch: FakeOrchestrator, entity: str) -> None:
        """Without a folder header: 400 with errorCode 1101 and the body shape of §6 (§3, §9.2)."""
        reply = api(orch, "GET", f"odata/{entity}", bearer(orch))
        assert 400 == reply.status_code
        body = reply.json()
        assert (1101, "A folder is required for this action.") == (body["errorCode"], body["message"])
        assert "traceId" in body

    def test_single_job_needs_the_folder_header(self, orch: FakeOrchestrator) -> None:
        """``Jobs({id})`` is folder-scoped (§8.4); the Jobs list without a header reads across folders (§3)."""
        first, second = orch.add_folder("Shared"), orch.add_folder("Finance")
        job = orch.add_job(first["Id"])
        orch.add_job(second["Id"])
        headers = bearer(orch)
        assert 1101 == api(orch, "GET", f"odata/Jobs({job['Id']})", headers).json()["errorCode"]
        assert 2 == api(orch, "GET", "odata/Jobs", headers).json()["@odata.count"]
        scoped = {**headers, "X-UIPATH-OrganizationUnitId": str(first["Id"])}
        assert job["Key"] == api(orch, "GET", f"odata/Jobs({job['Id']})", scoped).json()["Key"]
        assert [job["Id"]] == [j["Id"] for j in api(orch, "GET", "odata/Jobs", scoped).json()["value"]]

    def test_job_in_another_folder_is_not_found(self, orch: FakeOrchestrator) -> None:
        """A job exists only in its own folder: 404 with errorCode 1002 elsewhere (§6)."""
        first, second = orch.add_folder("Shared"), orch.add_folder("Finance")
        job = orch.add_job(first["Id"])
        headers = {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(second["Id"])}
        reply = api(orch, "GET", f"odata/Jobs({job['Id']})", headers)
        assert (404, 1002) == (reply.status_code, reply.json()["errorCode"])

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param(lambda f: {"x-uipath-organizationunitid": str(f["Id"])}, id="id-lowercase-name"),
            pytest.param(lambda f: {"X-Uipath-Organizationunitid": str(f["Id"])}, id="id-go-canonical"),
            pytest.param(lambda f: {"X-UIPATH-FolderKey": f["Key"]}, id="key"),
            pytest.param(lambda f: {"X-UIPATH-FolderPath": "Shared/Finance"}, id="path"),
            pytest.param(
                lambda f: {
                    "X-UIPATH-FolderPath-Encoded": base64.b64encode("Shared/Finance".encode("utf-16-le")).decode()
                },
                id="path-encoded",
            ),
        ],
    )
    def test_every_folder_header_form_works(
        self, orch: FakeOrchestrator, header: Callable[[dict[str, Any]], dict[str, str]]
    ) -> None:
        """The four headers of §3, with any header-name case (§8.8), select the folder."""
        shared = orch.add_folder("Shared")
        finance = orch.add_folder("Finance", parent_id=shared["Id"])
        orch.add_robot_log(shared["Id"], Message="elsewhere")
        orch.add_robot_log(finance["Id"], Message="here")
        reply = api(orch, "GET", "odata/RobotLogs", {**bearer(orch), **header(finance)})
        assert 200 == reply.status_code
        assert ["here"] == [row["Message"] for row in reply.json()["value"]]

    def test_unknown_folder_is_invalid_organization_unit(self, orch: FakeOrchestrator) -> None:
        """A folder the caller cannot use: 400 with errorCode 1100 (§3)."""
        reply = api(orch, "GET", "odata/QueueItems", {**bearer(orch), "X-UIPATH-OrganizationUnitId": "999"})
        assert (400, 1100) == (reply.status_code, reply.json()["errorCode"])

    def test_tenant_level_entities_need_no_folder(self, orch: FakeOrchestrator) -> None:
        """Webhooks and Folders answer without a folder header (§3 table)."""
        orch.add_folder("Shared")
        headers = bearer(orch)
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code
        folders = api(orch, "GET", "odata/Folders", headers, params={"$filter": "FullyQualifiedName eq 'Shared'"})
        assert ["Shared"] == [f["DisplayName"] for f in folders.json()["value"]]

    def test_folders_for_current_user_is_not_odata(self, orch: FakeOrchestrator) -> None:
        """``/api/Folders/GetAllForCurrentUser`` pages with skip/take into ``{PageItems, Count}`` (§3)."""
        for name in ("A", "B", "C"):
            orch.add_folder(name)
        reply = api(orch, "GET", "api/Folders/GetAllForCurrentUser", bearer(orch), params={"skip": 1, "take": 1})
        assert {"PageItems": ["B"], "Count": 3} == {
            "PageItems": [f["DisplayName"] for f in reply.json()["PageItems"]],
            "Count": reply.json()["Count"],
        }


class TestOData:
    @pytest.fixture
    def jobs(self, orch: FakeOrchestrator) -> dict[str, str]:
        folder = orch.add_folder("Shared")
        for day in range(1, 26):
            state = "Faulted" if day % 5 == 0 else "Successful"
            orch.add_job(
                folder["Id"], State=state, EndTime=f"2024-01-{day:02d}T10:00:00.1234567Z", ReleaseName=f"P{day}"
            )
        return {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(folder["Id"])}

    def test_paging_with_count(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``$top``/``$skip`` page; ``@odata.count`` is the total; no nextLink (§4)."""
        reply = api(orch, "GET", "odata/Jobs", jobs, params={"$top": 10, "$skip": 20, "$count": "true"})
        body = reply.json()
        assert (25, 5) == (body["@odata.count"], len(body["value"]))
        assert body["@odata.context"].endswith("/odata/$metadata#Jobs")
        assert "@odata.nextLink" not in body

    def test_filter_on_enum_and_dates_with_orderby(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``State eq 'Faulted' and EndTime gt <unquoted ISO date>`` with ``$orderby=EndTime desc`` (§5.1)."""
        since = "2024-01-10T10:00:00.1234567Z"  # P10's EndTime: gt excludes it, to the 7th digit
        query = {"$filter": f"State eq 'Faulted' and EndTime gt {since}", "$orderby": "EndTime desc"}
        body = api(orch, "GET", "odata/Jobs", jobs, params=query).json()
        assert ["P25", "P20", "P15"] == [row["ReleaseName"] for row in body["value"]]
        assert 3 == body["@odata.count"]

    def test_filter_in_or_and_guid(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``in (...)``, ``or`` and bare GUIDs are accepted (§4, §9.4)."""
        rows = api(orch, "GET", "odata/Jobs", jobs, params={"$top": 2}).json()["value"]
        keys = ",".join(f"'{row['Key']}'" for row in rows)
        assert 2 == api(orch, "GET", "odata/Jobs", jobs, params={"$filter": f"Key in ({keys})"}).json()["@odata.count"]
        either = f"Key eq {rows[0]['Key']} or ReleaseName eq 'P3'"
        assert 2 == api(orch, "GET", "odata/Jobs", jobs, params={"$filter": either}).json()["@odata.count"]

    def test_list_hides_arguments(self, orch: FakeOrchestrator) -> None:
        """The Jobs list returns InputArguments as null; ``Jobs({id})`` returns the JSON string (§5.1)."""
        folder = orch.add_folder("Shared")
        job = orch.add_job(folder["Id"], InputArguments='{"a":1}')
        headers = {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(folder["Id"])}
        assert [None] == [row["InputArguments"] for row in api(orch, "GET", "odata/Jobs", headers).json()["value"]]
        assert '{"a":1}' == api(orch, "GET", f"odata/Jobs({job['Id']})", headers).json()["InputArguments"]

    def test_get_by_key(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``Jobs/...GetByKey(identifier=<guid>)`` finds a job by its Key (§5.1)."""
        row = api(orch, "GET", "odata/Jobs", jobs, params={"$top": 1}).json()["value"][0]
        path = f"odata/Jobs/UiPath.Server.Configuration.OData.GetByKey(identifier={row['Key']})"
        assert row["Id"] == api(orch, "GET", path, jobs).json()["Id"]

    def test_queue_items_top_over_100_is_refused(self, orch: FakeOrchestrator) -> None:
        """QueueItems ``$top`` above 100 → 400 (§4, §8.12)."""
        folder = orch.add_folder("Shared")
        headers = {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(folder["Id"])}
        assert 200 == api(orch, "GET", "odata/QueueItems", headers, params={"$top": 100}).status_code
        reply = api(orch, "GET", "odata/QueueItems", headers, params={"$top": 101})
        assert (400, 1000) == (reply.status_code, reply.json()["errorCode"])

    def test_top_over_1000_refused_or_clamped(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``$top`` above 1000 elsewhere: refused by default, clamped when the test asks (§9.3)."""
        assert 400 == api(orch, "GET", "odata/Jobs", jobs, params={"$top": 1001}).status_code
        orch.top_over_max = "clamp"
        assert 25 == len(api(orch, "GET", "odata/Jobs", jobs, params={"$top": 5000}).json()["value"])

    def test_a_lower_maximum_clamps_and_the_count_still_says_the_total(
        self, orch: FakeOrchestrator, jobs: dict[str, str]
    ) -> None:
        """A maximum below what a client asks (QueueItems' fell to 100, §4), clamped: a short page, the full count."""
        orch.top_over_max, orch.top_max = "clamp", {"Jobs": 10}
        body = api(orch, "GET", "odata/Jobs", jobs, params={"$top": 1000}).json()
        assert (10, 25) == (len(body["value"]), body["@odata.count"])

    def test_next_link_when_asked(self, orch: FakeOrchestrator, jobs: dict[str, str]) -> None:
        """``@odata.nextLink`` (unconfirmed, §4) only with the switch, and only while rows remain."""
        orch.next_link = True
        first = api(orch, "GET", "odata/Jobs", jobs, params={"$top": 10}).json()
        assert first["@odata.nextLink"].endswith("/odata/Jobs?$skip=10&$top=10")
        assert "@odata.nextLink" not in api(orch, "GET", "odata/Jobs", jobs, params={"$skip": 20}).json()

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param({"$filter": "State eq"}, id="truncated"),
            pytest.param({"$filter": "State eq 'a' and"}, id="dangling-and"),
            pytest.param({"$filter": " or ".join(["State eq 'a'"] * 101)}, id="101-expressions"),
            pytest.param({"$orderby": "A,B,C,D,E,F"}, id="6-orderby"),
            pytest.param({"$top": "-1"}, id="negative-top"),
            pytest.param({"$apply": "x"}, id="unknown-option"),
        ],
    )
    def test_bad_query_is_400_errorcode_1000(
        self, orch: FakeOrchestrator, jobs: dict[str, str], query: dict[str, str]
    ) -> None:
        """Bad OData options get 400 with errorCode 1000 (§6), limits of §4 included."""
        reply = api(orch, "GET", "odata/Jobs", jobs, params=query)
        assert (400, 1000) == (reply.status_code, reply.json()["errorCode"])

    def test_robot_logs_filter(self, orch: FakeOrchestrator) -> None:
        """``JobKey eq <guid> and Level eq 'Error'`` with ``$orderby=TimeStamp asc`` (§5.2)."""
        folder = orch.add_folder("Shared")
        key = "b6dd3f45-03c6-46c2-98ad-95a05f59905d"
        orch.add_robot_log(folder["Id"], JobKey=key, Level="Error", Message="second", TimeStamp="2024-01-02T00:00:00Z")
        orch.add_robot_log(folder["Id"], JobKey=key, Level="Error", Message="first", TimeStamp="2024-01-01T00:00:00Z")
        orch.add_robot_log(folder["Id"], JobKey=key, Level="Info", Message="info")
        headers = {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(folder["Id"])}
        query = {"$filter": f"JobKey eq {key} and Level eq 'Error'", "$orderby": "TimeStamp asc"}
        rows = api(orch, "GET", "odata/RobotLogs", headers, params=query).json()["value"]
        assert ["first", "second"] == [row["Message"] for row in rows]
        assert isinstance(rows[0]["RawMessage"], str)


class TestWebhooks:
    def test_create_get_put_patch_delete(self, orch: FakeOrchestrator) -> None:
        """POST 201, GET, PUT 200 (full replace), PATCH 200 (delta), DELETE 204, then 404/1002 (§5.4)."""
        orch.ping_on_change = False
        headers = bearer(orch)
        created = api(orch, "POST", "odata/Webhooks", headers, json=webhook_body("http://127.0.0.1:9/hook"))
        assert 201 == created.status_code
        hook = created.json()
        assert {
            "Id",
            "Key",
            "Name",
            "Url",
            "Enabled",
            "Secret",
            "SubscribeToAllEvents",
            "AllowInsecureSsl",
            "Events",
        } <= set(hook)
        path = f"odata/Webhooks({hook['Id']})"
        assert hook["Url"] == api(orch, "GET", path, headers).json()["Url"]
        put = api(orch, "PUT", path, headers, json=webhook_body("http://127.0.0.1:9/other", Events=[]))
        assert (200, "http://127.0.0.1:9/other", []) == (put.status_code, put.json()["Url"], put.json()["Events"])
        patched = api(orch, "PATCH", path, headers, json={"Enabled": False})
        assert (200, False, "http://127.0.0.1:9/other") == (
            patched.status_code,
            patched.json()["Enabled"],
            patched.json()["Url"],
        )
        assert 204 == api(orch, "DELETE", path, headers).status_code
        gone = api(orch, "GET", path, headers)
        assert (404, 1002) == (gone.status_code, gone.json()["errorCode"])

    def test_list_filters_by_url_and_shows_secret(self, orch: FakeOrchestrator) -> None:
        """``$filter=Url eq '...'`` finds one's own webhook; the docs example returns Secret in clear (§5.4, §7)."""
        orch.add_webhook("http://127.0.0.1:9/a", secret="s1", events=["job.faulted"])
        orch.add_webhook("http://127.0.0.1:9/b")
        query = {"$filter": "Url eq 'http://127.0.0.1:9/a'"}
        rows = api(orch, "GET", "odata/Webhooks", bearer(orch), params=query).json()["value"]
        assert [("s1", [{"EventType": "job.faulted"}])] == [(row["Secret"], row["Events"]) for row in rows]

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            pytest.param({"Name": None}, "Name", id="no-name"),
            pytest.param({"Url": None}, "Url", id="no-url"),
            pytest.param({"Secret": "x" * 101}, "Secret", id="long-secret"),
            pytest.param({"Events": [{"EventType": "job.failed"}]}, "job.failed", id="unknown-event"),
        ],
    )
    def test_create_validates_the_dto(self, orch: FakeOrchestrator, change: dict[str, Any], problem: str) -> None:
        """Required fields and limits of WebhookDto (§5.4, §9.8); ``job.failed`` does not exist (webhooks.md §2)."""
        body = {k: v for k, v in webhook_body("http://127.0.0.1:9/h", **change).items() if v is not None}
        reply = api(orch, "POST", "odata/Webhooks", bearer(orch), json=body)
        assert 400 == reply.status_code
        assert problem in reply.json()["message"]

    @pytest.mark.parametrize(("mode", "shown"), [("null", None), ("masked", "********")])
    def test_secret_hidden_on_read_when_asked(self, orch: FakeOrchestrator, mode: str, shown: str | None) -> None:
        """``secret_on_read`` hides the Secret in answers (does Cloud? unconfirmed, §7); a PUT stores what it gets."""
        hook = orch.add_webhook("http://127.0.0.1:9/h", secret="hook-secret")
        orch.secret_on_read = mode  # type: ignore[assignment]
        headers = bearer(orch)
        listed = api(orch, "GET", "odata/Webhooks", headers).json()["value"][0]
        assert shown == listed["Secret"] == api(orch, "GET", f"odata/Webhooks({hook['Id']})", headers).json()["Secret"]
        assert "hook-secret" == orch.webhook(hook["Id"])["Secret"]
        api(orch, "PUT", f"odata/Webhooks({hook['Id']})", headers, json={**listed, "Enabled": False})
        assert shown == orch.webhook(hook["Id"])["Secret"]  # sent back as read: the real one is gone

    def test_event_types(self, orch: FakeOrchestrator) -> None:
        """GetEventTypes lists ``{Name, Group}`` (§5.4)."""
        path = "odata/Webhooks/UiPath.Server.Configuration.OData.GetEventTypes"
        rows = api(orch, "GET", path, bearer(orch)).json()["value"]
        assert {"Name": "job.faulted", "Group": "Jobs"} in rows


class TestPing:
    def test_ping_posts_a_signed_ping_with_the_returned_event_id(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """Ping → 202 PingEventDto; the ping arrives signed Base64(HMAC-SHA256(secret, body)) (§5.4, webhooks.md §1)."""
        hook = orch.add_webhook(sink.url, secret="hook-secret", events=["job.faulted"])
        reply = api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", bearer(orch))
        assert 202 == reply.status_code
        event = reply.json()
        assert "ping" == event["Type"]
        assert isinstance(event["EventId"], str)
        [(body, headers)] = sink.wait_for(1)
        assert expected_signature(body, "hook-secret") == headers["x-uipath-signature"]
        delivered = json.loads(body)
        assert ("ping", event["EventId"]) == (delivered["Type"], delivered["EventId"])

    def test_create_through_the_api_sends_a_ping(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """A ping follows a webhook's creation (§5.4: "immediately after a webhook was created or updated")."""
        api(orch, "POST", "odata/Webhooks", bearer(orch), json=webhook_body(sink.url))
        [(body, headers)] = sink.wait_for(1)
        assert "ping" == json.loads(body)["Type"]
        assert expected_signature(body, "hook-secret") == headers["x-uipath-signature"]

    def test_disabled_webhook_gets_nothing(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """With ``Enabled`` false the API still answers 202, and nothing arrives."""
        hook = orch.add_webhook(sink.url, secret="hook-secret")
        orch.edit_webhook(hook["Id"], Enabled=False)
        assert 202 == api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", bearer(orch)).status_code
        assert ["disabled"] == [d.outcome for d in orch.wait_for_deliveries(1)]
        assert [] == sink.wait_for(1, timeout=0.5)

    def test_disabled_webhook_ping_can_be_refused(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """The other reading of §10 ("refused or silently dropped"), on request."""
        orch.ping_when_disabled = "refuse"
        hook = orch.add_webhook(sink.url, enabled=False)
        assert 400 == api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", bearer(orch)).status_code

    def test_secret_changed_on_orchestrator_side_signs_with_the_new_one(
        self, orch: FakeOrchestrator, sink: RawSink
    ) -> None:
        """After a rotation on Orchestrator's side only, the old secret no longer verifies."""
        hook = orch.add_webhook(sink.url, secret="old-secret")
        orch.edit_webhook(hook["Id"], Secret="new-secret")
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", bearer(orch))
        [(body, headers)] = sink.wait_for(1)
        assert expected_signature(body, "old-secret") != headers["x-uipath-signature"]
        assert expected_signature(body, "new-secret") == headers["x-uipath-signature"]

    def test_no_secret_no_signature(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """Without a secret Orchestrator sends no signature header (webhooks.md §1.3)."""
        hook = orch.add_webhook(sink.url)
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", bearer(orch))
        [(_, headers)] = sink.wait_for(1)
        assert "x-uipath-signature" not in headers

    def test_suspension_looks_enabled_and_delivers_nothing(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """Orchestrator's breaker: the webhook reads Enabled true, the ping is dropped (§7)."""
        hook = orch.add_webhook(sink.url, secret="s")
        orch.suspend_webhook(hook["Id"])
        headers = bearer(orch)
        assert api(orch, "GET", f"odata/Webhooks({hook['Id']})", headers).json()["Enabled"] is True
        assert 202 == api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers).status_code
        assert ["suspended"] == [d.outcome for d in orch.wait_for_deliveries(1)]
        assert [] == sink.wait_for(1, timeout=0.5)

    def test_failed_delivery_opens_the_breaker(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """One failed delivery suspends the webhook: the next ping is skipped, never retried (§7, webhooks.md §4)."""
        answers = iter([500, 202])
        sink.status = lambda: next(answers)
        hook = orch.add_webhook(sink.url, secret="s")
        headers = bearer(orch)
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers)
        orch.wait_for_deliveries(1)
        api(orch, "POST", f"odata/Webhooks({hook['Id']})/{PING}", headers)
        assert ["failed", "suspended"] == [d.outcome for d in orch.wait_for_deliveries(2)]
        assert orch.is_suspended(hook["Id"])
        assert [] == sink.received

    def test_events_go_only_to_subscribed_webhooks(self, orch: FakeOrchestrator, sink: RawSink) -> None:
        """``send_event`` reaches webhooks subscribed to the type, or to all events (webhooks.md §4)."""
        orch.add_webhook(sink.url, secret="s", events=["job.faulted"])
        orch.add_webhook(sink.url, secret="s", events=["job.started"])
        orch.add_webhook(sink.url, secret="s", subscribe_to_all=True)
        deliveries = orch.send_event("job.faulted", Job={"State": "Faulted"})
        assert 2 == len(deliveries)
        assert all(expected_signature(body, "s") == h["x-uipath-signature"] for body, h in sink.wait_for(2))


class TestFaults:
    def test_429_with_retry_after_then_recovery(self, orch: FakeOrchestrator) -> None:
        """``fail_next`` answers 429 with a numeric ``Retry-After`` (§6), then normal service."""
        headers = bearer(orch)
        orch.fail_next(2, status=429, retry_after=3)
        replies = [api(orch, "GET", "odata/Webhooks", headers) for _ in range(3)]
        assert [429, 429, 200] == [r.status_code for r in replies]
        assert "3" == replies[0].headers["Retry-After"]

    def test_5xx_for_a_while(self, orch: FakeOrchestrator) -> None:
        """``fail_for`` answers 503 until the time is up."""
        headers = bearer(orch)
        orch.fail_for(0.5, status=503)
        assert 503 == api(orch, "GET", "odata/Webhooks", headers).status_code
        time.sleep(0.6)
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code

    def test_faults_leave_the_token_endpoint_alone_by_default(self, orch: FakeOrchestrator) -> None:
        """API faults are separate from identity faults; both can be asked for."""
        orch.fail_next(1, status=500)
        assert 200 == token_reply(orch.token_url).status_code
        orch.clear_faults()
        orch.fail_next(1, status=503, scope="token")
        assert 503 == token_reply(orch.token_url).status_code

    def test_rate_limit_on_job_lists_not_on_single_jobs(self, orch: FakeOrchestrator) -> None:
        """Past the per-minute budget ``GET /odata/Jobs`` gets 429; ``Jobs({id})`` is not limited (§6)."""
        folder = orch.add_folder("Shared")
        job = orch.add_job(folder["Id"])
        headers = {**bearer(orch), "X-UIPATH-OrganizationUnitId": str(folder["Id"])}
        orch.rate_limit(2)
        statuses = [api(orch, "GET", "odata/Jobs", headers).status_code for _ in range(3)]
        assert [200, 200, 429] == statuses
        assert 200 == api(orch, "GET", f"odata/Jobs({job['Id']})", headers).status_code

    def test_slow_answers(self, orch: FakeOrchestrator) -> None:
        """``slow_down`` delays the next answers."""
        headers = bearer(orch)
        orch.slow_down(0.4, count=1)
        started = time.monotonic()
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code
        assert time.monotonic() - started >= 0.4

    def test_a_late_answer_after_the_work_is_done(self, orch: FakeOrchestrator) -> None:
        """``slow_down(after=True)``: the webhook exists before the late answer; a client that gave up does not know."""
        headers = bearer(orch)
        orch.slow_down(2.0, count=1, after=True)
        with pytest.raises(httpx.ReadTimeout):
            api(orch, "POST", "odata/Webhooks", headers, json=webhook_body("http://127.0.0.1:9/h"), timeout=0.5)
        assert ["http://127.0.0.1:9/h"] == [hook["Url"] for hook in orch.webhooks()]

    def test_trickled_answer(self, orch: FakeOrchestrator) -> None:
        """``trickle`` writes the answer a byte at a time: every read is quick, the whole answer slow."""
        headers = bearer(orch)
        orch.trickle(0.01, count=1)
        started = time.monotonic()
        reply = _http.get(f"{orch.orchestrator_url}/odata/Webhooks", headers=headers, timeout=0.5)
        assert (200, []) == (reply.status_code, reply.json()["value"])
        assert time.monotonic() - started > 1.0  # more than 100 bytes, a hundredth of a second each

    def test_redirect_from_a_proxy(self, orch: FakeOrchestrator) -> None:
        """``redirect_next`` answers with a redirect and a Location, as a gateway in front would."""
        headers = bearer(orch)
        orch.redirect_next(1, "https://login.example.com/")
        reply = api(orch, "GET", "odata/Webhooks", headers)
        assert (302, "https://login.example.com/") == (reply.status_code, reply.headers["Location"])
        assert 200 == api(orch, "GET", "odata/Webhooks", headers).status_code


class TestRequestLog:
    def test_log_has_the_call_without_secrets(self, orch: FakeOrchestrator) -> None:
        """Method, path, query and headers are recorded; token, client secret and webhook secret are not."""
        reply = token_reply(orch.token_url)
        access = reply.json()["access_token"]
        headers = {"Authorization": f"Bearer {access}", "X-UIPATH-OrganizationUnitId": "5"}
        api(orch, "POST", "odata/Webhooks", headers, json=webhook_body("http://127.0.0.1:9/h"))
        api(orch, "GET", "odata/Webhooks", headers, params={"$top": "5"})
        token_call, create, listing = orch.request_log
        assert ("GET", {"$top": ["5"]}, "5") == (
            listing.method,
            listing.query,
            listing.header("X-UIPATH-OrganizationUnitId"),
        )
        assert listing.path.endswith("/orchestrator_/odata/Webhooks")
        logged = repr(orch.request_log)
        assert CLIENT_SECRET not in logged
        assert access not in logged
        assert "hook-secret" not in logged
        assert (200, 201, 200) == (token_call.status, create.status, listing.status)


def test_standalone_paths(orch: FakeOrchestrator) -> None:
    """Standalone Orchestrator: ``/odata/...`` at the root, tokens at ``/identity/connect/token`` (§1, §2.1)."""
    reply = token_reply(orch.token_urls[2])
    headers = {"Authorization": f"Bearer {reply.json()['access_token']}"}
    assert 200 == _http.get(f"{orch.base_url}/odata/Webhooks", headers=headers).status_code


def test_reference_signature_vector() -> None:
    """The fake signs as webhooks.md §1.5's test vector says."""
    body = (
        b'{"Type":"ping","EventId":"3f2a9c1e5b7d4e8fa0c1d2e3f4a5b6c7",'
        b'"Timestamp":"2024-05-06T08:15:30.1234567Z","TenantId":1,"UserId":42}'
    )
    assert "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=" == sign(body, "my-webhook-secret")
