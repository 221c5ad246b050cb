"""``receiver check`` on the orchestrator block, ``receiver orchestrator status`` and ``sync`` against the fake.

The CLI runs in-process (``receiver.cli.main``) and talks to the fake Orchestrator over loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from fake_orchestrator import FakeOrchestrator

import receiver.orchestrator.client as orchestrator_client
from receiver.cli import main
from receiver.events import EVENT_TYPES
from receiver.rules import load_rules, needed_event_types

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
WEBHOOK_SECRET = "webhook-s3cret"
PUBLIC_URL = "http://127.0.0.1:9/webhooks/uipath"

RULES = """\
channels:
  ops: "json://127.0.0.1:9/alerts"
sources:
  uipath:
    secrets: ["${{WEBHOOK_SECRET}}", "older-secret"]
    orchestrator:
      url: "{url}"
      client_id: "${{UIPATH_CLIENT_ID}}"
      client_secret: "${{UIPATH_CLIENT_SECRET}}"
      public_url: "{public_url}"
rules:
  - name: faults
    match: {{type: [job.faulted, "queueItem.transactionF*"]}}
    notify: ops
  - name: stuck
    match: {{type: job.started}}
    absence: {{expect: {{type: job.completed}}, within: 1h}}
    notify: ops
  - name: elsewhere
    match: {{source: other}}
    notify: ops
