"""Noticing that rules.yaml changed on disk, for the hot reload (``RECEIVER_WATCH_RULES``).

The file is looked at every ``POLL_SECONDS``: one ``stat`` of the path, symlinks followed, gives
its device, inode, size and modification time in nanoseconds, and any difference is a change.
That sees an edit in place, an editor that writes a new file and renames it over the old one, and
a Kubernetes ConfigMap update (which swaps the ``..data`` symlink the path leads through).

Written here rather than with watchfiles, which this used before: its inotify watch had to be
on the directory (a watch on the file is lost when an editor replaces it), and by default that
directory also holds the SQLite database, written on every webhook, and the watcher's thread woke
for each of those writes (docs/performance.md, "Fast paths"). Its polling mode compares
modification times to the second and missed the second of two saves made within one second. A
``stat`` every half second costs nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["DEBOUNCE_SECONDS", "POLL_SECONDS", "Fingerprint", "fingerprint", "watch_rules"]

Fingerprint = tuple[int, int, int, int] | None
"""(device, inode, size, modification time in ns) of a file; None when it cannot be read."""

POLL_SECONDS = 0.5
"""How often the file is looked at."""

DEBOUNCE_SECONDS = 0.2
"""A changed file must stay unchanged this long before it is loaded (an editor may be mid-write)."""


def fingerprint(path: Path) -> Fingerprint:
    """What identifies the file ``path`` names now (symlinks followed), or None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


async def watch_rules(
    path: Path,
    reload: Callable[[str], Awaitable[object]],
    *,
    poll: float = POLL_SECONDS,
    debounce: float = DEBOUNCE_SECONDS,
) -> None:
    """Call ``reload("file_changed")`` each time the file ``path`` names changes, until cancelled.

    A file that disappears counts as a change too: the reload then keeps the running rules and
    says why, and the file's return reloads again.
    """
    seen = fingerprint(path)
    while True:
        await asyncio.sleep(poll)
        current = fingerprint(path)
        if current == seen:
            continue
        while True:  # until it stops changing
            await asyncio.sleep(debounce)
            settled = fingerprint(path)
            if settled == current:
                break
            current = settled
        seen = current
        await reload("file_changed")
