"""The web page at ``/ui``: what arrived, what became of it, what is failing, and the few actions.

Server-rendered HTML (Jinja2, autoescaped, templates and one stylesheet in ``receiver/http/ui/``),
no JavaScript, no build step. Pages: an overview (counts, maintenance windows in force and
upcoming, charts of the last 24 hours or 7 days drawn as inline SVG by ``receiver.http.svg``,
failing and dead deliveries, recent events), events with filters, one event (its deliveries and
attempts, its noise decisions, why each rule did or did not match, its body), deliveries by
state, silences (active ones, a form to add one, the maintenance windows of rules.yaml), and the
rule set with its load status and each rule's message rendered for a sample event.

Access: the admin token (``RECEIVER_ADMIN_TOKEN``; unset or blank = the page is off) is typed once
into the login form and compared in constant time; failed logins count against the client's
address (``receiver.http.api``). The session cookie does not hold the token: it is
``EXPIRY.GENERATION.HMAC(token, EXPIRY.GENERATION)``, HttpOnly, SameSite=Strict and Secure over
https. It expires by itself, dies when the token is rotated (the MAC no longer verifies), and
when anyone logs out: logging out bumps the session generation kept in the store, which every
replica reads, so every session issued before ends (there is one admin identity). Every POST
also carries a CSRF token derived from the session (``HMAC(token, session)``) and, when the
browser sends one, an ``Origin`` equal to the page's own. Form bodies are bounded in size, fields
and time (``RECEIVER_BODY_TIMEOUT_SECONDS``); a malformed one is a 400. Pages are sent with a CSP
that allows no script at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from receiver.admin import alerting, audit, charts, preview, silencing
from receiver.http import auth
from receiver.http.deadline import BodyError
from receiver.http.responses import PAGE_HEADERS, error_response, page_bytes
from receiver.http.runtime import Runtime
from receiver.http.svg import Bar, Series, hbars, stacked_bars
from receiver.http.views import event_detail, event_list, rules_json
from receiver.store import CHART_RESULTS, LATENCY_SAMPLE, DeliveryRow
from receiver.timefmt import local_text

__all__ = ["COOKIE", "SESSION_SECONDS", "routes"]

log = structlog.get_logger()

COOKIE = "receiver_session"
SESSION_SECONDS = 12 * 3600
_FORM_LIMIT = 16 * 1024
_FORM_FIELDS = 50
_GENERATION = "ui_sessions"
"""The store counter whose value every valid session carries; logging out bumps it."""
_EVENT_FILTERS = ("type", "process", "robot", "state", "since", "until")
_HEADERS = PAGE_HEADERS
_TONES = {
    "notified": "ok",
    "sent": "ok",
    "sending": "info",
    "pending": "info",
    "suppressed": "info",
    "silenced": "info",
    "failing": "warn",
    "failed": "warn",
    "dead": "bad",
    "unparsed": "bad",
}
_DONE = {
    "retried": ("ok", "Delivery {id} is due again and will be sent in a moment."),
    "retried_dead": ("ok", "{n} dead deliveries are due again."),
    "silenced": ("ok", "Silence {id} added."),
    "expired": ("ok", "Silence {id} expired."),
    "reloaded": ("ok", "Rules reloaded: {n} rules in force."),
    "reload_failed": ("bad", "The reload failed: the running rules stay. The problems are listed below."),
    "not_found": ("bad", "Nothing to do: {what} {id} does not exist or is already done."),
    "acknowledged": ("ok", "Alert acknowledged: its reminders and escalations stop."),
    "resolved": ("ok", "Alert resolved."),
    "alert_unchanged": ("bad", "Nothing to do: the alert does not exist or is already done."),
    "name_needed": ("bad", "Give your name: it is kept in the alert's trail."),
}


# --- rendering -------------------------------------------------------------------------------


def _when(context: Mapping[str, Any], ts: float | None) -> str:
    if ts is None:
        return "\u2013"
    return local_text(ts, context["tz"])


def _duration(seconds: float) -> str:
    total = round(seconds)
    if total < 1:
        return f"{seconds * 1000:.0f} ms" if seconds > 0 else "0 s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts[:2])


def _ago(context: Mapping[str, Any], ts: float | None) -> str:
    if ts is None:
        return "\u2013"
    delta = float(context["now"]) - ts
    if abs(delta) < 1:
        return "just now"
    return f"{_duration(delta)} ago" if delta > 0 else f"in {_duration(-delta)}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("receiver.http", "ui"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = jinja2.pass_context(_when)
    env.filters["ago"] = jinja2.pass_context(_ago)
    env.filters["duration"] = _duration
    env.filters["tone"] = lambda word: _TONES.get(word, "idle")
    return env


_ENV = _environment()
_CSS = resources.files("receiver.http").joinpath("ui/ui.css").read_bytes()


def _html(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(page_bytes(body), status_code=status, headers={**_HEADERS, **(headers or {})})


@dataclass(frozen=True, slots=True)
class _Page:
    """What every page of a logged-in person needs."""

    rt: Runtime
    request: Request
    csrf: str

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        context = {
            "csrf": self.csrf,
            "now": self.rt.clock(),
            "tz": self.rt.ruleset.timezone,
            "flash": _flash(self.request),
            "filtered": False,
            **values,
        }
        return _html(_ENV.get_template(template).render(context), status)


def _flash(request: Request) -> dict[str, str] | None:
    """The message of the action just done (``?done=CODE``): fixed texts, only numbers filled in."""
    params = request.query_params
    found = _DONE.get(params.get("done", ""))
    if found is None:
        return None
    kind, text = found
    values = {k: params.get(k, "") if params.get(k, "").isdigit() else "" for k in ("id", "n")}
    values["what"] = {"silence": "silence", "delivery": "delivery"}.get(params.get("what", ""), "item")
    return {"kind": kind, "text": text.format(**values)}


# --- sessions --------------------------------------------------------------------------------


def _sign(token: str, purpose: str, value: str) -> str:
    return hmac.new(token.encode(), f"receiver-ui:{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _new_session(token: str, now: float, generation: int) -> str:
    payload = f"{int(now + SESSION_SECONDS)}.{generation}"
    return f"{payload}.{_sign(token, 'session', payload)}"


async def _valid_session(rt: Runtime, value: str | None, token: str) -> bool:
    """Signed with ``token``, not expired, and of the current generation (not logged out since)."""
    parts = (value or "").split(".")
    if len(parts) != 3 or not token.strip():
        return False
    expiry, generation, signature = parts
    if not (expiry.isascii() and expiry.isdigit() and generation.isascii() and generation.isdigit()):
        return False
    if len(expiry) > 12 or len(generation) > 19:  # no int() of thousands of digits
        return False
    good = hmac.compare_digest(signature.encode(), _sign(token, "session", f"{expiry}.{generation}").encode())
    now = rt.clock()
    if not good or not now < int(expiry) <= now + SESSION_SECONDS + 60:
        return False
    # Read only for a genuine cookie: a forged one costs no store query.
    return int(generation) == await rt.store.read_counter(_GENERATION)


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (CSRF), else True.

    ``Sec-Fetch-Site`` first: browsers set it and proxies leave it alone. Without it (older
    browsers), an ``Origin`` whose host is not the ``Host`` the request came to. Neither is the
    only guard: every action also needs the session's CSRF token, and the cookie is SameSite=Strict.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return hmac.compare_digest(urlsplit(origin).netloc.encode(), request.headers.get("host", "").encode())


async def _form(rt: Runtime, request: Request) -> dict[str, str]:
    """An url-encoded form (what the pages send), bounded in size, fields and time; the first value of each field.

    Raises:
        BodyError: 400 ``invalid_form`` (too large, too many fields, not UTF-8), 408 ``body_timeout``.
    """
    try:
        body = await rt.reads.read_body(request.receive, limit=_FORM_LIMIT, within=rt.settings.body_timeout_seconds)
    except BodyError as exc:
        if exc.status != 413:
            raise
        raise BodyError(400, "invalid_form", f"the form is over {_FORM_LIMIT} bytes") from None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_FORM_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise BodyError(400, "invalid_form", "the form is not UTF-8") from None
    except ValueError:  # parse_qsl: more than max_num_fields
        raise BodyError(400, "invalid_form", f"the form has more than {_FORM_FIELDS} fields") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def _next_path(value: str | None, default: str = "/ui") -> str:
    """Where to go after an action: a path of this page only (never another site)."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def _redirect(path: str, **done: str | int) -> RedirectResponse:
    if done:
        path += ("&" if "?" in path else "?") + urlencode({k: str(v) for k, v in done.items()})
    return RedirectResponse(path, status_code=303, headers=_HEADERS)


