"""The HTTP client of one source's Orchestrator: token, retries, time budget, circuit, OData paging.

Every call has a time budget of its own (all attempts and waits together). 429 waits the
``Retry-After`` it is given; network errors, timeouts and 5xx are retried with exponential
backoff and jitter (where repeating the call is harmless: a POST that creates something only
when the request never left, a refused connection); a 401 renews the token and
repeats the call once. Repeated failures open the circuit: calls then fail at once until the
cooldown has passed, and the log and ``receiver_orchestrator_circuit_open`` say so.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson
import structlog

from receiver.orchestrator.auth import Token, TokenCache, parse_token, token_form
from receiver.orchestrator.circuit import Circuit
from receiver.orchestrator.config import Endpoints, endpoints
from receiver.orchestrator.errors import OrchestratorAuthError, OrchestratorError, OrchestratorUnavailableError
from receiver.orchestrator.observe import NullObserver, Observer, Outcome
from receiver.rules import OrchestratorLink

__all__ = ["FOLDER_HEADER", "PAGE_LIMITS", "Collection", "OrchestratorClient", "RetryPolicy"]

log = structlog.get_logger()

FOLDER_HEADER = "X-UIPATH-OrganizationUnitId"
PAGE_LIMITS: Mapping[str, int] = {"QueueItems": 100}
"""``$top`` maxima below the general 1000 (QueueItems: 100 since late 2024; above it, 400)."""
_DEFAULT_PAGE = 1000
_SMALLEST_PAGE = 10
_MAX_BODY = 8 * 1024 * 1024
_DETAIL_CHARS = 300
_EARLY_RENEWAL_SECONDS = 5.0
"""The budget of a token renewal while the current token still works."""
_UNSENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
"""Failures before the request left: a call that must not run twice may still be tried again after them.

