"""The rules file watcher: edits, replacements and ConfigMap symlink swaps reload; other files do not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from receiver.pipeline.rulewatch import watch_rules

rulewatch = sys.modules[watch_rules.__module__]  # its fingerprint is wrapped to count the polls

pytestmark = pytest.mark.anyio

POLL = 0.02  # short: the tests count polls, and each settling wait is SETTLE polls long
SETTLE = 10  # polls of the watcher that must pass without a reload


class Reloads(list[str]):
    """The reasons of the reloads the watcher asked for, and how often it has looked at the file."""

    looks = 0

    async def polls(self, count: int) -> None:
        """Wait until the watcher has looked at the file ``count`` more times (counted, not timed)."""
        target = self.looks + count
        assert await eventually(lambda: self.looks >= target), f"the watcher looked {self.looks} times"


@asynccontextmanager
async def watching(path: Path, *, debounce: float = POLL) -> AsyncIterator[Reloads]:
    """Run the watcher on ``path``; yields the reasons of the reloads it asked for."""
    reloads = Reloads()

    async def reload(reason: str) -> None:
        reloads.append(reason)

    def counted(watched: Path) -> tuple[int, int, int, int] | None:
        reloads.looks += 1
        return original(watched)

    original = rulewatch.fingerprint
    rulewatch.fingerprint = counted
    task = asyncio.create_task(watch_rules(path, reload, poll=POLL, debounce=debounce))
    await reloads.polls(1)  # it has seen the file as it is
    try:
        yield reloads
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rulewatch.fingerprint = original


async def eventually(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within 30 seconds."""
    for _ in range(3000):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def test_each_edit_in_place_reloads_once(tmp_path: Path) -> None:
    """Two saves within one second are two changes (a watcher comparing whole seconds misses the second)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    async with watching(rules) as reloads:
        rules.write_text("rules: []\n# edited\n")
        assert await eventually(lambda: len(reloads) == 1)
        rules.write_text("rules: []\n# edited again\n")
        assert await eventually(lambda: len(reloads) == 2)
        await reloads.polls(SETTLE)
    assert reloads == ["file_changed", "file_changed"]


async def test_a_file_being_written_is_loaded_once_it_is_whole(tmp_path: Path) -> None:
    """An editor that writes in pieces: one reload, after the last piece."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    async with watching(rules, debounce=0.5) as reloads:
        with rules.open("w") as f:
            for n in range(10):  # a piece every 20 ms, well under the settling time of 0.5 s
                f.write(f"# piece {n}\n")
                f.flush()
                await asyncio.sleep(0.02)
        assert await eventually(lambda: len(reloads) >= 1)
        await reloads.polls(SETTLE)
    assert reloads == ["file_changed"]


async def test_an_editor_replacing_the_file_reloads(tmp_path: Path) -> None:
    """Editors write a new file and rename it over the old one."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    async with watching(rules) as reloads:
        new = tmp_path / ".rules.yaml.tmp"
        new.write_text("rules: []\n")  # same size and content: another inode all the same
        os.replace(new, rules)
        assert await eventually(lambda: reloads == ["file_changed"])


async def test_a_configmap_update_reloads(tmp_path: Path) -> None:
    """Kubernetes mounts rules.yaml -> ..data/rules.yaml, ..data -> a dated directory, and swaps ..data."""
    for version in ("v1", "v2"):
        (tmp_path / f"..{version}").mkdir()
        (tmp_path / f"..{version}" / "rules.yaml").write_text(f"# {version}\nrules: []\n")
    (tmp_path / "..data").symlink_to("..v1")
    rules = tmp_path / "rules.yaml"
    rules.symlink_to("..data/rules.yaml")
    async with watching(rules) as reloads:
        swap = tmp_path / "..data_tmp"
        swap.symlink_to("..v2")
        os.replace(swap, tmp_path / "..data")  # atomic, as the kubelet does
        assert await eventually(lambda: reloads == ["file_changed"])
    assert rules.read_text().startswith("# v2")


async def test_writes_to_other_files_in_the_directory_do_not_reload(tmp_path: Path) -> None:
    """The database and its WAL usually sit beside rules.yaml and change all the time."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    async with watching(rules) as reloads:
        with (tmp_path / "receiver.db-wal").open("ab") as wal:
            for _ in range(20):  # bounded: 20 polls of writes
                wal.write(b"x" * 4096)
                wal.flush()
                await asyncio.sleep(POLL)
        await reloads.polls(SETTLE)
    assert reloads == []


async def test_a_deleted_file_is_reported_once_and_its_return_again(tmp_path: Path) -> None:
    """The reload of a missing file fails and keeps the running rules; the file's return reloads them."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    async with watching(rules) as reloads:
        rules.unlink()
        assert await eventually(lambda: len(reloads) == 1)
        await reloads.polls(10)  # still missing: no second report
        assert ["file_changed"] == reloads
        rules.write_text("rules: []\n")
        assert await eventually(lambda: len(reloads) == 2)
        await reloads.polls(SETTLE)
    assert reloads == ["file_changed", "file_changed"]
