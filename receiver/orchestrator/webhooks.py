"""Orchestrator's Webhooks API (tenant-level, no folder header): list, get, create, update, ping.

Updates send the whole ``WebhookDto`` back with PUT, changed fields merged in: the safe path of
the reference (a PATCH with only some fields, and a PUT without ``Secret``, are unconfirmed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from receiver.orchestrator.client import OrchestratorClient
from receiver.orchestrator.errors import OrchestratorError

__all__ = [
    "PingResult",
    "Webhook",
    "create_webhook",
    "get_webhook",
    "list_event_types",
    "list_webhooks",
    "ping_webhook",
    "update_webhook",
]

_NS = "UiPath.Server.Configuration.OData"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A ``WebhookDto`` as Orchestrator returned it.

    Attributes:
        id: the int64 ``Id`` (the key in ``Webhooks({id})``).
        url: ``Url``.
        enabled: ``Enabled``.
        subscribe_to_all: ``SubscribeToAllEvents``.
        events: the ``EventType`` of each ``Events`` entry.
        name: ``Name`` (None on servers older than API 16).
        secret: ``Secret`` (masked in every repr; None when absent or not returned).
        dto: the whole DTO as returned, for a full PUT (not in the repr: it holds the secret).
    """

    id: int
    url: str
    enabled: bool
    subscribe_to_all: bool
    events: tuple[str, ...]
    name: str | None = None
    secret: SecretStr | None = None
    dto: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dto(cls, source: str, dto: Any) -> Webhook:
        """Read one ``WebhookDto``.

        Raises:
            OrchestratorError: when it lacks ``Id`` or ``Url``.
        """
        if not isinstance(dto, dict) or not isinstance(dto.get("Id"), int) or not isinstance(dto.get("Url"), str):
            raise OrchestratorError(source, "a webhook in the answer has no Id or Url", status=200)
        events = tuple(
            str(e["EventType"]) for e in dto.get("Events") or () if isinstance(e, dict) and e.get("EventType")
        )
        secret = dto.get("Secret")
        return cls(
            id=dto["Id"],
            url=dto["Url"],
            enabled=dto.get("Enabled") is True,
            subscribe_to_all=dto.get("SubscribeToAllEvents") is True,
            events=events,
            name=dto.get("Name") if isinstance(dto.get("Name"), str) else None,
            secret=SecretStr(secret) if isinstance(secret, str) and secret else None,
            dto=dict(dto),
        )


@dataclass(frozen=True, slots=True)
class PingResult:
    """The ``PingEventDto`` of a Ping (202).

    Attributes:
        event_id: ``EventId``, which the delivered ``ping`` is expected to carry (unconfirmed).
        timestamp: ``Timestamp`` as sent, or None.
        dto: the whole answer.
    """

    event_id: str | None
    timestamp: str | None
    dto: Mapping[str, Any] = field(default_factory=dict)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # OData string literal


async def list_webhooks(client: OrchestratorClient, *, url: str | None = None) -> list[Webhook]:
    """List the tenant's webhooks, all of them or those whose ``Url`` is exactly ``url``.

    Raises:
        OrchestratorError: as :meth:`OrchestratorClient.request`.
    """
    params = {"$filter": f"Url eq {_quote(url)}"} if url is not None else None
    found = await client.collection("odata/Webhooks", params=params)
    return [Webhook.from_dto(client.source, dto) for dto in found.items]


async def get_webhook(client: OrchestratorClient, webhook_id: int) -> Webhook:
    """Read one webhook by ``Id``.

    Raises:
        OrchestratorError: 404 (errorCode 1002) when there is none, or as :meth:`OrchestratorClient.request`.
    """
    return Webhook.from_dto(client.source, await client.request("GET", f"odata/Webhooks({webhook_id})"))


async def create_webhook(client: OrchestratorClient, dto: Mapping[str, Any]) -> Webhook:
    """Create a webhook (POST, not retried on 5xx: a retry could create two).

    Args:
        client: the connection.
        dto: the ``WebhookDto`` fields: ``Name``, ``Url``, ``Enabled``, ``Secret``,
            ``SubscribeToAllEvents``, ``AllowInsecureSsl``, ``Events``.
    """
    return Webhook.from_dto(client.source, await client.request("POST", "odata/Webhooks", json=dict(dto)))


async def update_webhook(client: OrchestratorClient, webhook: Webhook, changes: Mapping[str, Any]) -> Webhook:
    """Change fields of a webhook: the DTO read last, ``changes`` merged in, sent whole with PUT.

    Returns:
        The webhook as Orchestrator holds it afterwards (read back when PUT answers without a body).
    """
    body = {**webhook.dto, **changes}
    answer = await client.request("PUT", f"odata/Webhooks({webhook.id})", json=body)
    if isinstance(answer, dict) and "Id" in answer:
        return Webhook.from_dto(client.source, answer)
    return await get_webhook(client, webhook.id)


async def ping_webhook(client: OrchestratorClient, webhook_id: int) -> PingResult:
    """Ask Orchestrator to send a ``ping`` event through the webhook (202 with a PingEventDto).

    Retried on 5xx like a read: an extra ping is harmless.
    """
    answer = await client.request("POST", f"odata/Webhooks({webhook_id})/{_NS}.Ping", idempotent=True)
    dto = answer if isinstance(answer, dict) else {}
    event_id = dto.get("EventId")
    stamp = dto.get("Timestamp")
    return PingResult(
        event_id=str(event_id) if event_id is not None else None,
        timestamp=stamp if isinstance(stamp, str) else None,
        dto=dto,
    )


async def list_event_types(client: OrchestratorClient) -> list[str]:
    """The event types this Orchestrator offers (``GetEventTypes``)."""
    answer = await client.request("GET", f"odata/Webhooks/{_NS}.GetEventTypes")
    values = answer.get("value") if isinstance(answer, dict) else None
    return [str(v["Name"]) for v in values or () if isinstance(v, dict) and v.get("Name")]
