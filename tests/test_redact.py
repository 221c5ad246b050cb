"""Redaction (``redact:``): the built-in patterns, user regexes, linear time, and what messages show."""

from __future__ import annotations

import json
import string
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from noise_support import T0, Harness, payload
from starlette.testclient import TestClient
from support import RecordingNotifier, fresh, wait_until

from receiver.cli import main
from receiver.events import parse_event
from receiver.http.app import create_app
from receiver.noise.simulate import Simulation
from receiver.render import render
from receiver.rules import Redactor, RuleSet, load_rules
from receiver.rules.redact import MAX_MATCHES, builtin_pattern, compile_user_pattern
from receiver.settings import Settings
from receiver.signature import sign

DATA = Path(__file__).resolve().parent / "data"
BUILTINS = Redactor(tuple(builtin_pattern(name) for name in ("email", "iban", "card")))


def _luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` + digit pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    """A valid IBAN: the check digits computed by ISO 13616's mod-97."""
    number = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(number) % 97:02d}{bban}"


class TestEmail:
    """``email``: a local part, @, a domain with a dot and a top-level domain of two letters or more."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("mail jane.doe@example.com now", "mail [redacted:email] now", id="plain"),
            pytest.param("to: <j.o+tag@mail.example.co.uk>", "to: <[redacted:email]>", id="tag-subdomains"),
            pytest.param("Jörg.Müller@beispiel.de.", "[redacted:email].", id="unicode-trailing-dot"),
            pytest.param("a@b.cd,x_y@z-1.io", "[redacted:email],[redacted:email]", id="two"),
            pytest.param("mailto:ops@example.com", "mailto:[redacted:email]", id="mailto-kept"),
        ],
    )
    def test_hits(self, text: str, expected: str) -> None:
        """Addresses are replaced, the text around them is kept."""
        assert expected == BUILTINS.text(text)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("ping @here and @channel", id="mentions"),
            pytest.param("user@localhost", id="no-dot"),
            pytest.param("a@b.c", id="one-letter-tld"),
            pytest.param("name @ example.com", id="spaces"),
            pytest.param("selector <wnd app='saplogon.exe' />", id="selector"),
            pytest.param("version 2.3.4@build", id="version"),
        ],
    )
    def test_near_misses(self, text: str) -> None:
        """What only looks like an address is left alone."""
        assert text == BUILTINS.text(text)


class TestIban:
    """``iban``: country, check digits, 11 to 30 letters or digits, spaces allowed; the mod-97 check must hold."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("IBAN DE89 3704 0044 0532 0130 00.", "IBAN [redacted:iban].", id="grouped"),
            pytest.param("GB82WEST12345698765432", "[redacted:iban]", id="compact"),
            pytest.param("pay DE89 3704 0044 0532 0130 00 EUR 5", "pay [redacted:iban] EUR 5", id="runs-into-a-word"),
            pytest.param("FR1420041010050500013M02606", "[redacted:iban]", id="letters-in-bban"),
        ],
    )
    def test_hits(self, text: str, expected: str) -> None:
        """Valid IBANs are replaced; a following word that the shape would take in is kept."""
        assert expected == BUILTINS.text(text)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("DE88 3704 0044 0532 0130 00", id="wrong-check-digits"),
            pytest.param("DE89 3704", id="too-short"),
            pytest.param("SELECTOR2019INVOICEPROCESSING", id="word-shape"),
            pytest.param("de89 3704 0044 0532 0130 00", id="lower-case"),
        ],
    )
    def test_near_misses(self, text: str) -> None:
        """A failing mod-97 check (or no IBAN shape) keeps the text as it is (as far as IBANs go)."""
        assert "[redacted:iban]" not in BUILTINS.text(text)


class TestCard:
    """``card``: 13-19 digits starting with 2-6, one space or dash between digits allowed, Luhn-checked."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("card 4111 1111 1111 1111", "card [redacted:card]", id="visa-spaces"),
            pytest.param("5500-0000-0000-0004 ok", "[redacted:card] ok", id="mastercard-dashes"),
            pytest.param("amex 378282246310005.", "amex [redacted:card].", id="amex-compact"),
            pytest.param("4111 1111 1111 1111 2024", "[redacted:card] 2024", id="followed-by-a-number"),
        ],
    )
    def test_hits(self, text: str, expected: str) -> None:
        """Card numbers are replaced; a number written after one stays."""
        assert expected == BUILTINS.text(text)

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("order 4111 1111 1111 1112", id="luhn-fails"),
            pytest.param("at 1796537565713 ms", id="epoch-millis-starts-with-1"),
            pytest.param("invoice 900000000000000000", id="starts-with-9"),
            pytest.param("id 411111111111", id="twelve-digits"),
            pytest.param("id 41111111111111111111111", id="longer-than-19"),
            pytest.param("total 1 234 567,89 EUR", id="amount"),
            pytest.param("INV4111111111111111", id="glued-to-letters"),
        ],
    )
    def test_near_misses(self, text: str) -> None:
        """Ordinary numbers are not card numbers."""
        assert text == BUILTINS.text(text)


def test_a_user_pattern_with_its_own_replacement() -> None:
    """A user regex replaces its matches with its replacement; patterns apply in the order written."""
    employee = compile_user_pattern("employee", r"EMP-[0-9]{6}", "[employee]")
    assert not isinstance(employee, str)
    redactor = Redactor((employee, builtin_pattern("email", "<{name}>")))
    assert "[employee] (<email>) left" == redactor.text("EMP-123456 (jo@example.com) left")


def test_receiver_check_reports_bad_patterns_at_their_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver check` exits 1 and names the line of a regex RE2 refuses and of an unknown built-in."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "channels: {ops: 'log://'}\n"
        "rules: [{name: r, notify: ops}]\n"
        "redact:\n"
        "  - emial\n"
        "  - name: twice\n"
        "    regex: '(a)\\1'\n"
    )
    assert 1 == main(["check", str(rules)])
    out = capsys.readouterr().out
    assert f"{rules}:4:5: redact: 'emial' is not a built-in pattern; did you mean 'email'?" in out
    assert f"{rules}:6:12: redact: pattern 'twice': the regex" in out
    assert "no backreferences" in out


