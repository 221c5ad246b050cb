"""The ``receiver`` command line: serve, check, init, schema, test, sign, send-test, and the admin commands.

Each command is a small function returning an exit code; ``main`` parses the arguments and
calls it. Commands that read rules share the loader the server uses, so ``check`` says exactly
what ``serve`` would refuse.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from receiver import __version__
from receiver.errors import ConfigError, RulesError, StoreError
from receiver.settings import Settings, load_settings
from receiver.timefmt import utc_text

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after the program name (``sys.argv[1:]`` when None).

    Returns:
        The process exit code: 0 success, 1 a failure the command reports, 2 a usage error.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
    except BrokenPipeError:
        # The reader left (`receiver test ... | head`): nothing more can be shown, and the
        # interpreter's last flush must not fail on the closed pipe either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except RulesError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (ConfigError, StoreError) as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="receiver", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"receiver {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--rules", help="rules file (default ./rules.yaml, env RECEIVER_RULES)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, env RECEIVER_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, env RECEIVER_PORT)")
    serve.add_argument("--database", help="database URL (default sqlite:///./receiver.db, env RECEIVER_DATABASE_URL)")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check", help="validate a rules file")
    check.add_argument("path", nargs="?", help="rules file (default ./rules.yaml, env RECEIVER_RULES)")
    check.add_argument(
        "--offline", action="store_true", help="do not ask Orchestrator which event types the webhooks subscribe to"
    )
    check.set_defaults(handler=_check)

    test = commands.add_parser("test", help="dry-run rules against an event; sends nothing")
    test.add_argument("path", help="rules file")
    test.add_argument("event", nargs="?", help="event JSON file (a webhook body or robot log entries)")
    test.add_argument("--json", action="store_true", help="machine-readable output (see docs/rules.md)")
    test.add_argument("--suite", help="YAML routing suite to run instead of a single event")
    test.add_argument("--source", default="uipath", help="source the event arrives on (default uipath)")
    test.add_argument(
        "--at", help="when the event arrives, ISO 8601 (maintenance windows are checked then; default its Timestamp)"
    )
    test.set_defaults(handler=_test)

    sign = commands.add_parser("sign", help="print the X-UiPath-Signature of a body")
    sign.add_argument("--secret", help="webhook secret (default env RECEIVER_WEBHOOK_SECRET)")
    sign.add_argument("file", help="body file, exactly as it will be sent ('-' for stdin)")
    sign.set_defaults(handler=_sign)

    send_test = commands.add_parser("send-test", help="send one test notification through a channel")
    send_test.add_argument("channel", help="channel name from rules.yaml")
    send_test.add_argument("--rules", help="rules file (default ./rules.yaml, env RECEIVER_RULES)")
    send_test.set_defaults(handler=_send_test)

    deliveries = commands.add_parser("deliveries", help="show and re-drive deliveries")
    deliveries.add_argument("--database", help="database URL (default env RECEIVER_DATABASE_URL)")
    actions = deliveries.add_subparsers(dest="action")
    listing = actions.add_parser("list", help="list deliveries (default: failing and dead)")
    listing.add_argument(
        "--state",
        choices=["pending", "failing", "sent", "dead", "all"],
        help="only this state (failing: pending after a failed attempt)",
    )
    listing.add_argument("--limit", type=int, default=50)
    retry = actions.add_parser("retry", help="send a dead or failing delivery again")
    retry.add_argument("id", nargs="?", type=_row_id, help="delivery id")
    retry.add_argument("--dead", action="store_true", help="retry every dead-lettered delivery")
    _database_after(listing, retry)
    deliveries.set_defaults(handler=_deliveries, action=None)

    silence = commands.add_parser("silence", help="mute notifications for a while (ad-hoc silences)")
    silence.add_argument("--database", help="database URL (default env RECEIVER_DATABASE_URL)")
    silence_actions = silence.add_subparsers(dest="action")
    add = silence_actions.add_parser("add", help="create a silence: receiver silence add process=Invoice* --for 2h ...")
    add.add_argument(
        "matchers", nargs="+", help="FIELD=VALUE, FIELD!=VALUE, FIELD=~REGEX, FIELD!~REGEX (rule=NAME too)"
    )
    add.add_argument("--for", dest="duration", help="how long, e.g. 30m, 2h, 1d")
    add.add_argument("--until", help="or until when, ISO 8601 (UTC unless an offset is given)")
    add.add_argument("--starts", help="when it starts, ISO 8601 (default now)")
    add.add_argument("--comment", required=True, help="why (shown with every notification it mutes)")
    add.add_argument("--by", help="who (default: the current user)")
    silence_list = silence_actions.add_parser("list", help="list silences that have not ended")
    silence_list.add_argument("--all", action="store_true", help="expired ones too")
    silence_list.add_argument("--json", action="store_true", help="print JSON")
    expire = silence_actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id", type=_row_id, help="silence id")
    _database_after(add, silence_list, expire)
    silence.set_defaults(handler=_silence, action=None)

    alerts = commands.add_parser("alerts", help="open alerts and their lifecycle (docs/alerts.md)")
    alerts.add_argument("--database", help="database URL (default env RECEIVER_DATABASE_URL)")
    alert_actions = alerts.add_subparsers(dest="action")
    alert_list = alert_actions.add_parser("list", help="alerts, open ones first (default: open only)")
    alert_list.add_argument("--all", action="store_true", help="resolved ones too")
    alert_list.add_argument("--json", action="store_true", help="print JSON")
    alert_list.add_argument("--limit", type=int, default=100)
    for name, what in (("ack", "acknowledge a firing alert (its reminders stop)"), ("resolve", "resolve an alert")):
        one = alert_actions.add_parser(name, help=what)
        one.add_argument("id", help="alert id")
        one.add_argument("--by", help="who (default: the current user)")
    _database_after(*alert_actions.choices.values())
    alerts.set_defaults(handler=_alerts, action=None, all=False, json=False, limit=100)  # bare `alerts` = `list`

    prune = commands.add_parser("prune", help="apply the retention settings now (RECEIVER_RETAIN_*)")
    prune.add_argument("--database", help="database URL (default env RECEIVER_DATABASE_URL)")
    prune.add_argument("--dry-run", action="store_true", help="show what would go, per table; delete nothing")
    prune.set_defaults(handler=_prune)

    orchestrator = commands.add_parser(
        "orchestrator", help="the connection back to Orchestrator (docs/orchestrator.md)"
    )
    orchestrator_actions = orchestrator.add_subparsers(dest="action")
    status = orchestrator_actions.add_parser("status", help="token, scopes granted and webhooks seen, per source")
    sync = orchestrator_actions.add_parser("sync", help="create or update each source's webhook as the rules need")
    sync.add_argument("--dry-run", action="store_true", help="print the difference; change nothing")
    reconcile = orchestrator_actions.add_parser(
        "reconcile", help="recover from the API the job ends the webhook did not bring (gap recovery)"
    )
    reconcile.add_argument("--since", default="24h", help="how far back, e.g. 2h, 1d (default 24h)")
    reconcile.add_argument("--dry-run", action="store_true", help="print what was found; store nothing")
    reconcile.add_argument("--database", help="database URL (default env RECEIVER_DATABASE_URL)")
    for sub in (status, sync, reconcile):
        sub.add_argument("source", nargs="?", help="one source (default: every source with an orchestrator: block)")
        sub.add_argument("--rules", help="rules file (default ./rules.yaml, env RECEIVER_RULES)")
    orchestrator.set_defaults(handler=_orchestrator, action=None)

    init = commands.add_parser("init", help="write a starter rules.yaml for the channels named")
    init.add_argument("path", nargs="?", default="rules.yaml", help="where to write it (default ./rules.yaml)")
    for kind in ("slack", "teams", "email"):
        init.add_argument(f"--{kind}", action="store_true", help=f"a {kind} channel (its ${{VAR}} placeholders)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=_init)

    schema = commands.add_parser("schema", help="print the JSON Schema of rules.yaml (for editors; docs/rules.md)")
    schema.set_defaults(handler=_schema)
    return parser


def _row_id(text: str) -> int:
    """A delivery's or silence's id: what a row of either store can have (a signed 64-bit integer)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a row id (a whole number from 0 to 2**63-1)")
    return value


