"""Turning (event, rule, channel) into the notification people read. Pure.

A rule's own ``title`` / ``body`` templates (compiled at load, sandboxed) are used when it
has them; otherwise a default per event family gives a message a person can act on:
what happened, to which process / robot / machine / queue item, when (in the rule set's time
zone), the first lines of the error, and a link to Orchestrator when ``orchestrator_url`` is
set. Default severities follow Orchestrator's alert table.

Event text is untrusted: every value is neutralised for Slack mentions and escaped for the
body format (see :mod:`receiver.rules.template`). A message longer than the channel accepts
is shortened with a marker, never dropped. Titles are plain text in every format; with the
``markdown`` and ``html`` formats their angle brackets become single angle quotation marks
(U+2039, U+203A), because apprise puts the title into the body, unescaped, for services that
have no title field. A template that fails at run time (an attribute missing on this event, a
sandbox violation) falls back to the default text with a note, so a notification is never
lost to a template.

Links to Orchestrator open the folder's Jobs page (job events) or Queues page (queue item events)
with the folder and tenant ids, ``{web}/jobs?fid={FolderId}&tid={TenantId}``, and the message
names the job key or queue item id beside the link: the ``fid``/``tid`` parameters are the
documented part of the web UI's URLs, a URL that opens one job or item is not documented
(docs/rules.md, "Links to Orchestrator"). ``{web}`` is :meth:`RuleSet.web_url` of the event's source.

Redaction (``redact:``) happens first: :func:`render` takes the event, the template context and
the notes through the rule set's :class:`~receiver.rules.Redactor`, so every untrusted text a
message is made of (event fields, enriched text placed in the context) is redacted before it
is escaped, cut to its first lines or shortened. The stored event keeps the original.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Template
from markupsafe import Markup

from receiver.events import (
    Details,
    Event,
    JobState,
    LogLevel,
    ProcessingExceptionType,
    QueueItem,
    RobotState,
    Session,
)
from receiver.rules import (
    HANDLE_TYPES,
    BodyFormat,
    BudgetExceededError,
    Channel,
    Rule,
    RuleSet,
    Severity,
    context_names,
    escape_markdown,
    firstlines,
    localtime,
    neutralise,
)
from receiver.timefmt import from_unix

__all__ = [
    "Notification",
    "default_severity",
    "default_title",
    "details_unavailable",
    "escaper",
    "finish",
    "limits_for",
    "link_label",
    "orchestrator_link",
    "render",
    "render_recovered",
    "shorten",
    "template_context",
    "with_links",
]


@dataclass(frozen=True, slots=True)
class Notification:
    """A rendered notification, ready for apprise.

    Attributes:
        title: one line (Slack attachment title, e-mail subject, Teams card heading).
        body: the text in ``body_format``.
        severity: apprise's notify type.
        body_format: passed to apprise as ``body_format``.
    """

    title: str
    body: str
    severity: Severity
    body_format: BodyFormat


# --- limits and shortening ---------------------------------------------------------------

# (title, body) characters each service takes. Slack rejects block sections over 3,000 and
# headers over 150; Teams (Workflows) refuses messages over ~28 KB; e-mail has no practical
# limit. Unknown services get a conservative default.
_LIMITS: dict[str, tuple[int, int]] = {
    "slack": (150, 3_000),
    "workflows": (200, 20_000),
    "workflow": (200, 20_000),
    "mailto": (250, 100_000),
    "mailtos": (250, 100_000),
    "discord": (256, 2_000),
    "tgram": (200, 4_000),
    "mmost": (200, 16_000),
    "mmosts": (200, 16_000),
}
_DEFAULT_LIMITS = (250, 10_000)
# Bytes of a body as the channel's JSON carries it, where the service counts bytes. Teams refuses a
# message over 28,672 bytes, and only after the Workflows trigger answered 202 (apprise.md §3): the
# message is lost without a trace. apprise's JSON escapes every non-ASCII character (\uXXXX, six
# bytes; twelve beyond the BMP), and a text body gets a backslash before markdown punctuation. The
# rest of the card (title at most 200 characters, envelope) takes under 3,500 bytes.
_BYTE_LIMITS: dict[str, int] = {"workflows": 24_000, "workflow": 24_000}
_JSON_SHORT = frozenset("\n\r\t\b\f")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _service(channel: Channel) -> str:
    scheme = channel.scheme
    if scheme in ("http", "https"):
        host = (urlsplit(channel.url_value()).hostname or "").lower()
        if host.endswith("slack.com") or host.endswith("slack-gov.com"):
            return "slack"
        if ".logic.azure." in host or "powerplatform" in host:
            return "workflows"
    return scheme


def limits_for(channel: Channel) -> tuple[int, int]:
    """The (title, body) length limits of a channel, from its URL scheme (or host for https)."""
    return _LIMITS.get(_service(channel), _DEFAULT_LIMITS)


def _json_bytes(char: str, plain: bool) -> int:
    """Bytes one character takes in apprise's JSON (an upper bound); ``plain``: markdown-escaped first."""
    code = ord(char)
    if code > 0xFFFF:
        return 12
    if code >= 0x7F:
        return 6
    if code < 0x20:
        return 2 if char in _JSON_SHORT else 6
    own = 2 if char in '"\\' else 1
    return own + (2 if plain and char in _PUNCTUATION else 0)


