"""``receiver serve`` with every hand-off of work to a thread counted (bench/handoffs.py runs it).

A hand-off is one call of ``ThreadPoolExecutor.submit``: ``loop.run_in_executor``,
``asyncio.to_thread`` and the store's and apprise's pools all go through it. The count is kept per
pool (its thread name prefix) and written as JSON to ``$HANDOFF_COUNTS`` on SIGUSR1. The patch is
installed here, before the receiver starts, so the server's own code carries no counter.
Run: ``HANDOFF_COUNTS=FILE python bench/counted_serve.py serve ARGS...`` with the tree to measure
first on PYTHONPATH.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_counts: collections.Counter[str] = collections.Counter()


def _install() -> None:
    submit = ThreadPoolExecutor.submit

    def counted(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        _counts[getattr(self, "_thread_name_prefix", "") or "default"] += 1
        return submit(self, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = counted  # type: ignore[method-assign]
    out = Path(os.environ["HANDOFF_COUNTS"])

    def dump(*_: object) -> None:
        temporary = out.with_suffix(".tmp")
        temporary.write_text(json.dumps(dict(_counts)), encoding="utf-8")
        temporary.replace(out)

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    _install()
    from receiver.cli import main

    sys.exit(main(sys.argv[1:]))
