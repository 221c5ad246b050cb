"""Tests of rendering: defaults per family, severities, escaping, truncation, the sandbox."""

from __future__ import annotations

import json
import re
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests_mock
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.delivery.notifier import AppriseNotifier
from receiver.errors import RulesError
from receiver.events import Event, cap_strings, parse_event, parse_log_entries
from receiver.noise import parse_stored
from receiver.render import Notification, default_severity, render, shorten
from receiver.rules import Channel, RuleSet, load_rules
from receiver.rules.budget import BudgetExceededError, event_budget
from receiver.rules.template import escape_markdown, neutralise

DATA = Path(__file__).resolve().parent / "data"
ZWSP = "\u200b"


@cache
def _event(name: str) -> Event:
    path = DATA / f"{name}.json"
    if not path.exists():
        path = DATA / "events" / f"{name}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    return parse_event(raw) if "Type" in raw else parse_log_entries(raw)[0]


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: a tenth of the pure-Python time per rules file


def _ruleset(rule: dict[str, Any] | None = None, **top: Any) -> RuleSet:
    channels = {
        "log": "log://",
        "slack": "slack://TA/TB/TC/#alerts",
        "teams": "workflows://host/workflow/sig/",
        "mail": "mailtos://user:pass@smtp.example.com?to=ops@example.com",
        "hook": "https://hooks.slack.com/services/TA/TB/TC",
    }
    document = {**top, "channels": channels, "rules": [{"name": "r", "notify": ["log"], **(rule or {})}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False), encoding="utf-8")
        return load_rules(path, environ={})


def _render(event: str, rule: dict[str, Any] | None = None, channel: str = "log", **top: Any) -> Notification:
    ruleset = _ruleset(rule, **top)
    return render(_event(event), ruleset.rules[0], ruleset.channels[channel], ruleset)


DEFAULTS = [
    pytest.param(
        "job.faulted",
        "Job faulted: InvoiceProcessing on FIN-UNATT-01",
        "failure",
        [
            "Process: InvoiceProcessing",
            "Robot: FIN-UNATT-01",
            "Machine: RPAVM01",
            "State: Faulted",
            "Cannot find the UI element",
            "Time: 2019-03-14 09:24:52 UTC",
        ],
        id="job-faulted",
    ),
    pytest.param(
        "job.stopped",
        "Job stopped: VendorMasterSync on FIN-UNATT-01",
        "warning",
        ["State: Stopped", "Job canceled"],
        id="job-stopped",
    ),
    pytest.param(
        "job.completed",
        "Job completed: InvoiceProcessing on FIN-UNATT-02",
        "success",
        ["State: Successful"],
        id="job-completed",
    ),
    pytest.param(
        "job.started", "Job started: InvoiceProcessing on FIN-UNATT-01", "info", ["State: Running"], id="job-started"
    ),
    pytest.param(
        "job.suspended",
        "Job suspended: InvoiceApproval.Orchestration on svc_rpa01-unattended",
        "info",
        ["State: Suspended", "Folder: 28"],
        id="job-suspended",
    ),
    pytest.param(
        "queueItem.transactionFailed",
        "Queue item failed (business exception): Invoices_IN",
        "warning",
        [
            "Queue: Invoices_IN",
            "Exception: business exception",
            "Reason: Vendor is blocked for posting",
            "Vendor 300912 has posting block flag set",
        ],
        id="business-exception",
    ),
    pytest.param(
        "queueItem.transactionFailed.application",
        "Queue item failed (application exception): Invoices_IN · INV-10447",
        "failure",
        ["Reference: INV-10447", "Exception: application exception", "Reason: Timeout"],
        id="application-exception",
    ),
    pytest.param(
        "queueItem.transactionCompleted",
        "Queue item completed: Invoices_IN",
        "success",
        ["Status: Successful"],
        id="transaction-completed",
    ),
    pytest.param(
        "queueItem.added",
        "Queue item added: Invoices_IN · INV-10442",
        "info",
        ["Reference: INV-10442"],
        id="queue-item-added",
    ),
    pytest.param(
        "robot.status",
        "Robot disconnected: robot 112 on RPAVM01",
        "failure",
        ["Session: robot 112 on RPAVM01: Disconnected"],
        id="robot-disconnected",
    ),
    pytest.param(
        "robot.status.unresponsive",
        "Robot unresponsive: robot 112 on RPAVM01",
        "failure",
        ["Available, unresponsive"],
        id="robot-unresponsive",
    ),
    pytest.param(
        "robot.status.available", "Robot available: robot 112 on RPAVM01", "info", ["Available"], id="robot-available"
    ),
    pytest.param(
        "robot-log-error",
        "Robot log Error: InvoiceProcessing on svc_rpa01-unattended",
        "failure",
        ["Level: Error", "SAP login failed, user is locked", "Job: a61f3d9b"],
        id="robot-log-error",
    ),
    pytest.param(
        "robot-log-warn",
        "Robot log Warn: InvoiceProcessing on svc_rpa01-unattended",
        "warning",
        ["Level: Warn"],
        id="robot-log-warn",
    ),
    pytest.param(
        "schedule.failed",
        "Trigger failed: InvoiceProcessing - weekday 06:00",
        "failure",
        [
            "Process: InvoiceProcessing",
            "Cron: 0 0 6 ? * MON-FRI *",
            "The robots already have pending jobs for this Process",
        ],
        id="schedule-failed",
    ),
    pytest.param(
        "process.updated", "Process updated: InvoiceProcessing", "info", ["Type: process.updated"], id="process-updated"
    ),
    pytest.param("ping", "Webhook ping from Orchestrator", "info", ["Type: ping"], id="ping"),
]


