"""Tests for receiver.delivery.notifier: apprise's real plugins, with only the network intercepted.

Slack and Teams requests are caught by ``responses`` / ``requests-mock``; e-mail goes to a real
aiosmtpd server and ``json://`` to a real ``http.server``, both on 127.0.0.1. Nothing leaves
loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import apprise
import pytest
import requests_mock
import responses
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from apprise import NotifyBase
from support import QuietServer, RecordingNotifier, free_port

from receiver.delivery.notifier import (
    TEST_TITLE,
    AppriseNotifier,
    check_url,
    mask_url,
    send_test,
)
from receiver.render import Notification

SLACK_SECRET = "TIiajkdnlazkcOXrIdevi7"
SLACK_TOKENS = f"T1JJ3T3L2/A1BRTD4JD/{SLACK_SECRET}"
SLACK_HOOK = f"https://hooks.slack.com/services/{SLACK_TOKENS}"
SLACK_URL = f"slack://{SLACK_TOKENS}/#rpa-alerts"

WORKFLOWS_HOST = "prod-00.westus.logic.azure.com"
WORKFLOWS_SECRET = "SiGnAtUrE0123456789abcdef"
WORKFLOWS_URL = f"workflows://{WORKFLOWS_HOST}/a1b2c3d4e5f6/{WORKFLOWS_SECRET}/"
WORKFLOWS_ENDPOINT = re.compile(rf"https://{re.escape(WORKFLOWS_HOST)}(:443)?/workflows/.*")

SMTP_PASSWORD = "Sm7pPassw0rdSecret"

LEAKY_TOKEN = "LeakyTokenA1b2C3"


def leaky_plugin(body: str, title: str, notify_type: str, *args: Any, meta: dict[str, Any], **kwargs: Any) -> bool:
    """A careless apprise plugin: its failure line echoes the token from its URL."""
    logging.getLogger("apprise").warning("Token %s was refused, error=403.", meta["host"])
    return False


if "leaky" not in apprise.NotificationManager():  # type: ignore[no-untyped-call]
    apprise.decorators.notify(on="leaky")(leaky_plugin)  # type: ignore[no-untyped-call]


@pytest.fixture
def anyio_backend() -> str:
    """apprise's async_notify is built on asyncio."""
    return "asyncio"


def make_notification(
    *,
    title: str = "Job faulted",
    body: str = "Process 'InvoiceProcessing' faulted on robot R1",
    severity: str = "failure",
    body_format: str = "text",
) -> Notification:
    """Builds a Notification with sensible defaults for one test."""
    return Notification(title=title, body=body, severity=severity, body_format=body_format)  # type: ignore[arg-type]


def request_json(request: Any) -> Any:
    """Decodes the JSON body of a request captured by responses."""
    assert isinstance(request.body, (bytes, str))
    return json.loads(request.body)


# --- a local HTTP endpoint for json:// --------------------------------------------------------------


@dataclass
class HttpSink:
    """A loopback HTTP server: ``/fail…`` or a body with ``FAIL-ME`` gets 500, anything else 200; every POST is kept."""

    port: int
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The json:// URL of ``path`` on this server."""
        return f"json://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """Serves an HttpSink from a thread for one test."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, body))
            failing = self.path.startswith("/fail") or b"FAIL-ME" in body
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield HttpSink(port=server.server_address[1], received=received)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


# --- a local SMTP server ------------------------------------------------------------------------


