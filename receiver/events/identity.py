"""The identity of a finished job's (or failed queue item's) event, shared by the webhook edge and gap recovery.

A job ends once: its key and its end state name the event whoever reports it. For a source
with an ``orchestrator:`` block, the webhook edge stores a ``job.faulted``/``job.stopped``/
``job.completed`` of one job under this key instead of Orchestrator's ``EventId``, and gap
recovery stores what it finds in the API under the same key, so the inbox's unique
(source, event_id) lets exactly one of them in, on every store and across replicas. A queue
item fails once per attempt: ``queueitem:<Key>:<RetryNumber>:<Status>`` (the retries of an item
share its Key, and each may fail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "END_STATES",
    "END_TYPES",
    "ITEM_END_STATES",
    "ITEM_END_TYPES",
    "end_key",
    "job_end_key",
    "lookup",
    "queue_item_end_key",
]

END_STATES: Mapping[str, str] = {"job.faulted": "Faulted", "job.stopped": "Stopped", "job.completed": "Successful"}
"""The job events that report an end, and the job ``State`` each one reports."""
END_TYPES: Mapping[str, str] = {state: kind for kind, state in END_STATES.items()}
"""The event type that reports a job ending in each end ``State``."""

ITEM_END_STATES: Mapping[str, str] = {"queueItem.transactionFailed": "Failed"}
"""The queue item events gap recovery can also find in the API, and the item ``Status`` each reports."""
ITEM_END_TYPES: Mapping[str, str] = {status: kind for kind, status in ITEM_END_STATES.items()}
"""The event type that reports a queue item ending in each ``Status``."""

_MAX_KEY = 100


def lookup(obj: Mapping[str, Any], name: str) -> Any:
    """``obj[name]``, or the first key equal ignoring case (Orchestrator is PascalCase; others are not)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def job_end_key(raw: Mapping[str, Any]) -> str | None:
    """``job:<JobKey>:<State>`` for a body that reports one job's end, else None.

    Args:
        raw: the decoded webhook body (keys in any casing).

    Returns:
        The key (the job key lower-cased, the state from the type), or None for other events,
        for a ``Jobs`` array of more than one job and for a job without a ``Key``.
    """
    kind = lookup(raw, "Type")
    state = END_STATES.get(kind) if isinstance(kind, str) else None
    if state is None:
        return None
    job = _single(raw, "Job", "Jobs")
    key = None if job is None else _key(job)
    return None if key is None else f"job:{key}:{state}"


def queue_item_end_key(raw: Mapping[str, Any]) -> str | None:
    """``queueitem:<Key>:<RetryNumber>:<Status>`` for a body that reports one queue item failing, else None.

    Args:
        raw: the decoded webhook body (keys in any casing); ``QueueItem``, or ``QueueItems`` of one item.

    Returns:
        The key (the item key lower-cased, the retry number, 0 when absent, the status from the
        type), or None for other events, several items, and an item without a ``Key``.
    """
    kind = lookup(raw, "Type")
    status = ITEM_END_STATES.get(kind) if isinstance(kind, str) else None
    if status is None:
        return None
    item = _single(raw, "QueueItem", "QueueItems")
    key = None if item is None else _key(item)
    if item is None or key is None:
        return None
    retry = lookup(item, "RetryNumber")
    number = retry if isinstance(retry, int) and not isinstance(retry, bool) and 0 <= retry < 10**6 else 0
    return f"queueitem:{key}:{number}:{status}"


def _single(raw: Mapping[str, Any], one: str, many: str) -> Mapping[str, Any] | None:
    """The object under ``one``, or the only one of the ``many`` array; None otherwise."""
    found = lookup(raw, one)
    if found is None:
        several = lookup(raw, many)
        found = several[0] if isinstance(several, list) and len(several) == 1 else several
    return found if isinstance(found, Mapping) else None


def _key(obj: Mapping[str, Any]) -> str | None:
    """Its ``Key``, stripped and lower-cased; None when absent, blank or over ``_MAX_KEY`` characters."""
    key = lookup(obj, "Key")
    if not isinstance(key, str) or not key.strip() or len(key) > _MAX_KEY:
        return None
    return key.strip().lower()


def end_key(raw: Mapping[str, Any]) -> str | None:
    """The inbox key of a job's end or a queue item's failure (:func:`job_end_key`, :func:`queue_item_end_key`)."""
    return job_end_key(raw) or queue_item_end_key(raw)