@pytest.mark.parametrize(("event", "title", "severity", "fragments"), DEFAULTS)
def test_default_message_per_family(event: str, title: str, severity: str, fragments: list[str]) -> None:
    """A rule without templates gets an actionable default title, body and severity."""
    note = _render(event)
    assert (title, severity, "text") == (note.title, note.severity, note.body_format)
    for fragment in fragments:
        assert fragment in note.body


@pytest.mark.parametrize(
    "kind", ["job.faulted", "job.stopped", "queueItem.transactionFailed", "robot.status", "schedule.failed"]
)
@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_an_event_with_only_its_type_still_has_a_body(kind: str, fmt: str) -> None:
    """Type is the one field Orchestrator always sends: with nothing else the body still says what came.

    apprise refuses an empty body ("No message body or attachment was specified"): the delivery was
    retried until it was dead, and nobody heard of the event.
    """
    ruleset = _ruleset({"format": fmt})
    note = render(parse_event({"Type": kind, "EventId": "e-1"}), ruleset.rules[0], ruleset.channels["log"], ruleset)
    assert kind in note.body
    assert "e-1" in note.body


@pytest.mark.parametrize("kind", ["job.stopped", "job.created"])
def test_several_jobs_in_one_event_are_counted(kind: str) -> None:
    """``Jobs`` of three (three jobs stopped, or started, at once): the message names the first and says three."""
    jobs = [{"Key": f"k{n}", "State": "Stopped", "Release": {"ProcessKey": f"P{n}"}} for n in range(3)]
    ruleset = _ruleset()
    note = render(parse_event({"Type": kind, "Jobs": jobs}), ruleset.rules[0], ruleset.channels["log"], ruleset)
    assert "Job: k0" in note.body
    assert "Jobs: 3" in note.body


def test_a_body_template_rendering_nothing_gives_the_default_body() -> None:
    """As for the title: a template that renders only whitespace is replaced by the default text."""
    note = _render("job.faulted", {"body": "{{ event.job.output_arguments or '' }}\n"})
    assert "Process: InvoiceProcessing" in note.body