class SmtpRecorder:
    """An aiosmtpd handler that keeps every envelope it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    """Accepts only bot / SMTP_PASSWORD."""
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"bot", SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Envelope]]]:
    """A plain SMTP server on a loopback port, yielding (port, received envelopes)."""
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, recorder.envelopes
    controller.stop()


@pytest.fixture(scope="module")
def tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server TLS context with the run's self-signed certificate."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def starttls_server(tls_context: ssl.SSLContext) -> Iterator[tuple[int, list[Envelope]]]:
    """An SMTP server that requires STARTTLS and then AUTH, yielding (port, received envelopes)."""
    recorder = SmtpRecorder()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    yield controller.port, recorder.envelopes
    controller.stop()


def parse_mail(envelope: Envelope) -> EmailMessage:
    """Parses the DATA of one envelope."""
    assert isinstance(envelope.content, bytes)
    message = message_from_bytes(envelope.content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


# --- check_url / mask_url -----------------------------------------------------------------------


VALID_URLS = [
    pytest.param(SLACK_URL, SLACK_SECRET, id="slack"),
    pytest.param(SLACK_HOOK, SLACK_SECRET, id="slack-hook-url"),
    pytest.param(
        f"mailto://bot:{SMTP_PASSWORD}@smtp.example.com?smtp=smtp.example.com&from=bot@example.com&to=ops@example.com",
        SMTP_PASSWORD,
        id="mailto",
    ),
    pytest.param(
        f"mailtos://bot:{SMTP_PASSWORD}@smtp.example.com:587?from=bot@example.com&to=ops@example.com",
        SMTP_PASSWORD,
        id="mailtos",
    ),
    pytest.param(WORKFLOWS_URL, WORKFLOWS_SECRET, id="workflows"),
    pytest.param(
        f"https://{WORKFLOWS_HOST}:443/workflows/a1b2c3d4e5f6/triggers/manual/paths/invoke"
        f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={WORKFLOWS_SECRET}",
        WORKFLOWS_SECRET,
        id="workflows-https-url",
    ),
    pytest.param("json://hook:JsonPassw0rdSecret@127.0.0.1:8080/alerts", "JsonPassw0rdSecret", id="json"),
    pytest.param("log://", None, id="log"),
]

INVALID_URLS = [
    pytest.param("msteams://TeamsTokenA1/TeamsTokenB2/TeamsTokenC3/", "TeamsTokenB2", "workflows://", id="msteams"),
    pytest.param(
        "https://outlook.office.com/webhook/abc@def/IncomingWebhook/ConnectorSecret9/0123",
        "ConnectorSecret9",
        "workflows://",
        id="office365-connector",
    ),
    pytest.param(
        "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/ConnectorSecret9/0123",
        "ConnectorSecret9",
        "workflows://",
        id="office365-connector-webhookb2",
    ),
    pytest.param("foo://admin:FooPassw0rdSecret@example.com/x", "FooPassw0rdSecret", "'foo://'", id="unknown-scheme"),
    pytest.param("slack://OnlyOneTokenSecret", "OnlyOneTokenSecret", "Slack", id="slack-missing-tokens"),
    pytest.param("https://example.com/hook?token=HttpsTokenSecret", "HttpsTokenSecret", "json://", id="plain-https"),
    pytest.param("xoxb-NotAUrlSecret", "xoxb-NotAUrlSecret", "not an apprise URL", id="no-scheme"),
    pytest.param("", None, "not an apprise URL", id="empty"),
]


class TestCheckUrl:
    """check_url validates without sending and without leaking secrets."""

    @pytest.mark.parametrize(("url", "secret"), VALID_URLS)
    def test_valid_url_passes(self, url: str, secret: str | None) -> None:
        """A URL apprise can load gives no message."""
        assert check_url(url) is None

    @pytest.mark.parametrize(("url", "secret", "hint"), INVALID_URLS)
    def test_invalid_url_explains_without_secret(self, url: str, secret: str | None, hint: str) -> None:
        """A URL apprise cannot load gives a message with a hint and without the URL's secret."""
        message = check_url(url)
        assert message is not None
        assert hint in message
        if secret is not None:
            assert secret not in message

    @pytest.mark.parametrize(
        "url",
        [
            pytest.param("msteams://TeamsTokenA1/TeamsTokenB2/TeamsTokenC3/", id="msteams"),
            pytest.param("https://outlook.office.com/webhook/abc@def/IncomingWebhook/x/y", id="office365-connector"),
        ],
    )
    def test_teams_connector_is_reported_as_removed(self, url: str) -> None:
        """The Office 365 connector gets its own message: removed in apprise 1.11, use Workflows."""
        message = check_url(url)
        assert message is not None
        assert [] == [part for part in ("1.11", "Office 365", "workflows://") if part not in message]

    def test_nothing_about_the_url_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """Validating a bad URL logs nothing, although apprise's own load error would echo it."""
        caplog.set_level(logging.DEBUG)
        check_url("foo://admin:FooPassw0rdSecret@example.com/x")
        check_url("slack://OnlyOneTokenSecret")
        assert [] == [r for r in caplog.records if r.name.startswith("apprise")]
        assert "Secret" not in caplog.text


