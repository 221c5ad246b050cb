"""deploy/compose.yaml: valid against the Compose Specification, and wired to the app and to deploy/Caddyfile.

No container engine runs here (docs/deploy.md), so the file is checked, not run: against the
Compose Specification's JSON schema (shipped offline by check-jsonschema), and against the app
itself: the health checks ask routes that answer, every ``RECEIVER_*`` variable is a setting,
every ``${VAR}`` the file needs is in .env.example, the proxy Caddy sends to are the replicas,
and the one address the replicas trust for X-Forwarded-* is Caddy's.
"""

from __future__ import annotations

import copy
import importlib.resources
import ipaddress
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from dockerfile_parse import read_dockerfile
from starlette.testclient import TestClient

from receiver.http.app import create_app
from receiver.rules import load_rules
from receiver.settings import Settings

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
REPLICAS = ("receiver-1", "receiver-2")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads(vendor.joinpath("compose-spec.json").read_text()))


def env_example() -> dict[str, str]:
    """The variables of deploy/.env.example (comments and blank lines left out)."""
    pairs = (line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines())
    return {key.strip(): value for key, value in (p for p in pairs if len(p) == 2) if not key.lstrip().startswith("#")}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with ``env``; an unset required one fails."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op == ":?" and not env.get(name):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return env.get(name) or (arg if op == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, text)


def strings(node: Any) -> Iterator[str]:
    """Every string value of a parsed YAML document (what compose interpolates; comments are not)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def resolved() -> dict[str, Any]:
    """compose.yaml as compose sees it with .env.example as deploy/.env."""
    return dict(yaml.safe_load(interpolate((DEPLOY / "compose.yaml").read_text(), env_example())))


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema.Draft202012Validator(compose_schema()).validate(compose())


def test_the_schema_check_refuses_a_misspelt_key() -> None:
    """The check above can fail: a misspelt healthcheck and a port given as a mapping are refused."""
    validator = jsonschema.Draft202012Validator(compose_schema())
    typo = copy.deepcopy(compose())
    typo["services"]["postgres"]["healtcheck"] = typo["services"]["postgres"].pop("healthcheck")
    assert not validator.is_valid(typo)
    wrong = copy.deepcopy(compose())
    wrong["services"]["caddy"]["ports"] = {"443": 443}
    assert not validator.is_valid(wrong)


def test_every_variable_compose_needs_is_in_the_env_example_with_no_real_secret() -> None:
    needed = {name for text in strings(compose()) for name in re.findall(r"\$\{(\w+)(?::\?[^}]*)?\}", text)}
    assert "POSTGRES_PASSWORD" in needed
    example = env_example()
    assert needed <= set(example), needed - set(example)
    resolved()  # every required ${VAR:?} is set by the example
    secrets = {k: v for k, v in example.items() if re.search(r"PASSWORD|SECRET|TOKEN", k)}
    assert secrets
    assert all(value in ("", "CHANGE-ME") for value in secrets.values()), secrets
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_receiver_variables_are_settings_and_parse() -> None:
    """Every RECEIVER_* of the replicas' environment and of .env.example is a field of Settings, with a valid value."""
    fields = {f"RECEIVER_{name.upper()}" for name in Settings.model_fields}
    services = resolved()["services"]
    for name in REPLICAS:
        environment = services[name]["environment"]
        assert {k for k in environment if k.startswith("RECEIVER_")} <= fields
        assert services[name]["env_file"] == [".env"]
    from_file = {k: v for k, v in env_example().items() if k.startswith("RECEIVER_") and k != "RECEIVER_SITE"}
    assert set(from_file) <= fields
    values = {**from_file, **services[REPLICAS[0]]["environment"]}
    settings = Settings.model_validate({k.removeprefix("RECEIVER_").lower(): v for k, v in values.items()})
    assert settings.webhook_secret is not None