def test_default_severity_is_the_alert_table() -> None:
    """default_severity follows Orchestrator's alert table for each sample."""
    expected = {
        "job.faulted": "failure",
        "queueItem.transactionFailed": "warning",
        "robot.status": "failure",
        "robot.status.available": "info",
        "schedule.failed": "failure",
        "job.completed": "success",
        "robot-log-error": "failure",
        "robot-log-warn": "warning",
        "ping": "info",
    }
    assert expected == {name: default_severity(_event(name)) for name in expected}


def test_rule_severity_wins() -> None:
    """A rule's severity replaces the default."""
    assert "info" == _render("job.faulted", {"severity": "info"}).severity


def test_time_in_the_rule_set_time_zone() -> None:
    """Times are shown in the configured time zone."""
    assert "Time: 2019-03-14 10:24:52 CET" in _render("job.faulted", timezone="Europe/Berlin").body


def _source(**orchestrator: str) -> dict[str, Any]:
    connection = {
        "url": "https://cloud.example/acme/prod/orchestrator_",
        "client_id": "app",
        "client_secret": "secret",
        "public_url": "https://receiver.example/webhooks/prod",
        **orchestrator,
    }
    return {"prod": {"secrets": ["s"], "orchestrator": connection}}


class TestLinks:
    """Links to the folder's Jobs / Queues page in Orchestrator, with the job key or item id beside them."""

    def test_job_link_in_each_format(self) -> None:
        """A job event links to its folder's Jobs page (fid and tid) and names the job key beside the link."""
        base = "https://orch.example/acme/t/orchestrator_"
        key = "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10"
        text = _render("job.faulted", orchestrator_url=base).body
        assert f"Open in Orchestrator: {base}/jobs?fid=1&tid=1 (job {key})" in text
        markdown = _render("job.faulted", {"format": "markdown"}, orchestrator_url=base).body
        assert f"[Open in Orchestrator]({base}/jobs?fid=1&tid=1) · job {key}" in markdown
        page = _render("job.faulted", {"format": "html"}, orchestrator_url=base).body
        assert f'<a href="{base}/jobs?fid=1&amp;tid=1">Open in Orchestrator</a> · job {key}' in page

    def test_queue_item_link(self) -> None:
        """A queue item event links to the Queues page and names the item id (no folder id: no fid)."""
        body = _render("queueItem.transactionFailed", orchestrator_url="https://orch.example").body
        assert "Open in Orchestrator: https://orch.example/queues?tid=1 (queue item 512880)" in body

    def test_no_link_without_url(self) -> None:
        """Without an Orchestrator URL there is no link."""
        assert "Orchestrator" not in _render("job.faulted").body

    def test_no_link_for_other_families(self) -> None:
        """Only job and queue item events link (the pages are the Jobs and Queues pages)."""
        assert "Open in Orchestrator" not in _render("robot.status", orchestrator_url="https://o.example").body

    def test_ids_outside_int64_stay_out_of_the_url(self) -> None:
        """A folder id no Orchestrator sends (past int64, negative) is not put into the link."""
        raw = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
        raw.update(OrganizationUnitId=2**70, TenantId=-5)
        ruleset = _ruleset(orchestrator_url="https://o.example")
        body = render(parse_event(raw), ruleset.rules[0], ruleset.channels["log"], ruleset).body
        assert "Open in Orchestrator: https://o.example/jobs (job " in body

    def test_the_source_connection_gives_the_url(self) -> None:
        """A source's connection links its events: its web_url, else the file's orchestrator_url, else its url."""
        event = _event("job.faulted")

        def link(**top: Any) -> str:
            ruleset = _ruleset(**top)
            note = render(event, ruleset.rules[0], ruleset.channels["log"], ruleset, source="prod")
            return note.body.rsplit("Open in Orchestrator: ", 1)[1].split(" ", 1)[0]

        assert "https://cloud.example/acme/prod/orchestrator_/jobs?fid=1&tid=1" == link(sources=_source())
        assert "https://o.example/jobs?fid=1&tid=1" == link(sources=_source(), orchestrator_url="https://o.example")
        web = _source(web_url="https://ui.example/acme/prod/orchestrator_/")
        assert "https://ui.example/acme/prod/orchestrator_/jobs?fid=1&tid=1" == link(
            sources=web, orchestrator_url="https://o.example"
        )

    def test_link_in_template(self) -> None:
        """Templates see the link as `link` and what to look for as `link_label`."""
        note = _render("job.faulted", {"body": "{{ link }} {{ link_label }}"}, orchestrator_url="https://o.example")
        assert "https://o.example/jobs?fid=1&tid=1 job 0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10" == note.body