class TestMaskUrl:
    """mask_url returns apprise's privacy form, or a safe fallback."""

    @pytest.mark.parametrize(("url", "secret"), VALID_URLS)
    def test_secret_is_masked(self, url: str, secret: str | None) -> None:
        """The masked form is an apprise URL without the secret."""
        masked = mask_url(url)
        assert re.match(r"[a-z]+://", masked)
        if secret is not None:
            assert secret not in masked

    def test_slack_uses_apprise_privacy_form(self) -> None:
        """Slack tokens are shortened to their first and last characters, as apprise does."""
        assert mask_url(SLACK_URL).startswith("slack://T...2/A...D/T...7/")

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            pytest.param("foo://admin:FooPassw0rdSecret@example.com/x", "foo://***", id="unknown-scheme"),
            pytest.param("msteams://TeamsTokenA1/TeamsTokenB2/", "msteams://***", id="msteams"),
            pytest.param("xoxb-NotAUrlSecret", "***", id="no-scheme"),
        ],
    )
    def test_unloadable_url_falls_back(self, url: str, expected: str) -> None:
        """A URL apprise cannot load is masked as its scheme alone."""
        assert expected == mask_url(url)


# --- e-mail -------------------------------------------------------------------------------------


class TestEmail:
    """mailto:// and mailtos:// reach a real SMTP server on loopback."""

    @pytest.mark.anyio
    async def test_mail_arrives(self, smtp_server: tuple[int, list[Envelope]]) -> None:
        """The message reaches the server with sender, recipients, subject and the process name."""
        port, envelopes = smtp_server
        url = (
            f"mailto://127.0.0.1:{port}?from=uipath-bot@example.com&to=ops@example.com"
            "&cc=lead@example.com&name=UiPath%20Router"
        )
        result = await AppriseNotifier().send(url, make_notification(), timeout=10)
        assert "sent" == result.status
        assert 1 == len(envelopes)
        envelope = envelopes[0]
        message = parse_mail(envelope)
        assert "uipath-bot@example.com" == envelope.mail_from
        assert ["ops@example.com", "lead@example.com"] == envelope.rcpt_tos
        assert "UiPath Router <uipath-bot@example.com>" == message["From"]
        assert "Job faulted" == message["Subject"]
        assert "InvoiceProcessing" in message.get_content()

    @pytest.mark.anyio
    async def test_two_recipients_are_not_paced(self, smtp_server: tuple[int, list[Envelope]]) -> None:
        """One send to two recipients (two messages) takes well under apprise's 5.5 s pause between them."""
        port, envelopes = smtp_server
        url = f"mailto://127.0.0.1:{port}/ops@example.com/dev@example.com?from=bot@example.com"
        started = time.monotonic()
        result = await AppriseNotifier().send(url, make_notification(), timeout=10)
        assert "sent" == result.status
        assert [["dev@example.com"], ["ops@example.com"]] == sorted(e.rcpt_tos for e in envelopes)
        assert time.monotonic() - started < 5.0  # apprise's pause alone would be 5.5 s

    @pytest.mark.anyio
    async def test_a_stalled_mail_server_does_not_hold_up_another_channel(
        self, smtp_server: tuple[int, list[Envelope]]
    ) -> None:
        """Sends stuck on a mail server that never greets leave another channel's mail going at once.

        As many stuck sends as the standard thread pool has threads (a channel's concurrency
        and its retries get there); the other channel's message must not wait for them.
        """
        port, envelopes = smtp_server
        notifier = AppriseNotifier()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)  # connections wait in the backlog: no greeting ever comes
            stalled = f"mailto://127.0.0.1:{listener.getsockname()[1]}?from=bot@example.com&to=ops@example.com"
            threads = min(32, (os.cpu_count() or 1) + 4)
            stuck = [
                asyncio.ensure_future(notifier.send(stalled, make_notification(), timeout=8)) for _ in range(threads)
            ]
            await asyncio.sleep(0.3)
            started = time.monotonic()
            healthy = f"mailto://127.0.0.1:{port}?from=bot@example.com&to=ops@example.com"
            result = await notifier.send(healthy, make_notification(), timeout=8)
            elapsed = time.monotonic() - started
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        assert ("sent", 1) == (result.status, len(envelopes))
        assert elapsed < 2.0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("stage", "reply", "recoverable"),
        [
            pytest.param("RCPT", "550 5.1.1 <ops@example.com>: Recipient address rejected", False, id="rcpt-550"),
            pytest.param("RCPT", "451 4.7.1 Greylisted, try again in 5 minutes", True, id="rcpt-451"),
            pytest.param("MAIL", "553 5.7.1 Sender address not allowed", False, id="mail-553"),
            pytest.param("DATA", "554 5.7.1 Message rejected as spam", False, id="data-554"),
            pytest.param("DATA", "452 4.3.1 Insufficient system storage", True, id="data-452"),
        ],
    )
    async def test_a_refusal_names_the_servers_reply(self, stage: str, reply: str, recoverable: bool) -> None:
        """The mail server's reply is the reason; a 5xx refusal will come again (not retried), a 4xx may pass later."""

        class Refusing:
            async def handle_MAIL(
                self, server: SMTP, session: Session, envelope: Envelope, address: str, _: Any
            ) -> str:
                envelope.mail_from = address
                return reply if stage == "MAIL" else "250 OK"

            async def handle_RCPT(
                self, server: SMTP, session: Session, envelope: Envelope, address: str, _: Any
            ) -> str:
                envelope.rcpt_tos.append(address)
                return reply if stage == "RCPT" else "250 OK"

            async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
                return reply if stage == "DATA" else "250 OK"

        controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
        controller.start()
        try:
            url = f"mailto://127.0.0.1:{controller.port}?from=bot@example.com&to=ops@example.com"
            result = await AppriseNotifier().send(url, make_notification(), timeout=10)
        finally:
            controller.stop()
        assert ("failed", recoverable) == (result.status, result.recoverable)
        assert result.reason is not None
        assert reply.split(" ", 2)[2] in result.reason  # the server's own words
        assert reply[:3] in result.reason

    @pytest.mark.anyio
    async def test_starttls_with_auth(self, starttls_server: tuple[int, list[Envelope]]) -> None:
        """mailtos:// upgrades with STARTTLS, authenticates and delivers; verify=no accepts the self-signed cert."""
        port, envelopes = starttls_server
        url = (
            f"mailtos://bot:{SMTP_PASSWORD}@127.0.0.1:{port}?from=bot@example.com&to=ops@example.com"
            "&mode=starttls&verify=no"
        )
        result = await AppriseNotifier().send(url, make_notification(severity="warning"), timeout=10)
        assert "sent" == result.status
        assert ["ops@example.com"] == envelopes[0].rcpt_tos
        assert "Job faulted" == parse_mail(envelopes[0])["Subject"]

    @pytest.mark.anyio
    async def test_wrong_password_fails_without_leaking_it(self, starttls_server: tuple[int, list[Envelope]]) -> None:
        """A rejected login is a failure whose reason does not contain the password tried."""
        port, envelopes = starttls_server
        url = (
            f"mailtos://bot:WrongPassw0rdSecret@127.0.0.1:{port}?from=bot@example.com&to=ops@example.com"
            "&mode=starttls&verify=no&cto=1"
        )
        result = await AppriseNotifier().send(url, make_notification(), timeout=5)
        assert ("failed", []) == (result.status, envelopes)
        assert result.reason is not None
        assert "WrongPassw0rdSecret" not in result.reason