def _fit(body: str, channel: Channel, fmt: BodyFormat, *, room: str = "") -> str:
    """``body`` shortened to the channel's limits, leaving ``room`` for text added after it.

    Characters for every channel; for a channel that counts bytes (Teams), also the bytes the
    body takes in the JSON that carries it. Linear in the body's length.
    """
    _, limit = limits_for(channel)
    budget = _BYTE_LIMITS.get(_service(channel))
    extra = len(room) + 2 if room else 0
    text = shorten(body, max(limit - extra, 0))
    if budget is None:
        return text
    plain = fmt != "markdown"  # a text body is markdown-escaped; html is converted (counted the same)
    budget -= sum(_json_bytes(c, plain) for c in room) + (4 if room else 0)
    if text.isascii() and 6 * len(text) <= budget:  # six bytes is the most an ASCII character takes
        return text
    spent = 0
    for index, char in enumerate(text):
        spent += _json_bytes(char, plain)
        if spent > budget - 200:  # the marker's room
            if spent + sum(_json_bytes(c, plain) for c in text[index + 1 :]) <= budget:
                return text
            return shorten(text, index)
    return text


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending with ``… [truncated, N more characters]``."""
    if len(text) <= limit:
        return text
    cut = limit
    for _ in range(3):  # the marker's length depends on N, which depends on the cut
        marker = f"\n… [truncated, {len(text) - cut} more characters]"
        cut = max(limit - len(marker), 0)
    marker = f"\n… [truncated, {len(text) - cut} more characters]"
    return (text[:cut].rstrip() + marker)[:limit] if cut else marker.strip()[:limit]


def _shorten_title(title: str, limit: int) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


# --- severities --------------------------------------------------------------------------


def default_severity(event: Event) -> Severity:
    """The severity of an event when its rule sets none, after Orchestrator's alert table.

    Faulted job, application exception, robot disconnected or unresponsive, failed trigger,
    log Error/Fatal: failure. Business exception, stopped job, abandoned item, log Warn:
    warning. Completed job or transaction: success. Anything else: info.
    """
    kind = event.type
    if kind == "robot.log":
        return _log_severity(event.level)
    if kind.startswith("job."):
        return _job_severity(kind, event.job_state)
    if kind.startswith("queueItem."):
        return (
            _QUEUE_ITEM_SEVERITY.get(kind, "info")
            if kind != "queueItem.transactionFailed"
            else ("warning" if event.exception_type == ProcessingExceptionType.BusinessException else "failure")
        )
    if kind == "robot.status":
        if getattr(event, "robot_down", False):
            return "failure"
        return "warning" if event.robot_state == RobotState.Unknown else "info"
    if kind == "schedule.failed":
        return "failure"
    return "info"


_QUEUE_ITEM_SEVERITY: dict[str, Severity] = {
    "queueItem.transactionAbandoned": "warning",
    "queueItem.transactionCompleted": "success",
}


def _log_severity(level: object) -> Severity:
    if isinstance(level, LogLevel):
        if level >= LogLevel.Error:
            return "failure"
        if level == LogLevel.Warn:
            return "warning"
    return "info"


def _job_severity(kind: str, state: object) -> Severity:
    if kind == "job.faulted" or state == JobState.Faulted:
        return "failure"
    if kind in ("job.stopped", "job.stopping", "job.terminating") or state == JobState.Stopped:
        return "warning"
    if kind == "job.completed":
        return "success"
    return "info"


# --- links -------------------------------------------------------------------------------


_MAX_ID = 2**63 - 1  # Orchestrator's ids are int64: anything else in a payload is not put into a URL


def _id_text(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID:
        return str(value)
    return None


def orchestrator_link(event: Event, base: str | None) -> str | None:
    """The folder's Jobs page (job events) or Queues page (queue item events) in Orchestrator's web UI, or None.

    Args:
        event: the event; its folder id (``OrganizationUnitId``/``FolderId``) and ``TenantId``
            become the documented ``fid`` and ``tid`` query parameters when they are int64 values.
        base: the web UI's base URL (:meth:`RuleSet.web_url`); None or empty: no link.
    """
    if not base:
        return None
    if event.type.startswith("job."):
        page = "jobs"
    elif event.type.startswith("queueItem."):
        page = "queues"
    else:
        return None
    ids = (("fid", event.folder), ("tid", event.tenant))
    query = [(name, text) for name, value in ids if (text := _id_text(value))]
    return f"{base}/{page}?{urlencode(query)}" if query else f"{base}/{page}"


_LABEL_CHARS = 100  # a key is a GUID (36 characters); a longer one is not Orchestrator's


def link_label(event: Event) -> str | None:
    """What to look for on the linked page: ``job <key>`` or ``queue item <id>`` (plain, unescaped text), or None."""
    ref = None
    if event.type.startswith("job."):
        ref, what = event.job_key or _id_text(event.job_id), "job"
    elif event.type.startswith("queueItem.") and (item := _queue_item(event)) is not None:
        ref, what = _id_text(item.id) or item.key, "queue item"
    if not ref:
        return None
    return f"{what} {ref if len(ref) <= _LABEL_CHARS else ref[: _LABEL_CHARS - 1] + '…'}"


# --- template context --------------------------------------------------------------------


def template_context(
    event: Event,
    rule: Rule,
    ruleset: RuleSet,
    *,
    source: str,
    severity: Severity,
    names: Collection[str] | None = None,
    details: Details | None = None,
) -> dict[str, Any]:
    """The names a rule template sees (documented in docs/rules.md, "Template context").

    ``names``: build only the event's handles among these and the link only when it is among
    them (what the templates to render read, ``context_names``); all of them when None.
    ``details``: what ``enrich:`` found in Orchestrator (``job_detail``, ``job_logs``,
    ``item_detail``, ``details_unavailable``, ``logs_unavailable``); None when the rule asks for none.
    """
    handles = HANDLE_TYPES if names is None else [name for name in names if name in HANDLE_TYPES]
    context: dict[str, Any] = {name: getattr(event, name, None) for name in handles}
    web_url = ruleset.web_url(source)
    link = orchestrator_link(event, web_url) if names is None or "link" in names else None
    context.update(
        event=event,
        source=source,
        rule=rule.name,
        orchestrator_url=web_url,
        link=None if link is None else Markup(link),  # noqa: S704 - the configured base, a fixed path, encoded ids
        link_label=link_label(event),
        severity=severity,
        timezone=ruleset.timezone,
        origin=event.origin or "webhook",
        recovered_at=event.recovered_at,
        job_detail=None if details is None else details.job,
        job_logs=() if details is None or details.logs is None else details.logs,
        item_detail=None if details is None else details.item,
        details_unavailable=None if details is None else details.unavailable,
        logs_unavailable=None if details is None else details.logs_unavailable,
    )
    return context


# --- default messages --------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _words(kind: str) -> str:
    """``queueItem.transactionFailed`` -> ``transaction failed`` (the part after the dot)."""
    tail = kind.split(".", 1)[-1]
    return _CAMEL.sub(" ", tail).replace(".", " ").lower()


def _queue_item(event: Event) -> QueueItem | None:
    item = getattr(event, "queue_item", None)
    return item if isinstance(item, QueueItem) else None


def _sessions(event: Event) -> list[Session]:
    sessions = getattr(event, "sessions", None)
    return [s for s in sessions if isinstance(s, Session)] if isinstance(sessions, list) else []


def _robot_label(event: Event) -> str | None:
    robot = event.robot
    if robot is not None and robot.isdigit():
        return f"robot {robot}"
    return robot


def _exception_words(value: object) -> str | None:
    if value == ProcessingExceptionType.BusinessException:
        return "business exception"
    if value == ProcessingExceptionType.ApplicationException:
        return "application exception"
    return None if value is None else str(value)


def default_title(event: Event) -> str:
    """A one-line summary for an event, by family."""
    kind = event.type
    where = _robot_label(event) or event.machine
    on = f" on {where}" if where else ""
    if kind.startswith("job."):
        return f"Job {_words(kind)}: {event.process or 'unknown process'}{on}"
    if kind.startswith("queueItem."):
        item = _queue_item(event)
        phrase = _words(kind).removeprefix("transaction ")
        exc = _exception_words(event.exception_type) if kind == "queueItem.transactionFailed" else None
        ref = item.reference if item is not None and item.reference else None
        what = " · ".join(p for p in (event.queue, ref) if p) or "unknown queue"
        return f"Queue item {phrase}{f' ({exc})' if exc else ''}: {what}"
    if kind == "robot.status":
        return f"Robot {_robot_state_words(event)}: {_robot_label(event) or 'unknown robot'}" + (
            f" on {event.machine}" if event.machine else ""
        )
    if kind == "robot.log":
        level = event.level if event.level is not None else getattr(event, "level_text", None) or "entry"
        return f"Robot log {level}: {event.process or 'unknown process'}{on}"
    if kind == "schedule.failed":
        schedule = getattr(event, "process_schedule", None)
        name = getattr(schedule, "name", None) or event.process or "unknown trigger"
        return f"Trigger failed: {name}"
    if kind == "ping":
        return "Webhook ping from Orchestrator"
    family = kind.split(".", 1)[0]
    subject = event.process or event.queue or event.robot or event.message
    noun = {"process": "Process", "queue": "Queue", "robot": "Robot", "task": "Task"}.get(family)
    if noun and "." in kind:
        return f"{noun} {_words(kind)}" + (f": {_first_line(subject)}" if subject else "")
    return f"Orchestrator event {kind}" + (f": {_first_line(subject)}" if subject else "")


def _first_line(text: str) -> str:
    return firstlines(text, 1, 120)


def _robot_state_words(event: Event) -> str:
    session = next(iter(_sessions(event)), None)
    if session is not None and session.is_unresponsive:
        return "unresponsive"
    state = event.robot_state
    return str(state).lower() if state is not None else "status changed"


def _job_fields(event: Event) -> tuple[list[tuple[str, Any]], str | None]:
    """The lines and message of a job event's default body."""
    fields: list[tuple[str, Any]] = [("Process", event.process), ("Robot", event.robot), ("Machine", event.machine)]
    fields += [("State", event.job_state), ("Job", event.job_key or event.job_id)]
    jobs = getattr(event, "jobs", ())
    if len(jobs) > 1:  # job.created / job.stopped of several jobs: the others are not named, but counted
        fields.append(("Jobs", len(jobs)))
    return fields, firstlines(event.message, 6)