class TestTemplates:
    """Rule templates and their context."""

    def test_context_names(self) -> None:
        """Every documented name is in the context; enums print their names; times use the time zone."""
        body = (
            "{{ type }}|{{ event_id }}|{{ tenant }}|{{ folder }}|{{ job_state }}|{{ job_key }}|{{ job_id }}|"
            "{{ process }}|{{ robot }}|{{ machine }}|{{ queue }}|{{ level }}|{{ entity_key }}|{{ source }}|"
            "{{ rule }}|{{ orchestrator_url }}|{{ severity }}|{{ timestamp }}|{{ event.job.id }}"
        )
        note = _render("job.faulted", {"body": body}, timezone="Europe/Berlin")
        assert (
            "job.faulted|9e3f1b7c5a2d4c6e8b0a1f3d5c7e9b21|1|1|Faulted|0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10|90211|"
            "InvoiceProcessing|FIN-UNATT-01|RPAVM01|||0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10|uipath|r||failure|"
            "2019-03-14 10:24:52 CET|90211"
        ) == note.body

    def test_a_template_reading_one_name_still_sees_the_time_zone(self) -> None:
        """Only the names a template reads are built, but a time it prints is in the rule set's zone."""
        note = _render("job.faulted", {"title": "{{ process }}", "body": "{{ timestamp }}"}, timezone="Europe/Berlin")
        assert ("InvoiceProcessing", "2019-03-14 10:24:52 CET") == (note.title, note.body)

    def test_filters(self) -> None:
        """firstlines and localtime are available to templates."""
        note = _render(
            "job.faulted",
            {"title": "{{ message | firstlines(1) }}", "body": "{{ timestamp | localtime('%H:%M') }}"},
            timezone="Asia/Tokyo",
        )
        assert "Cannot find the UI element corresponding to this selector: <wnd app='saplogon.exe' /> …" == note.title
        assert "18:24" == note.body

    def test_jinja_globals_work_in_every_render(self) -> None:
        """range and namespace (jinja2's globals) work in every render of a compiled template, not just the first."""
        body = "{% set ns = namespace(n=0) %}{% for x in range(4) %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"
        ruleset = _ruleset({"title": "{{ process }} {{ range(2) | list | length }}", "body": body})
        rule, channel = ruleset.rules[0], ruleset.channels["log"]
        notes = [render(_event("job.faulted"), rule, channel, ruleset) for _ in range(3)]
        assert [("InvoiceProcessing 2", "6")] * 3 == [(n.title, n.body) for n in notes]

    def test_source_is_passed(self) -> None:
        """render(..., source=) reaches {{ source }}."""
        ruleset = _ruleset({"body": "{{ source }}"})
        note = render(_event("job.faulted"), ruleset.rules[0], ruleset.channels["log"], ruleset, source="tenant-b")
        assert "tenant-b" == note.body

    def test_title_is_one_line(self) -> None:
        """A multi-line title is folded into one line."""
        assert "a b c" == _render("job.faulted", {"title": "a\n b\n\n c"}).title

    def test_failing_template_falls_back_with_a_note(self) -> None:
        """A template failing at run time gives the default text plus a note, never no notification."""
        note = _render("job.faulted", {"body": "{{ event.queue_item.reference }}"})
        assert "Process: InvoiceProcessing" in note.body
        assert "the body template of rule 'r' failed (UndefinedError" in note.body

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("{{ event.__class__.__mro__ }}", id="class-mro"),
            pytest.param("{{ event.model_dump.__globals__ }}", id="function-globals"),
            pytest.param("{{ ''.__class__.__subclasses__() }}", id="subclasses"),
            pytest.param("{{ event['__dict__'] }}", id="item-dict"),
            pytest.param("{{ event|attr('__class__') }}", id="attr-filter"),
            pytest.param("{{ event|attr('__cla' ~ 'ss__') }}", id="attr-filter-folded"),
        ],
    )
    def test_private_attributes_are_rejected_at_load(self, template: str, tmp_path: Path) -> None:
        """A template naming a private attribute is a load error, not a runtime surprise."""
        path = tmp_path / "rules.yaml"
        path.write_text(
            yaml.safe_dump(
                {"channels": {"log": "log://"}, "rules": [{"name": "r", "notify": ["log"], "title": template}]}
            ),
            encoding="utf-8",
        )
        with pytest.raises(RulesError, match="private attribute"):
            load_rules(path, environ={})

    def test_a_huge_constant_is_not_built_at_load(self, tmp_path: Path) -> None:
        """jinja2 folds constant expressions when it compiles: ``'x' * 300000000`` took 18 s and 1.5 GB
        in ``receiver check`` (and a server's start-up), ``10 ** 10 ** 9`` never ended.
        """
        path = tmp_path / "rules.yaml"
        path.write_text(
            'channels: {ops: "log://"}\nrules:\n  - name: r\n    notify: [ops]\n'
            "    title: \"{{ ('x' * 30000000)|length }}\"\n"
        )
        started = time.perf_counter()
        ruleset = load_rules(path, environ={})
        assert time.perf_counter() - started < 1
        note = render(_event("job.faulted"), ruleset.rules[0], ruleset.channels["ops"], ruleset)
        assert "Job faulted: InvoiceProcessing on FIN-UNATT-01" == note.title
        assert "the title template of rule 'r' failed" in note.body

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("{% set n = '__cla' %}{{ event|attr(n ~ 'ss__') }}", id="attr-computed-name"),
            pytest.param("{% set n = '__glo' %}{{ event.model_dump|attr(n ~ 'bals__') }}", id="globals-computed"),
            pytest.param("{{ event.jobs.append(1) }}", id="mutation"),
            pytest.param("{{ range(10**9)|list|length }}", id="huge-range"),
            pytest.param("{{ (event.job.info * 100000)|length }}", id="huge-string-from-event"),
            pytest.param("{{ ([event.job.id] * 10**7)|length }}", id="huge-list"),
            pytest.param("{{ 2 ** (event.job.id * 10) > 0 }}", id="huge-power"),
        ],
    )
    def test_sandbox_fails_safely(self, template: str) -> None:
        """What the load-time check cannot see, the sandbox stops: the default title is sent, with a note."""
        note = _render("job.faulted", {"title": template})
        assert "Job faulted: InvoiceProcessing on FIN-UNATT-01" == note.title
        assert "the title template of rule 'r' failed" in note.body
        assert "class" not in note.title
        assert "globals" not in note.body.split("failed")[0]


