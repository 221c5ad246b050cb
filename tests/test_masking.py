"""Channel URLs as shown to people: no secret of any apprise URL form in the API, the page, the CLI or a log line.

apprise's privacy form masks the tokens and passwords it knows of but copies custom headers
(``+Name=``), custom parameters (``-name=``), payload fields (``:name=``) and the free path of
json://, form:// and xml:// verbatim; ``mask_url`` hides those too. Real apprise plugins, no
network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from apprise.plugins.custom_json import NotifyJSON
from starlette.testclient import TestClient
from support import DATA, free_port

from receiver.cli import main
from receiver.delivery.notifier import AppriseNotifier, SendResult, check_url, mask_url
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings

SLACK_TOKENS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7")
WORKFLOW_ID = "a1b2c3d4e5f6"
WORKFLOW_SIG = "SiGnAtUrE0123456789xyz"
WORKFLOWS_HOST = "prod-00.westus.logic.azure.com"
MAIL_PASSWORD = "S3cretMailPass"
DISCORD_ID = "123456789012345678"
DISCORD_TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
HEADER_SECRET = "SECRETVALUE"
PARAM_SECRET = "P4ramSecret"
FIELD_SECRET = "F1eldSecret"
PATH_TOKEN = "Tok3nInPath42"
HTTP_PASSWORD = "JsonPassw0rd"

FORMS = [
    pytest.param(f"slack://{'/'.join(SLACK_TOKENS)}/#general", SLACK_TOKENS, ("slack://", "%23general"), id="slack"),
    pytest.param(
        f"https://hooks.slack.com/services/{'/'.join(SLACK_TOKENS)}", SLACK_TOKENS, ("slack://",), id="slack-hook-url"
    ),
    pytest.param(
        "slack://xoxb-1234-1234-4ddbc191d40ee098cbaae6f3523ada2d/#ops",
        ("xoxb-1234-1234-4ddbc191d40ee098cbaae6f3523ada2d",),
        ("slack://", "%23ops"),
        id="slack-bot-token",
    ),
    pytest.param(
        f"workflows://{WORKFLOWS_HOST}/{WORKFLOW_ID}/{WORKFLOW_SIG}/",
        (WORKFLOW_ID, WORKFLOW_SIG),
        (f"workflow://{WORKFLOWS_HOST}/",),
        id="workflows",
    ),
    pytest.param(
        f"https://{WORKFLOWS_HOST}:443/workflows/{WORKFLOW_ID}/triggers/manual/paths/invoke"
        f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={WORKFLOW_SIG}",
        (WORKFLOW_ID, WORKFLOW_SIG),
        (f"workflow://{WORKFLOWS_HOST}:443/",),
        id="workflows-https-url",
    ),
    pytest.param(
        f"mailto://bot:{MAIL_PASSWORD}@smtp.example.com?to=ops@example.com&from=bot@example.com",
        (MAIL_PASSWORD,),
        ("mailto://bot:", "@smtp.example.com/ops%40example.com", "from=bot%40example.com"),
        id="mailto-password",
    ),
    pytest.param(
        f"mailtos://bot:{MAIL_PASSWORD}@smtp.example.com:587?to=ops@example.com&mode=starttls"
        f"&+X-Api-Key={HEADER_SECRET}",
        (MAIL_PASSWORD, HEADER_SECRET),
        ("mailtos://bot:", "@smtp.example.com/", "mode=starttls", "%2BX-Api-Key=***"),
        id="mailtos-password-header",
    ),
    pytest.param(
        f"json://127.0.0.1:8080/hook?+Authorization=Bearer%20{HEADER_SECRET}&-api_key={PARAM_SECRET}"
        f"&:api_token={FIELD_SECRET}&format=text",
        (HEADER_SECRET, PARAM_SECRET, FIELD_SECRET),
        ("json://127.0.0.1:8080/hook?", "%2BAuthorization=***", "-api_key=***", "%3Aapi_token=***", "format=text"),
        id="json-header-param-field",
    ),
    pytest.param(
        f"json://hooks.example.com/in?+Authorization=Bearer {HEADER_SECRET}",
        (HEADER_SECRET,),
        ("json://hooks.example.com/in?", "%2BAuthorization=***"),
        id="json-header-with-space",
    ),
    pytest.param(
        f"jsons://alerts:{HTTP_PASSWORD}@hooks.example.com:8443/hooks/{PATH_TOKEN}?+X-Token={HEADER_SECRET}"
        f"&-code={PARAM_SECRET}",
        (HTTP_PASSWORD, PATH_TOKEN, HEADER_SECRET, PARAM_SECRET),
        ("jsons://alerts:***@hooks.example.com:8443/hooks/***?", "%2BX-Token=***", "-code=***"),
        id="jsons-password-path-token",
    ),
    pytest.param(
        f"form://hooks.example.com/in/{PATH_TOKEN}?+X-Api-Key={HEADER_SECRET}&-sig={PARAM_SECRET}",
        (PATH_TOKEN, HEADER_SECRET, PARAM_SECRET),
        ("form://hooks.example.com/in/***?", "%2BX-Api-Key=***", "-sig=***"),
        id="form",
    ),
    pytest.param(
        f"xml://hooks.example.com/in?+X-Api-Key={HEADER_SECRET}&-sig={PARAM_SECRET}",
        (HEADER_SECRET, PARAM_SECRET),
        ("xml://hooks.example.com/in?", "%2BX-Api-Key=***", "-sig=***"),
        id="xml",
    ),
    pytest.param(
        f"discord://{DISCORD_ID}/{DISCORD_TOKEN}/", (DISCORD_ID, DISCORD_TOKEN), ("discord://",), id="discord"
    ),
    pytest.param(
        f"https://discord.com/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}",
        (DISCORD_ID, DISCORD_TOKEN),
        ("discord://",),
        id="discord-webhook-url",
    ),
]


@pytest.mark.parametrize(("url", "secrets", "readable"), FORMS)
def test_no_secret_survives_masking(url: str, secrets: tuple[str, ...], readable: tuple[str, ...]) -> None:
    """Every secret part of each documented URL form is hidden; scheme, host and option names stay."""
    assert check_url(url) is None, "the form must load in apprise, or the test proves nothing"
    masked = mask_url(url)
    assert [] == [secret for secret in secrets if secret in masked], masked
    assert [] == [part for part in readable if part not in masked], masked


def test_addresses_and_channels_stay_readable() -> None:
    """A recipient with digits and a numbered Slack channel say where alerts go and are kept."""
    mail = mask_url("mailto://bot:pw123456@smtp.example.com?to=oncall2024@example.com")
    slack = mask_url(f"slack://{'/'.join(SLACK_TOKENS)}/#alerts2024")
    assert "oncall2024%40example.com" in mail
    assert "%23alerts2024" in slack


# --- where channel URLs are shown ---------------------------------------------------------------

HOOK = f"json://127.0.0.1:{free_port()}/hook?+Authorization=Bearer%20{HEADER_SECRET}&-api_key={PARAM_SECRET}"
ADMIN = "masking-admin-token"
RULES = f"""
channels:
  hook: "{HOOK}"
