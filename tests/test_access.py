"""Admin access in-process: blank secrets are unset, failed checks are limited, logout ends sessions.

Also the bounds of form bodies, what ``/readyz`` tells without the token, and HSTS over https.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from receiver.cli import main
from receiver.errors import ConfigError, RulesError, SignatureError, StoreError
from receiver.http.app import create_app
from receiver.http.auth import secret_equals, token_matches
from receiver.http.limiter import FailureLimiter
from receiver.http.runtime import resolve_sources
from receiver.http.ui import COOKIE
from receiver.rules import RuleSet, load_rules
from receiver.rules.model import Source
from receiver.settings import Settings
from receiver.signature import sign, verify_signature

SECRET = "access-secret"
ADMIN = "access-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ORIGIN = {"Origin": "http://testserver"}
RULES = "channels:\n  ops: 'log://'\nrules:\n  - {name: faults, match: {type: job.faulted}, notify: [ops]}\n"
BLANKS = [pytest.param("", id="empty"), pytest.param("   ", id="spaces"), pytest.param("\t\n", id="tab-newline")]
SETTINGS_ENV = ("RECEIVER_WEBHOOK_SECRET", "RECEIVER_LOGS_TOKEN", "RECEIVER_ADMIN_TOKEN")


class Notifier:
    async def send(self, url: str, notification: Any, *, timeout: float) -> Any:  # noqa: ASYNC109 - the Notifier protocol
        raise AssertionError("nothing is sent in these tests")


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


def make_settings(tmp_path: Path, rules_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "rules": rules_path,
        "database_url": f"sqlite:///{tmp_path / 'r.db'}",
        "webhook_secret": SECRET,
        "admin_token": ADMIN,
        "watch_rules": False,
        "poll_seconds": 0.05,
        **changes,
    }
    return Settings(**values)


def serve(settings: Settings, **options: Any) -> TestClient:
    app = create_app(settings, notifier=Notifier())
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False, **options)


@pytest.fixture
def client(tmp_path: Path, rules_path: Path) -> Iterator[TestClient]:
    with serve(make_settings(tmp_path, rules_path)) as test_client:
        yield test_client


def log_in(client: TestClient, token: str = ADMIN) -> Any:
    return client.post("/ui/login", data={"token": token, "next": "/ui"}, headers=ORIGIN)


def csrf(client: TestClient) -> str:
    page = client.get("/ui")
    assert 200 == page.status_code, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


class TestBlankSecrets:
    @pytest.mark.parametrize("name", SETTINGS_ENV)
    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_setting_is_not_set(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        """An empty or blank secret or token in the environment reads as not set."""
        monkeypatch.setenv(name, value)
        assert None is getattr(Settings(), name.removeprefix("RECEIVER_").lower())

    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_host_is_the_loopback_default(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """RECEIVER_HOST empty (compose's unset value) listens on 127.0.0.1, not on every interface as "" would."""
        monkeypatch.setenv("RECEIVER_HOST", value)
        assert "127.0.0.1" == Settings().host
        assert "127.0.0.1" == Settings(host=value).host

    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_admin_token_keeps_the_api_and_the_page_off(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rules_path: Path, value: str
    ) -> None:
        """RECEIVER_ADMIN_TOKEN empty (compose's unset value): no bearer value and no login opens /api or /ui."""
        monkeypatch.setenv("RECEIVER_ADMIN_TOKEN", value)
        settings = Settings(
            rules=rules_path, database_url=f"sqlite:///{tmp_path / 'r.db'}", webhook_secret=SECRET, watch_rules=False
        )
        with serve(settings) as client:
            api = [client.get("/api/rules", headers={"Authorization": f"Bearer {v}"}) for v in ("", value)]
            login = log_in(client, token=value)
            page = client.get("/ui")
            ready = client.get("/readyz", headers={"Authorization": "Bearer "}).json()
        assert [(404, "admin_api_disabled")] * 2 == [(r.status_code, r.json()["error"]) for r in api]
        assert (404, 404) == (login.status_code, page.status_code)
        assert "set-cookie" not in login.headers
        assert {"status": "ok"} == ready

    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_logs_token_keeps_the_logs_route_off(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rules_path: Path, value: str
    ) -> None:
        """RECEIVER_LOGS_TOKEN empty or blank: POST /logs/uipath is off, whatever the bearer."""
        monkeypatch.setenv("RECEIVER_LOGS_TOKEN", value)
        with serve(make_settings(tmp_path, rules_path)) as client:
            replies = [
                client.post("/logs/uipath", json={"level": "Error"}, headers={"Authorization": f"Bearer {v}"})
                for v in ("", value)
            ]
        assert [404, 404] == [r.status_code for r in replies]

    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_webhook_secret_refuses_to_start(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rules_path: Path, value: str
    ) -> None:
        """RECEIVER_WEBHOOK_SECRET empty or blank: the default source has no secret, and start-up names the variable."""
        monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", value)
        settings = Settings(rules=rules_path, database_url=f"sqlite:///{tmp_path / 'r.db'}")
        with pytest.raises(ConfigError, match="RECEIVER_WEBHOOK_SECRET"):
            resolve_sources(load_rules(rules_path, environ={}), settings)

    @pytest.mark.parametrize(
        "secrets",
        [
            pytest.param('["${BLANK}"]', id="only-secret"),
            pytest.param('["current", "${BLANK}"]', id="rotation-list"),
            pytest.param('["  "]', id="literal-blank"),
        ],
    )
    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_source_secret_is_refused(self, tmp_path: Path, secrets: str, value: str) -> None:
        """A source secret in rules.yaml that is, or expands to, nothing but whitespace is a load problem."""
        path = tmp_path / "rules.yaml"
        path.write_text(RULES + f"sources:\n  finance:\n    secrets: {secrets}\n")
        with pytest.raises(RulesError, match="empty or blank"):
            load_rules(path, environ={"BLANK": value})

    @pytest.mark.parametrize("token", [pytest.param("${BLANK}", id="variable"), pytest.param("'  '", id="literal")])
    @pytest.mark.parametrize("value", BLANKS)
    def test_a_blank_source_logs_token_keeps_its_route_off(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str, value: str
    ) -> None:
        """A source's logs_token that is, or expands to, only whitespace turns POST /logs/{source} off."""
        monkeypatch.setenv("BLANK", value)
        path = tmp_path / "rules.yaml"
        path.write_text(RULES + f"sources:\n  finance:\n    secrets: [s1]\n    logs_token: {token}\n")
        with serve(make_settings(tmp_path, path)) as client:
            replies = [
                client.post("/logs/finance", json={"level": "Error"}, headers={"Authorization": f"Bearer {v}"})
                for v in ("", value.strip(), "  ")
            ]
        assert [404, 404, 404] == [r.status_code for r in replies]

    def test_resolve_sources_refuses_a_blank_secret_it_is_given(self, tmp_path: Path, rules_path: Path) -> None:
        """Rules built without the loader still cannot give a source a blank secret."""
        ruleset = RuleSet(rules=(), channels={}, sources={"finance": Source("finance", secrets=(SecretStr(" "),))})
        with pytest.raises(ConfigError, match="'finance'"):
            resolve_sources(ruleset, make_settings(tmp_path, rules_path))

    @pytest.mark.parametrize("secret", ["", " ", "\n"])
    def test_comparisons_never_match_a_blank_secret(self, secret: str) -> None:
        """The comparisons themselves refuse a blank secret, even given exactly that value."""
        body = b'{"Type":"job.faulted"}'
        assert (False, False) == (token_matches(f"Bearer {secret}", secret), secret_equals(secret, secret))
        assert False is token_matches("Bearer ", None)
        for secrets in ([secret], [secret, "real"]):
            with pytest.raises(SignatureError):
                verify_signature(body, sign(body, secret), secrets)

    @pytest.mark.parametrize("value", BLANKS)
    def test_receiver_sign_refuses_a_blank_secret(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
    ) -> None:
        """`receiver sign` with a blank --secret or RECEIVER_WEBHOOK_SECRET is a usage error, not a signature."""
        monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", value)
        body = tmp_path / "b.json"
        body.write_bytes(b"{}")
        assert [2, 2] == [main(["sign", str(body)]), main(["sign", "--secret", value or " ", str(body)])]


class TestFailedChecks:
    @pytest.fixture
    def limited(self, tmp_path: Path, rules_path: Path) -> Iterator[TestClient]:
        with serve(make_settings(tmp_path, rules_path, auth_failures_per_minute=3)) as test_client:
            yield test_client

    def test_wrong_bearer_tokens_are_logged_then_answered_429(self, limited: TestClient) -> None:
        """Three wrong tokens get 401 and a log line each; then even the right one gets 429 with Retry-After."""
        with capture_logs() as logs:
            wrong = [limited.get("/api/rules", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(3)]
            blocked = limited.get("/api/rules", headers=AUTH)
        assert [401, 401, 401] == [r.status_code for r in wrong]
        assert (429, "too_many_failures") == (blocked.status_code, blocked.json()["error"])
        assert 0 < int(blocked.headers["retry-after"]) <= 60
        failed = [e for e in logs if e["event"] == "admin_auth_failed"]
        assert [("testclient", "api")] * 3 == [(e["client"], e["route"]) for e in failed]
        assert not any("guess-" in str(e) for e in logs)

    def test_wrong_robot_log_tokens_are_limited_apart_from_the_admin(self, tmp_path: Path, rules_path: Path) -> None:
        """Wrong /logs tokens get 401 and a log line each, then 429; the admin token still works from that address."""
        settings = make_settings(tmp_path, rules_path, auth_failures_per_minute=3, logs_token="robot-token")
        entry = b'{"Level": "Error", "Message": "m"}'
        with serve(settings) as limited, capture_logs() as logs:
            wrong = [
                limited.post("/logs/uipath", content=entry, headers={"Authorization": f"Bearer stale-{i}"})
                for i in range(3)
            ]
            blocked = limited.post("/logs/uipath", content=entry, headers={"Authorization": "Bearer robot-token"})
            admin = limited.get("/api/rules", headers=AUTH)
        assert [401, 401, 401] == [r.status_code for r in wrong]
        assert (429, "too_many_failures") == (blocked.status_code, blocked.json()["error"])
        assert 0 < int(blocked.headers["retry-after"]) <= 60
        assert 200 == admin.status_code
        assert 3 == len([e for e in logs if e["event"] == "logs_auth_failed"])
        assert not any("stale-" in str(e) for e in logs)

    def test_wrong_logins_are_limited_too(self, limited: TestClient) -> None:
        """Three wrong tokens at the login form; the fourth try, right or wrong, gets 429 and no cookie."""
        assert [401, 401, 401] == [log_in(limited, token=f"guess-{i}").status_code for i in range(3)]
        blocked = log_in(limited)
        assert 429 == blocked.status_code
        assert "try again" in blocked.text
        assert "set-cookie" not in blocked.headers

    def test_other_addresses_and_later_minutes_are_not_held_back(self, tmp_path: Path, rules_path: Path) -> None:
        """The limit is per client address, and an address may try again once its minute is over."""
        now = [1000.0]
        settings = make_settings(tmp_path, rules_path, auth_failures_per_minute=2)
        with serve(settings) as first, serve(settings, client=("192.0.2.7", 4000)) as second:
            first.app.state.runtime.auth_failures = FailureLimiter(2, 60.0, clock=lambda: now[0])  # type: ignore[attr-defined]
            second.app.state.runtime.auth_failures = first.app.state.runtime.auth_failures  # type: ignore[attr-defined]
            for _ in range(2):
                first.get("/api/rules", headers={"Authorization": "Bearer wrong"})
            assert 429 == first.get("/api/rules", headers=AUTH).status_code
            assert 200 == second.get("/api/rules", headers=AUTH).status_code
            now[0] += 61
            assert 200 == first.get("/api/rules", headers=AUTH).status_code

    def test_logins_from_another_site_are_not_counted(self, limited: TestClient) -> None:
        """Another site cannot lock the admin out by making the admin's browser post wrong tokens."""
        for i in range(5):
            limited.post("/ui/login", data={"token": f"x{i}"}, headers={"Origin": "https://evil.example"})
        assert 303 == log_in(limited).status_code

    def test_the_table_of_addresses_is_bounded(self) -> None:
        """A flood of addresses keeps at most max_clients of them."""
        limiter = FailureLimiter(3, 60.0, max_clients=100)
        for i in range(5000):
            limiter.failed(f"198.51.{i // 256}.{i % 256}")
        assert 100 == len(limiter)


class TestSessions:
    def test_logout_ends_a_copied_session(self, client: TestClient) -> None:
        """After log out, the session cookie is refused even when sent again (it ended on the server)."""
        assert 303 == log_in(client).status_code
        session = client.cookies[COOKIE]
        assert 303 == client.post("/ui/logout", data={"csrf": csrf(client)}, headers=ORIGIN).status_code
        client.cookies.set(COOKIE, session, path="/ui")
        assert 303 == client.get("/ui").status_code

    def test_logout_on_one_replica_ends_the_session_on_another(self, tmp_path: Path, rules_path: Path) -> None:
        """Two apps on one store: a session works on both until logged out on one of them."""
        settings = make_settings(tmp_path, rules_path)
        with serve(settings) as one, serve(settings) as other:
            assert 303 == log_in(one).status_code
            other.cookies.set(COOKIE, one.cookies[COOKIE], path="/ui")
            assert 200 == other.get("/ui").status_code
            one.post("/ui/logout", data={"csrf": csrf(one)}, headers=ORIGIN)
            assert 303 == other.get("/ui").status_code
            assert 303 == log_in(other).status_code  # a new login works again
            assert 200 == other.get("/ui").status_code

    def test_rotating_the_token_ends_sessions(self, tmp_path: Path, rules_path: Path) -> None:
        """A session made with the old admin token is refused once the token changed."""
        with serve(make_settings(tmp_path, rules_path)) as old:
            log_in(old)
            session = old.cookies[COOKIE]
        with serve(make_settings(tmp_path, rules_path, admin_token="rotated-token-abcdef")) as new:
            new.cookies.set(COOKIE, session, path="/ui")
            assert 303 == new.get("/ui").status_code


class TestForms:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param("&".join(f"f{i}=x" for i in range(51)).encode(), id="51-fields"),
            pytest.param(b"token=%ff%fe&next=/ui", id="percent-encoded-non-utf8"),
            pytest.param(b"token=\xff\xfe", id="raw-non-utf8"),
            pytest.param(b"token=" + b"a" * 17_000, id="over-16-KiB"),
        ],
    )
    def test_a_bad_login_form_is_400(self, client: TestClient, body: bytes) -> None:
        """Too many fields, bad encoding or too large: 400 invalid_form, never a 500 or a login attempt."""
        headers = {**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
        reply = client.post("/ui/login", content=body, headers=headers)
        assert (400, "invalid_form") == (reply.status_code, reply.json()["error"])

    def test_a_bad_action_form_is_400(self, client: TestClient) -> None:
        """The same for a logged-in action."""
        log_in(client)
        body = "&".join(f"f{i}=x" for i in range(60))
        headers = {**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
        reply = client.post("/ui/silences", content=body, headers=headers)
        assert (400, "invalid_form") == (reply.status_code, reply.json()["error"])

    def test_an_answer_before_the_body_was_read_ends_the_connection(self, client: TestClient) -> None:
        """A refusal that leaves the body unread says Connection: close (else a trickled body holds it)."""
        reply = client.post("/api/rules/reload", content=b"x" * 100)
        assert (401, "close") == (reply.status_code, reply.headers.get("connection"))
        assert "connection" not in client.post("/api/rules/reload").headers


class TestReadyz:
    @pytest.fixture
    def broken_store(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
        async def ping() -> None:
            raise StoreError("connection to server at 'db.internal' (10.0.0.5), port 5432 failed: database 'alerts'")

        monkeypatch.setattr(client.app.state.runtime.store, "ping", ping)  # type: ignore[attr-defined]
        return client

    def test_without_the_token_only_the_failing_component(self, broken_store: TestClient) -> None:
        """No token (or a wrong one): 503 naming the store, nothing of host, port, database or rules."""
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = broken_store.get("/readyz", headers=headers)
            assert (503, {"status": "unavailable", "failing": ["store"]}) == (reply.status_code, reply.json())

    def test_with_the_token_the_details(self, broken_store: TestClient) -> None:
        """The admin token shows the store's error and the rules' status."""
        body = broken_store.get("/readyz", headers=AUTH).json()
        assert "db.internal" in body["problems"]["store"]
        assert {"loaded": 1, "last_reload_problems": []} == body["rules"]

    def test_rule_problems_need_the_token(self, client: TestClient, rules_path: Path) -> None:
        """A failed reload's problems (file paths, names) are shown only with the token."""
        rules_path.write_text(RULES.replace("notify: [ops]", "notify: [nowhere]"))
        assert 422 == client.post("/api/rules/reload", headers=AUTH).status_code
        assert {"status": "ok"} == client.get("/readyz").json()
        assert "nowhere" in str(client.get("/readyz", headers=AUTH).json()["rules"]["last_reload_problems"])


class TestHttps:
    def test_https_gets_a_secure_cookie_and_hsts(self, tmp_path: Path, rules_path: Path) -> None:
        """Over https the session cookie is Secure and every answer carries Strict-Transport-Security."""
        with serve(make_settings(tmp_path, rules_path), base_url="https://testserver") as client:
            login = client.post("/ui/login", data={"token": ADMIN}, headers={"Origin": "https://testserver"})
            health = client.get("/healthz")
        assert "secure" in login.headers["set-cookie"].lower()
        assert ["max-age=31536000"] * 2 == [r.headers.get("strict-transport-security") for r in (login, health)]

    def test_plain_http_gets_neither(self, client: TestClient) -> None:
        """Over http: no Secure flag (the browser would drop the cookie) and no HSTS."""
        login = log_in(client)
        assert "secure" not in login.headers["set-cookie"].lower()
        assert "strict-transport-security" not in login.headers


class TestShortSecrets:
    """A short key is a guessable one: the HMAC of one signed webhook, or one action link posted in a
    chat, lets anyone try keys offline. Start-up says which are short (never their value)."""

    def test_short_keys_are_named_at_start(self, tmp_path: Path) -> None:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            RULES + "sources:\n  finance:\n    secrets: ['fin-old', 'a-long-enough-finance-secret']\n"
            "    logs_token: 'tok'\n"
        )
        settings = make_settings(
            tmp_path,
            rules,
            webhook_secret="change-me",
            admin_token="admin",
            logs_token="logs-token-that-is-long-enough",
            link_key="linkkey",
            public_url="https://receiver.example.com",
        )
        with capture_logs() as logs, serve(settings) as client:
            assert 200 == client.get("/healthz").status_code
        short = sorted((e["setting"], e["characters"]) for e in logs if e["event"] == "secret_too_short")
        assert [
            ("RECEIVER_ADMIN_TOKEN", 5),
            ("RECEIVER_LINK_KEY", 7),
            ("RECEIVER_WEBHOOK_SECRET", 9),
            ("sources.finance.logs_token", 3),
            ("sources.finance.secrets[0]", 7),
        ] == short
        shown = repr(logs)
        for value in ("change-me", "'admin'", "linkkey", "fin-old", "'tok'"):
            assert value not in shown

    def test_long_keys_say_nothing(self, tmp_path: Path, rules_path: Path) -> None:
        settings = make_settings(tmp_path, rules_path, webhook_secret="w" * 16, admin_token="a" * 32)
        with capture_logs() as logs, serve(settings) as client:
            assert 200 == client.get("/healthz").status_code
        assert [] == [e for e in logs if e["event"] == "secret_too_short"]