class TestEscaping:
    """Untrusted event text cannot ping Slack channels or inject HTML."""

    @pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
    def test_default_body_neutralises_mentions(self, fmt: str) -> None:
        """<!channel>, <!here>, <@U…> and @channel from Job.Info do not survive in any format."""
        note = _render("job.faulted.injection", {"format": fmt})
        for raw in ("<!channel>", "<!here>", "<@U123ABC>", "@channel"):
            assert raw not in note.body
        assert f"@{ZWSP}channel" in note.body

    @pytest.mark.parametrize(
        ("raw", "service"),
        [
            ("@all", "Mattermost, Rocket.Chat"),
            ("@ALL", "Mattermost, Rocket.Chat"),
            ("@room", "Matrix"),
            ("@**all**", "Zulip"),
            ("@**everyone**", "Zulip"),
            ("<users/all>", "Google Chat"),
            ("<@&123456>", "Discord role"),
        ],
    )
    def test_mass_mentions_of_other_chats_are_broken_too(self, raw: str, service: str) -> None:
        """apprise sends text as is to these chats, where it pings everyone; the rule says "anything apprise knows"."""
        assert raw not in neutralise(f"see {raw} now")
        assert ZWSP in neutralise(f"see {raw} now"), service
        assert neutralise(f"see {raw} now").replace(ZWSP, "") == f"see {raw} now"  # reads the same

    @pytest.mark.parametrize("text", ["mail jo@allianz.example", "@alliance", "@roomba", "a<users>b", "x@y.all"])
    def test_look_alikes_are_left_alone(self, text: str) -> None:
        assert text == neutralise(text)

    @pytest.mark.parametrize("fmt", ["markdown", "html"])
    def test_default_body_escapes_html(self, fmt: str) -> None:
        """<script> and <img> from Job.Info arrive as text, not markup, in markdown and html."""
        body = _render("job.faulted.injection", {"format": fmt}).body
        assert "<script>" not in body
        assert "<img" not in body
        assert "<b>Bold</b>" not in body
        assert "&lt;script&gt;" in body

    def test_markdown_escapes_markdown(self) -> None:
        """Markdown emphasis and links in event text are escaped."""
        body = _render("job.faulted.injection", {"format": "markdown"}).body
        assert r"\*\*bold\*\*" in body
        assert r"\[link\](http://evil.example)" in body

    @pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
    def test_template_values_are_escaped(self, fmt: str) -> None:
        """Values a template prints are escaped for the format; the template's own markup is not."""
        body = _render("job.faulted.injection", {"format": fmt, "body": "<b>{{ process }}</b> {{ message }}"}).body
        assert body.startswith("<b>")
        assert "<!channel>" not in body
        if fmt != "text":
            assert "<script>" not in body
            assert "Invoice&lt;b&gt;Bold&lt;/b&gt;" in body

    def test_safe_marks_trusted_values(self) -> None:
        """|safe lets a rule author print a value unescaped, on purpose."""
        body = _render("job.faulted.injection", {"format": "html", "body": "{{ process|safe }}"}).body
        assert "Invoice<b>Bold</b>" == body

    def test_title_is_neutralised(self) -> None:
        """Titles are neutralised too, from templates and defaults."""
        note = _render("job.faulted.injection", {"title": "{{ message }}"})
        assert "<!channel>" not in note.title
        assert "<" + ZWSP + "!channel>" in note.title
        assert "<b>Bold</b>" in _render("job.faulted.injection").title  # text title: apprise escapes for Slack

    @pytest.mark.parametrize("fmt", ["markdown", "html"])
    def test_title_cannot_form_tags(self, fmt: str) -> None:
        """With markdown/html bodies, a title (merged into the body by title-less services) has no tags."""
        title = _render("job.faulted.injection", {"format": fmt}).title
        assert "Job faulted: Invoice\u2039b\u203aBold\u2039/b\u203a on FIN-UNATT-01" == title