_FILLER = st.text(alphabet=string.ascii_letters + string.punctuation.replace("@", "") + " \n", max_size=40)
_CARDS = st.builds(
    lambda first, body, sep: (lambda n: sep.join(n[i : i + 4] for i in range(0, len(n), 4)))(
        first + body + _luhn_digit(first + body)
    ),
    st.sampled_from("23456"),
    st.text(alphabet=string.digits, min_size=11, max_size=17),
    st.sampled_from(["", " ", "-"]),
)
_IBANS = st.builds(
    _iban,
    st.sampled_from(["DE", "FR", "GB", "NL", "CH", "AT"]),
    st.text(alphabet=string.ascii_uppercase + string.digits, min_size=12, max_size=26),
)
_EMAILS = st.builds(
    lambda user, host, tld: f"{user}@{host}.{tld}",
    st.text(alphabet=string.ascii_letters + string.digits + "._%+-", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(secret=st.one_of(_CARDS, _IBANS, _EMAILS), before=_FILLER, after=_FILLER)
def test_output_never_contains_the_secret(secret: str, before: str, after: str) -> None:
    """A valid address, IBAN or card number written anywhere in a text never survives redaction."""
    assert secret not in BUILTINS.text(f"{before} {secret} {after}")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_redaction_is_idempotent_and_total(text: str) -> None:
    """Any text passes (no exception), and redacting twice changes nothing more."""
    once = BUILTINS.text(text)
    assert once == BUILTINS.text(once)


class CountingRegex:
    """Wraps a compiled RE2 regex and counts the matches its scans yield (one search per match, plus one)."""

    def __init__(self, regex: Any) -> None:
        self.regex = regex
        self.matches = 0

    def finditer(self, text: str) -> Any:
        for match in self.regex.finditer(text):
            self.matches += 1
            yield match


class TestLinearTime:
    """A pattern cannot make redaction slower than a bounded number of passes over the text."""

    def test_a_pathological_pattern_is_cut_off_after_max_matches(self) -> None:
        """``a.*z|a`` reads to the end at each ``a``: it stops after MAX_MATCHES and withholds the rest."""
        compiled = compile_user_pattern("greedy", r"a.*z|a")
        assert not isinstance(compiled, str)
        counting = CountingRegex(compiled.regex)
        pattern = type(compiled)(compiled.name, compiled.source, compiled.replacement, counting)
        out = Redactor((pattern,)).text("a" * 16_384)
        assert MAX_MATCHES + 1 == counting.matches  # searches: at most MAX_MATCHES + 1, each linear in RE2
        assert out.endswith(f" [rest withheld: more than {MAX_MATCHES} matches of 'greedy']")
        assert "a" not in out.split(" [rest withheld")[0].replace("[redacted:greedy]", "")

    def test_many_built_in_candidates_are_all_checked(self) -> None:
        """Thousands of IBAN- and card-shaped numbers that fail their checks leave the text whole (no withholding)."""
        text = "DE00 1234 5678 9012 34; 4111 1111 1111 1112; " * 400
        assert text == BUILTINS.text(text)
        cards = "4111 1111 1111 1111, " * 700
        assert "[redacted:card], " * 700 == BUILTINS.text(cards)

    def test_catastrophic_backtracking_patterns_are_linear(self) -> None:
        """Patterns that freeze a backtracking engine (``(a+)+$``) run in RE2 without a blow-up."""
        compiled = compile_user_pattern("nested", r"(a+)+$")
        assert not isinstance(compiled, str)
        redactor = Redactor((compiled,))
        assert "a" * 16_383 + "!" == redactor.text("a" * 16_383 + "!")

    @pytest.mark.parametrize(
        "unit",
        [
            pytest.param("a@", id="email-at-signs"),
            pytest.param("a.b-", id="email-labels"),
            pytest.param("1 ", id="card-digit-groups"),
            pytest.param("DE00 ", id="iban-groups"),
            pytest.param("4-", id="card-dashes"),
        ],
    )
    def test_work_grows_linearly_with_the_text(self, unit: str) -> None:
        """Four times the text makes about four times the calls (a quadratic scan would make sixteen).

        Calls, Python's and C's, are counted with a profile hook: a figure that does not move with
        the machine's load, unlike a time.
        """

        def calls(size: int) -> int:
            text = unit * (size // len(unit))
            count = 0

            def hook(frame: Any, event: str, arg: Any) -> None:
                nonlocal count
                if event in ("call", "c_call"):
                    count += 1

            sys.setprofile(hook)
            try:
                BUILTINS.text(text)
            finally:
                sys.setprofile(None)
            return count

        small, large = calls(4_096), calls(16_384)
        assert large <= 5 * max(small, 1)


# --- what messages show --------------------------------------------------------------------

INFO = "Login failed for jane.doe@example.com; refund to DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111."


def _faulted(info: str = INFO) -> Any:
    raw = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
    raw["Job"]["Info"] = info
    return parse_event(raw)


def _ruleset(rule: dict[str, Any] | None = None, **top: Any) -> RuleSet:
    document = {
        "redact": ["email", "iban", "card", {"name": "employee", "regex": "EMP-[0-9]{6}"}],
        **top,
        "channels": {"log": "log://"},
        "rules": [{"name": "r", "notify": ["log"], **(rule or {})}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return load_rules(path, environ={})


SECRETS = ("jane.doe@example.com", "DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111")


class TestMessages:
    """Rendered messages are redacted; the event the message came from is not changed."""

    @pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
    def test_default_message(self, fmt: str) -> None:
        """The default body (and title) in every format shows the replacements, not the data."""
        ruleset = _ruleset({"format": fmt})
        event = _faulted()
        note = render(event, ruleset.rules[0], ruleset.channels["log"], ruleset)
        for secret in SECRETS:
            assert secret not in note.body
        assert "redacted:email" in note.body  # markdown escapes the brackets
        assert INFO == event.message  # the event itself keeps the original

    def test_templates_see_redacted_fields(self) -> None:
        """A template reading a handle, the event's own field or a bag sees redacted text."""
        body = "{{ message }}|{{ event.job.info }}|{{ event.jobs[0].info }}|{{ event.job.output_arguments }}"
        ruleset = _ruleset({"body": body})
        raw = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
        raw["Job"]["Info"] = INFO
        raw["Job"]["OutputArguments"] = {"Requester": "EMP-123456 <boss@example.org>"}
        note = render(parse_event(raw), ruleset.rules[0], ruleset.channels["log"], ruleset)
        for secret in (*SECRETS, "EMP-123456", "boss@example.org"):
            assert secret not in note.body
        assert 4 == note.body.count("|") + 1
        assert "[redacted:employee]" in note.body

    def test_text_placed_in_the_context_is_redacted(self) -> None:
        """Whatever lands in a template context (enriched log lines, say) goes through the same redactor."""
        ruleset = _ruleset()
        context = {"job_logs": [{"message": "sent to jane.doe@example.com"}], "job_detail": {"info": INFO}}
        shown = ruleset.redactor.value(context)
        assert "[redacted:email]" == shown["job_logs"][0]["message"].removeprefix("sent to ")
        assert all(secret not in str(shown) for secret in SECRETS)
        assert "sent to jane.doe@example.com" == context["job_logs"][0]["message"]

    def test_without_redact_messages_are_unchanged(self) -> None:
        """No ``redact:`` in the file: the text is shown as sent."""
        document = {"channels": {"log": "log://"}, "rules": [{"name": "r", "notify": ["log"]}]}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rules.yaml"
            path.write_text(yaml.safe_dump(document), encoding="utf-8")
            ruleset = load_rules(path, environ={})
        note = render(_faulted(), ruleset.rules[0], ruleset.channels["log"], ruleset)
        assert "jane.doe@example.com" in note.body

    def test_a_lone_surrogate_is_redacted_around_not_a_crash(self) -> None:
        """JSON allows ``"\\ud83d"`` alone (a 10,000-character cut through an emoji); RE2 reads UTF-8.

        The redactor raised UnicodeEncodeError on it and the worker set the event aside as
        ``internal_error``: its alert was never sent.
        """
        ruleset = _ruleset()
        event = _faulted("cut \ud83d here: jane.doe@example.com")
        note = render(event, ruleset.rules[0], ruleset.channels["log"], ruleset)
        assert "jane.doe@example.com" not in note.body
        assert "cut \ufffd here: [redacted:email]" in note.body
        assert "[redacted:email]" == Redactor((builtin_pattern("email"),)).text("\udc00jane.doe@example.com")[1:]

    def test_notes_are_redacted(self) -> None:
        """Noise-control notes (built from event text such as keys) are redacted too."""
        ruleset = _ruleset()
        note = render(
            _faulted(), ruleset.rules[0], ruleset.channels["log"], ruleset, notes=["held back for jo@example.com"]
        )
        assert "held back for [redacted:email]" in note.body


# --- end to end: webhook -> store -> worker -> dispatcher -> channel -------------------------

PIPELINE_RULES = """
redact: [email, iban, card]
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    body: "{{ message }} / {{ event.job.info }}"
"""


class TestPipeline:
    """Through the app in process: the channel gets the redacted message; the API shows the stored original."""

    def test_the_channel_gets_redacted_text_and_the_store_keeps_the_original(self, tmp_path: Path) -> None:
        """An e-mail address and an IBAN in the job's Info reach the channel redacted; /api/events/{id} has them."""
        notifier = RecordingNotifier()
        sent = notifier.sent

        rules = tmp_path / "rules.yaml"
        rules.write_text(PIPELINE_RULES)
        settings = Settings(
            rules=rules,
            database_url=f"sqlite:///{tmp_path / 'r.db'}",
            webhook_secret="s",
            admin_token="admin",
            watch_rules=False,
            poll_seconds=0.05,
        )
        raw = json.loads(fresh("job.faulted.json"))
        raw["Job"]["Info"] = INFO
        body = json.dumps(raw).encode()
        auth = {"Authorization": "Bearer admin"}
        with TestClient(create_app(settings, notifier=notifier)) as client:
            reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, "s")})
            assert 202 == reply.status_code, reply.text
            assert wait_until(lambda: len(sent) == 1)
            (event,) = client.get("/api/events", headers=auth).json()["events"]
            stored = client.get(f"/api/events/{event['id']}", headers=auth).json()
        (message,) = sent
        assert 2 == message.body.count("[redacted:email]")  # the handle and the event's own field
        for secret in SECRETS:
            assert secret not in message.body
            assert secret not in message.title
        assert INFO == stored["body"]["Job"]["Info"]

    def test_a_text_with_a_lone_surrogate_is_redacted_and_sent(self, tmp_path: Path) -> None:
        """A job's Info cut inside a UTF-16 pair (``\\ud83d``) crashed RE2, which reads UTF-8: the event was
        marked unparsed and its fault notified nobody. It is sent, redacted, with U+FFFD for the half pair."""
        notifier = RecordingNotifier()
        sent = notifier.sent

        rules = tmp_path / "rules.yaml"
        rules.write_text(PIPELINE_RULES)
        settings = Settings(
            rules=rules,
            database_url=f"sqlite:///{tmp_path / 'r.db'}",
            webhook_secret="s",
            watch_rules=False,
            poll_seconds=0.05,
        )
        raw = json.loads(fresh("job.faulted.json"))
        raw["Job"]["Info"] = "Mail jane.doe@example.com failed CUT"
        body = json.dumps(raw).encode().replace(b"CUT", b"\\ud83d")
        with TestClient(create_app(settings, notifier=notifier)) as client:
            reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, "s")})
            assert 202 == reply.status_code, reply.text
            assert wait_until(lambda: len(sent) == 1, timeout=5)
        (message,) = sent
        assert "Mail [redacted:email] failed \ufffd" in message.body