def test_replicas_share_postgresql_and_the_same_rules() -> None:
    services = resolved()["services"]
    postgres = services["postgres"]["environment"]
    urls = {services[name]["environment"]["RECEIVER_DATABASE_URL"] for name in REPLICAS}
    assert 1 == len(urls), "both replicas on one database"
    url = urlsplit(urls.pop())
    assert ("postgresql", "postgres") == (url.scheme, url.hostname)
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]) == (url.username, url.password)
    assert postgres["POSTGRES_DB"] == url.path.lstrip("/")
    for name in REPLICAS:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        rules=DEPLOY / "rules" / "rules.yaml",
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret="compose",
        watch_rules=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def image_port() -> int:
    (port,) = [
        int(value.split("=", 1)[1])
        for env in read_dockerfile(ROOT / "Dockerfile")[-1].arguments("ENV")
        for value in shlex.split(env)
        if value.startswith("RECEIVER_PORT=")
    ]
    return port


def test_health_checks_ask_real_routes_on_the_port_the_image_listens_on(client: TestClient) -> None:
    services = resolved()["services"]
    for name in REPLICAS:
        test = services[name]["healthcheck"]["test"]
        assert "CMD" == test[0]
        urls = re.findall(r"http://127\.0\.0\.1:\d+/\w+", " ".join(test))
        assert 1 == len(urls), test
        url = urlsplit(urls[0])
        assert image_port() == url.port
        assert "/readyz" == url.path
        assert 200 == client.get(url.path).status_code


def caddy_upstreams() -> list[str]:
    """The default upstreams of the Caddyfile's ``to`` line ({$VAR:default} placeholders)."""
    (line,) = [
        line.split() for line in (DEPLOY / "Caddyfile").read_text().splitlines() if line.strip().startswith("to ")
    ]
    return [re.fullmatch(r"\{\$\w+:(.+)\}", token).group(1) for token in line[1:]]  # type: ignore[union-attr]


def test_caddy_sends_to_the_replicas_and_checks_a_real_route(client: TestClient) -> None:
    services = resolved()["services"]
    upstreams = caddy_upstreams()
    assert [f"{name}:{image_port()}" for name in REPLICAS] == upstreams
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    (health,) = re.findall(r"^\s*health_uri\s+(\S+)", caddyfile, re.MULTILINE)
    assert 200 == client.get(health).status_code
    caddy = services["caddy"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert {name: {"condition": "service_healthy"} for name in REPLICAS} == caddy["depends_on"]


def test_only_caddy_is_a_trusted_proxy() -> None:
    """RECEIVER_TRUSTED_PROXIES is Caddy's fixed address, inside the network's subnet, and nothing wider."""
    document = resolved()
    caddy_address = document["services"]["caddy"]["networks"]["receiver"]["ipv4_address"]
    (subnet,) = [c["subnet"] for c in document["networks"]["receiver"]["ipam"]["config"]]
    assert ipaddress.ip_address(caddy_address) in ipaddress.ip_network(subnet)
    for name in REPLICAS:
        service = document["services"][name]
        assert caddy_address == service["environment"]["RECEIVER_TRUSTED_PROXIES"]
        assert ["receiver"] == service["networks"]
        assert "ports" not in service, "the replicas are reached through Caddy only"


def test_rules_are_mounted_as_a_directory_that_loads_and_matches_the_configmap() -> None:
    services = resolved()["services"]
    for name in REPLICAS:
        command = services[name]["command"]
        rules_path = Path(command[command.index("--rules") + 1])
        mounts = [v.split(":") for v in services[name]["volumes"]]
        (host,) = [host for host, target, *_ in mounts if Path(target) == rules_path.parent]
        assert (DEPLOY / host / rules_path.name).is_file()
        assert "true" == services[name]["environment"]["RECEIVER_WATCH_RULES"]
    text = (DEPLOY / "rules" / "rules.yaml").read_text()
    assert load_rules(DEPLOY / "rules" / "rules.yaml", environ=dict(os.environ)).rules
    config_map = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    assert text == config_map["data"]["rules.yaml"], "one starter rules file for both kits"