def _fields(event: Event, ruleset: RuleSet) -> tuple[list[tuple[str, Any]], str | None]:
    """(label, value) lines and the message block of the default body."""
    kind = event.type
    fields: list[tuple[str, Any]] = []
    message: str | None = None
    if kind.startswith("job."):
        fields, message = _job_fields(event)
    elif kind.startswith("queueItem."):
        item = _queue_item(event)
        exc = item.processing_exception if item is not None else None
        fields += [("Queue", event.queue), ("Reference", item.reference if item else None)]
        fields += [("Status", item.status if item else None)]
        fields += [("Exception", _exception_words(event.exception_type)), ("Reason", exc.reason if exc else None)]
        fields += [("Robot", event.robot), ("Machine", event.machine)]
        if item is not None and item.retry_number:
            fields.append(("Retry", item.retry_number))
        message = firstlines(exc.details if exc else None, 6)
        if len(getattr(event, "queue_items", ())) > 1:
            fields.append(("Items", len(event.queue_items)))  # type: ignore[attr-defined]
    elif kind == "robot.status":
        sessions = _sessions(event)
        for session in sessions[:10]:
            robot = session.robot_name or (f"robot {session.robot_id}" if session.robot_id is not None else "robot")
            machine = session.host_machine_name or session.machine_name
            state = str(session.state) if session.state is not None else "unknown"
            extra = ", unresponsive" if session.is_unresponsive else ""
            extra += f", license: {session.license_error_code}" if session.license_error_code else ""
            fields.append(("Session", f"{robot}{' on ' + machine if machine else ''}: {state}{extra}"))
        if len(sessions) > 10:
            fields.append(("Sessions", f"{len(sessions) - 10} more"))
    elif kind == "robot.log":
        fields += [("Level", event.level or getattr(event, "level_text", None)), ("Process", event.process)]
        fields += [("Robot", event.robot), ("Machine", event.machine), ("Job", event.job_key)]
        message = firstlines(event.message, 10)
    elif kind == "schedule.failed":
        schedule = getattr(event, "process_schedule", None)
        fields += [("Trigger", getattr(schedule, "name", None)), ("Process", event.process)]
        fields += [("Cron", getattr(schedule, "start_process_cron", None))]
        fields += [("Trigger time zone", getattr(schedule, "time_zone_iana", None))]
        message = firstlines(event.message, 6)
    else:
        fields += [("Type", kind), ("Process", event.process), ("Queue", event.queue), ("Robot", event.robot)]
        fields += [("Machine", event.machine)]
        message = firstlines(event.message, 6)
    fields += [("Folder", event.folder), ("Time", localtime(event.timestamp, ruleset.timezone))]
    if event.origin == "api":  # gap recovery read it from the API: say so first
        happened = localtime(event.timestamp, ruleset.timezone) or "an unknown time"
        learned = localtime(event.recovered_at, ruleset.timezone) or "an unknown time"
        note = f"after a gap: this happened at {happened}, receiver learned of it at {learned}"
        fields.insert(0, ("Recovered", note))
    shown = [(label, value) for label, value in fields if value not in (None, "")]
    if not shown and not message:
        # Only Type is sure to come (job.faulted without Job, Timestamp...): the body still says what
        # came, because apprise refuses an empty body and the delivery would die unheard.
        shown = [(label, value) for label, value in (("Type", kind), ("Event", event.event_id)) if value]
    return shown, message or None