class TestNoiseMessages:
    """Digests and recovery messages are made of event text too: they are redacted the same way."""

    RULES = """
redact: [email]
channels:
  ops: "log://"
rules:
  - name: digest
    match: {type: job.faulted}
    notify: [ops]
    group: {wait: 1m}
  - name: stuck
    match: {type: job.stopped}
    notify: [ops]
    recover: {match: {type: job.completed}, key: "{{ process }}"}
"""

    def _simulation(self, tmp_path: Path) -> Simulation:
        path = tmp_path / "rules.yaml"
        path.write_text(self.RULES)
        return Simulation(load_rules(path, environ={}))

    def test_a_digest_shows_no_address(self, tmp_path: Path) -> None:
        """The first lines a digest quotes, cut short, never keep part of an address."""
        sim = self._simulation(tmp_path)
        long_line = "x" * 190 + " jane.doe@example.com failed"  # the sample line is cut at 200 characters
        for offset, info in ((0, long_line), (10, "mail to ops.team@example.org bounced")):
            sim.feed(parse_event(payload("job.faulted.json", Job__Info=info)), "uipath", T0 + offset)
        [entry] = sim.run_until(T0 + 60)
        [note] = [e.notification for e in entry.result.emitted]
        assert "[redacted:email]" in note.body
        assert "jane.doe" not in note.body
        assert "ops.team@example.org" not in note.body

    @pytest.mark.anyio
    async def test_a_recovery_message_shows_no_address(self, tmp_path: Path) -> None:
        """The "recovered" message, its alert title and key included, is redacted."""
        h = await Harness(tmp_path, self.RULES).open()
        try:
            process = "Payroll-jane.doe@example.com"
            await h.post_at(0, payload("job.stopped.json", Jobs__Release__ProcessKey=process))
            await h.post_at(60, payload("job.completed.json", Job__Release__ProcessKey=process))
            sent = await h.sent()
            assert ["stuck", "stuck:recovered"] == [s.rule for s in sent]
            recovered = sent[1]
            assert recovered.title.startswith("Recovered: ")
            assert "jane.doe@example.com" not in recovered.title + recovered.body
            assert "[redacted:email]" in recovered.body
        finally:
            await h.close()
