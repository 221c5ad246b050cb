"""Synchronous code run on the event loop, its network waits awaited there: one greenlet per call.

apprise's plugins are synchronous: ``notify()`` builds a payload and calls ``requests.post``. Run
in a thread, each send costs thread wake-ups and GIL hand-offs worth several times the send's own
CPU (docs/performance.md, "Fast paths"). ``run()`` calls such code on the loop's thread instead,
in a greenlet of its own; where the code would wait on the network, ``await_only(awaitable)``
switches back to the coroutine that called ``run()``, which awaits it on the loop and switches back
in with the result, or throws its exception in where the code waited. The pattern is SQLAlchemy's
asyncio bridge (``greenlet_spawn``/``await_only``).

Each call runs in a copy of the caller's contextvars context (``gr_context``), so context variables
a call sets (apprise's per-call state, the notifier's per-send log capture) stay its own while
several calls interleave on one thread.

Cancelling ``run()`` ends the call: the cancellation is thrown in where it waits, its stack
unwinds (``finally`` blocks run; ``except Exception`` does not catch it), and ``run()`` raises it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, cast

import greenlet

__all__ = ["await_only", "in_call", "on_thread", "run"]

_T = TypeVar("_T")


class _Call(greenlet.greenlet):  # type: ignore[misc]  # greenlet ships no type information
    """A greenlet running one call for ``run()``; its parent is the coroutine driving it."""

    def __init__(self, fn: Callable[..., Any], driver: greenlet.greenlet, executor: Executor) -> None:
        super().__init__(fn, driver)
        self.executor = executor


async def run(fn: Callable[..., _T], *args: Any, executor: Executor) -> _T:
    """Call ``fn(*args)`` on this thread, awaiting on the loop what it passes to ``await_only()``.

    Args:
        fn: synchronous code; it must not block the thread other than through ``await_only()``
            or ``on_thread()``.
        args: its arguments.
        executor: where ``on_thread()`` runs what cannot be awaited.

    Returns:
        What ``fn`` returned; what it raised is raised here.
    """
    call = _Call(fn, greenlet.getcurrent(), executor)
    call.gr_context = contextvars.copy_context()
    step = call.switch(*args)
    while not call.dead:
        try:
            value = await step
        except Exception as exc:  # noqa: BLE001 - raised in the call, where it waited (a plugin catches requests' errors)
            step = call.throw(exc)
        except BaseException as exc:  # cancelled: the call ends here, its stack unwound
            _end(call, exc)
            raise
        else:
            step = call.switch(value)
    return cast("_T", step)


def _end(call: _Call, exc: BaseException) -> None:
    try:
        step = call.throw(exc)
    except BaseException:  # noqa: BLE001 - unwound by it (or by what it raised meanwhile): over
        return
    # It caught the cancellation and asked to wait again: not waited for, and ended for good.
    _discard(step)
    if not call.dead:
        _discard(call.throw(greenlet.GreenletExit))


def _discard(step: object) -> None:
    if inspect.iscoroutine(step):
        step.close()
    elif isinstance(step, asyncio.Future):
        step.cancel()


def in_call() -> bool:
    """Whether this code runs inside ``run()`` (on the loop's thread, where it must not block)."""
    return type(greenlet.getcurrent()) is _Call


def await_only(awaitable: Awaitable[_T]) -> _T:
    """Inside ``run()``: wait for ``awaitable`` on the event loop and return its result (or raise its error).

    Raises:
        RuntimeError: called outside ``run()``.
    """
    current = greenlet.getcurrent()
    if type(current) is not _Call:
        raise RuntimeError("await_only() is for code that bridge.run() called")
    return cast("_T", current.parent.switch(awaitable))


def on_thread(fn: Callable[[], _T]) -> _T:
    """Inside ``run()``: run blocking ``fn()`` on the call's executor (in a copy of this context) and wait for it.

    Raises:
        RuntimeError: called outside ``run()``.
    """
    current = greenlet.getcurrent()
    if type(current) is not _Call:
        raise RuntimeError("on_thread() is for code that bridge.run() called")
    loop = asyncio.get_running_loop()
    return await_only(loop.run_in_executor(current.executor, contextvars.copy_context().run, fn))
