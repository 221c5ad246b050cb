"""Signed action-link tokens: one alert, one action, an expiry; anything altered or late is refused."""

from __future__ import annotations

import base64

import pytest

from receiver.actionlink import LinkError, LinkSigner, action_links

NOW = 1_767_000_000.0


def test_a_token_names_its_alert_action_and_expiry() -> None:
    """What was signed comes back, with the expiry ``ttl`` after ``now``."""
    signer = LinkSigner("key", ttl=3600)
    assert ("00ff", "silence", NOW + 3600) == signer.verify(signer.token("00ff", "silence", now=NOW), now=NOW + 10)


def test_an_expired_token_is_refused_as_expired() -> None:
    """At its expiry the token is refused with the reason ``expired``."""
    signer = LinkSigner("key", ttl=60)
    token = signer.token("ab", "ack", now=NOW)
    with pytest.raises(LinkError) as caught:
        signer.verify(token, now=NOW + 60)
    assert "expired" == caught.value.reason


def _reencoded(token: str, payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode() + "." + token.split(".")[1]


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda t: _reencoded(t, "ab.retry.1767003600"), id="other-action"),
        pytest.param(lambda t: _reencoded(t, "cd.ack.1767003600"), id="other-alert"),
        pytest.param(lambda t: _reencoded(t, "ab.ack.9999999999"), id="later-expiry"),
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="signature"),
        pytest.param(lambda t: t.replace(".", ""), id="no-dot"),
        pytest.param(lambda t: t + ".x", id="two-dots"),
        pytest.param(lambda t: "!!!." + t.split(".")[1], id="not-base64"),
        pytest.param(lambda t: t + "A" * 500, id="too-long"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_an_altered_token_is_refused_as_invalid(alter: object) -> None:
    """Changing the alert, the action, the expiry or the MAC, or a malformed token: ``invalid``."""
    signer = LinkSigner("key", ttl=3600)
    token = signer.token("ab", "ack", now=NOW)
    assert callable(alter)
    with pytest.raises(LinkError) as caught:
        signer.verify(alter(token), now=NOW)
    assert "invalid" == caught.value.reason


def test_a_token_of_another_key_is_invalid_and_an_empty_key_is_no_key() -> None:
    """Rotating the key invalidates the links sent; an empty key cannot sign."""
    token = LinkSigner("old-key", ttl=3600).token("ab", "ack", now=NOW)
    with pytest.raises(LinkError):
        LinkSigner("new-key", ttl=3600).verify(token, now=NOW)
    with pytest.raises(ValueError, match="must not be empty"):
        LinkSigner("", ttl=3600)


def test_the_links_of_a_message() -> None:
    """Acknowledge always; silence for a process or robot; retry only when allowed; all under the public URL."""
    signer = LinkSigner("key", ttl=3600)
    links = action_links("https://rx.example.com/", signer, "ab", now=NOW, silence_what="robot", retry=True)
    assert ["Acknowledge", "Silence this robot for 1 h", "Retry the job"] == [label for label, _ in links]
    assert all(url.startswith("https://rx.example.com/act/") for _, url in links)
    bare = action_links("https://rx.example.com", signer, "ab", now=NOW, silence_what=None, retry=False)
    assert ["Acknowledge"] == [label for label, _ in bare]