def _database_after(*actions: argparse.ArgumentParser) -> None:
    """``--database`` after the action too (``receiver alerts list --database URL``), as before it."""
    for action in actions:
        # SUPPRESS: not given after the action leaves the value given before it (or None).
        action.add_argument(
            "--database", default=argparse.SUPPRESS, help="database URL (default env RECEIVER_DATABASE_URL)"
        )


def _init(args: argparse.Namespace) -> int:
    from receiver.rules import starter_rules

    starter = starter_rules([kind for kind in ("slack", "teams", "email") if getattr(args, kind)])
    try:
        # "x" refuses an existing file atomically; --force replaces it.
        with open(args.path, "w" if args.force else "x", encoding="utf-8") as out:
            out.write(starter.text)
    except FileExistsError:
        print(f"receiver: {args.path!r} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"receiver: cannot write {args.path!r}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"Wrote {args.path}. Next:")
    variables = " ".join(f"{name}=..." for name in ("RECEIVER_WEBHOOK_SECRET", *starter.variables))
    print(f"  1. Set the environment variables it reads: {variables}")
    print(f"  2. Check it: receiver check {args.path}")
    print(f"  3. Run: receiver serve --rules {args.path} --host 0.0.0.0 (behind HTTPS that Orchestrator can reach)")
    print("  4. In Orchestrator: Tenant > Webhooks > Add webhook. URL: https://YOUR-HOST/webhooks/uipath;")
    print("     Secret: the value of RECEIVER_WEBHOOK_SECRET; events: job.faulted, job.stopped,")
    print("     queueItem.transactionFailed (or all events); Enabled.")
    print("     Or let receiver create it: give the source an `orchestrator:` block (docs/orchestrator.md)")
    print("     and run: receiver orchestrator sync")
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from receiver.rules import rules_json_schema

    print(json.dumps(rules_json_schema(), indent=2))
    return 0


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.delivery.notifier import check_url
    from receiver.http.app import create_app, tune_collector
    from receiver.http.protocol import BoundedHttpToolsProtocol
    from receiver.logconfig import configure_logging
    from receiver.rules import load_rules

    settings = _settings(rules=args.rules, host=args.host, port=args.port, database_url=args.database)
    configure_logging(settings)
    # Load and check everything before binding the port, so a bad start fails loudly and early.
    ruleset = load_rules(settings.rules, environ=dict(os.environ), check_url=check_url)
    from receiver.http.runtime import resolve_sources

    resolve_sources(ruleset, settings)
    from receiver.store import open_store

    # A store that cannot be used is refused here in one line, not by a traceback of the app's start-up
    # (uvicorn's exit 3): an unusable URL, a path that cannot be created, PostgreSQL down or refusing us.
    asyncio.run(_open_and_close(open_store(settings.database_url)))
    app = create_app(settings, ruleset=ruleset)
    tune_collector()  # last before serving: what is loaded by now lives as long as the process
    served: Any = app
    if settings.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        from receiver.http.peer import PeerRecorder

        served = PeerRecorder(ProxyHeadersMiddleware(served, trusted_hosts=settings.trusted_proxies))
    uvicorn.run(
        served,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # Set deliberately, not left to uvicorn's defaults: an idle keep-alive connection is closed
        # after keepalive_seconds, and past max_concurrency new requests get a 503 (Orchestrator
        # retries) instead of piling up. Slow bodies are bounded by the edge (body_timeout_seconds).
        timeout_keep_alive=max(1, round(settings.keepalive_seconds)),
        # uvicorn counts the new connection itself against the limit: + 1 serves max_concurrency at once.
        limit_concurrency=settings.max_concurrency + 1,
        # A request head over 64 KiB gets 431, one not finished within body_timeout_seconds 408, and a
        # connection silent for keepalive_seconds is closed (receiver/http/protocol.py).
        http=BoundedHttpToolsProtocol.with_head_timeout(settings.body_timeout_seconds),
        # X-Forwarded-For/-Proto only from the proxies named in RECEIVER_TRUSTED_PROXIES (none by
        # default): the client address counts failed logins, the scheme makes the cookie Secure.
        # Applied here rather than by uvicorn, inside PeerRecorder, so that the connection's own peer
        # stays known (the trusted user header of the action links: receiver/http/peer.py).
        proxy_headers=False,
    )
    return 0