def escaper(fmt: BodyFormat) -> Callable[[str], str]:
    """The function that makes untrusted text safe in a body of format ``fmt`` (mentions broken, markup escaped)."""
    if fmt == "markdown":
        return lambda s: escape_markdown(neutralise(s))
    if fmt == "html":
        return lambda s: html.escape(neutralise(s))
    return neutralise


def details_unavailable(reason: str) -> str:
    """The sentence a message carries when ``enrich:`` found nothing: ``details unavailable: <reason>``."""
    return f"Orchestrator details unavailable: {reason}"


def _log_text(details: Details, ruleset: RuleSet) -> str:
    lines = []
    for line in details.logs or ():
        when = localtime(line.time, ruleset.timezone, "%H:%M:%S") if line.time is not None else "?"
        lines.append(f"{when} {line.level}: {firstlines(line.message, 3, 300).replace(chr(10), ' / ')}")
    return "\n".join(lines)


def _detail_parts(
    event: Event, details: Details, ruleset: RuleSet
) -> tuple[list[tuple[str, Any]], str | None, list[tuple[str, str]]]:
    """What ``enrich:`` adds to the default body: (fields, the message block instead of the event's, sections)."""
    fields: list[tuple[str, Any]] = []
    message: str | None = None
    sections: list[tuple[str, str]] = []
    if details.unavailable is not None:
        sections.append(("", details_unavailable(details.unavailable)))
        return fields, message, sections
    item, job = details.item, details.job
    if item is not None:
        fields += [("Exception reason", item.reason)]
        message = firstlines(item.details, 20, 500) or None
    if job is not None:
        fields += [("Host machine", job.host_machine), ("Job robot", job.robot if job.robot != event.robot else None)]
        fields += [("Folder path", job.folder_path), ("Error code", job.error_code)]
        fields += [("Started", localtime(job.start_time, ruleset.timezone) if job.start_time else None)]
        fields += [("Ended", localtime(job.end_time, ruleset.timezone) if job.end_time else None)]
        info = firstlines(job.info, 20, 500) or None
        if item is None:
            message = info or message
        elif info:
            sections.append(("Job info", info))
        if job.input_arguments:
            sections.append(("Input arguments", firstlines(job.input_arguments, 10, 300)))
    if details.logs is not None:
        count = len(details.logs)
        heading = f"Last {count} error log line{'s' if count != 1 else ''}" if count else "No error log lines"
        sections.append((heading, _log_text(details, ruleset)))
    elif details.logs_unavailable is not None:
        sections.append(("", f"Error log lines unavailable: {details.logs_unavailable}"))
    return fields, message, sections


