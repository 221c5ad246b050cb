"""The action links of alert messages: ``/act/{token}`` (docs/alerts.md, "Acting from the message").

A token (``receiver.actionlink``) names one alert and one action (acknowledge, silence its process
or robot for 1 h, retry its job) and expires. Chat clients and mail scanners fetch links on their
own, so a GET only shows what the link would do and changes nothing; the page's form POSTs to
the same URL, whose token is the proof (an altered or expired one is refused with a page that
says so, 403 or 410). Who acts is typed on the page, or taken from the header the reverse proxy
sets (``RECEIVER_TRUSTED_USER_HEADER``), believed only from ``RECEIVER_TRUSTED_PROXIES``. Pages
carry no script (the CSP allows none).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from receiver.actionlink import LinkError
from receiver.admin import alerting
from receiver.http.deadline import BodyError
from receiver.http.peer import from_trusted_proxy
from receiver.http.responses import PAGE_HEADERS
from receiver.http.runtime import Runtime
from receiver.store import AlertRow
from receiver.timefmt import local_text

__all__ = ["routes"]

log = structlog.get_logger()

_FORM_LIMIT = 4096
_HEADERS = {
    **PAGE_HEADERS,
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it on
    "X-Robots-Tag": "noindex",
}
_CONFIRM = {"ack": "Acknowledge the alert", "silence": "Silence for 1 hour", "retry": "Retry the job"}
_HEADINGS = {"ack": "Acknowledge this alert?", "silence": "Silence for 1 hour?", "retry": "Retry this job?"}
_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(
        lambda name: resources.files("receiver.http").joinpath(f"ui/{name}").read_text(encoding="utf-8")
    ),
    autoescape=True,
)


def _page(status: int, heading: str, *, message: str = "", tone: str = "info", **values: Any) -> HTMLResponse:
    body = _ENV.get_template("act.html").render(heading=heading, message=message, tone=tone, **values)
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _refused(exc: LinkError) -> HTMLResponse:
    if exc.reason == "expired":
        return _page(
            410, "This link has expired", message="Action links last a limited time. Act from the web page.", tone="bad"
        )
    return _page(
        403,
        "This link is not valid",
        message="It was altered or cut, or made with another key. Nothing was done.",
        tone="bad",
    )


def _off() -> HTMLResponse:
    return _page(404, "Action links are off", message="This receiver has no link key set.", tone="bad")


def _trusted_actor(rt: Runtime, request: Request) -> str | None:
    header = rt.settings.trusted_user_header.strip()
    if not header or not from_trusted_proxy(request.scope, rt.settings.trusted_proxies):
        return None
    return alerting.actor_name(request.headers.get(header, "")) or None


async def _checked(request: Request) -> tuple[Runtime, str, str, float, AlertRow] | Response:
    rt: Runtime = request.app.state.runtime
    if rt.signer is None:
        return _off()
    try:
        alert_id, action, expires = rt.signer.verify(request.path_params["token"], now=rt.clock())
    except LinkError as exc:
        log.info("action_link_refused", reason=exc.reason, method=request.method)
        return _refused(exc)
    alert = await rt.store.get_alert(alert_id)
    if alert is None:
        return _page(404, "This alert no longer exists", message="It was removed by retention.", tone="bad")
    return rt, alert_id, action, expires, alert


def _values(rt: Runtime, alert: AlertRow, expires: float) -> dict[str, Any]:
    return {"alert": alert, "expires": local_text(expires, rt.ruleset.timezone)}


async def confirm_page(request: Request) -> Response:
    """GET: what the link would do, and the button that does it. Changes nothing."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    rt, _, action, expires, alert = checked
    values = _values(rt, alert, expires)
    if action == "ack" and alert.state != "firing":
        return _page(200, "Nothing to acknowledge", message=f"This alert is {alert.state} already.", **values)
    return _page(200, _HEADINGS[action], confirm=_CONFIRM[action], actor=_trusted_actor(rt, request), **values)


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(rt: Runtime, request: Request) -> Mapping[str, str]:
    body = await rt.reads.read_body(request.receive, limit=_FORM_LIMIT, within=rt.settings.body_timeout_seconds)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BodyError(400, "invalid_form", "the form cannot be read") from None
    return dict(reversed(pairs))


async def act(request: Request) -> Response:
    """POST: do what the link names, once, as the person named on the page (or by the proxy)."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    rt, alert_id, action, expires, alert = checked
    if not _same_origin(request):
        return _page(403, "Refused", message="The form was sent from another site. Nothing was done.", tone="bad")
    try:
        form = await _form(rt, request)
    except BodyError as exc:
        return _page(exc.status, "Refused", message=exc.detail, tone="bad")
    actor = _trusted_actor(rt, request) or alerting.actor_name(form.get("by", ""))
    values = _values(rt, alert, expires)
    if not actor:
        return _page(
            400, _HEADINGS[action], message="Please give your name.", tone="bad", confirm=_CONFIRM[action], **values
        )
    now = rt.clock()
    if action == "ack":
        done = await alerting.acknowledge(rt.store, alert_id, actor=actor, via="link", now=now, metrics=rt.metrics)
        current = await rt.store.get_alert(alert_id) or alert
        values = _values(rt, current, expires)
        if done is None:
            return _page(200, "Nothing to acknowledge", message=f"This alert is {current.state} already.", **values)
        return _page(200, "Acknowledged", message=f"Acknowledged by {actor}. Reminders stop.", tone="ok", **values)
    if action == "silence":
        result = await alerting.silence_for(rt.store, alert, actor=actor, via="link", now=now, metrics=rt.metrics)
    else:
        result = await alerting.retry_job(
            rt.store, alert, rt.ruleset, actor=actor, via="link", now=now, metrics=rt.metrics
        )
    heading = "Done" if result.ok else "Not done"
    return _page(
        200 if result.ok else 409, heading, message=result.message, tone="ok" if result.ok else "bad", **values
    )


async def _link(request: Request) -> Response:
    """GET shows the confirmation page, POST acts: one route, so a 405 names both methods in ``Allow``."""
    return await (act(request) if request.method == "POST" else confirm_page(request))


def routes() -> list[Route]:
    """The routes of the action links."""
    return [Route("/act/{token}", _link, methods=["GET", "POST"])]