# --- Slack --------------------------------------------------------------------------------------


class TestSlack:
    """slack:// sends the JSON Slack expects; responses stands in for hooks.slack.com."""

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("severity", "colour"),
        [
            pytest.param("failure", "#A32037", id="failure"),
            pytest.param("warning", "#CACF29", id="warning"),
            pytest.param("success", "#3AA337", id="success"),
            pytest.param("info", "#3AA3E3", id="info"),
        ],
    )
    async def test_attachment_colour_follows_severity(self, severity: str, colour: str) -> None:
        """The attachment colour is apprise's colour for the severity."""
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, body="ok")
            result = await AppriseNotifier().send(SLACK_URL, make_notification(severity=severity), timeout=5)
            payload = request_json(mock.calls[0].request)
        assert "sent" == result.status
        assert colour == payload["attachments"][0]["color"]

    @pytest.mark.anyio
    async def test_text_body_is_escaped(self) -> None:
        """With body_format text, Slack gets the title, and mentions and markup arrive escaped."""
        notification = make_notification(body="Robot R1 faulted <!channel> & <@U123>")
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, body="ok")
            await AppriseNotifier(app_id="receiver-test").send(SLACK_URL, notification, timeout=5)
            request = mock.calls[0].request
        payload = request_json(request)
        attachment = payload["attachments"][0]
        assert "Job faulted" == attachment["title"]
        assert "Robot R1 faulted &lt;!channel&gt; &amp; &lt;@U123&gt;" == attachment["text"]
        assert (False, "#rpa-alerts") == (payload["mrkdwn"], payload["channel"])
        assert "receiver-test" == request.headers["User-Agent"]

    @pytest.mark.anyio
    async def test_server_error_is_a_recoverable_failure(self) -> None:
        """A 500 is a recoverable failure carrying apprise's reason, never the token."""
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, status=500, body="internal_error")
            result = await AppriseNotifier().send(SLACK_URL, make_notification(), timeout=5)
        assert ("failed", True) == (result.status, result.recoverable)
        assert result.reason is not None
        assert "error=500" in result.reason
        assert SLACK_SECRET not in result.reason

    @pytest.mark.anyio
    async def test_deleted_webhook_is_not_recoverable(self) -> None:
        """A 404 (Slack's no_service: the webhook was removed) will not change, so it is not recoverable."""
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, status=404, body="no_service")
            result = await AppriseNotifier().send(SLACK_URL, make_notification(), timeout=5)
        assert ("failed", False) == (result.status, result.recoverable)

    @pytest.mark.anyio
    async def test_sequential_sends_are_not_paced(self) -> None:
        """Two sends in a row to one Slack URL do not wait out apprise's 1.2 s pacing."""
        notifier = AppriseNotifier()
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, body="ok")
            started = time.monotonic()
            first = await notifier.send(SLACK_URL, make_notification(), timeout=5)
            second = await notifier.send(SLACK_URL, make_notification(), timeout=5)
            elapsed = time.monotonic() - started
            calls = len(mock.calls)
        assert ("sent", "sent", 2) == (first.status, second.status, calls)
        assert elapsed < 1.0

    @pytest.mark.anyio
    async def test_apprise_debug_lines_never_reach_the_log(self, caplog: pytest.LogCaptureFixture) -> None:
        """Even with the apprise logger at DEBUG, nothing below INFO (where tokens appear) is emitted."""
        caplog.set_level(logging.DEBUG, logger="apprise")
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, SLACK_HOOK, body="ok")
            result = await AppriseNotifier().send(SLACK_URL, make_notification(), timeout=5)
        assert result.ok
        assert [] == [r.getMessage() for r in caplog.records if r.name == "apprise" and r.levelno < logging.INFO]
        assert SLACK_SECRET not in caplog.text


