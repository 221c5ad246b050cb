"""/api/openapi.json: a valid OpenAPI 3.1 document naming exactly the routes the application serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from receiver.http.app import create_app
from receiver.http.openapi import document
from receiver.settings import Settings

RULES = 'channels:\n  ops: "log://"\nrules:\n  - name: all\n    notify: [ops]\n'


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret="s",
        admin_token="t",
        watch_rules=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def app_routes(client: TestClient) -> set[tuple[str, str]]:
    """(path, method) of every route except the web page (HTML, not an API) and HEAD."""
    found = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        if route.path == "/ui" or route.path.startswith("/ui/"):
            continue
        found |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return found


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


def test_document_is_valid_openapi() -> None:
    """The document passes openapi-spec-validator (OpenAPI 3.1 schema, references resolve)."""
    validate(document())


def test_document_names_every_route_and_nothing_else(client: TestClient) -> None:
    """Every API, edge and health route is documented with its methods, and no documented route is missing."""
    assert app_routes(client) == documented(document())


def test_served_without_token(client: TestClient) -> None:
    """GET /api/openapi.json answers without the admin token (it holds no data) and equals document()."""
    reply = client.get("/api/openapi.json")
    assert 200 == reply.status_code
    assert document() == reply.json()


def test_every_admin_operation_lists_401() -> None:
    """Each admin operation documents the 401 of a missing token and the error body."""
    doc = document()
    for path, item in doc["paths"].items():
        for operation in item.values():
            if "admin" in operation.get("tags", []):
                assert "401" in operation["responses"], path
                assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }


def test_path_parameters_are_declared() -> None:
    """Every {name} in a path has a required path parameter of that name."""
    doc = document()
    for path, item in doc["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path" and p["required"]}
            assert names == declared, path
