"""A time budget for the work one event causes: matching, keys and templates stop when it is spent.

The inbox worker opens a budget around the planning and the processing of each event
(``RECEIVER_EVENT_BUDGET_SECONDS``). Matching and templates call :func:`check_budget` where
their work grows with the event (each field a clause reads, each attribute, call and printed
value of a template), and past the deadline it raises :class:`BudgetExceededError`, which the
worker records as the event's outcome instead of processing it on and on. Outside a budget
(``receiver test``, the dry run, the web page's explanation) the checks do nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from receiver.errors import ReceiverError

__all__ = ["BudgetExceededError", "check_budget", "event_budget"]

_BUDGET: ContextVar[tuple[float, float] | None] = ContextVar("receiver_event_budget", default=None)
"""(monotonic deadline, budget in seconds) of the event being worked on, or None."""


class BudgetExceededError(ReceiverError):
    """The work for one event ran past its time budget.

    Attributes:
        seconds: the budget.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"processing the event took longer than its budget of {seconds:g} s (RECEIVER_EVENT_BUDGET_SECONDS)"
        )


@contextmanager
def event_budget(seconds: float | None) -> Iterator[None]:
    """Give the work inside the block ``seconds`` seconds (None: no limit)."""
    token = _BUDGET.set(None if seconds is None else (time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def check_budget() -> None:
    """Raise when the budget of the event being worked on is spent.

    Raises:
        BudgetExceededError: past the deadline of the innermost :func:`event_budget`.
    """
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget[0]:
        raise BudgetExceededError(budget[1])