def _section(fmt: BodyFormat, esc: Callable[[str], str], heading: str, text: str) -> str:
    """One block of details: a heading and its lines, or a sentence alone (no heading)."""
    if not heading:
        return f"<p>{esc(text)}</p>" if fmt == "html" else esc(text)
    if fmt == "markdown":
        quoted = "\n".join(f"> {esc(line)}" for line in text.split("\n")) if text else ""
        return f"**{esc(heading)}:**\n{quoted}" if text else f"**{esc(heading)}**"
    if fmt == "html":
        return f"<b>{esc(heading)}:</b>" + (f"<pre>{esc(text)}</pre>" if text else "")
    return f"{esc(heading)}:\n{esc(text)}" if text else esc(heading)


def default_body(
    event: Event, ruleset: RuleSet, fmt: BodyFormat, *, source: str = "uipath", details: Details | None = None
) -> str:
    """The default body of an event in a body format, every event value escaped for it.

    The event is taken as given: :func:`render` passes it redacted (and ``details`` too). The link
    to Orchestrator (``source``'s web UI) ends the body, with the job key or queue item id to look
    for beside it. ``details``: what ``enrich:`` found (shown after the event's own fields), or why
    it found nothing.
    """
    fields, message = _fields(event, ruleset)
    sections: list[tuple[str, str]] = []
    if details is not None:
        extra, detail_message, sections = _detail_parts(event, details, ruleset)
        at = next((i for i, (label, _) in enumerate(fields) if label in ("Folder", "Time")), len(fields))
        fields[at:at] = [(label, value) for label, value in extra if value not in (None, "")]
        message = detail_message or message
    link = orchestrator_link(event, ruleset.web_url(source))
    label = link_label(event)
    esc = escaper(fmt)
    beside = "" if label is None else esc(label)
    if fmt == "markdown":
        parts = ["\n".join(f"- **{label}:** {esc(str(value))}" for label, value in fields)]
        if message:
            parts.append("\n".join(f"> {esc(line)}" for line in message.split("\n")))
        parts += [_section(fmt, esc, heading, text) for heading, text in sections]
        if link:
            parts.append(f"[Open in Orchestrator]({link})" + (f" · {beside}" if beside else ""))
        return "\n\n".join(parts)
    if fmt == "html":
        parts = ["<br>\n".join(f"<b>{label}:</b> {esc(str(value))}" for label, value in fields)]
        if message:
            parts.append(f"<pre>{esc(message)}</pre>")
        parts += [_section(fmt, esc, heading, text) for heading, text in sections]
        if link:
            parts.append(f'<a href="{html.escape(link)}">Open in Orchestrator</a>' + (f" · {beside}" if beside else ""))
        return "\n".join(parts)
    parts = ["\n".join(f"{label}: {esc(str(value))}" for label, value in fields)]
    if message:
        parts.append(esc(message))
    parts += [_section(fmt, esc, heading, text) for heading, text in sections]
    if link:
        parts.append(f"Open in Orchestrator: {link}" + (f" ({beside})" if beside else ""))
    return "\n\n".join(parts)


