"""One background task per configured source, kept in step with the rules (heartbeat, gap recovery)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

__all__ = ["run_per_source"]


async def run_per_source(
    configured: Callable[[], Collection[str]],
    start: Callable[[str], Coroutine[Any, Any, None]],
    *,
    label: str,
    on_removed: Callable[[str], None] | None = None,
    every: float = 5.0,
) -> None:
    """Keep ``start(name)`` running for every source ``configured()`` names, until cancelled.

    The names are read again every ``every`` seconds, so a rules reload starts and stops tasks;
    a task that ended is started again. Cancelled, it cancels every task and waits for them.

    Args:
        configured: the names of the sources that want a task now.
        start: the coroutine of one source's task.
        label: the tasks' name prefix (``label-source``).
        on_removed: called with a source's name when its task is stopped because it left the rules.
        every: seconds between two reads of ``configured``.
    """
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            wanted = configured()
            for name in list(tasks):
                if name not in wanted:
                    tasks.pop(name).cancel()
                    if on_removed is not None:
                        on_removed(name)
            for name in wanted:
                if name not in tasks or tasks[name].done():
                    tasks[name] = asyncio.create_task(start(name), name=f"{label}-{name}")
            await asyncio.sleep(every)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