class TestTruncation:
    """Messages longer than a channel accepts are shortened, never rejected."""

    @pytest.mark.parametrize(
        ("channel", "title_limit", "body_limit"),
        [
            pytest.param("slack", 150, 3_000, id="slack"),
            pytest.param("hook", 150, 3_000, id="slack-https"),
            pytest.param("teams", 200, 20_000, id="teams"),
            pytest.param("mail", 250, 100_000, id="email"),
            pytest.param("log", 250, 10_000, id="default"),
        ],
    )
    def test_limits_per_channel(self, channel: str, title_limit: int, body_limit: int) -> None:
        """Title and body fit the channel's limits and end with a marker when cut."""
        note = _render(
            "job.faulted.long-info",
            {"title": "{{ 'x' * 400 }}", "body": "{{ message }}", "format": "text"},
            channel=channel,
        )
        assert len(note.title) <= title_limit
        assert note.title.endswith("…")
        assert len(note.body) <= body_limit
        if len(_event("job.faulted.long-info").message or "") > body_limit:
            assert "… [truncated, " in note.body
            if channel != "teams":  # Teams counts bytes too (test_a_teams_message_fits_its_28_kb)
                assert body_limit - 60 <= len(note.body)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("body", "fmt"),
        [
            pytest.param("{{ 'Ошибка робота на шаге. ' * 1500 }}", "markdown", id="cyrillic"),
            pytest.param("{{ '日本語のログ行です。' * 3000 }}", "text", id="japanese"),
            pytest.param(
                "{{ ('C:' ~ '\\\\' ~ 'Users' ~ '\\\\' ~ 'robot' ~ '\\\\' ~ '*_in_*.xlsx ') * 1500 }}",
                "text",
                id="paths",
            ),
            pytest.param("{{ 'Robot failed at step 12. ' * 1500 }}", "markdown", id="ascii"),
        ],
    )
    async def test_a_teams_message_fits_its_28_kb(self, body: str, fmt: str) -> None:
        """What reaches Teams (the Workflows POST, JSON-escaped) stays under 28,672 bytes, whatever the script.

        Teams refuses a bigger message after the flow has answered 202 (reference apprise.md §3): it
        would be lost without a trace. A cut body says so.
        """
        note = _render("job.faulted", {"body": body, "format": fmt}, channel="teams")
        with requests_mock.Mocker() as mock:
            mock.post(requests_mock.ANY, status_code=202)
            result = await AppriseNotifier().send("workflows://host/workflow/sig/", note, timeout=5)
            posted = mock.request_history[0].body
        assert "sent" == result.status
        assert len(posted) <= 28_672
        assert "… [truncated, " in note.body
        assert len(note.body) >= 3_000  # cut to what fits, not to nothing

    def test_marker_counts_the_cut_characters(self) -> None:
        """The marker says how many characters were cut."""
        text = "a" * 5_000
        short = shorten(text, 1_000)
        assert 1_000 >= len(short)
        kept = short.split("\n…")[0]
        assert f"\n… [truncated, {5_000 - len(kept)} more characters]" == short[len(kept) :]

    @pytest.mark.parametrize("limit", [0, 5, 30, 35, 36, 100])
    def test_small_limits(self, limit: int) -> None:
        """Even absurdly small limits are respected."""
        assert limit >= len(shorten("b" * 500, limit))

    def test_short_text_is_unchanged(self) -> None:
        """Text within the limit is left as it is."""
        assert "abc" == shorten("abc", 3)