# --- render ------------------------------------------------------------------------------


def _run(template: Template | None, context: dict[str, Any]) -> tuple[str | None, str | None]:
    """Render a rule template: (text, None), (None, error) or (None, None) without a template."""
    if template is None:
        return None, None
    try:
        return template.render(context), None
    except BudgetExceededError:
        raise  # the event's time is up: no default text either
    except Exception as exc:  # noqa: BLE001 - a rule's template must never lose a notification
        return None, f"{type(exc).__name__}: {exc}"


def render(
    event: Event,
    rule: Rule,
    channel: Channel,
    ruleset: RuleSet,
    *,
    source: str = "uipath",
    notes: Sequence[str] = (),
    details: Details | None = None,
) -> Notification:
    """Render the notification ``rule`` sends to ``channel`` for ``event``.

    Args:
        event: the typed event.
        rule: the matched rule (its templates, severity and format).
        channel: where it goes (its length limits).
        ruleset: the rule set (time zone, Orchestrator URL).
        source: the source the event came from (``{{ source }}`` in templates).
        notes: plain-text sentences added at the end of the body (noise control: how many
            were held back, what is muted meanwhile), escaped for the body format.
        details: what ``enrich:`` found in Orchestrator, or why it found nothing; None without ``enrich:``.

    Returns:
        The notification: title, body, severity and body format.
    """
    severity = rule.severity or default_severity(event)
    redactor = ruleset.redactor
    shown = redactor.value(event)
    title = body = title_error = body_error = None
    if rule.title_template is not None or rule.body_template is not None:
        names = context_names(rule.title_template, rule.body_template)
        context = redactor.value(
            template_context(event, rule, ruleset, source=source, severity=severity, names=names, details=details)
        )
        title, title_error = _run(rule.title_template, context)
        body, body_error = _run(rule.body_template, context)
    title = " ".join((title or "").split()) or neutralise(" ".join(default_title(shown).split()))
    if body is None or not body.strip():  # as for the title: a template rendering nothing gets the default
        body = default_body(shown, ruleset, rule.format, source=source, details=redactor.value(details))
    notes = [*_template_notes(rule, title_error, body_error), *redactor.value(list(notes))]
    return finish(title, body, severity, rule.format, channel, notes=notes)


