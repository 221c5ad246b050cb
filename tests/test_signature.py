"""X-UiPath-Signature: the reference's vectors, tampering, rotation and the opt-in hex form."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from receiver.errors import SignatureError
from receiver.signature import SignatureForm, sign, verify_signature

PING_BODY = (
    b'{"Type":"ping","EventId":"3f2a9c1e5b7d4e8fa0c1d2e3f4a5b6c7","Timestamp":"2024-05-06T08:15:30.1234567Z",'
    b'"TenantId":1,"UserId":42}'
)
UNICODE_BODY = (
    '{"Type":"job.faulted","EventId":"e1","Timestamp":"2024-05-06T08:15:30Z","Job":{"Info":"Ünïcode ✓"}}'.encode()
)


@pytest.mark.parametrize(
    ("secret", "body", "expected"),
    [
        pytest.param("my-webhook-secret", PING_BODY, "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=", id="ping-vector"),
        pytest.param("sëcret", UNICODE_BODY, "Fw0opmh6eXaecHlBCYvo7vYgcvL+k38R2YvxwdSngQs=", id="unicode-vector"),
    ],
)
def test_reference_vectors(secret: str, body: bytes, expected: str) -> None:
    """sign() reproduces the reference's vectors and verify_signature() accepts them."""
    assert expected == sign(body, secret)
    assert SignatureForm.BASE64 == verify_signature(body, expected, [secret])


def test_vector_body_lengths() -> None:
    """The vectors are computed over exactly the byte counts the reference states."""
    assert (128, 103) == (len(PING_BODY), len(UNICODE_BODY))


@pytest.mark.parametrize(
    ("body", "header", "secrets", "reason"),
    [
        pytest.param(
            PING_BODY + b" ",
            sign(PING_BODY, "my-webhook-secret"),
            ["my-webhook-secret"],
            "mismatch",
            id="tampered-body",
        ),
        pytest.param(PING_BODY, sign(PING_BODY, "other"), ["my-webhook-secret"], "mismatch", id="wrong-secret"),
        pytest.param(PING_BODY, None, ["my-webhook-secret"], "missing", id="missing-header"),
        pytest.param(PING_BODY, "  ", ["my-webhook-secret"], "missing", id="blank-header"),
        pytest.param(PING_BODY, "not base64!", ["my-webhook-secret"], "malformed", id="not-base64"),
        pytest.param(PING_BODY, "c2hvcnQ=", ["my-webhook-secret"], "malformed", id="short-mac"),
        pytest.param(PING_BODY, "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=", [], "mismatch", id="no-secrets"),
        pytest.param(
            PING_BODY,
            "sha256=" + hmac.new(b"my-webhook-secret", PING_BODY, hashlib.sha256).hexdigest(),
            ["my-webhook-secret"],
            "malformed",
            id="hex-form-not-enabled",
        ),
        pytest.param(
            PING_BODY,
            "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=é",
            ["my-webhook-secret"],
            "malformed",
            id="non-ascii-header",
        ),
    ],
)
def test_refusals(body: bytes, header: str | None, secrets: list[str], reason: str) -> None:
    """Every bad signature is refused with a reason code, never accepted."""
    with pytest.raises(SignatureError) as info:
        verify_signature(body, header, secrets)
    assert reason == info.value.reason


def test_rotation_accepts_old_and_new_secret() -> None:
    """During a rotation a body signed with either configured secret verifies."""
    for secret in ("old-secret", "new-secret"):
        assert SignatureForm.BASE64 == verify_signature(
            PING_BODY, sign(PING_BODY, secret), ["new-secret", "old-secret"]
        )


def test_hex_form_only_when_enabled() -> None:
    """The `sha256=<hex>` form verifies when the source allows it, in either hex casing."""
    digest = hmac.new(b"s3", PING_BODY, hashlib.sha256).hexdigest()
    assert SignatureForm.HEX == verify_signature(PING_BODY, f"sha256={digest}", ["s3"], allow_hex=True)
    assert SignatureForm.HEX == verify_signature(PING_BODY, f"SHA256={digest.upper()}", ["s3"], allow_hex=True)
    with pytest.raises(SignatureError):
        verify_signature(PING_BODY, f"sha256={digest[:-2]}", ["s3"], allow_hex=True)


def test_the_hex_form_refused_says_how_to_accept_it() -> None:
    """A sender following the text that claims ``sha256=<hex>`` learns why it is refused and what turns it on."""
    digest = hmac.new(b"s3", PING_BODY, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError) as info:
        verify_signature(PING_BODY, f"sha256={digest}", ["s3"])
    assert "malformed" == info.value.reason
    assert "accept_hex_signature" in str(info.value)


def test_secret_is_used_as_utf8_text_not_decoded() -> None:
    """A secret that looks like Base64 is still used as its UTF-8 text."""
    secret = "c2VjcmV0"
    expected = hmac.new(secret.encode(), PING_BODY, hashlib.sha256).digest()
    import base64

    assert base64.b64encode(expected).decode() == sign(PING_BODY, secret)