def test_channel_of_render_is_not_leaked() -> None:
    """A rendered notification never contains the channel URL."""
    ruleset = _ruleset({"body": "{{ event }}"})
    channel: Channel = ruleset.channels["mail"]
    note = render(_event("job.faulted"), ruleset.rules[0], channel, ruleset)
    assert "pass@" not in note.body


# --- escaping and the text bound: linear, and the same answers as before -----------------------

_MD_INLINE = re.compile(r"([\\`*_\[\]~|])")
_MD_LINE_START = re.compile(r"^(\s*)([#+\-=])", re.MULTILINE)
_MD_ORDERED = re.compile(r"^(\s*\d+)\.(?=\s)", re.MULTILINE)


def _regex_escape_markdown(text: str) -> str:
    """Markdown escaping as it was, with regexes quadratic in the blank lines: the reference."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_LINE_START.sub(r"\1\\\2", text)
    return _MD_ORDERED.sub(r"\1\\.", text)


# Blanks of every kind \s knows (and \u2028, after which ^ does not match), markers, digits of two scripts.
_MD_ALPHABET = " \t\n\r\x0b\x85\xa0\u2028#+-=.*1\u0663a\\<"


class TestLinearEscaping:
    """Markdown escaping is linear in the text and escapes exactly what it escaped before."""

    @settings(max_examples=3000, deadline=None)
    @given(text=st.text(_MD_ALPHABET, max_size=16))
    def test_same_text_as_the_regexes(self, text: str) -> None:
        """For any small text, the line-by-line escaping equals the old regex escaping."""
        assert _regex_escape_markdown(text) == escape_markdown(text)

    def test_two_hundred_thousand_blank_lines(self) -> None:
        """Markers after 200,000 blank lines are escaped; the regexes took about 15 minutes for this."""
        text = "\n" * 200_000 + "  # heading\n" + " \n" * 100_000 + "12. item\n- item"
        escaped = escape_markdown(text)
        assert escaped.startswith("\n" * 200_000 + "  \\# heading\n")
        assert escaped.endswith(" \n" * 100_000 + "12\\. item\n\\- item")

    def test_a_mebibyte_of_markup(self) -> None:
        """A mebibyte of lines, each starting with markup, is escaped line by line."""
        line = "- 1. *x* #\n"
        text = line * (1_048_576 // len(line))
        assert "\\- 1. \\*x\\* #\n" * (1_048_576 // len(line)) == escape_markdown(text)


class TestTextBound:
    """Rules and templates see at most 16,384 characters of one text; the stored event stays whole."""

    def test_a_mebibyte_message_is_cut_with_a_visible_marker(self) -> None:
        """A 1 MiB message renders as its first 16,384 characters and a marker naming its length."""
        message = "x" * 1_048_576
        body = json.dumps({"Level": "Error", "ProcessName": "P", "Message": message})
        event = parse_stored("robot.log", body)
        assert f"{'x' * 16_384}… [truncated: 16384 of 1048576 characters shown]" == event.message
        ruleset = _ruleset({"format": "markdown", "body": "{{ message }}", "notify": ["mail"]})
        note = render(event, ruleset.rules[0], ruleset.channels["mail"], ruleset)
        assert note.body.endswith("… \\[truncated: 16384 of 1048576 characters shown\\]")

    def test_every_string_and_key_is_bound(self) -> None:
        """Nested values, list items and keys of free-form bags are cut too; short ones are left alone."""
        long = "v" * 20_000
        raw = {"a": [long, {"k" * 20_000: long, "short": "s"}], "b": long, "n": 5}
        capped = cap_strings(raw)
        marker = "… [truncated: 16384 of 20000 characters shown]"
        assert "v" * 16_384 + marker == capped["b"] == capped["a"][0]
        assert {"k" * 16_384 + marker: "v" * 16_384 + marker, "short": "s"} == capped["a"][1]
        assert 5 == capped["n"]

    def test_short_bodies_are_read_as_they_are(self) -> None:
        """A body within the bound is parsed untouched."""
        body = json.dumps({"Level": "Error", "ProcessName": "P", "Message": "m" * 16_000})
        assert "m" * 16_000 == parse_stored("robot.log", body).message


class TestBudget:
    """A template past the event's budget stops, and does not fall back to the default text."""

    def test_a_spent_budget_stops_a_template(self) -> None:
        """Rendering under a spent budget raises instead of sending the default body."""
        ruleset = _ruleset({"body": "{% for i in range(100000) %}{{ i }}{% endfor %}"})
        with event_budget(0.0), pytest.raises(BudgetExceededError):
            render(_event("job.faulted"), ruleset.rules[0], ruleset.channels["log"], ruleset)

    def test_without_a_budget_templates_run_to_the_end(self) -> None:
        """Outside a budget (receiver test, the dry run) the same template renders."""
        ruleset = _ruleset({"body": "{% for i in range(1000) %}{{ i }}{% endfor %}"})
        note = render(_event("job.faulted"), ruleset.rules[0], ruleset.channels["log"], ruleset)
        assert note.body.endswith("999")
