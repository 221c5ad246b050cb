"""Ad-hoc silences from the command line and the admin API: create, list, expire; and what they mute."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from noise_support import payload
from starlette.testclient import TestClient

from receiver.cli import main
from receiver.http.app import create_app
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "silence-secret"
ADMIN = "admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


class TestCommandLine:
    @pytest.fixture
    def database(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'r.db'}"

    def test_add_list_expire(self, database: str, capsys: pytest.CaptureFixture[str]) -> None:
        """`silence add` stores matchers, creator and comment; `list` shows it; `expire` ends it."""
        code = main(
            ["silence", "--database", database, "add", "process=Invoice*", "robot=BOT01", "--for", "2h",
             "--comment", "SAP upgrade", "--by", "alice"]
        )  # fmt: skip
        added = capsys.readouterr().out
        assert 0 == code
        assert added.startswith("silence 1 added: process=Invoice* robot=BOT01 until ")
        assert 0 == main(["silence", "--database", database, "list", "--json"])
        [silence] = json.loads(capsys.readouterr().out)["silences"]
        assert (["process=Invoice*", "robot=BOT01"], "alice", "SAP upgrade", "active") == (
            silence["matchers"], silence["created_by"], silence["comment"], silence["state"],
        )  # fmt: skip
        assert 0 == main(["silence", "--database", database, "list"])
        table = capsys.readouterr().out
        assert "active" in table
        assert "process=Invoice* robot=BOT01" in table
        assert 0 == main(["silence", "--database", database, "expire", "1"])
        assert "silence 1 expired" in capsys.readouterr().out
        assert 0 == main(["silence", "--database", database, "list"])
        assert "no silences\n" == capsys.readouterr().out
        assert 0 == main(["silence", "--database", database, "list", "--all"])
        assert "expired" in capsys.readouterr().out
        assert 1 == main(["silence", "--database", database, "expire", "99"])
        assert "no silence 99" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            pytest.param(["proces=X", "--for", "1h"], "unknown field 'proces'", id="unknown-field"),
            pytest.param(["job.state=Faulty", "--for", "1h"], "'Faulty' is not a valid JobState", id="bad-enum"),
            pytest.param(["process=X"], "give either a duration (--for 2h) or an end time", id="no-duration"),
            pytest.param(["process=X", "--for", "soon"], "'soon' is not a duration", id="bad-duration"),
            pytest.param(["process=X", "--until", "2001-01-01T00:00:00Z"], "is over already", id="in-the-past"),
        ],
    )
    def test_bad_silences_are_refused(
        self, database: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A silence that could never work is refused with the reason; nothing is stored."""
        assert 1 == main(["silence", "--database", database, "add", *args, "--comment", "x"])
        assert message in capsys.readouterr().err
        assert 0 == main(["silence", "--database", database, "list", "--all"])
        assert "no silences\n" == capsys.readouterr().out

    def test_without_action(self, database: str, capsys: pytest.CaptureFixture[str]) -> None:
        """`receiver silence` alone is a usage error."""
        assert 2 == main(["silence", "--database", database])
        assert "give add, list or expire" in capsys.readouterr().err


RULES = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.02,
    )
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


def post_fault(client: TestClient, clock: Clock, **patch: Any) -> str:
    raw = payload("job.faulted.json", **patch)
    raw["Timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now))
    body = json.dumps(raw).encode()
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code
    return str(raw["EventId"])


def decisions(client: TestClient, count: int) -> list[dict[str, Any]]:
    """Every noise decision (newest first), once there are ``count`` of them (the worker runs in the background)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = client.get("/api/suppressions?all=1", headers=AUTH).json()["suppressions"]
        if len(found) >= count:
            return list(found)
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} noise decisions")


def event_item(client: TestClient, inbox_id: int) -> dict[str, Any]:
    """The event as GET /api/events shows it."""
    return dict(next(e for e in client.get("/api/events", headers=AUTH).json()["events"] if e["id"] == inbox_id))


class TestAdminApi:
    def test_create_list_expire_and_what_it_mutes(self, client: TestClient, clock: Clock) -> None:
        """POST creates a silence that mutes matching faults; the event and /api/suppressions say why; DELETE ends."""
        reply = client.post(
            "/api/silences",
            headers=AUTH,
            json={
                "matchers": "process=Invoice* robot=FIN-UNATT-01",
                "for": "1h",
                "comment": "SAP",
                "created_by": "bob",
            },
        )
        assert 201 == reply.status_code
        silence = reply.json()["silence"]
        assert (["process=Invoice*", "robot=FIN-UNATT-01"], "active", "bob") == (
            silence["matchers"], silence["state"], silence["created_by"],
        )  # fmt: skip
        assert [silence["id"]] == [s["id"] for s in client.get("/api/silences", headers=AUTH).json()["silences"]]
        post_fault(client, clock)
        [muted] = decisions(client, 1)
        reason = f"silenced by silence #{silence['id']} (process=Invoice* robot=FIN-UNATT-01) of bob"
        assert ("faults", "silenced", True) == (muted["rule"], muted["action"], muted["suppressed"])
        assert reason in muted["reason"]
        assert reason in json.dumps(event_item(client, muted["event"]))  # the event's own record says it too
        assert [muted] == client.get("/api/suppressions", headers=AUTH).json()["suppressions"]
        post_fault(client, clock, Job__Robot__Name="FIN-UNATT-02")
        assert "notified" == decisions(client, 2)[0]["action"]
        ended = client.delete(f"/api/silences/{silence['id']}", headers=AUTH)
        assert ("expired", 200) == (ended.json()["silence"]["state"], ended.status_code)
        assert [] == client.get("/api/silences", headers=AUTH).json()["silences"]
        assert 1 == len(client.get("/api/silences?all=1", headers=AUTH).json()["silences"])
        clock.now += 1
        post_fault(client, clock)
        assert ["notified", "notified", "silenced"] == [d["action"] for d in decisions(client, 3)]
        assert 1 == len(client.get(f"/api/suppressions?event={muted['event']}", headers=AUTH).json()["suppressions"])

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            pytest.param({"matchers": "proces=X", "for": "1h", "comment": "c", "created_by": "b"}, "unknown field"),
            pytest.param({"matchers": "process=X", "comment": "c", "created_by": "b"}, "give either a duration"),
            pytest.param({"matchers": "process=X", "for": "1h", "created_by": "b"}, "give a comment"),
            pytest.param({"matchers": 5, "for": "1h", "comment": "c", "created_by": "b"}, "matchers: a string"),
            pytest.param({"matchers": "process=X", "for": "1h", "comment": "c", "by": "b"}, "unknown keys: by"),
        ],
    )
    def test_bad_silences_are_refused(self, client: TestClient, body: dict[str, Any], fragment: str) -> None:
        """An invalid silence gets 400 invalid_silence with the reason."""
        reply = client.post("/api/silences", headers=AUTH, json=body)
        assert (400, "invalid_silence") == (reply.status_code, reply.json()["error"])
        assert fragment in reply.json()["detail"]

    def test_expire_unknown_and_auth(self, client: TestClient) -> None:
        """Unknown silences are 404; the routes need the admin token."""
        assert 404 == client.post("/api/silences/77/expire", headers=AUTH).status_code
        assert 400 == client.delete("/api/silences/x", headers=AUTH).status_code
        assert 401 == client.get("/api/silences").status_code
        assert 401 == client.get("/api/suppressions").status_code