# --- Teams (Power Automate Workflows) -----------------------------------------------------------


class TestWorkflows:
    """workflows:// posts an Adaptive Card; requests-mock stands in for Azure Logic Apps."""

    @pytest.mark.anyio
    async def test_adaptive_card(self) -> None:
        """The card carries the title and the markdown body as TextBlocks, signed with the URL's signature."""
        notification = make_notification(body="Process **InvoiceProcessing** faulted", body_format="markdown")
        with requests_mock.Mocker() as mock:
            mock.post(WORKFLOWS_ENDPOINT, status_code=202)
            result = await AppriseNotifier().send(WORKFLOWS_URL, notification, timeout=5)
            request = mock.request_history[0]
        assert "sent" == result.status
        assert "/workflows/a1b2c3d4e5f6/triggers/manual/paths/invoke" == request.path
        assert [WORKFLOWS_SECRET] == parse_qs(urlsplit(request.url).query)["sig"]
        attachment = request.json()["attachments"][0]
        assert "application/vnd.microsoft.card.adaptive" == attachment["contentType"]
        blocks = [(b["id"], b["text"]) for b in attachment["content"]["body"] if b["type"] == "TextBlock"]
        assert [("title", "Job faulted"), ("body", "Process **InvoiceProcessing** faulted")] == blocks

    @pytest.mark.anyio
    async def test_sequential_sends_are_not_paced(self) -> None:
        """Two sends in a row to one Workflows URL do not wait out apprise's 5.5 s pacing."""
        notifier = AppriseNotifier()
        with requests_mock.Mocker() as mock:
            mock.post(WORKFLOWS_ENDPOINT, status_code=202)
            started = time.monotonic()
            for _ in range(2):
                assert (await notifier.send(WORKFLOWS_URL, make_notification(), timeout=5)).ok
            elapsed = time.monotonic() - started
        assert elapsed < 5.0  # apprise's pacing alone would be 5.5 s


