"""``receiver orchestrator status``, ``sync`` and ``reconcile``: each source's connection, webhook and gaps.

Exit codes (docs/orchestrator.md): ``status`` 0 when every source shown got a token, read its
webhooks and has an enabled webhook at its ``public_url``, else 1; ``sync`` 0 when every source
is (or, with ``--dry-run``, would be) as the rules need, 1 when a call failed; ``reconcile`` 0
when every folder of every source was read, 1 when a call failed or the run was cut short; all
2 for a usage error (an unknown source, or no source with an ``orchestrator:`` block).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TextIO

from receiver.errors import StoreError
from receiver.orchestrator import (
    OrchestratorClient,
    OrchestratorError,
    Webhook,
    apply_sync,
    desired_events,
    list_webhooks,
    plan_sync,
)
from receiver.pipeline.gaps import recover_source
from receiver.rules import OrchestratorLink, RuleSet, Source
from receiver.store import InboxStore
from receiver.timefmt import utc_text

__all__ = ["Connect", "pick_sources", "reconcile_command", "status_command", "subscription_warnings", "sync_command"]

Connect = Callable[[str, OrchestratorLink], OrchestratorClient]
"""Builds the client of one source (the CLI's makes real ones; tests pass a transport)."""

_KINDS = {"cloud": "Automation Cloud", "suite": "Automation Suite", "standalone": "standalone Orchestrator"}


def pick_sources(ruleset: RuleSet, name: str | None) -> tuple[list[Source], str | None]:
    """The sources to work on: ``name``, or every source with an ``orchestrator:`` block.

    Returns:
        The sources, and a usage error (then the list is empty) or None.
    """
    if name is not None:
        source = ruleset.sources.get(name)
        if source is None:
            known = ", ".join(sorted(ruleset.sources)) or "none"
            return [], f"no source {name!r} in {ruleset.path} (sources: {known})"
        if source.orchestrator is None:
            return [], f"source {name!r} has no orchestrator: block in {ruleset.path}"
        return [source], None
    chosen = [s for s in ruleset.sources.values() if s.orchestrator is not None]
    if not chosen:
        return [], f"no source in {ruleset.path} has an orchestrator: block (see docs/orchestrator.md)"
    return chosen, None


def _events(webhook: Webhook) -> str:
    if webhook.subscribe_to_all:
        return "every event"
    return ", ".join(webhook.events) or "no events"


async def _status_one(source: Source, link: OrchestratorLink, connect: Connect, out: TextIO) -> bool:
    client = connect(source.name, link)
    async with client:
        ends = client.endpoints
        out.write(f"source {source.name!r}: {ends.api_base} ({_KINDS[ends.deployment]})\n")
        out.write(f"  token endpoint: {ends.token_url}\n")
        out.write(f"  client: {link.client_id} (secret ********), scopes asked: {' '.join(link.scopes)}\n")
        try:
            token = await client.token()
        except OrchestratorError as exc:
            out.write(f"  token: NOT obtained: {exc.detail}\n")
            return False
        out.write(f"  token: obtained, valid {token.expires_in:g} s; scopes granted: {' '.join(token.scopes)}\n")
        try:
            webhooks = await list_webhooks(client)
        except OrchestratorError as exc:
            out.write(f"  webhooks: NOT read: {exc.detail}\n")
            return False
        out.write(f"  webhooks: {len(webhooks)} seen\n")
        for w in webhooks:
            mark = "*" if w.url == link.public_url else " "
            state = "enabled " if w.enabled else "DISABLED"
            out.write(f"  {mark} {w.id:>6} {state} {w.url}  [{_events(w)}]\n")
        mine = [w for w in webhooks if w.url == link.public_url]
        if not mine:
            out.write(f"  no webhook at public_url {link.public_url}: run `receiver orchestrator sync`\n")
            return False
        if not any(w.enabled for w in mine):
            out.write(f"  the webhook at public_url {link.public_url} is disabled: run `receiver orchestrator sync`\n")
            return False
        out.write(f"  * = the webhook at public_url {link.public_url}\n")
        return True


async def subscription_warnings(ruleset: RuleSet, *, connect: Connect, out: TextIO) -> int:
    """For ``receiver check``: warn where a source's webhook misses event types its rules match.

    Each source with an ``orchestrator:`` block is asked for its webhooks; one it cannot reach is a
    note, not a failure (the file itself is valid).

    Returns:
        How many warnings were written.
    """
    warnings = 0
    for source in ruleset.sources.values():
        link = source.orchestrator
        if link is None:
            continue
        where = f"{ruleset.path}: source {source.name!r}"
        try:
            async with connect(source.name, link) as client:
                webhooks = await list_webhooks(client)
        except OrchestratorError as exc:
            out.write(f"{where}: note: Orchestrator not reached ({exc.detail}); subscriptions not checked\n")
            continue
        mine = [w for w in webhooks if w.url == link.public_url]
        subscribe_all, needed = desired_events(ruleset, source.name)
        if not mine:
            problem = f"no webhook at public_url {link.public_url}"
        elif any(w.subscribe_to_all for w in mine):
            continue
        elif subscribe_all:
            problem = "the webhook does not subscribe to every event, which the rules can match"
        else:
            missing = sorted(set(needed) - {e for w in mine for e in w.events} - {"ping"})
            if not missing:
                continue
            problem = f"the webhook does not subscribe to {', '.join(missing)}, which the rules match"
        out.write(f"{where}: warning: {problem} (`receiver orchestrator sync` fixes it)\n")
        warnings += 1
    return warnings


async def status_command(ruleset: RuleSet, name: str | None, *, connect: Connect, out: TextIO, err: TextIO) -> int:
    """Show each source's connection: token, scopes granted, webhooks seen and the one at ``public_url``.

    Args:
        ruleset: the loaded rules.
        name: one source, or None for every source with an ``orchestrator:`` block.
        connect: builds a source's client.
        out: where the report goes.
        err: where usage errors go.

    Returns:
        0 all good, 1 a source is not connected or has no enabled webhook, 2 a usage error.
    """
    sources, problem = pick_sources(ruleset, name)
    if problem is not None:
        err.write(f"receiver orchestrator status: {problem}\n")
        return 2
    ok = True
    for source in sources:
        if source.orchestrator is not None:
            ok = await _status_one(source, source.orchestrator, connect, out) and ok
    return 0 if ok else 1


async def _sync_one(
    source: Source, ruleset: RuleSet, secret: str | None, connect: Connect, out: TextIO, dry_run: bool
) -> bool:
    link = source.orchestrator
    if link is None:  # pragma: no cover  # pick_sources keeps only sources with a link
        return False
    async with connect(source.name, link) as client:
        try:
            plan = plan_sync(source, ruleset, await list_webhooks(client, url=link.public_url), secret=secret)
        except OrchestratorError as exc:
            out.write(f"source {source.name!r}: webhooks NOT read: {exc.detail}\n")
            return False
        for line in plan.lines():
            out.write(line + "\n")
        if plan.action == "none":
            return True
        if dry_run:
            out.write(f"  dry run: nothing changed ({plan.action} skipped)\n")
            return True
        try:
            after = await apply_sync(client, plan)
        except OrchestratorError as exc:
            out.write(f"  FAILED to {plan.action} the webhook: {exc.detail}\n")
            return False
        done = "created" if plan.action == "create" else "updated"
        out.write(f"  {done}: webhook {after.id if after else '?'}\n")
        return True


async def sync_command(
    ruleset: RuleSet,
    name: str | None,
    *,
    secrets: Mapping[str, str | None],
    dry_run: bool,
    connect: Connect,
    out: TextIO,
    err: TextIO,
) -> int:
    """Create or update each source's webhook as the rules need; print the difference first.

    Args:
        ruleset: the loaded rules.
        name: one source, or None for every source with an ``orchestrator:`` block.
        secrets: each source's first secret as the server resolves it (the webhook's ``Secret``).
        dry_run: print the difference only.
        connect: builds a source's client.
        out: where the differences go.
        err: where usage errors go.

    Returns:
        0 done (or nothing to do, or a dry run), 1 a call failed, 2 a usage error.
    """
    sources, problem = pick_sources(ruleset, name)
    if problem is not None:
        err.write(f"receiver orchestrator sync: {problem}\n")
        return 2
    ok = True
    for source in sources:
        ok = await _sync_one(source, ruleset, secrets.get(source.name), connect, out, dry_run) and ok
    return 0 if ok else 1


async def _reconcile_one(
    source: Source,
    ruleset: RuleSet,
    connect: Connect,
    store: InboxStore | None,
    since: timedelta,
    now: datetime,
    out: TextIO,
) -> bool:
    link = source.orchestrator
    if link is None:  # pragma: no cover  # pick_sources keeps only sources with a link
        return False
    async with connect(source.name, link) as client:
        try:
            run, outcomes = await recover_source(source, ruleset, client, since=now - since, now=now, store=store)
        except OrchestratorError as exc:
            hint = "the scopes need OR.Folders.Read and OR.Jobs.Read (OR.Queues.Read for failed queue items)"
            out.write(f"source {source.name!r}: folders NOT read: {exc.detail} ({hint})\n")
            return False
        except StoreError as exc:
            out.write(f"source {source.name!r}: NOT stored: {exc}\n")
            return False
    states = ", ".join(run.states) or "none (no rule uses job.faulted, job.stopped or job.completed)"
    started, ended = utc_text(run.since.timestamp()), utc_text(run.until.timestamp())
    items = f"; queue items {', '.join(run.item_statuses)}" if run.item_statuses else ""
    out.write(
        f"source {source.name!r}: jobs ended {started} UTC .. {ended} UTC in {states}{items}: "
        f"{run.folders} folders asked, {run.calls} API calls\n"
    )
    for failure in run.failures:
        out.write(f"  folder {failure.folder}: NOT read: {failure.detail}\n")
    if not run.complete:
        out.write("  cut short (time budget or page cap): run again with a shorter --since\n")
    out.write(f"  found {len(outcomes)} job end{'s' if len(outcomes) != 1 else ''}\n")
    for found, outcome in outcomes:
        noun = "item" if found.type.startswith("queueItem.") else "job"
        what = f"{found.type:<14} {found.folder}  {found.process}  ended {found.ended_at}  {noun} {found.job_key}"
        out.write(f"  {what}: {outcome}\n")
    if store is None and outcomes:
        out.write("  dry run: nothing stored\n")
    return run.complete and not run.failures


async def reconcile_command(
    ruleset: RuleSet,
    name: str | None,
    *,
    since: timedelta,
    store: InboxStore | None,
    connect: Connect,
    out: TextIO,
    err: TextIO,
    now: datetime,
) -> int:
    """Recover the job ends of the last ``since`` from the API; print what was found and done.

    Args:
        ruleset: the loaded rules.
        name: one source, or None for every source with an ``orchestrator:`` block.
        since: how far back to look.
        store: where recovered events go (processed by a running receiver); None for a dry run.
        connect: builds a source's client.
        out: where the report goes.
        err: where usage errors go.
        now: the current time (aware).

    Returns:
        0 every folder read, 1 a call failed or the run was cut short, 2 a usage error.
    """
    sources, problem = pick_sources(ruleset, name)
    if problem is not None:
        err.write(f"receiver orchestrator reconcile: {problem}\n")
        return 2
    ok = True
    for source in sources:
        ok = await _reconcile_one(source, ruleset, connect, store, since, now, out) and ok
    return 0 if ok else 1