"""
WANTED = ["job.completed", "job.faulted", "job.started", "ping", "queueItem.transactionFailed"]


@pytest.fixture(autouse=True)
def _uncache_client_logger() -> Iterator[None]:
    """The CLI configures logging with cache_logger_on_first_use: give later tests an uncached logger back."""
    yield
    orchestrator_client.log = structlog.get_logger()


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, "OR.Webhooks")
    with fake:
        yield fake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UIPATH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("UIPATH_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("RECEIVER_LOG_FORMAT", "json")
    monkeypatch.delenv("RECEIVER_WEBHOOK_SECRET", raising=False)


@pytest.fixture
def rules(tmp_path: Path, orch: FakeOrchestrator, env: None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(url=orch.orchestrator_url, public_url=PUBLIC_URL))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TestCheck:
    @pytest.mark.parametrize(
        ("block", "line", "message"),
        [
            pytest.param(
                'url: "https://o.example.com"\n      client_id: c\n      public_url: "https://r.example.com/webhooks/uipath"',
                7,
                "missing required key 'orchestrator.client_secret'",
                id="missing-secret",
            ),
            pytest.param(
                'url: "https://o.example.com"\n      client_id: c\n      client_secret: "${BLANK}"\n'
                '      public_url: "https://r.example.com/webhooks/uipath"',
                9,
                "orchestrator.client_secret is empty or blank",
                id="blank-secret",
            ),
            pytest.param(
                'url: "https://o.example.com"\n      client_id: c\n      client_secret: s\n      publik_url: x',
                10,
                "unknown key 'publik_url'; did you mean 'public_url'?",
                id="unknown-key",
            ),
            pytest.param(
                'url: "o.example.com"\n      client_id: c\n      client_secret: s\n'
                '      public_url: "https://r.example.com/webhooks/uipath"',
                7,
                "orchestrator.url 'o.example.com' must be an http:// or https:// URL",
                id="bad-url",
            ),
            pytest.param(
                'url: "https://o.example.com"\n      client_id: c\n      client_secret: s\n'
                '      public_url: "https://r.example.com/webhooks/other"',
                10,
                "must end with /webhooks/uipath",
                id="public-url-of-another-source",
            ),
            pytest.param(
                'url: "https://o.example.com"\n      client_id: c\n      client_secret: "${UNSET_SECRET_VAR}"\n'
                '      public_url: "https://r.example.com/webhooks/uipath"',
                9,
                "environment variable 'UNSET_SECRET_VAR' is not set (used in orchestrator.client_secret)",
                id="unset-variable",
            ),
        ],
    )
    def test_invalid_block_is_located(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        block: str,
        line: int,
        message: str,
    ) -> None:
        """`receiver check` names the problem of the orchestrator block at PATH:LINE:COL and fails."""
        monkeypatch.setenv("BLANK", "  ")
        monkeypatch.delenv("UNSET_SECRET_VAR", raising=False)
        path = tmp_path / "rules.yaml"
        path.write_text(
            "channels:\n  ops: json://127.0.0.1:9/x\nsources:\n  uipath:\n    secrets: [s]\n"
            f"    orchestrator:\n      {block}\nrules: []\n"
        )
        code, out, _ = run(capsys, "check", str(path))
        assert 1 == code
        assert f"{path}:{line}:" in out
        assert message in out

    def test_secret_is_never_echoed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A client secret with a malformed ${...} is reported without quoting any of it."""
        path = tmp_path / "rules.yaml"
        path.write_text(
            "sources:\n  uipath:\n    orchestrator:\n      url: https://o.example.com\n      client_id: c\n"
            '      client_secret: "ab${not-a-name}cd"\n      public_url: https://r.example.com/webhooks/uipath\n'
            "rules: []\n"
        )
        code, out, _ = run(capsys, "check", str(path))
        assert 1 == code
        assert "malformed variable reference in orchestrator.client_secret" in out
        assert "not-a-name" not in out

    def test_valid_block_passes(self, rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A complete block is accepted; scopes default to what the features need."""
        code, out, _ = run(capsys, "check", str(rules))
        assert 0 == code, out
        link = load_rules(rules, environ={"UIPATH_CLIENT_ID": "c", "UIPATH_CLIENT_SECRET": "s", "WEBHOOK_SECRET": "w"})
        assert ("OR.Webhooks",) == link.sources["uipath"].orchestrator.scopes  # type: ignore[union-attr]


class TestCheckSubscriptions:
    def test_check_warns_about_event_types_the_webhook_misses(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The file is valid (exit 0), and the webhook's missing types are named, with the fix."""
        orch.add_webhook(PUBLIC_URL, secret=WEBHOOK_SECRET, events=["job.faulted", "job.started"], name="mine")
        code, out, _ = run(capsys, "check", str(rules))
        assert 0 == code, out
        warning = [line for line in out.splitlines() if ": warning: " in line]
        assert 1 == len(warning), out
        assert "does not subscribe to job.completed, queueItem.transactionFailed" in warning[0]
        assert "receiver orchestrator sync" in warning[0]
        assert CLIENT_SECRET not in out

    def test_a_webhook_with_every_type_needs_nothing(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A webhook subscribed to the rules' types (or to everything) gets no warning."""
        orch.add_webhook(PUBLIC_URL, secret=WEBHOOK_SECRET, events=[e for e in WANTED if e != "ping"], name="mine")
        code, out, _ = run(capsys, "check", str(rules))
        assert (0, []) == (code, [line for line in out.splitlines() if "warning" in line])

    def test_offline_asks_nothing(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--offline validates the file only: no call to Orchestrator, no warning."""
        code, out, _ = run(capsys, "check", "--offline", str(rules))
        assert (0, [], []) == (code, [line for line in out.splitlines() if "warning" in line], orch.request_log)


class TestNeededTypes:
    def test_types_from_the_rules_of_the_source(self, rules: Path) -> None:
        """Type lists and globs are expanded; absence follow-ups count; another source's rules do not."""
        ruleset = load_rules(
            rules, environ={"UIPATH_CLIENT_ID": "c", "UIPATH_CLIENT_SECRET": "s", "WEBHOOK_SECRET": "w"}
        )
        needed = needed_event_types(ruleset, "uipath", EVENT_TYPES)
        assert needed is not None
        assert [t for t in WANTED if t != "ping"] == sorted(needed)
        assert needed_event_types(ruleset, "other", EVENT_TYPES) is None  # `source: other` matches any type

    @pytest.mark.parametrize(
        ("match", "expected"),
        [
            pytest.param("{process: 'Invoice*'}", None, id="no-type-clause"),
            pytest.param("{not: {type: ping}}", None, id="not-a-type"),
            pytest.param("{any: [{type: job.faulted}, {process: X}]}", None, id="any-with-other-field"),
            pytest.param("{any: [{type: job.faulted}, {type: 'robot.*'}]}", 5, id="any-of-types"),
            pytest.param("{type: job.faulted, process: X}", 1, id="type-and-field"),
            pytest.param("{type: job.faulted, source: elsewhere}", 0, id="other-source"),
        ],
    )
    def test_clause_shapes(self, tmp_path: Path, match: str, expected: int | None) -> None:
        """A rule needs a type unless its clauses surely fail for it; any type at all means every event."""
        path = tmp_path / "rules.yaml"
        path.write_text(
            f"channels:\n  ops: json://127.0.0.1:9/x\nrules:\n  - name: r\n    match: {match}\n    notify: ops\n"
        )
        needed = needed_event_types(load_rules(path, environ={}), "uipath", EVENT_TYPES)
        assert expected == (None if needed is None else len(needed))


class TestStatus:
    def test_status_shows_token_scopes_and_webhooks(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Token obtained, scopes granted, every webhook seen, the one at public_url marked; no secret shown."""
        mine = orch.add_webhook(PUBLIC_URL, secret=WEBHOOK_SECRET, events=["job.faulted"])
        orch.add_webhook("http://127.0.0.1:9/elsewhere", enabled=False, subscribe_to_all=True)
        code, out, err = run(capsys, "orchestrator", "status", "--rules", str(rules))
        assert 0 == code, out + err
        assert "token: obtained" in out
        assert "scopes granted: OR.Webhooks" in out
        assert f"* {mine['Id']:>6} enabled  {PUBLIC_URL}  [job.faulted]" in out
        assert "DISABLED http://127.0.0.1:9/elsewhere  [every event]" in out
        for secret in (CLIENT_SECRET, WEBHOOK_SECRET):
            assert secret not in out + err

    def test_status_names_a_refused_token(
        self, orch: FakeOrchestrator, rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wrong secret: the token is not obtained, the error says why, exit 1, the secret is not shown."""
        monkeypatch.setenv("UIPATH_CLIENT_SECRET", "wr0ng-secret-zzz")
        code, out, err = run(capsys, "orchestrator", "status", "--rules", str(rules))
        assert 1 == code
        assert "token: NOT obtained" in out
        assert "invalid_client" in out
        assert "wr0ng-secret-zzz" not in out + err

    def test_status_without_webhook_fails(self, rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No webhook at public_url: exit 1 and a pointer to sync."""
        code, out, _ = run(capsys, "orchestrator", "status", "uipath", "--rules", str(rules))
        assert 1 == code
        assert "no webhook at public_url" in out

    def test_unknown_source_is_a_usage_error(self, rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown source exits 2 with the known ones named."""
        code, _, err = run(capsys, "orchestrator", "status", "nope", "--rules", str(rules))
        assert 2 == code
        assert "no source 'nope'" in err


class TestSync:
    def stale(self, orch: FakeOrchestrator) -> int:
        hook = orch.add_webhook(
            PUBLIC_URL, secret="old-secret", events=["job.faulted", "queue.created"], enabled=False, name="mine"
        )
        return int(hook["Id"])

    def test_dry_run_prints_the_difference_and_changes_nothing(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run shows each differing field (never the secret) and sends no write."""
        hook_id = self.stale(orch)
        before = orch.webhooks()
        code, out, err = run(capsys, "orchestrator", "sync", "--dry-run", "--rules", str(rules))
        assert 0 == code, out + err
        assert f"webhook {hook_id} (mine) at {PUBLIC_URL}: update:" in out
        assert "Enabled: false -> true" in " ".join(out.split())
        assert "+ job.completed, + job.started, + ping, + queueItem.transactionFailed, - queue.created" in out
        assert "Secret: differs -> the source's first secret" in " ".join(out.split())
        assert "dry run: nothing changed" in out
        assert before == orch.webhooks()
        writes = [r for r in orch.request_log if "/odata/" in r.path and r.method != "GET"]
        assert [] == writes
        assert "old-secret" not in out
        assert WEBHOOK_SECRET not in out

    def test_sync_leaves_exactly_the_rules_event_types(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After sync the webhook is enabled, signed with the first secret and subscribed to the rules' types + ping."""
        hook_id = self.stale(orch)
        code, out, err = run(capsys, "orchestrator", "sync", "--rules", str(rules))
        assert 0 == code, out + err
        assert f"updated: webhook {hook_id}" in out
        after = orch.webhook(hook_id)
        assert WANTED == sorted(e["EventType"] for e in after["Events"])
        assert (True, False, WEBHOOK_SECRET) == (after["Enabled"], after["SubscribeToAllEvents"], after["Secret"])
        code, out, _ = run(capsys, "orchestrator", "sync", "--rules", str(rules))
        assert 0 == code
        assert "up to date" in out

    def test_sync_creates_a_missing_webhook(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With no webhook at public_url, sync creates one as the rules need."""
        code, out, err = run(capsys, "orchestrator", "sync", "--rules", str(rules))
        assert 0 == code, out + err
        assert f"no webhook at {PUBLIC_URL}; create one:" in out
        [created] = orch.webhooks()
        assert PUBLIC_URL == created["Url"]
        assert WANTED == sorted(e["EventType"] for e in created["Events"])
        assert WEBHOOK_SECRET == created["Secret"]

    def test_uipath_secret_from_the_environment_comes_first(
        self, orch: FakeOrchestrator, rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """For `uipath` the server verifies with RECEIVER_WEBHOOK_SECRET first, so sync registers that one."""
        monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", "from-the-environment")
        code, out, err = run(capsys, "orchestrator", "sync", "--rules", str(rules))
        assert 0 == code, out + err
        [created] = orch.webhooks()
        assert "from-the-environment" == created["Secret"]

    def test_sync_failure_exits_1(
        self, orch: FakeOrchestrator, rules: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A write Orchestrator refuses is reported and exits 1."""
        self.stale(orch)
        orch.fail_next(1, status=409, retry_after=None, path_contains="Webhooks(")
        code, out, _ = run(capsys, "orchestrator", "sync", "--rules", str(rules))
        assert 1 == code
        assert "FAILED to update the webhook" in out

    def test_reconcile_usage_errors_exit_2(self, rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """reconcile (tests/test_recovery.py) refuses a bad --since or an unknown source with exit 2."""
        code, _, err = run(capsys, "orchestrator", "reconcile", "--since", "soon", "--dry-run", "--rules", str(rules))
        assert 2 == code
        assert "--since" in err
        code, _, err = run(capsys, "orchestrator", "reconcile", "nope", "--dry-run", "--rules", str(rules))
        assert 2 == code
        assert "no source 'nope'" in err