# --- json:// to a real local endpoint -----------------------------------------------------------


class TestJsonEndpoint:
    """json:// to a real loopback server: every outcome is a SendResult, none raises."""

    @pytest.mark.anyio
    async def test_success(self, http_sink: HttpSink) -> None:
        """A 200 is sent, and the endpoint receives title, body and severity."""
        result = await AppriseNotifier().send(http_sink.url("/hook"), make_notification(), timeout=5)
        assert ("sent", None, False) == (result.status, result.reason, result.recoverable)
        assert 0 < result.elapsed < 5
        path, raw = http_sink.received[0]
        payload = json.loads(raw)
        assert "/hook" == path
        assert ("Job faulted", "failure") == (payload["title"], payload["type"])
        assert "InvoiceProcessing" in payload["message"]

    @pytest.mark.anyio
    async def test_server_error(self, http_sink: HttpSink) -> None:
        """A 500 is a recoverable failure whose reason names the error."""
        result = await AppriseNotifier().send(http_sink.url("/fail"), make_notification(), timeout=5)
        assert ("failed", True, False) == (result.status, result.recoverable, result.ok)
        assert result.reason is not None
        assert "error=500" in result.reason

    @pytest.mark.anyio
    async def test_concurrent_sends_to_one_url_each_get_their_own_outcome(self, http_sink: HttpSink) -> None:
        """One notifier reuses a URL's apprise object; sends running at once still report each its own result."""
        notifier = AppriseNotifier()
        url = http_sink.url("/hook")
        notes = [make_notification(title=f"{'FAIL-ME' if n % 2 else 'fine'} {n}") for n in range(12)]
        results = await asyncio.gather(*(notifier.send(url, note, timeout=5) for note in notes))
        assert ["failed" if n % 2 else "sent" for n in range(12)] == [r.status for r in results]
        assert 12 == len(http_sink.received)
        # Each failure carries its own send's line, once; a success carries none.
        assert [("error=500" in r.reason) if r.reason else None for r in results] == [
            True if n % 2 else None for n in range(12)
        ]
        assert all((r.reason or "").count("error=500") <= 1 for r in results)

    @pytest.mark.anyio
    async def test_the_masked_url_apprise_reports_is_built_once_and_hides_the_password(
        self, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """apprise asks the plugin for its masked URL after every send: built once per channel, still masked."""
        from apprise.plugins.custom_json import NotifyJSON

        built: list[str] = []
        original = NotifyJSON.url

        def counting(plugin: Any, *args: Any, **kwargs: Any) -> Any:
            value = original(plugin, *args, **kwargs)
            built.append(value)
            return value

        monkeypatch.setattr(NotifyJSON, "url", counting)
        notifier = AppriseNotifier()
        url = http_sink.url("/hook").replace("json://", "json://user:s3cret-pw@")
        first = await notifier.send(url, make_notification(), timeout=5)
        after_first = len(built)
        results = [await notifier.send(url, make_notification(), timeout=5) for _ in range(3)]
        assert ["sent"] * 4 == [r.status for r in (first, *results)]
        assert 4 == len(http_sink.received)
        assert after_first == len(built)  # none more for the next three sends
        assert built
        assert all("s3cret-pw" not in value and value.startswith("json://user:") for value in built)

    @pytest.mark.anyio
    async def test_connection_refused(self) -> None:
        """A refused connection is a recoverable failure with apprise's connection-error reason."""
        result = await AppriseNotifier().send(f"json://127.0.0.1:{free_port()}/hook", make_notification(), timeout=5)
        assert ("failed", True) == (result.status, result.recoverable)
        assert result.reason is not None
        assert "Connection error" in result.reason

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "budget", "expected"),
        [
            pytest.param("", 1.0, "failed", id="default-rto-clamped-to-budget"),
            pytest.param("?rto=0.3", 2.0, "failed", id="url-rto"),
            pytest.param("?rto=5", 0.5, "timeout", id="budget-before-rto"),
        ],
    )
    async def test_stall_ends_within_the_budget(
        self, stalled_port: int, query: str, budget: float, expected: str
    ) -> None:
        """An endpoint that never answers ends as failed (rto) or timeout (budget), within the budget."""
        started = time.monotonic()
        result = await AppriseNotifier().send(
            f"json://127.0.0.1:{stalled_port}/hook{query}", make_notification(), timeout=budget
        )
        assert (expected, True) == (result.status, result.recoverable)
        assert result.reason is not None
        # Generous: on a loaded 2-core CI machine apprise's thread pool can start the send late.
        assert time.monotonic() - started < budget + 1.5

    @pytest.mark.anyio
    async def test_unloadable_url_is_a_permanent_failure(self) -> None:
        """A URL apprise cannot load fails, not recoverable, with check_url's message."""
        url = "foo://admin:FooPassw0rdSecret@example.com/x"
        result = await AppriseNotifier().send(url, make_notification(), timeout=5)
        assert ("failed", False, check_url(url)) == (result.status, result.recoverable, result.reason)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "owner", "method"),
        [
            pytest.param("", NotifyBase, "notify", id="plugin-called-directly"),
            pytest.param("?retry=1", apprise.Apprise, "async_notify", id="through-apprise-for-retry"),
        ],
    )
    async def test_apprise_exception_becomes_a_failure(
        self, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch, query: str, owner: type, method: str
    ) -> None:
        """An exception out of apprise is a failed result naming its type, not its message."""

        def explode(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom at json://hook:JsonPassw0rdSecret@127.0.0.1")

        async def explode_async(*args: Any, **kwargs: Any) -> None:
            explode()

        monkeypatch.setattr(owner, method, explode_async if method == "async_notify" else explode)
        result = await AppriseNotifier().send(http_sink.url("/hook" + query), make_notification(), timeout=5)
        assert ("failed", False, "apprise raised RuntimeError") == (result.status, result.recoverable, result.reason)
        assert not http_sink.received

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            pytest.param("", "all good :smile:", id="plain"),
            pytest.param("?emojis=yes", "all good \N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}", id="emojis"),
        ],
    )
    async def test_apprise_emojis_option_is_honoured(self, http_sink: HttpSink, query: str, expected: str) -> None:
        """``emojis=yes`` (apprise's call layer turns :smile: into the emoji) works as with apprise alone."""
        note = make_notification(body="all good :smile:")
        result = await AppriseNotifier().send(http_sink.url("/hook" + query), note, timeout=5)
        assert result.ok
        assert expected == json.loads(http_sink.received[0][1])["message"]

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "posts"),
        [
            pytest.param("", 1, id="no-retry-option"),
            pytest.param("?retry=2", 3, id="retry-option"),
        ],
    )
    async def test_apprise_retry_option_is_honoured(self, http_sink: HttpSink, query: str, posts: int) -> None:
        """A URL with apprise's retry= goes through apprise's call layer, which retries; others are sent once."""
        result = await AppriseNotifier().send(http_sink.url("/fail" + query), make_notification(), timeout=10)
        assert ("failed", True) == (result.status, result.recoverable)
        assert result.reason is not None
        assert "error=500" in result.reason
        assert posts == len(http_sink.received)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "budget",
        [
            pytest.param(0, id="zero"),
            pytest.param(-1, id="negative"),
            pytest.param(math.nan, id="nan"),
            pytest.param(math.inf, id="inf"),
        ],
    )
    async def test_budget_must_be_positive(self, budget: float) -> None:
        """A budget that is not a positive finite number is a caller bug and raises ValueError."""
        with pytest.raises(ValueError, match="positive"):
            await AppriseNotifier().send("log://", make_notification(), timeout=budget)


