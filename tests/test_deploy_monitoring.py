"""deploy/monitoring/: the Grafana dashboard and the Prometheus alert rules use only metrics the app exposes.

The app runs in this process, served by uvicorn on a loopback port in a thread (Orchestrator's
stand-in must reach its webhook for the heartbeat's ping to come back), with a heartbeat, a
channel that accepts and one that fails for good, so every labelled series exists. Its
``/metrics`` page is parsed with prometheus_client's parser; the PromQL of the dashboard and the
rules is parsed with promql-parser (a real PromQL grammar, not a regular expression), and every
metric selector named must be one of the page's families.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
import uvicorn
import yaml
from fake_orchestrator import FakeOrchestrator
from prometheus_client.parser import text_string_to_metric_families
from support import Sink, fault, free_port, wait_until

from receiver.http.app import create_app
from receiver.settings import Settings
from receiver.signature import sign

ROOT = Path(__file__).parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "receiver-dashboard.json"
ALERTS = MONITORING / "receiver-alerts.yaml"
SECRET = "monitoring-secret"
# Grafana's own variables are not PromQL: each is replaced by a value of its kind before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# The sample names of a family by its type (the text format's rules; the parser gives the family name).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "stateset": ("",),
    "unknown": ("",),
}


# ---- the app's /metrics page --------------------------------------------------------------------


class ThreadedServer:
    """The app under uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.base = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        assert wait_until(lambda: self.server.started, timeout=30), "uvicorn did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=5) as reply:  # noqa: S310 - loopback
            return str(reply.read().decode())

    def post_webhook(self, body: bytes, signature: str | None = None) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.base}/webhooks/uipath",
            data=body,
            headers={"X-UiPath-Signature": signature or sign(body, SECRET)},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310 - loopback
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            return exc.code


class Family:
    """One family of the page: its type and the names of the samples it has now."""

    def __init__(self, kind: str, samples: set[str]) -> None:
        self.kind = kind
        self.samples = samples

    def names(self, family: str) -> set[str]:
        """Every sample name the family may have, samples or not yet (a counter never incremented)."""
        return {family + suffix for suffix in SUFFIXES[self.kind]}


def families(text: str) -> dict[str, Family]:
    """Family name -> its type and sample names (none for a labelled family declared without children)."""
    return {
        family.name: Family(family.type, {sample.name for sample in family.samples})
        for family in text_string_to_metric_families(text)
    }


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Family]:
    """The families of /metrics once a webhook was delivered, one went dead and the heartbeat's ping came back."""
    tmp = tmp_path_factory.mktemp("monitoring")
    good, broken = Sink().start(), Sink(behaviour=lambda _: 500).start()
    orch = FakeOrchestrator().start()
    try:
        orch.add_client("hb-app", "hb-app-secret", scopes="OR.Webhooks")
        port = free_port()
        public_url = f"http://127.0.0.1:{port}/webhooks/uipath"
        orch.add_webhook(public_url, secret=SECRET, events=["ping", "job.faulted"])
        rules = tmp / "rules.yaml"
        rules.write_text(f"""
channels:
  ops: {{url: '{good.url()}', timeout: 5s, budget: {{max: 1, per: 1h}}}}
  broken: {{url: '{broken.url()}', max_attempts: 1, timeout: 5s}}
sources:
  uipath:
    secrets: ['{SECRET}']
    orchestrator:
      url: '{orch.orchestrator_url}'
      client_id: hb-app
      client_secret: hb-app-secret
      public_url: '{public_url}'
      heartbeat: {{every: 1s, within: 1s, notify: [ops], health_every: 1s}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [ops, broken]
""")
        settings = Settings(
            rules=rules, database_url=f"sqlite:///{tmp / 'r.db'}", port=port, watch_rules=False, poll_seconds=0.05
        )
        with ThreadedServer(settings) as server:
            assert 202 == server.post_webhook(fault("monitoring-1"))
            another = json.loads(fault("monitoring-3"))
            another["Job"]["Key"] = "another-job"  # another job's end, not a duplicate of the first
            assert 202 == server.post_webhook(json.dumps(another).encode())  # past ops's budget: held

            assert 401 == server.post_webhook(fault("monitoring-2"), signature="sha256=bad")

            def ready() -> bool:
                page = families(server.get("/metrics"))
                wanted = (
                    "receiver_deliveries",
                    "receiver_webhook_path_roundtrip_seconds",
                    "receiver_store_rows",
                    "receiver_notifications_held",
                )
                return all(name in page and page[name].samples for name in wanted)

            assert wait_until(ready, timeout=30), server.get("/metrics")
            time.sleep(0.2)  # the dead delivery's counter and the outbox gauges of the next scrape
            return families(server.get("/metrics"))
    finally:
        orch.stop()
        good.stop()
        broken.stop()