rules:
  - name: all-faults
    match: {{type: job.faulted}}
    notify: [hook]
"""


class _Silent:
    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        return SendResult("sent", None, 0.0, recoverable=False)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def client(tmp_path: Path, rules_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        rules=rules_path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret="masking-webhook-secret",
        admin_token=ADMIN,
        watch_rules=False,
    )
    with TestClient(create_app(settings, notifier=_Silent())) as test_client:
        yield test_client


def test_api_and_page_show_no_header_or_param_value(client: TestClient) -> None:
    """GET /api/rules and /ui/rules show the json:// channel with its header and parameter names, not values."""
    api = client.get("/api/rules", headers={"Authorization": f"Bearer {ADMIN}"})
    assert 200 == api.status_code
    client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers={"Origin": "http://testserver"})
    page = client.get("/ui/rules", follow_redirects=False)
    assert (200, True) == (page.status_code, "all-faults" in page.text)
    for shown in (api.text, page.text):
        assert [] == [s for s in (HEADER_SECRET, PARAM_SECRET) if s in shown]
        assert "json://127.0.0.1:" in shown
    (channel,) = api.json()["channel_details"]
    assert "%2BAuthorization=***" in channel["url"]


@pytest.mark.parametrize("as_json", [pytest.param(False, id="text"), pytest.param(True, id="json")])
def test_receiver_test_prints_no_header_value(
    rules_path: Path, as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """`receiver test` shows the channel it would notify without the header or parameter value."""
    assert 0 == main(["test", str(rules_path), str(DATA / "job.faulted.json"), *(["--json"] if as_json else [])])
    out = capsys.readouterr().out
    assert "json://127.0.0.1:" in out
    assert [] == [s for s in (HEADER_SECRET, PARAM_SECRET) if s in out]


def test_send_test_prints_no_header_value(rules_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver send-test` to an unreachable json:// channel names it masked in its failure line."""
    assert 1 == main(["send-test", "hook", "--rules", str(rules_path)])
    captured = capsys.readouterr()
    assert "FAILED to send to hook (json://127.0.0.1:" in captured.out
    assert [] == [s for s in (HEADER_SECRET, PARAM_SECRET) if s in captured.out + captured.err]


@pytest.mark.anyio
async def test_raised_warning_logs_no_header_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apprise_raised warning names the channel without its header or parameter value."""

    def explode(*args: object, **kwargs: object) -> bool:
        raise RuntimeError(f"boom {HOOK}")

    monkeypatch.setattr(NotifyJSON, "send", explode)
    note = Notification(title="t", body="b", severity="failure", body_format="text")
    with structlog.testing.capture_logs() as logs:
        result = await AppriseNotifier().send(HOOK, note, timeout=5)
    assert "failed" == result.status
    (line,) = [e for e in logs if e["event"] == "apprise_raised"]
    assert "json://127.0.0.1:" in line["channel"]
    assert [] == [s for s in (HEADER_SECRET, PARAM_SECRET) if s in repr(logs) + (result.reason or "")]