def render_recovered(
    event: Event,
    rule: Rule,
    channel: Channel,
    ruleset: RuleSet,
    *,
    source: str,
    since: float,
    count: int,
    alert_title: str,
    key: str,
    notes: Sequence[str] = (),
) -> Notification:
    """Render the "recovered" message of ``rule`` (``recover:``), sent once when ``event`` clears it.

    The default title is ``Recovered: <the title of the alert>``; the default body says what
    cleared it, since when the rule alerted and how often, then the clearing event's details.
    A ``recover:`` title or body template sees the usual names plus ``since`` (a time),
    ``count``, ``alert_title`` and ``key``.
    """
    severity: Severity = "success"
    recover = rule.recover
    title_template = None if recover is None else recover.title_template
    body_template = None if recover is None else recover.body_template
    names = context_names(title_template, body_template)
    redactor = ruleset.redactor
    event = redactor.value(event)
    alert_title, key = redactor.text(alert_title), redactor.text(key)
    notes = redactor.value(list(notes))
    context = redactor.value(template_context(event, rule, ruleset, source=source, severity=severity, names=names))
    when = from_unix(since)
    context.update(since=when, count=count, alert_title=alert_title, key=key)
    title, title_error = _run(title_template, context)
    body, body_error = _run(body_template, context)
    title = " ".join((title or "").split()) or neutralise(f"Recovered: {alert_title}")
    if body is None or not body.strip():
        esc = escaper(rule.format)
        cleared = " ".join(default_title(event).split())
        since_text = localtime(when, ruleset.timezone)
        times = "once" if count == 1 else f"{count} times"
        lines = [
            esc(f"Cleared by: {cleared}"),
            esc(f"Alerting since {since_text} ({times}; rule {rule.name}, key {key or '-'})"),
        ]
        body = (
            ("\n" if rule.format != "html" else "<br>\n").join(lines)
            + "\n\n"
            + default_body(event, ruleset, rule.format, source=source)
        )
    return finish(
        title, body, severity, rule.format, channel, notes=[*_template_notes(rule, title_error, body_error), *notes]
    )