def family_of(name: str, exposed: dict[str, Family]) -> str | None:
    """The family whose samples a selector's metric name names, by the family's type; None when none does."""
    for family, found in exposed.items():
        if name.startswith(family) and name in found.names(family):
            return family
    return None


# ---- PromQL -------------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (``name{...}``, ``name[5m]``, bare ``name``, ``{__name__="name"}``)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        elif isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                walk(arg)
        elif isinstance(node, promql_parser.AggregateExpr):
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
        elif isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
            walk(node.expr)

    walk(promql_parser.parse(expr))
    return names


def test_metric_names_are_read_from_promql_as_prometheus_would() -> None:
    """Functions, aggregations, label names, ``le`` and durations are not metrics; every selector is."""
    assert {"a_total", "b_seconds_bucket", "c", "d"} == metric_names(
        'sum by (channel) (rate(a_total{result="dead", le="1"}[5m])) / on(channel) group_left '
        "histogram_quantile(0.9, sum by (le) (rate(b_seconds_bucket[$__rate_interval]))) "
        'or vector(0) and c unless {__name__="d"}'
    )
    assert {"rate"} == metric_names("rate")  # a bare name is a metric, even one spelt like a function
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's error names the position, nothing to match
        metric_names("sum(rate(x[5m])")


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard, rows' panels included."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_dashboard_metric_is_exposed(exposed: dict[str, Family]) -> None:
    queries = dashboard_expressions()
    assert len(queries) >= 20
    unknown = {(title, name) for title, expr in queries for name in metric_names(expr) if not family_of(name, exposed)}
    assert not unknown


def test_every_alert_metric_is_exposed(exposed: dict[str, Family]) -> None:
    used = {(rule["alert"], name) for rule in alert_rules() for name in metric_names(rule["expr"])}
    assert not {(alert, name) for alert, name in used if not family_of(name, exposed)}


def test_the_check_catches_a_misspelt_or_unsuffixed_name(exposed: dict[str, Family]) -> None:
    """A name the page does not have fails: a typo, a counter without _total, a gauge with a histogram's suffix."""
    assert family_of("receiver_deliveries_total", exposed) == "receiver_deliveries"
    assert family_of("receiver_notification_latency_seconds_bucket", exposed) == "receiver_notification_latency_seconds"
    for wrong in ("receiver_delivery_total", "receiver_deliveries", "receiver_outbox_depth_bucket", "up"):
        assert family_of(wrong, exposed) is None, wrong


def test_samples_exist_for_the_labelled_series_the_panels_split_by(exposed: dict[str, Family]) -> None:
    """Not only declared: the webhook, the deliveries (sent and dead), the outbox and the webhook path have samples."""
    for family in (
        "receiver_webhooks_received",
        "receiver_deliveries",
        "receiver_notification_latency_seconds",
        "receiver_event_processing_delay_seconds",
        "receiver_outbox_depth",
        "receiver_outbox_dead",
        "receiver_outbox_oldest_due_age_seconds",
        "receiver_webhook_path_up",
        "receiver_webhook_path_roundtrip_seconds",
        "receiver_orchestrator_requests",
        "receiver_store_up",
        "receiver_store_rows",
        "receiver_alerts",
        "receiver_alert_oldest_firing_age_seconds",
        "receiver_notifications_held",
    ):
        assert family in exposed, family
        assert exposed[family].samples, family