def _form_refused(exc: BodyError) -> Response:
    # A body left half read ends the connection with the answer (app._close_if_unread).
    return error_response(exc.status, exc.code, exc.detail, _HEADERS)


def _off() -> HTMLResponse:
    body = _ENV.get_template("off.html").render(
        csrf="", flash=None, title="Off", now=time.time(), tz=UTC, filtered=False
    )
    return _html(body, 404)


_PageHandler = Callable[[_Page], Awaitable[Response]]
_FormHandler = Callable[[_Page, dict[str, str]], Awaitable[Response]]


def _page(handler: _PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: logged-in only (others go to the login form and come back)."""

    async def guarded(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        secret = auth.admin_secret(rt)
        if secret is None:
            return _off()
        session = request.cookies.get(COOKIE)
        if not await _valid_session(rt, session, secret):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _redirect("/ui/login?" + urlencode({"next": target}))
        return await handler(_Page(rt, request, _sign(secret, "csrf", session or "")))

    return guarded


def _action(handler: _FormHandler) -> Callable[[Request], Awaitable[Response]]:
    """A POST action: logged-in, same origin, and the CSRF token of the session."""

    async def guarded(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        secret = auth.admin_secret(rt)
        if secret is None:
            return _off()
        session = request.cookies.get(COOKIE) or ""
        # Session and origin before the body: a stranger's body is never read.
        if not _same_origin(request) or not await _valid_session(rt, session, secret):
            log.warning("ui_action_refused", path=request.url.path, reason="session or origin")
            return _redirect("/ui/login?" + urlencode({"next": "/ui"}))
        try:
            form = await _form(rt, request)
        except BodyError as exc:
            return _form_refused(exc)
        csrf = _sign(secret, "csrf", session)
        if not hmac.compare_digest(form.get("csrf", "").encode(), csrf.encode()):
            log.warning("ui_action_refused", path=request.url.path, reason="csrf token")
            return _redirect("/ui/login?" + urlencode({"next": "/ui"}))
        return await handler(_Page(rt, request, csrf), form)

    return guarded


# --- log in and out --------------------------------------------------------------------------


def _login_page(
    next_path: str, *, error: str | None = None, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    body = _ENV.get_template("login.html").render(
        csrf="",
        flash=None,
        title="Log in",
        error=error,
        next=next_path,
        now=time.time(),
        tz=UTC,
        filtered=False,
    )
    return _html(body, status, headers)


async def login_form(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    secret = auth.admin_secret(rt)
    if secret is None:
        return _off()
    if await _valid_session(rt, request.cookies.get(COOKIE), secret):
        return _redirect(_next_path(request.query_params.get("next")))
    return _login_page(_next_path(request.query_params.get("next")))


async def login(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    secret = auth.admin_secret(rt)
    if secret is None:
        return _off()
    wait = auth.admin_throttled(rt, request)
    if wait is not None:
        error = f"Too many wrong tokens from your address: try again in {wait} s."
        return _login_page("/ui", error=error, status=429, headers={"Retry-After": str(wait)})
    try:
        form = await _form(rt, request)
    except BodyError as exc:
        return _form_refused(exc)
    if not _same_origin(request):
        # Not counted: another site must not be able to lock the admin out from the admin's own browser.
        log.warning("ui_login_refused", client=auth.client_address(request), reason="origin")
        return _login_page(_next_path(form.get("next")), error="That is not the admin token.", status=401)
    if not auth.secret_equals(form.get("token", "").strip(), secret):
        auth.note_failure(rt, request, "ui")
        return _login_page(_next_path(form.get("next")), error="That is not the admin token.", status=401)
    log.info("ui_login", client=auth.client_address(request))
    response = _redirect(_next_path(form.get("next")))
    response.set_cookie(
        COOKIE,
        _new_session(secret, rt.clock(), await rt.store.read_counter(_GENERATION)),
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(page: _Page, _: dict[str, str]) -> Response:
    # Server-side: every session issued so far ends, on every replica, even a copied cookie.
    generation = await page.rt.store.bump_counter(_GENERATION)
    log.info("ui_logout", client=auth.client_address(page.request), generation=generation)
    response = _redirect("/ui/login")
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="strict", secure=page.request.url.scheme == "https"
    )
    return response


async def stylesheet(_: Request) -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


# --- pages -----------------------------------------------------------------------------------


async def overview(page: _Page) -> Response:
    rt, now = page.rt, page.rt.clock()
    snapshot = await audit.queue_snapshot(rt.store, now=now)
    failing = await rt.store.list_deliveries(failing=True, limit=51)
    dead = await rt.store.list_deliveries(state="dead", limit=50)
    attention = sorted([*failing[:50], *dead], key=lambda d: d.id, reverse=True)[:40]
    silences = [s for s in await rt.store.list_silences(active_at=now) if s.starts_at <= now]
    windows = silencing.maintenance_windows(rt.ruleset, now=now)
    events = await event_list(rt, await rt.store.list_events(limit=25))
    channels = snapshot.channels.values()
    queues = {
        "pending": sum(c.pending for c in channels),
        "dead": sum(c.dead for c in channels),
        "oldest_due_age": max((c.oldest_due_age for c in channels), default=0.0),
        "inbox_depth": snapshot.inbox_depth,
        "firing": snapshot.alerts.get("firing", 0),
        "acknowledged": snapshot.alerts.get("acknowledged", 0),
        "held": sum((await alerting.held_by_channel(rt.store, rt.ruleset)).values()),
    }
    chart_range = charts.RANGES.get(page.request.query_params.get("range", ""), charts.RANGES["24h"])
    drawn = await rt.charts.get(rt.store, now=now, zone=rt.ruleset.timezone, chart=chart_range)
    return page.render(
        "overview.html",
        title="Overview",
        section="Overview",
        queues=queues,
        failing=min(len(failing), 50),
        failing_more=len(failing) > 50,
        attention=[audit.delivery_json(d) for d in attention],
        silences=len(silences) + sum(w.active for w in windows),
        adhoc_silences=len(silences),
        windows=[w for w in windows if w.active or w.upcoming],
        windows_total=len(windows),
        rules=rules_json(rt),
        events=events,
        charts=_charts_view(drawn),
        ranges=list(charts.RANGES.values()),
        store=await _store_size(rt),
        paths={n: s.snapshot() for n, s in sorted(rt.heartbeats.states.items())} if rt.heartbeats else {},
    )


_RESULT_WORDS = {
    "failed": "failed",
    "notified": "notified",
    "suppressed": "suppressed",
    "other": "nothing to send",
}


def _seconds_text(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s" if value < 60 else _duration(value)


def _charts_view(drawn: charts.OverviewCharts) -> dict[str, Any]:
    """The overview's charts as SVG, and the same figures as rows for the tables beside them."""
    chart_range, events = drawn.range, drawn.events
    series = [Series(_RESULT_WORDS[r], r, events.counts[r]) for r in CHART_RESULTS]
    per = "hour" if chart_range.width == 3600 else f"{chart_range.width / 3600:g} hours"
    events_svg = stacked_bars(
        events.labels,
        series,
        title=f"Events per {per}, {chart_range.title}, by result",
        desc=(
            f"{events.total} events; stacked from the bottom: failed (hatched), notified, suppressed (dotted), "
            "nothing to send. The table below has every figure."
        ),
        every=chart_range.label_every,
        first=events.first_label,
    )
    faults = "job faults, failed queue items and failed schedules"
    tops = {}
    for name, items in (("processes", drawn.processes), ("robots", drawn.robots)):
        tops[name] = {
            "svg": hbars(
                [Bar(i.name, i.count, kind="fault") for i in items],
                title=f"Top faulting {name}, {chart_range.title}",
                desc=f"The {name} with the most {faults}, most first.",
                empty=f"No faults in the {chart_range.title}.",
            ),
            "rows": [{"name": i.name, "count": i.count} for i in items],
        }
    bars = []
    for c in drawn.latency:
        bars.append(Bar(f"{c.channel} p50", c.p50, _seconds_text(c.p50), kind="p50"))
        bars.append(Bar(f"{c.channel} p95", c.p95, _seconds_text(c.p95), kind="p95"))
    latency_svg = hbars(
        bars,
        title=f"Delivery latency by channel, {chart_range.title}",
        desc="Median (p50) and 95th percentile (p95) of the time from a delivery's creation to the channel "
        f"accepting it, retries included, over each channel's latest {LATENCY_SAMPLE:,} deliveries sent in the range "
        "(all of them when fewer).",
        empty=f"No delivery sent in the {chart_range.title}.",
    )
    return {
        "range": chart_range,
        "events_svg": events_svg,
        "events_total": events.total,
        "results": [(r, _RESULT_WORDS[r]) for r in CHART_RESULTS],
        "event_rows": [
            {"slot": label, "counts": [events.counts[r][i] for r in CHART_RESULTS]}
            for i, label in enumerate(events.labels)
        ],
        "tops": tops,
        "latency_svg": latency_svg,
        "latency_rows": [
            {
                "channel": c.channel,
                "count": c.count,
                "p50": _seconds_text(c.p50),
                "p95": _seconds_text(c.p95),
                "max": _seconds_text(c.max),
            }
            for c in drawn.latency
        ],
        "read_at": drawn.read_at,
    }


async def _store_size(rt: Runtime) -> dict[str, Any]:
    """The store's rows per table, its size and the retention in force."""
    stats = await rt.store_stats.get()
    settings = rt.settings
    kept = {
        "events": settings.retain_events_days,
        "dead deliveries": settings.retain_dead_days,
        "noise log": settings.retain_noise_log_days,
    }
    return {
        "rows": dict(sorted(stats.rows.items())),
        "size": _size(stats.size_bytes),
        "estimated": any(count > stats.exact_limit for count in stats.rows.values()),
        "kept": {name: f"{days:g} days" if days > 0 else "for ever" for name, days in kept.items()},
    }


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns at GB


async def events(page: _Page) -> Response:
    rt, params = page.rt, page.request.query_params
    fields = {name: params.get(name, "") for name in _EVENT_FILTERS}
    error = None
    items: list[dict[str, Any]] = []
    next_before = None
    try:
        query = audit.event_query(params, params.getlist("type"), now=rt.clock())
    except audit.QueryError as exc:
        error = str(exc)
    else:
        rows = await rt.store.list_events(limit=50, query=query)
        items = await event_list(rt, rows)
        next_before = rows[-1].id if len(rows) == 50 else None
    next_url = "/ui/events?" + urlencode({**{k: v for k, v in fields.items() if v}, "before": next_before or ""})
    return page.render(
        "events.html",
        title="Events",
        section="Events",
        q=fields,
        events=items,
        error=error,
        filtered=any(fields.values()),
        next_before=next_before,
        next_url=next_url,
    )


async def event(page: _Page) -> Response:
    raw = page.request.path_params["id"]
    event_id = audit.parse_id(raw)
    data = await event_detail(page.rt, event_id) if event_id is not None else None
    if data is None:
        return page.render(
            "events.html",
            status=404,
            title="Events",
            section="Events",
            q=dict.fromkeys(_EVENT_FILTERS, ""),
            events=[],
            error=f"There is no event {raw[:40]!r}.",
            next_before=None,
            next_url="",
        )
    body = data["body"]
    text = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
    data["explain"]["note_short"] = (
        f"evaluated now against the rules loaded {_ago({'now': page.rt.clock()}, data['explain']['rules_loaded_at'])}"
        ", not necessarily those that processed it"
    )
    noise = data["noise_log"] or data["decisions"]
    return page.render(
        "event.html",
        title=f"Event {data['id']}",
        section="Events",
        e=data,
        noise=noise,
        body_text=text,
        body_size=len(text.encode(errors="surrogatepass")),
    )


async def deliveries(page: _Page) -> Response:
    rt, params = page.rt, page.request.query_params
    state = params.get("state", "all")
    if state not in (*audit.DELIVERY_STATES, "all"):
        state = "all"
    before = params.get("before", "")
    rows: list[DeliveryRow] = await rt.store.list_deliveries(
        state=None if state in ("all", "failing") else state,
        failing=state == "failing",
        before=audit.parse_id(before),
        limit=100,
    )
    next_before = rows[-1].id if len(rows) == 100 else None
    back = f"/ui/deliveries?state={state}"
    return page.render(
        "deliveries.html",
        title="Deliveries",
        section="Deliveries",
        state="" if state == "all" else state,
        deliveries=[audit.delivery_json(d) for d in rows],
        back=back,
        next_before=next_before,
        next_url=f"{back}&before={next_before}",
    )


async def silences(
    page: _Page, *, status: int = 200, error: list[str] | None = None, form: Mapping[str, str] | None = None
) -> Response:
    rt, now = page.rt, page.rt.clock()
    rows = await rt.store.list_silences(active_at=now)
    windows = silencing.maintenance_windows(rt.ruleset, now=now)
    values = {"matchers": "", "duration": "", "comment": "", "created_by": "", **(form or {})}
    return page.render(
        "silences.html",
        status=status,
        title="Silences",
        section="Silences",
        silences=rows,
        windows=windows,
        error=error,
        form=values,
    )


async def alerts(page: _Page) -> Response:
    rows = await page.rt.store.list_alerts(limit=200)
    return page.render("alerts.html", title="Alerts", section="Alerts", alerts=rows)


async def acknowledge_alert(page: _Page, form: dict[str, str]) -> Response:
    return await _alert_action(page, form, alerting.acknowledge, "acknowledged")


async def resolve_alert(page: _Page, form: dict[str, str]) -> Response:
    return await _alert_action(page, form, alerting.resolve, "resolved")


async def _alert_action(
    page: _Page, form: dict[str, str], action: Callable[..., Awaitable[object]], done: str
) -> Response:
    rt, alert_id = page.rt, page.request.path_params["id"]
    actor = alerting.actor_name(form.get("by", ""))
    if not actor:
        return _redirect("/ui/alerts", done="name_needed")
    if (
        not alerting.valid_id(alert_id)
        or await action(rt.store, alert_id, actor=actor, via="ui", now=rt.clock(), metrics=rt.metrics) is None
    ):
        return _redirect("/ui/alerts", done="alert_unchanged")
    return _redirect("/ui/alerts", done=done)


async def rules(page: _Page) -> Response:
    # Off the event loop and within the event budget: a template `receiver check` cannot see run away
    # (two nested range(100000)) would otherwise hold every webhook for as long as it runs.
    budget = page.rt.settings.event_budget_seconds
    previews = {p.rule: p for p in await asyncio.to_thread(preview.preview_rules, page.rt.ruleset, budget=budget)}
    return page.render("rules.html", title="Rules", section="Rules", r=rules_json(page.rt), previews=previews)


# --- actions ---------------------------------------------------------------------------------


async def retry(page: _Page, form: dict[str, str]) -> Response:
    rt, raw = page.rt, page.request.path_params["id"]
    back = _next_path(form.get("next"))
    delivery_id = audit.parse_id(raw)
    if delivery_id is None or not await rt.store.retry_delivery(delivery_id, now=rt.clock()):
        return _redirect(back, done="not_found", what="delivery", id=delivery_id or 0)
    log.info("delivery_redriven", delivery_id=delivery_id, by="ui")
    return _redirect(back, done="retried", id=delivery_id)


async def retry_dead(page: _Page, form: dict[str, str]) -> Response:
    rt = page.rt
    count = await rt.store.retry_dead(now=rt.clock())
    log.info("deliveries_redriven", count=count, by="ui")
    return _redirect(_next_path(form.get("next")), done="retried_dead", n=count)


async def add_silence(page: _Page, form: dict[str, str]) -> Response:
    rt, now = page.rt, page.rt.clock()
    try:
        new = silencing.build_silence(
            [form.get("matchers", "")],
            comment=form.get("comment", "")[:500],
            created_by=form.get("created_by", "")[:100],
            now=now,
            duration=form.get("duration", "").strip() or None,
        )
    except silencing.SilenceError as exc:
        return await silences(page, status=400, error=exc.problems, form=form)
    except OverflowError:
        # parse_duration lets timedelta's OverflowError through ("200000000w"): that was a 500.
        return await silences(page, status=400, error=["a silence may last a year at most"], form=form)
    row = await rt.store.add_silence(new, now=now)
    log.info("silence_added", silence_id=row.id, matchers=list(row.matchers), created_by=row.created_by, by="ui")
    return _redirect("/ui/silences", done="silenced", id=row.id)


async def expire_silence(page: _Page, form: dict[str, str]) -> Response:
    rt, raw = page.rt, page.request.path_params["id"]
    silence_id = audit.parse_id(raw)
    row = await rt.store.expire_silence(silence_id, now=rt.clock()) if silence_id is not None else None
    if row is None:
        return _redirect("/ui/silences", done="not_found", what="silence", id=silence_id or 0)
    log.info("silence_expired", silence_id=silence_id, by="ui")
    return _redirect("/ui/silences", done="expired", id=row.id)


async def reload_rules(page: _Page, form: dict[str, str]) -> Response:
    problems = await page.rt.reload("ui")
    if problems:
        return _redirect("/ui/rules", done="reload_failed")
    return _redirect("/ui/rules", done="reloaded", n=len(page.rt.ruleset.rules))


def routes() -> list[Route]:
    """The web page's routes (``/ui`` and below)."""
    return [
        Route("/ui", _page(overview), methods=["GET"]),
        Route("/ui/ui.css", stylesheet, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", _action(logout), methods=["POST"]),
        Route("/ui/alerts", _page(alerts), methods=["GET"]),
        Route("/ui/alerts/{id}/ack", _action(acknowledge_alert), methods=["POST"]),
        Route("/ui/alerts/{id}/resolve", _action(resolve_alert), methods=["POST"]),
        Route("/ui/events", _page(events), methods=["GET"]),
        Route("/ui/events/{id}", _page(event), methods=["GET"]),
        Route("/ui/deliveries", _page(deliveries), methods=["GET"]),
        Route("/ui/deliveries/retry-dead", _action(retry_dead), methods=["POST"]),
        Route("/ui/deliveries/{id}/retry", _action(retry), methods=["POST"]),
        Route("/ui/silences", _page(silences), methods=["GET"]),
        Route("/ui/silences", _action(add_silence), methods=["POST"]),
        Route("/ui/silences/{id}/expire", _action(expire_silence), methods=["POST"]),
        Route("/ui/rules", _page(rules), methods=["GET"]),
        Route("/ui/rules/reload", _action(reload_rules), methods=["POST"]),
    ]
