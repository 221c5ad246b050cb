"""Where a source's Orchestrator is: the deployment kind, the API base and the token endpoint.

The token endpoint follows the documented layouts (docs/orchestrator.md): Automation Cloud
``https://cloud.uipath.com/{org}/identity_/connect/token``, Automation Suite
``https://{fqdn}/identity_/connect/token``, standalone ``{base}/identity/connect/token``;
``token_url:`` in rules.yaml overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from receiver.rules import OrchestratorLink

__all__ = ["Deployment", "Endpoints", "endpoints"]

Deployment = Literal["cloud", "suite", "standalone"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The URLs one connection calls.

    Attributes:
        deployment: Automation Cloud (also Dedicated), Automation Suite or standalone.
        api_base: the Orchestrator base that ``odata/...`` hangs under, no trailing slash.
        token_url: the OAuth2 token endpoint.
    """

    deployment: Deployment
    api_base: str
    token_url: str


def _is_cloud(host: str) -> bool:
    return host == "uipath.com" or host.endswith(".uipath.com")


def endpoints(link: OrchestratorLink) -> Endpoints:
    """Derive the deployment kind and the token endpoint from the configured ``url``.

    Args:
        link: the source's ``orchestrator:`` block, as loaded.

    Returns:
        The endpoints; an explicit ``token_url`` wins over the derived one.
    """
    base = link.url.rstrip("/")
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}"
    segments = [s for s in parts.path.split("/") if s]
    deployment: Deployment
    if segments and segments[-1].lower() == "orchestrator_":
        if _is_cloud((parts.hostname or "").lower()):
            deployment = "cloud"
            # {org}/{tenant}/orchestrator_: the org-prefixed identity; without an org, the older un-prefixed one.
            token = f"{origin}/{segments[-3]}/identity_/connect/token" if len(segments) >= 3 else None
            derived = token or f"{origin}/identity_/connect/token"
        else:
            deployment = "suite"
            derived = f"{origin}/identity_/connect/token"
    else:
        deployment = "standalone"
        derived = f"{base}/identity/connect/token"
    return Endpoints(deployment=deployment, api_base=base, token_url=link.token_url or derived)