def test_the_dashboard_covers_what_an_operator_asks() -> None:
    """Ingest, processing delay, deliveries by outcome and channel, outbox depth and age, dead letters, path, store."""
    used = {name for _, expr in dashboard_expressions() for name in metric_names(expr)}
    assert {
        "receiver_webhooks_received_total",
        "receiver_event_processing_delay_seconds_bucket",
        "receiver_deliveries_total",
        "receiver_notification_latency_seconds_bucket",
        "receiver_outbox_depth",
        "receiver_outbox_oldest_due_age_seconds",
        "receiver_outbox_dead",
        "receiver_webhook_path_up",
        "receiver_orchestrator_circuit_open",
        "receiver_store_up",
        "receiver_alerts",
        "receiver_alert_actions_total",
        "receiver_notifications_held_total",
    } <= used
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    datasources = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert {f"${{{name}}}" for name in variables} >= datasources


# ---- the alert rules file -----------------------------------------------------------------------

DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "rules"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["alert", "expr", "labels", "annotations"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                                "expr": {"type": "string", "minLength": 1},
                                "for": {"type": "string", "pattern": DURATION},
                                "keep_firing_for": {"type": "string", "pattern": DURATION},
                                "labels": {
                                    "type": "object",
                                    "required": ["severity"],
                                    "properties": {"severity": {"enum": ["critical", "warning", "info"]}},
                                    "additionalProperties": {"type": "string"},
                                },
                                "annotations": {
                                    "type": "object",
                                    "required": ["summary", "description"],
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def test_alert_rules_have_prometheus_shape() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    jsonschema.Draft202012Validator(RULES_SCHEMA).validate(document)
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    bad = dict(document)
    bad["groups"] = [{"name": "x", "rules": [{"alert": "X", "expr": "1", "labels": {"severity": "page"}}]}]
    assert not jsonschema.Draft202012Validator(RULES_SCHEMA).is_valid(bad)  # the schema can fail


def test_annotations_use_only_labels_the_expression_keeps() -> None:
    """``$labels.channel`` in a summary is empty unless the aggregation keeps ``channel`` (``by (channel)``)."""
    for rule in alert_rules():
        used = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        if re.search(r"\b(sum|max|min|avg|count)\b", rule["expr"]):
            kept = {
                label.strip() for group in re.findall(r"by \(([^)]*)\)", rule["expr"]) for label in group.split(",")
            }
            assert used <= kept, rule["alert"]


def test_alert_rules_cover_the_failures_that_matter() -> None:
    """Dead letters rising, an old outbox, no webhooks, the store failing, the webhook path broken."""
    by_metric = {name: rule["alert"] for rule in alert_rules() for name in metric_names(rule["expr"])}
    for metric in (
        "receiver_deliveries_total",
        "receiver_outbox_oldest_due_age_seconds",
        "receiver_webhooks_received_total",
        "receiver_store_up",
        "receiver_webhook_path_up",
        "receiver_alert_oldest_firing_age_seconds",
        "receiver_notifications_held_total",
    ):
        assert metric in by_metric, metric


def test_refusals_that_lose_events_have_an_alert() -> None:
    """A wrong secret and a stale Timestamp both refuse every webhook, and Orchestrator retries neither."""
    refusals = " ".join(r["expr"] for r in alert_rules() if "receiver_webhooks_refused_total" in r["expr"])
    assert 'reason=~"signature_.*"' in refusals
    assert 'reason="stale_event"' in refusals