async def _open_and_close(store: Any) -> None:
    await store.open()
    await store.close()


def _check(args: argparse.Namespace) -> int:
    from receiver.admin.dryrun import check_command
    from receiver.delivery.notifier import check_url

    path = args.path or str(_settings().rules)
    status = check_command(path, environ=dict(os.environ), check_url=check_url, out=sys.stdout)
    if status != 0 or args.offline:
        return status
    from receiver.rules import load_rules

    ruleset = load_rules(path, environ=dict(os.environ), check_url=check_url)
    if any(s.orchestrator is not None for s in ruleset.sources.values()):
        from receiver.admin.orchestration import subscription_warnings
        from receiver.orchestrator import OrchestratorClient

        asyncio.run(subscription_warnings(ruleset, connect=OrchestratorClient, out=sys.stdout))
    return status


def _test(args: argparse.Namespace) -> int:
    from receiver.admin.dryrun import test_command
    from receiver.delivery.notifier import check_url, mask_url

    if args.event is None and args.suite is None:
        print("receiver test: give an EVENT.json or --suite FILE", file=sys.stderr)
        return 2
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Event text may hold a lone surrogate (JSON's "\\ud83d": a text cut inside a UTF-16 pair),
        # which UTF-8 cannot encode: written as that escape, which is also what JSON output needs.
        sys.stdout.reconfigure(errors="backslashreplace")
    return test_command(
        args.path,
        args.event,
        as_json=args.json,
        suite=args.suite,
        environ=dict(os.environ),
        check_url=check_url,
        mask_url=mask_url,
        source=args.source,
        at=_when(args.at),
        out=sys.stdout,
    )


def _sign(args: argparse.Namespace) -> int:
    from receiver.signature import sign

    secret = args.secret or os.environ.get("RECEIVER_WEBHOOK_SECRET")
    if not secret or not secret.strip():  # blank is unset, as for the server
        print("receiver sign: give --secret or set RECEIVER_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"receiver sign: cannot read {args.file!r}: {exc.strerror}", file=sys.stderr)
        return 1
    print(sign(body, secret))
    return 0


def _send_test(args: argparse.Namespace) -> int:
    from receiver.delivery import keepalive, onloop
    from receiver.delivery.notifier import AppriseNotifier, check_url, mask_url, send_test
    from receiver.rules import load_rules

    settings = _settings(rules=args.rules)
    ruleset = load_rules(settings.rules, environ=dict(os.environ), check_url=check_url)
    channel = ruleset.channels.get(args.channel)
    if channel is None:
        known = ", ".join(sorted(ruleset.channels)) or "none"
        print(
            f"receiver send-test: no channel {args.channel!r} in {settings.rules} (channels: {known})", file=sys.stderr
        )
        return 1
    url = channel.url_value()
    keepalive.install()  # as in the server: the test goes out the way alerts do
    onloop.install()
    result = asyncio.run(send_test(url, AppriseNotifier()))
    target = mask_url(url)
    if result.ok:
        print(f"sent to {args.channel} ({target}) in {result.elapsed:.2f}s")
        return 0
    print(f"FAILED to send to {args.channel} ({target}): {result.status}: {result.reason or 'no reason given'}")
    return 1


def _when(value: str | None) -> float | None:
    from receiver.admin.silencing import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ConfigError(f"--at: {exc}") from exc


def _silence(args: argparse.Namespace) -> int:
    from receiver.store import open_store

    if args.action is None:
        print("receiver silence: give add, list or expire", file=sys.stderr)
        return 2
    settings = _settings(database_url=args.database)
    store = open_store(settings.database_url)

    async def run() -> int:
        await store.open()
        try:
            if args.action == "add":
                return await _silence_add(store, args)
            if args.action == "expire":
                return await _silence_expire(store, args)
            return await _silence_list(store, args)
        finally:
            await store.close()

    return asyncio.run(run())


async def _silence_add(store: Any, args: argparse.Namespace) -> int:
    import getpass

    from receiver.admin.silencing import SilenceError, build_silence

    now = time.time()
    try:
        new = build_silence(
            args.matchers,
            comment=args.comment,
            created_by=args.by or getpass.getuser(),
            now=now,
            duration=args.duration,
            starts_at=args.starts,
            ends_at=args.until,
        )
    except SilenceError as exc:
        for problem in exc.problems:
            print(f"receiver silence add: {problem}", file=sys.stderr)
        return 1
    row = await store.add_silence(new, now=now)
    print(f"silence {row.id} added: {' '.join(row.matchers)} until {utc_text(row.ends_at)}")
    return 0


async def _silence_expire(store: Any, args: argparse.Namespace) -> int:
    row = await store.expire_silence(args.id, now=time.time())
    if row is None:
        print(f"no silence {args.id}", file=sys.stderr)
        return 1
    print(f"silence {row.id} expired ({utc_text(row.ends_at)})")
    return 0


async def _silence_list(store: Any, args: argparse.Namespace) -> int:
    import json

    from receiver.admin.silencing import silence_json, silence_state

    now = time.time()
    rows = await store.list_silences(active_at=None if args.all else now, limit=1000)
    if args.json:
        print(json.dumps({"silences": [silence_json(r, now) for r in rows]}, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no silences")
        return 0
    print(f"{'ID':>5}  {'STATE':<8} {'ENDS (UTC)':<20} {'BY':<12} {'MATCHERS':<40} COMMENT")
    for r in rows:
        state, ends, by, matchers = silence_state(r, now), utc_text(r.ends_at), r.created_by, " ".join(r.matchers)
        print(f"{r.id:>5}  {state:<8} {ends:<20} {by:<12.12} {matchers:<40} {r.comment}")
    return 0


def _alerts(args: argparse.Namespace) -> int:
    from receiver.store import open_store

    settings = _settings(database_url=args.database)
    store = open_store(settings.database_url)

    async def run() -> int:
        await store.open()
        try:
            if args.action in ("ack", "resolve"):
                return await _alert_change(store, args)
            return await _alert_list(store, args)
        finally:
            await store.close()

    return asyncio.run(run())


async def _alert_change(store: Any, args: argparse.Namespace) -> int:
    import getpass

    from receiver.admin import alerting
    from receiver.admin.dryrun import printable

    action = alerting.acknowledge if args.action == "ack" else alerting.resolve
    done = None
    if alerting.valid_id(args.id):
        done = await action(store, args.id, actor=args.by or getpass.getuser(), via="cli", now=time.time())
    if done is None:
        current = await store.get_alert(args.id) if alerting.valid_id(args.id) else None
        state = "no such alert" if current is None else f"it is {current.state}"
        print(f"receiver alerts {args.action}: alert {args.id}: nothing to do ({state})", file=sys.stderr)
        return 1
    print(f"alert {done.id} {done.state}: {printable(done.title)}")
    return 0


async def _alert_list(store: Any, args: argparse.Namespace) -> int:
    import json

    from receiver.admin.alerting import alert_json
    from receiver.admin.dryrun import printable

    rows = await store.list_alerts(limit=max(1, min(args.limit, 1000)), open_only=not args.all)
    if args.json:
        print(json.dumps({"alerts": [alert_json(a) for a in rows]}, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no open alerts" if not args.all else "no alerts")
        return 0
    print(f"{'ID':<16}  {'STATE':<12} {'SINCE (UTC)':<20} {'COUNT':>5}  {'RULE':<20} TITLE")
    for a in rows:
        title = printable(a.title)  # event text: escapes shown, never obeyed by the terminal
        print(f"{a.id:<16}  {a.state:<12} {utc_text(a.opened_at):<20} {a.count:>5}  {a.rule:<20.20} {title}")
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from receiver.store import open_store

    settings = _settings(database_url=args.database)
    store = open_store(settings.database_url)

    async def run() -> int:
        await store.open()
        try:
            if args.action == "retry":
                return await _retry(store, args)
            return await _list(store, args)
        finally:
            await store.close()

    return asyncio.run(run())


async def _retry(store: Any, args: argparse.Namespace) -> int:
    now = time.time()
    if args.dead:
        count = await store.retry_dead(now=now)
        print(f"{count} dead deliveries queued for retry")
        return 0
    if args.id is None:
        print("receiver deliveries retry: give a delivery ID or --dead", file=sys.stderr)
        return 2
    if await store.retry_delivery(args.id, now=now):
        print(f"delivery {args.id} queued for retry")
        return 0
    print(f"no unsent delivery {args.id}", file=sys.stderr)
    return 1


async def _list(store: Any, args: argparse.Namespace) -> int:
    from receiver.admin.dryrun import printable

    state = getattr(args, "state", None)
    limit = getattr(args, "limit", 50)
    if state is None:
        rows = [r for r in await store.list_deliveries(limit=limit * 4) if r.state == "dead" or r.attempts > 0]
        rows = [r for r in rows if r.state != "sent"][:limit]
    elif state == "failing":
        rows = await store.list_deliveries(failing=True, limit=limit)
    else:
        rows = await store.list_deliveries(state=None if state == "all" else state, limit=limit)
    if not rows:
        print("no deliveries")
        return 0
    print(f"{'ID':>6}  {'STATE':<8} {'TRIES':>5}  {'CHANNEL':<16} {'RULE':<20} {'CREATED (UTC)':<20} LAST ERROR")
    for r in rows:
        created = utc_text(r.created_at)
        error = printable((r.last_error or "").replace("\n", " ")[:80])  # an endpoint's answer: untrusted
        print(f"{r.id:>6}  {r.state:<8} {r.attempts:>5}  {r.channel:<16.16} {r.rule:<20.20} {created:<20} {error}")
    return 0


def _orchestrator(args: argparse.Namespace) -> int:
    from receiver.admin.orchestration import status_command, sync_command
    from receiver.delivery.notifier import check_url
    from receiver.logconfig import configure_logging
    from receiver.orchestrator import OrchestratorClient
    from receiver.rules import load_rules

    if args.action is None:
        print("receiver orchestrator: give status, sync or reconcile", file=sys.stderr)
        return 2
    if args.action == "reconcile":
        return _reconcile(args)
    settings = _settings(rules=args.rules)
    configure_logging(settings)  # retries and the circuit are logged to stderr, the report goes to stdout
    ruleset = load_rules(settings.rules, environ=dict(os.environ), check_url=check_url)
    if args.action == "status":
        run = status_command(ruleset, args.source, connect=OrchestratorClient, out=sys.stdout, err=sys.stderr)
    else:
        env_secret = settings.webhook_secret.get_secret_value().strip() if settings.webhook_secret else ""
        # The secret the server verifies with first: for `uipath`, RECEIVER_WEBHOOK_SECRET comes before the file's.
        firsts = {
            name: (env_secret if name == "uipath" and env_secret else None) or next(iter(s.secret_values()), None)
            for name, s in ruleset.sources.items()
        }
        run = sync_command(
            ruleset,
            args.source,
            secrets=firsts,
            dry_run=args.dry_run,
            connect=OrchestratorClient,
            out=sys.stdout,
            err=sys.stderr,
        )
    return asyncio.run(run)


def _reconcile(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from receiver.admin.orchestration import reconcile_command
    from receiver.delivery.notifier import check_url
    from receiver.logconfig import configure_logging
    from receiver.orchestrator import OrchestratorClient
    from receiver.rules import load_rules, parse_duration
    from receiver.store import open_store

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"receiver orchestrator reconcile: --since: {exc}", file=sys.stderr)
        return 2
    settings = _settings(rules=args.rules, database_url=args.database)
    configure_logging(settings)
    ruleset = load_rules(settings.rules, environ=dict(os.environ), check_url=check_url)
    store = None if args.dry_run else open_store(settings.database_url)

    async def run() -> int:
        if store is not None:
            await store.open()
        try:
            return await reconcile_command(
                ruleset,
                args.source,
                since=since,
                store=store,
                connect=OrchestratorClient,
                out=sys.stdout,
                err=sys.stderr,
                now=datetime.now(UTC),
            )
        finally:
            if store is not None:
                await store.close()

    return asyncio.run(run())


def _prune(args: argparse.Namespace) -> int:
    from receiver.admin.retention import DEDUP_MARGIN, PRUNED_TABLES, Retention, prune
    from receiver.store import open_store

    settings = _settings(database_url=args.database)
    retention = Retention(
        events_days=settings.retain_events_days,
        dead_days=settings.retain_dead_days,
        noise_log_days=settings.retain_noise_log_days,
        max_event_age=settings.max_event_age_seconds,
    )
    store = open_store(settings.database_url)

    async def run() -> dict[str, int]:
        await store.open()
        try:
            return await prune(
                store, retention, now=time.time(), dry_run=args.dry_run, pause=settings.prune_pause_seconds
            )
        finally:
            await store.close()

    counts = asyncio.run(run())
    kept = ", ".join(
        f"{name} {days:g} d" if days > 0 else f"{name} for ever"
        for name, days in (
            ("events", retention.events_days),
            ("dead deliveries", retention.dead_days),
            ("noise log", retention.noise_log_days),
        )
    )
    window = retention.max_event_age + DEDUP_MARGIN
    print(f"retention: {kept}; every EventId kept at least {window:g} s (the replay window and a margin)")
    verb = "would delete" if args.dry_run else "deleted"
    for table in PRUNED_TABLES:
        print(f"{table:<12} {counts[table]:>10} {verb}")
    return 0
