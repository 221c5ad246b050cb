"""The errors of talking to Orchestrator: refused credentials, a refused call, an unreachable server."""

from __future__ import annotations

from receiver.errors import ReceiverError

__all__ = ["OrchestratorAuthError", "OrchestratorError", "OrchestratorUnavailableError"]


class OrchestratorError(ReceiverError):
    """Orchestrator answered a call with an error (4xx), or the answer could not be read.

    Attributes:
        source: the source whose connection made the call.
        status: the HTTP status, or None when there was no answer.
        error_code: Orchestrator's ``errorCode`` (1002 item not found, 1101 folder required...), or None.
        detail: the error text, bounded, with the client secret masked.
    """

    def __init__(self, source: str, detail: str, *, status: int | None = None, error_code: int | None = None) -> None:
        self.source = source
        self.status = status
        self.error_code = error_code
        self.detail = detail
        where = f"HTTP {status}" if status is not None else "no answer"
        code = f", errorCode {error_code}" if error_code is not None else ""
        super().__init__(f"Orchestrator of source {source!r}: {detail} ({where}{code})")


class OrchestratorAuthError(OrchestratorError):
    """The token endpoint refused the client credentials, or a fresh token was refused too (401)."""


class OrchestratorUnavailableError(OrchestratorError):
    """No usable answer within the call's time budget: network errors, timeouts, 5xx, 429, or the circuit is open.

    Attributes:
        retry_after: seconds after which a new call may succeed (the circuit's or a Retry-After), or None.
        outcome: what the last attempt met: ``timeout``, ``network_error``, ``server_error``,
            ``rate_limited`` or ``circuit_open`` (not called).
        maybe_done: True when a call that must not run twice (a POST that creates something)
            went out and got no clear answer (a 5xx, a read timeout, a dropped connection): it was
            not repeated, and Orchestrator may have carried it out.
    """

    def __init__(
        self,
        source: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        outcome: str = "timeout",
        maybe_done: bool = False,
    ) -> None:
        super().__init__(source, detail, status=status)
        self.retry_after = retry_after
        self.outcome = outcome
        self.maybe_done = maybe_done