class TestReason:
    """The reason of a failure is apprise's own words, without secrets."""

    @pytest.mark.anyio
    async def test_reason_never_carries_a_token(self) -> None:
        """A token that a plugin echoes in its failure line is scrubbed from the reason."""
        result = await AppriseNotifier().send(f"leaky://{LEAKY_TOKEN}/", make_notification(), timeout=5)
        assert ("failed", False) == (result.status, result.recoverable)
        assert result.reason is not None
        assert "Token *** was refused, error=403." in result.reason
        assert LEAKY_TOKEN not in result.reason


# --- log:// and send-test -----------------------------------------------------------------------


class TestLogChannel:
    """The built-in log:// channel writes notifications to the structured log."""

    def test_log_url_is_valid(self) -> None:
        """log:// needs no account and passes check_url."""
        assert (None, "log://") == (check_url("log://"), mask_url("log://"))

    @pytest.mark.anyio
    async def test_notification_is_logged(self) -> None:
        """Sending to log:// writes notification_logged with title, severity and body."""
        with structlog.testing.capture_logs() as logs:
            result = await AppriseNotifier().send("log://", make_notification(severity="warning"), timeout=5)
        assert result.ok
        expected = {
            "event": "notification_logged",
            "log_level": "info",
            "title": "Job faulted",
            "severity": "warning",
            "body": "Process 'InvoiceProcessing' faulted on robot R1",
        }
        assert [expected] == [e for e in logs if e["event"] == "notification_logged"]


class TestSendTest:
    """send_test sends one recognisable test message."""

    @pytest.mark.anyio
    async def test_builds_the_test_message(self) -> None:
        """The test message has the fixed title and a body saying where and when it came from."""
        notifier = RecordingNotifier()
        result = await send_test("log://", notifier, timeout=7)
        [(url, notification, timeout)] = notifier.calls
        assert ("log://", 7) == (url, timeout)
        assert notifier.returned == [result]  # the notifier's own answer, passed on
        assert (TEST_TITLE, "info", "text") == (notification.title, notification.severity, notification.body_format)
        assert "receiver send-test" in notification.body
        assert socket.gethostname() in notification.body
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", notification.body)

    @pytest.mark.anyio
    async def test_reaches_the_log_channel(self) -> None:
        """Through apprise, the test message arrives on log://."""
        with structlog.testing.capture_logs() as logs:
            result = await send_test("log://", AppriseNotifier())
        assert result.ok
        assert [TEST_TITLE] == [e["title"] for e in logs if e["event"] == "notification_logged"]
