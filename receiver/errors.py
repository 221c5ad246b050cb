"""The exception tree of receiver.

::

    ReceiverError
    ├── ConfigError            settings or a rules file that cannot be used
    │   └── RulesError         rules.yaml problems (carries every Problem found)
    ├── SignatureError         a webhook whose X-UiPath-Signature does not verify
    ├── EventParseError        a body that is not an Orchestrator event we can read
    └── StoreError             the store cannot be reached or written (recoverable or not)

A send that fails is not an exception: ``receiver.delivery`` returns a ``SendResult`` for it.

Every exception carries its data as attributes, not only as a message, so callers can
map it to an HTTP status, an exit code or a log field without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "EventParseError",
    "Problem",
    "ReceiverError",
    "RulesError",
    "SignatureError",
    "StoreError",
]


class ReceiverError(Exception):
    """Base of every error receiver raises on purpose."""


class ConfigError(ReceiverError):
    """Settings or configuration that cannot be used."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a rules file, located for ``PATH:LINE:COL: message`` output.

    Attributes:
        path: the file the problem is in.
        line: 1-based line, 0 when unknown.
        column: 1-based column, 0 when unknown.
        message: what is wrong, naming the item and the bad value.
    """

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class RulesError(ConfigError):
    """A rules file with one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SignatureError(ReceiverError):
    """A webhook signature that is missing, malformed or wrong.

    Attributes:
        reason: a short code: ``missing``, ``malformed`` or ``mismatch``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class EventParseError(ReceiverError):
    """A body that is not an event.

    Attributes:
        code: a short machine-readable code for the HTTP error body
            (``invalid_json``, ``not_an_object``, ``missing_type``, ``invalid_fields``...).
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class StoreError(ReceiverError):
    """The store could not be opened, read or written.

    Attributes:
        recoverable: False when the database refused the data itself (a value too long for an
            index, a broken constraint): the same write fails again, however often it is tried.
            True (the default) for everything else: a lost connection, a locked or full database.
    """

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        self.recoverable = recoverable
        super().__init__(message)