After any other (a read timeout, a connection dropped mid-answer) Orchestrator may have carried
the call out, as after a 5xx."""


class _TooLarge(OrchestratorError):
    """An answer past ``_MAX_BODY``: read no further (a list is asked again in smaller pages)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries.

    Attributes:
        attempts: attempts at most per call (a 401 renewal adds one).
        budget: seconds for the whole call, attempts and waits together.
        backoff: the first backoff delay in seconds; doubles per attempt, with jitter.
        backoff_cap: the longest backoff delay.
        retry_after_cap: the longest ``Retry-After`` honoured (a longer one ends the call).
    """

    attempts: int = 4
    budget: float = 30.0
    backoff: float = 0.5
    backoff_cap: float = 10.0
    retry_after_cap: float = 120.0


@dataclass(frozen=True, slots=True)
class Collection:
    """An OData collection read page by page.

    Attributes:
        items: the entities, in the order Orchestrator gave them.
        count: ``@odata.count`` of the first page (the total), or None when absent.
        truncated: True when ``max_items`` stopped the reading before the end.
    """

    items: list[dict[str, Any]]
    count: int | None
    truncated: bool = False


@dataclass(slots=True)
class _Answer:
    status: int
    headers: httpx2.Headers
    body: bytes


def _retry_after(headers: httpx2.Headers, body: bytes) -> float | None:
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    # An edge 429 may carry it in the body instead (the reference).
    try:
        data = orjson.loads(body) if body and len(body) < 4096 else None
    except orjson.JSONDecodeError:
        return None
    found = data.get("retry_after") if isinstance(data, dict) else None
    return float(found) if isinstance(found, int | float) and not isinstance(found, bool) and found >= 0 else None


class OrchestratorClient:
    """One source's connection to Orchestrator; use ``async with`` or call :meth:`aclose`.

    Args:
        source: the source name (logs and metrics).
        link: the source's ``orchestrator:`` block.
        transport: an httpx2 transport (tests); None for the network.
        policy: retries and the time budget per call.
        circuit: the circuit breaker; None for one with the defaults.
        observer: where request outcomes and the circuit state go (metrics).
        sleep: how to wait (injectable for tests).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        source: str,
        link: OrchestratorLink,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        circuit: Circuit | None = None,
        observer: Observer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.link = link
        self.endpoints: Endpoints = endpoints(link)
        self.policy = policy or RetryPolicy()
        self._observer: Observer = observer or NullObserver()
        self.circuit = circuit or Circuit()
        self.circuit.on_change = self._circuit_changed  # the client reports its circuit's changes
        self._sleep = sleep
        self._clock = clock
        self.tokens = TokenCache(clock=clock)
        self._http = httpx2.AsyncClient(
            transport=transport,
            timeout=link.timeout_seconds,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "receiver"},
        )

    def __repr__(self) -> str:
        return f"OrchestratorClient(source={self.source!r}, url={self.link.url!r}, client_id={self.link.client_id!r})"

    async def __aenter__(self) -> OrchestratorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # --- reporting -------------------------------------------------------------------------

    def _circuit_changed(self, is_open: bool) -> None:
        self._observer.circuit(self.source, is_open)
        if is_open:
            log.error(
                "orchestrator_circuit_opened",
                source=self.source,
                failures=self.circuit.failures,
                cooldown_seconds=self.circuit.cooldown,
            )
        else:
            log.info("orchestrator_circuit_closed", source=self.source)

    def _mask(self, text: str) -> str:
        secrets = [self.link.client_secret_value()]
        if self.tokens.current is not None:
            secrets.append(self.tokens.current.access_token.get_secret_value())
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _detail(self, body: bytes) -> tuple[str, int | None]:
        """The error text and errorCode of an answer, bounded and masked."""
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        text, code = "", None
        if isinstance(data, dict):
            for key in ("message", "Message", "error_description", "error"):
                if isinstance(data.get(key), str) and data[key]:
                    text = data[key]
                    break
            for key in ("errorCode", "ErrorCode"):
                if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                    code = data[key]
        elif body:
            text = body[:_DETAIL_CHARS].decode("utf-8", "replace")
        text = " ".join(text.split())[:_DETAIL_CHARS]
        return self._mask(text) or "no error text", code

    def _redirected(self, what: str, answer: _Answer) -> OrchestratorError:
        """A redirect is not Orchestrator's answer (its API does not redirect; a proxy or a login gateway does).

        It is not followed: the bearer token or the client secret would go along. The error names
        the target without its query (a login URL's state), so that ``url:`` can be corrected.
        """
        try:
            parts = urlsplit(answer.headers.get("location", ""))
            target = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme and parts.netloc else parts.path
        except ValueError:  # a Location that is no URL
            target = ""
        where = f"redirected to {target[:_DETAIL_CHARS]!r}" if target else "redirected"
        return OrchestratorError(
            self.source,
            f"{what}: {where}; redirects are not followed: set url (or token_url) to the address that answers",
            status=answer.status,
        )

    # --- one exchange with retries ----------------------------------------------------------

    async def _once(self, method: str, url: str, *, headers: dict[str, str], per_try: float, **kwargs: Any) -> _Answer:
        request = self._http.build_request(method, url, headers=headers, timeout=per_try, **kwargs)
        response = await self._http.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > _MAX_BODY:
                    raise _TooLarge(
                        self.source, f"{method} answer larger than {_MAX_BODY} bytes", status=response.status_code
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return _Answer(response.status_code, response.headers, b"".join(chunks))

    def _backoff(self, attempt: int) -> float:
        delay = min(self.policy.backoff_cap, self.policy.backoff * 2.0 ** (attempt - 1))
        jitter: float = 0.5 + random.random() / 2  # noqa: S311  # jitter, not cryptography
        return delay * jitter

    def _refuse_if_open(self, what: str) -> None:
        wait = self.circuit.wait()
        if self.circuit.is_open and wait > 0:
            self._observer.request(self.source, "circuit_open")
            raise OrchestratorUnavailableError(
                self.source,
                f"{what}: not called, the circuit is open after repeated failures (next try in {wait:.0f} s)",
                retry_after=wait,
                outcome="circuit_open",
            )

    async def _exchange(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str],
        deadline: float,
        idempotent: bool,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> _Answer:
        """Send until an answer that is not retried (2xx-4xx but 429), or raise OrchestratorUnavailableError."""
        attempts = attempts or self.policy.attempts
        self._refuse_if_open(what)
        last = "no attempt"
        last_outcome: Outcome = "timeout"  # no attempt: the budget was spent before it
        status: int | None = None
        retry_after: float | None = None
        maybe_done = False
        for attempt in range(1, attempts + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            outcome: Outcome
            delay: float | None = None
            per_try = min(self.link.timeout_seconds, remaining)
            try:
                # httpx's timeouts bound each read; an answer trickling in a byte at a time needs a clock.
                async with asyncio.timeout(per_try):
                    answer = await self._once(method, url, headers=headers, per_try=per_try, **kwargs)
            except (httpx2.TimeoutException, TimeoutError) as exc:
                outcome, status, last = "timeout", None, "timed out"
                self.circuit.failure()
                delay = self._backoff(attempt) if idempotent or isinstance(exc, _UNSENT) else None
            except httpx2.TransportError as exc:
                outcome, status, last = "network_error", None, f"network error ({type(exc).__name__})"
                self.circuit.failure()
                delay = self._backoff(attempt) if idempotent or isinstance(exc, _UNSENT) else None
            else:
                status = answer.status
                if status == 429:
                    outcome, last = "rate_limited", "rate limited (429)"
                    retry_after = _retry_after(answer.headers, answer.body)
                    delay = self._backoff(attempt) if retry_after is None else retry_after
                elif status >= 500 or status == 408:
                    outcome, last = (
                        ("server_error", f"server error ({status})")
                        if status >= 500
                        else ("timeout", "timed out (408)")
                    )
                    self.circuit.failure()
                    # A 503 for maintenance says when to come back; the SDK honours it on any retried status.
                    hinted = _retry_after(answer.headers, answer.body)
                    delay = max(self._backoff(attempt), hinted or 0.0) if idempotent else None
                else:
                    outcome = "ok" if status < 400 else "unauthorized" if status == 401 else "client_error"
                    self.circuit.success()
                    self._observer.request(self.source, outcome)
                    return answer
            self._observer.request(self.source, outcome)
            last_outcome = outcome
            if delay is None and outcome != "rate_limited":
                # Not repeated because it may have been carried out: the caller must not take it as undone.
                maybe_done = True
                break
            if delay is None or attempt == attempts or self.circuit.is_open:
                break
            if delay > self.policy.retry_after_cap or self._clock() + delay >= deadline:
                retry_after = delay
                break
            log.warning(
                "orchestrator_request_retried",
                source=self.source,
                call=what,
                outcome=outcome,
                status=status,
                attempt=attempt,
                retry_in=round(delay, 3),
            )
            await self._sleep(delay)
        log.warning("orchestrator_request_failed", source=self.source, call=what, reason=last, status=status)
        ending = (
            "not repeated, as Orchestrator may have carried it out: check before trying again"
            if maybe_done
            else "gave up after the call's retries"
        )
        raise OrchestratorUnavailableError(
            self.source,
            f"{what}: {last}; {ending}",
            status=status,
            retry_after=retry_after,
            outcome=last_outcome,
            maybe_done=maybe_done,
        )

    # --- token ------------------------------------------------------------------------------

    async def token(self) -> Token:
        """Return a valid access token, asking the token endpoint when the cached one nears its end.

        Raises:
            OrchestratorAuthError: the credentials or the scopes were refused.
            OrchestratorUnavailableError: the token endpoint did not answer in time.
        """
        return await self._token(self._clock() + self.policy.budget)

    async def _token(self, deadline: float) -> Token:
        return await self.tokens.get(lambda early: self._fetch_token(deadline, early=early))

    async def _fetch_token(self, deadline: float, *, early: bool = False) -> Token:
        # While the current token still works, one quick attempt: a failing identity server must
        # neither spend the call's budget nor open the circuit for calls the token can still make.
        answer = await self._exchange(
            "POST",
            self.endpoints.token_url,
            "token request",
            headers={},
            deadline=min(deadline, self._clock() + _EARLY_RENEWAL_SECONDS) if early else deadline,
            idempotent=True,
            attempts=1 if early else None,
            data=token_form(self.link),
        )
        if 300 <= answer.status < 400:
            raise self._redirected("token request", answer)
        if answer.status >= 400:
            detail, _ = self._detail(answer.body)
            log.warning("orchestrator_token_refused", source=self.source, status=answer.status, detail=detail)
            raise OrchestratorAuthError(
                self.source,
                f"token request refused: {detail} (check client_id, client_secret and scopes)",
                status=answer.status,
            )
        try:
            payload = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise OrchestratorAuthError(
                self.source, "token endpoint answered with no JSON", status=answer.status
            ) from None
        token = parse_token(self.source, self.link, payload, self._clock())
        log.info("orchestrator_token_obtained", source=self.source, expires_in=token.expires_in, scopes=token.scopes)
        return token

    # --- API calls --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        folder_id: int | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Call the API and return the decoded JSON answer (None for an empty one).

        Args:
            method: the HTTP method.
            path: the path under the API base, e.g. ``odata/Webhooks``.
            params: query parameters (``$filter``, ``$top``...).
            json: the JSON body.
            folder_id: the folder of a folder-scoped call, sent as ``X-UIPATH-OrganizationUnitId``.
            idempotent: whether the call may be repeated after it may have been carried out (a 5xx,
                a read timeout, a dropped connection); default True except for POST.

        Raises:
            OrchestratorAuthError: the token was refused twice, or could not be obtained.
            OrchestratorError: a 4xx answer (``status``, ``error_code`` and ``detail`` set).
            OrchestratorUnavailableError: no answer within the budget, or the circuit is open.
        """
        what = f"{method} {path}"
        url = f"{self.endpoints.api_base}/{path.lstrip('/')}"
        deadline = self._clock() + self.policy.budget
        repeatable = method.upper() != "POST" if idempotent is None else idempotent
        headers = {} if folder_id is None else {FOLDER_HEADER: str(folder_id)}
        extra: dict[str, Any] = {"params": dict(params) if params else None}
        if json is not None:
            extra["content"] = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        for renewal in (False, True):
            self._refuse_if_open(what)
            token = await self._token(deadline)  # a token request counts against the call's budget
            headers["Authorization"] = f"Bearer {token.access_token.get_secret_value()}"
            answer = await self._exchange(
                method, url, what, headers=headers, deadline=deadline, idempotent=repeatable, **extra
            )
            if answer.status != 401:
                break
            self.tokens.invalidate(token)
            if renewal:
                raise OrchestratorAuthError(self.source, f"{what}: a fresh token was refused too", status=401)
            log.info("orchestrator_token_refused_renewing", source=self.source, call=what)
        if 300 <= answer.status < 400:
            raise self._redirected(what, answer)
        if answer.status >= 400:
            detail, code = self._detail(answer.body)
            raise OrchestratorError(self.source, f"{what}: {detail}", status=answer.status, error_code=code)
        if not answer.body.strip():
            return None
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise OrchestratorError(self.source, f"{what}: the answer is not JSON", status=answer.status) from None

    async def collection(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        folder_id: int | None = None,
        page_size: int | None = None,
        max_items: int = 10_000,
    ) -> Collection:
        """Read an OData collection with ``$top``/``$skip`` until the end, or ``max_items``.

        The end is an empty page, ``@odata.count`` entities read, or a page shorter than ``$top``
        when the answer has no count and no ``@odata.nextLink``. A server whose own maximum is
        below ``$top`` clamps the page (the reference leaves clamping open): the count or the next
        link then says that more follow, and they are read at the next ``$skip`` (the link itself is
        not followed: it could name another host, and the token would go there).

        Args:
            path: the entity set, e.g. ``odata/Webhooks``.
            params: other query parameters (``$filter``, ``$orderby``...).
            folder_id: the folder of a folder-scoped entity.
            page_size: ``$top``; default the entity's maximum (100 for QueueItems, else 1000).
            max_items: stop after this many entities (``truncated`` says so).

        Returns:
            The entities and the total count.
        """
        entity = path.rstrip("/").rsplit("/", 1)[-1].split("(", 1)[0]
        top = min(page_size or _DEFAULT_PAGE, PAGE_LIMITS.get(entity, _DEFAULT_PAGE))
        items: list[dict[str, Any]] = []
        count: int | None = None
        skip = 0
        # Bounded: a full page, or one the server clamped to 100 or more, moves $skip on; a server
        # with smaller pages leaves the end unread, and ``truncated`` says so.
        for _page in range(max_items // min(top, 100) + 1):
            query: dict[str, str | int] = {**(params or {}), "$top": top, "$skip": skip, "$count": "true"}
            try:
                data = await self.request("GET", path, params=query, folder_id=folder_id)
            except _TooLarge:
                if top <= _SMALLEST_PAGE:
                    raise
                top = max(_SMALLEST_PAGE, top // 4)  # long texts (a faulted job's Info): smaller pages
                continue
            page = data.get("value") if isinstance(data, dict) else None
            if not isinstance(page, list):
                raise OrchestratorError(self.source, f"GET {path}: the answer has no 'value' list", status=200)
            if count is None and isinstance(data.get("@odata.count"), int):
                count = data["@odata.count"]
            skip += len(page)
            items.extend(p for p in page if isinstance(p, dict))
            more = isinstance(data.get("@odata.nextLink"), str) or (count is not None and skip < count)
            if not page or (count is not None and skip >= count) or (len(page) < top and not more):
                return Collection(items[:max_items], count)
            if len(items) >= max_items:
                break
        return Collection(items[:max_items], count, truncated=True)