def _template_notes(rule: Rule, title_error: str | None, body_error: str | None) -> list[str]:
    return [
        f"the {what} template of rule {rule.name!r} failed ({error}); the default {what} is shown"
        for what, error in (("title", title_error), ("body", body_error))
        if error
    ]


def finish(
    title: str,
    body: str,
    severity: Severity,
    fmt: BodyFormat,
    channel: Channel,
    *,
    notes: Sequence[str] = (),
) -> Notification:
    """Make a notification of a rendered title and body: notes added, title cleaned, both shortened.

    Args:
        title: the title (one line is made of it).
        body: the body in ``fmt``, already escaped.
        severity: apprise's notify type.
        fmt: the body format.
        channel: where it goes (its length limits).
        notes: plain-text sentences added at the end of the body, escaped here.
    """
    title = " ".join(title.split())
    if fmt != "text":
        # Titles are plain text. A service without a title field (Telegram, Mattermost...)
        # prepends it to the body in the body's format, so no tag may be formed there.
        title = title.replace("<", "\u2039").replace(">", "\u203a")
    if notes:
        joined = escaper(fmt)("\n".join(notes))
        if fmt == "html":
            joined = joined.replace("\n", "<br>\n")
        body = f"{body}\n\n{joined}"
    title_limit, _ = limits_for(channel)
    return Notification(
        title=_shorten_title(title, title_limit),
        body=_fit(body.strip("\n"), channel, fmt),
        severity=severity,
        body_format=fmt,
    )


def with_links(body: str, fmt: str, links: Sequence[tuple[str, str]], channel: Channel) -> str:
    """A body in format ``fmt`` with action links (label, URL) at its end, room made for them.

    The URLs are the receiver's own (signed action links), not event text; labels are fixed words.
    """
    if not links:
        return body
    if fmt == "markdown":
        block = " \u00b7 ".join(f"[{label}]({url})" for label, url in links)
    elif fmt == "html":
        block = " &middot; ".join(f'<a href="{html.escape(url)}">{html.escape(label)}</a>' for label, url in links)
    else:
        block = "\n".join(f"{label}: {url}" for label, url in links)
    kept = _fit(body, channel, fmt, room=block)  # type: ignore[arg-type]  # fmt is a BodyFormat's value
    return f"{kept}\n\n{block}" if kept else block
