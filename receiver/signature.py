"""Verification of Orchestrator's ``X-UiPath-Signature`` header.

Orchestrator signs the raw request body with HMAC-SHA256, the webhook's secret (UTF-8, used
as-is) as the key, and sends the standard Base64 of the 32-byte MAC. Nothing else is signed.
One UiPath text claims a ``sha256=<hex>`` form instead; it contradicts the product docs and
every working receiver, so it is accepted only where a source opts in (``allow_hex``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from enum import Enum

from receiver.errors import SignatureError

__all__ = ["SignatureForm", "sign", "verify_signature"]

_MAC_SIZE = hashlib.sha256().digest_size


class SignatureForm(Enum):
    """Which encoding of the MAC a verified header used."""

    BASE64 = "base64"
    HEX = "hex"


def sign(body: bytes, secret: str) -> str:
    """Return the ``X-UiPath-Signature`` value Orchestrator would send for ``body``.

    Args:
        body: the exact request body bytes.
        secret: the webhook secret as configured in Orchestrator.

    Returns:
        The Base64 of HMAC-SHA256(secret as UTF-8, body).
    """
    return base64.b64encode(_mac(body, secret)).decode("ascii")


def verify_signature(
    body: bytes, header: str | None, secrets: Sequence[str], *, allow_hex: bool = False
) -> SignatureForm:
    """Check ``header`` against every secret of a source (several during a rotation).

    Args:
        body: the raw request body, as received.
        header: the value of ``X-UiPath-Signature``, or None when the header is missing.
        secrets: the source's secrets; any one of them may have signed the body. An empty or blank
            one is never used: anyone could sign with it.
        allow_hex: also accept ``sha256=<64 hex digits>`` (off unless a source turns it on).

    Returns:
        The form of the header that verified.

    Raises:
        SignatureError: missing header (``missing``), undecodable value (``malformed``) or no
            secret produces the MAC (``mismatch``, also when no secret is usable).
    """
    if header is None or not header.strip():
        raise SignatureError("missing", "X-UiPath-Signature header is missing")
    expected, form = _decode(header.strip(), allow_hex=allow_hex)
    matched = False
    # Every secret is tried even after a match so the time taken does not tell which matched.
    for secret in secrets:
        matched |= bool(secret.strip()) and hmac.compare_digest(_mac(body, secret), expected)
    if not matched:
        raise SignatureError("mismatch", "X-UiPath-Signature does not match the body")
    return form


def _mac(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def _decode(value: str, *, allow_hex: bool) -> tuple[bytes, SignatureForm]:
    if allow_hex and value[:7].lower() == "sha256=":
        try:
            raw = bytes.fromhex(value[7:])
        except ValueError:
            raw = b""
        if len(raw) != _MAC_SIZE:
            raise SignatureError("malformed", "X-UiPath-Signature sha256= value is not 64 hex digits")
        return raw, SignatureForm.HEX
    if value[:7].lower() == "sha256=":
        raise SignatureError(
            "malformed",
            "X-UiPath-Signature is in the sha256=<hex> form, which this source does not take "
            "(accept_hex_signature: true in rules.yaml turns it on); Orchestrator sends the Base64 of the HMAC",
        )
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != _MAC_SIZE:
        raise SignatureError("malformed", "X-UiPath-Signature is not the Base64 of a SHA-256 HMAC")
    return raw, SignatureForm.BASE64
