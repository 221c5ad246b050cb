"""deploy/kubernetes/: valid against the Kubernetes schemas (offline), and wired to what the app really is.

kubernetes-validate bundles the OpenAPI schemas of each Kubernetes release; strict mode refuses
unknown fields, so a misspelt key fails here rather than being dropped by the API server. The
wiring checks read the app itself: its routes answer the probes, its settings know every
``RECEIVER_*`` variable, the ConfigMap's rules load, and the Dockerfile's user is the pod's.
"""

from __future__ import annotations

import copy
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import read_dockerfile
from starlette.testclient import TestClient

from receiver.http.app import create_app
from receiver.rules import load_rules
from receiver.settings import Settings

ROOT = Path(__file__).parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
# The oldest release still supported upstream when this was written, and the newest bundled.
VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource(kind: str) -> dict[str, Any]:
    found = [doc for path in sorted(KUBE.glob("*.yaml")) for doc in documents(path) if doc.get("kind") == kind]
    assert 1 == len(found), f"{kind}: {len(found)} manifests"
    return found[0]


def manifests() -> Iterator[Path]:
    return (path for path in sorted(KUBE.glob("*.yaml")) if path.name != "kustomization.yaml")


def container() -> dict[str, Any]:
    containers = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    assert 1 == len(containers)
    return dict(containers[0])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", list(manifests()), ids=lambda p: p.name)
def test_each_manifest_is_valid_for_kubernetes(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validation_refuses_a_misspelt_field_and_a_wrong_type() -> None:
    """The check above can fail: a typo of a probe's name and a port given as text are refused."""
    deployment = resource("Deployment")
    typo = copy.deepcopy(deployment)
    pod = typo["spec"]["template"]["spec"]
    pod["containers"][0]["readinesProbe"] = pod["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[-1], strict=True)
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    expected = sorted(p.name for p in manifests() if p.name != "secret.example.yaml")
    assert expected == sorted(kustomization["resources"])
    assert {"receiver"} == {image["name"] for image in kustomization["images"]}
    assert "receiver" == container()["image"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(resource("ConfigMap")["data"]["rules.yaml"])
    settings = Settings(
        rules=rules, database_url=f"sqlite:///{tmp_path / 'r.db'}", webhook_secret="k8s", watch_rules=False
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_probes_ask_the_apps_health_routes_on_the_named_port(client: TestClient) -> None:
    """Liveness on /healthz, readiness on /readyz, both answered 200 by the app, on the port it listens on."""
    spec = container()
    probes = {name: spec[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert "/healthz" == probes["livenessProbe"]["path"]
    assert "/readyz" == probes["readinessProbe"]["path"]
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for probe in probes.values():
        assert probe["port"] in ports
        assert 200 == client.get(probe["path"]).status_code
    (env_port,) = [
        value.split("=", 1)[1]
        for stage in read_dockerfile(ROOT / "Dockerfile")[-1:]
        for env in stage.arguments("ENV")
        for value in shlex.split(env)
        if value.startswith("RECEIVER_PORT=")
    ]
    assert int(env_port) == ports["http"]


def test_service_pdb_and_ingress_select_the_deployments_pods() -> None:
    pod_labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    service, pdb, ingress = resource("Service"), resource("PodDisruptionBudget"), resource("Ingress")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert resource("Deployment")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < resource("Deployment")["spec"]["replicas"]
    port_names = {port["name"] for port in container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert all(b["name"] == service["metadata"]["name"] and b["port"]["name"] in service_ports for b in backends)


def test_every_receiver_variable_is_a_setting_and_every_secret_key_is_in_the_example() -> None:
    env = container()["env"]
    names = {item["name"] for item in env}
    settings = {f"RECEIVER_{field.upper()}" for field in Settings.model_fields}
    assert {n for n in names if n.startswith("RECEIVER_")} <= settings
    assert {"RECEIVER_DATABASE_URL", "RECEIVER_WEBHOOK_SECRET", "RECEIVER_ADMIN_TOKEN"} <= names
    example = yaml.safe_load((KUBE / "secret.example.yaml").read_text())
    refs = [item["valueFrom"]["secretKeyRef"] for item in env if "valueFrom" in item]
    assert refs, "secrets come from a Secret, never from a value in the manifest"
    for ref in refs:
        assert ref["name"] == example["metadata"]["name"]
        assert ref["key"] in example["stringData"]
    secret_settings = {f"RECEIVER_{name}" for name in ("DATABASE_URL", "WEBHOOK_SECRET", "ADMIN_TOKEN", "LOGS_TOKEN")}
    assert not [item for item in env if item["name"] in secret_settings and "value" in item]
    values = {item["name"]: item["value"] for item in env if "value" in item}
    Settings.model_validate({k.removeprefix("RECEIVER_").lower(): v for k, v in values.items()})  # they parse


def test_the_configmap_is_mounted_as_a_directory_and_its_rules_load(tmp_path: Path) -> None:
    """No subPath (a subPath mount never sees an update), the --rules path is in it, the watcher is on."""
    spec = container()
    args = spec["args"]
    rules_path = Path(args[args.index("--rules") + 1])
    volumes = {v["name"]: v for v in resource("Deployment")["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in spec["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert "subPath" not in mount
    assert Path(mount["mountPath"]) == rules_path.parent
    config_map = resource("ConfigMap")
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert rules_path.name in config_map["data"]
    assert {"name": "RECEIVER_WATCH_RULES", "value": "true"} in spec["env"]
    copy_of_it = tmp_path / "rules.yaml"
    copy_of_it.write_text(config_map["data"][rules_path.name])
    assert load_rules(copy_of_it, environ=dict(os.environ)).rules


def test_the_pod_runs_as_the_images_user_with_a_read_only_root() -> None:
    """uid 10001 as the Dockerfile's USER; only emptyDirs are writable: /tmp and the image's home."""
    final = read_dockerfile(ROOT / "Dockerfile")[-1]
    (user,) = final.arguments("USER")
    uid, gid = (int(part) for part in user.split(":"))
    pod = resource("Deployment")["spec"]["template"]["spec"]
    assert (True, uid, gid) == (
        pod["securityContext"]["runAsNonRoot"],
        pod["securityContext"]["runAsUser"],
        pod["securityContext"]["runAsGroup"],
    )
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert ["ALL"] == security["capabilities"]["drop"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"] for m in container()["volumeMounts"] if not m.get("readOnly")}
    assert all("emptyDir" in volumes[m["name"]] for m in container()["volumeMounts"] if not m.get("readOnly"))
    (workdir,) = final.arguments("WORKDIR")
    assert {"/tmp", workdir} <= writable  # noqa: S108 - the pod's own emptyDir


def test_resources_request_no_more_than_their_limits() -> None:
    resources = container()["resources"]
    mib = {"Mi": 1, "Gi": 1024}
    request, limit = (
        int(value[:-2]) * mib[value[-2:]] for value in (resources["requests"]["memory"], resources["limits"]["memory"])
    )
    assert 0 < request <= limit
    assert "cpu" in resources["requests"]
