"""Shared fixtures: a clean structlog configuration per test, free ports, signed bodies.

Two guards keep the suite's claims true:

- A test outside tests/system that starts a process fails (tests/system marks its tests ``slow``,
  so ``pytest -m "not slow"`` runs no real process).
- structlog's lines of a test go to a buffer of that test, shown with its report when it fails:
  structlog's default logger writes to the ``sys.stdout`` of import time, pytest's global capture,
  which a thread of the app (the TestClient's loop) wrote to the terminal between two test phases.

``pytest -m "not slow"`` (the unit tests) runs on pytest-xdist workers, two per CPU up to 4 more than
the CPUs, unless ``-n`` is given (``-n 0``: in this process); the whole suite, with its real
processes, runs in one process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy as _LAZY_PROXY
from support import ENABLE_POSTGRES, Endpoint, self_signed_certificate, with_params

from receiver.store import Store, open_store

# Compiled test modules (their asserts rewritten) and receiver modules are cached in __pycache__ even
# where PYTHONDONTWRITEBYTECODE is set: without the cache, each xdist worker compiled ~350 modules
# again on every run (collection 6 s instead of 2.6 s per worker).
sys.dont_write_bytecode = False

SYSTEM = Path(__file__).parent / "system"

# Tools a unit test may run, not a process under test: openssl makes a TLS certificate for a
# fixture; lint-imports reads the source tree (in-process it leaves state that changes later tests).
ALLOWED_PROGRAMS = frozenset({"openssl", "lint-imports"})


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The unit tests alone spread over the CPUs: most of their time is waiting on sockets and the database."""
    if (
        config.option.markexpr == "not slow"
        and config.pluginmanager.has_plugin("xdist")
        and getattr(config.option, "numprocesses", 0) is None
        and not hasattr(config, "workerinput")
    ):
        config.option.numprocesses = _workers()


def _workers() -> int | str:
    """More workers than CPUs (up to 4 more), since a worker mostly waits.

    On 2 CPUs: 2 workers took 63 s, 3 took 51 s, 4 took 42 s, 5 took 46 s (each worker imports
    and collects the suite again). ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still sets the number.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return "auto"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus + min(cpus, 4)


class _Lines:
    """A file-like sink for one test's structlog lines; the thread that writes does not matter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def take(self) -> str:
        with self._lock:
            text, self._parts = "".join(self._parts), []
        return text


_LINES = pytest.StashKey[_Lines]()


@pytest.fixture(autouse=True)
def _reset_structlog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from structlog's defaults (writing to its own buffer), whatever an earlier test configured."""
    lines = request.node.stash[_LINES] = _Lines()
    _defaults(lines, request.config)
    yield
    # Threads the test left behind (a module-wide app's loop) keep writing here, not to the terminal.
    _defaults(lines, request.config)


def _defaults(lines: _Lines, config: pytest.Config) -> None:
    """structlog's default configuration, writing to ``lines`` unless pytest captures nothing (``-s``)."""
    structlog.reset_defaults()
    if config.getoption("capture") != "no":
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(lines))
    _uncache_module_loggers()


# (len(sys.modules) when listed, the receiver modules with a module-level structlog logger)
_logging_modules: tuple[int, list[Any]] = (0, [])


def _uncache_module_loggers() -> None:
    # A CLI command run in-process configures cache_logger_on_first_use: the module-level loggers it
    # touched keep writing to the real stdout, past any later configuration. Give them fresh proxies.
    global _logging_modules
    # Twice per test: the modules are listed again only when one was imported since.
    if _logging_modules[0] != len(sys.modules):
        _logging_modules = (
            len(sys.modules),
            [
                module
                for name, module in list(sys.modules.items())
                if name.startswith("receiver") and isinstance(getattr(module, "log", None), _LAZY_PROXY)
            ],
        )
    for module in _logging_modules[1]:
        module.log = structlog.get_logger()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the structlog lines of this phase to its report (pytest shows them when the test fails)."""
    lines = item.stash.get(_LINES, None)
    if lines is not None:
        text = lines.take()
        if text:
            item.add_report_section(call.when, "structlog", text)
    return (yield)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m "not slow"``, tests/system is not even imported (its imports alone take seconds)."""
    if collection_path == SYSTEM and config.option.markexpr.replace(" ", "") == "notslow":
        return True
    return None


def _starts_processes(item: pytest.Item) -> bool:
    return SYSTEM in item.path.parents


@contextlib.contextmanager
def _no_processes(item: pytest.Item) -> Iterator[None]:
    """While a unit test (and its fixtures) runs, starting a process fails: such a test belongs in tests/system."""
    if _starts_processes(item):
        yield
        return
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
        program = args if isinstance(args, (str, bytes)) else args[0]
        if Path(os.fsdecode(program).split()[0]).name in ALLOWED_PROGRAMS:
            return original(self, args, *rest, **kwargs)
        raise AssertionError(
            f"{item.nodeid} started a process ({args!r}): tests that start processes belong in tests/system"
        )

    subprocess.Popen._execute_child = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    with _no_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with _no_processes(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Any:
    with _no_processes(item):
        return (yield)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url() -> str:
    """The PostgreSQL server of the ``postgres`` tests: skipped without one, except in CI, where that fails."""
    url = os.environ.get("RECEIVER_TEST_DATABASE_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must run the PostgreSQL store tests, but RECEIVER_TEST_DATABASE_URL is not set: {ENABLE_POSTGRES}"
            )
        pytest.skip(f"PostgreSQL tests are off; to run them: {ENABLE_POSTGRES}")
    return url


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A schema name no other test or test run uses; the schema is dropped, with its tables, afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"receiver_test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name)))


@pytest.fixture
def pg_url(database_url: str, pg_schema: str) -> str:
    """The test database URL pointed at this test's own schema."""
    return with_params(database_url, schema=pg_schema)


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that asks runs on SQLite, and on PostgreSQL (its own schema) when RECEIVER_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'receiver.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store at ``store_url``, closed afterwards."""
    instance = open_store(store_url)
    await instance.open()
    yield instance
    await instance.close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A keep-alive HTTP/1.1 endpoint on loopback (``support.Endpoint``), shut down afterwards."""
    found = Endpoint()
    server = found.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key for 127.0.0.1 (``support.self_signed_certificate``), one per run."""
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("needs the openssl CLI (or cryptography) for a self-signed certificate")
    return made
