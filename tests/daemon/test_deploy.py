"""Tests of deploy/: the files parse, their commands match the CLI, probes and alerts match the daemon."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from ledgerlink.cli import app
from ledgerlink.config import LedgerlinkConfig
from ledgerlink.daemon import status  # noqa: F401 - registers the daemon's metrics
from ledgerlink.daemon.jobs import stream_interval_seconds
from ledgerlink.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def check_cli(args: list[str]) -> None:
    """Parse ``ledgerlink ARGS`` with the real command line; fail on unknown commands or options."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    name, *rest = args
    command = root.commands.get(name)
    assert command is not None, f"unknown command {name!r}"
    command.make_context(name, rest)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_a_valid_command() -> None:
    """The image builds in stages, runs as a non-root user, checks /healthz and runs a real CLI command."""
    instructions = dockerfile_instructions()
    values = {kind: [v for k, v in instructions if k == kind] for kind, _ in instructions}
    assert len(values["FROM"]) >= 3
    assert any("uv sync --frozen" in run for run in values["RUN"])
    (user,) = values["USER"]
    assert not user.startswith(("0", "root"))
    (health,) = values["HEALTHCHECK"]
    assert "/healthz" in health
    (entrypoint,) = values["ENTRYPOINT"]
    (cmd,) = values["CMD"]
    assert json.loads(entrypoint) == ["ledgerlink"]
    check_cli(json.loads(cmd))
    assert "8080" in values["EXPOSE"]


def test_compose_runs_postgres_and_a_ready_checked_daemon() -> None:
    """The compose file runs PostgreSQL with a volume and the daemon with a /readyz healthcheck and a valid command."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["volumes"]
    service = compose["services"]["ledgerlink"]
    check_cli(service["command"])
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for secret in service["secrets"]:
        assert secret in compose["secrets"]


@pytest.mark.parametrize(
    "toml_text",
    [
        (DEPLOY / "ledgerlink.toml").read_text(encoding="utf-8"),
        yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text(encoding="utf-8"))[
            "data"
        ]["ledgerlink.toml"],
    ],
    ids=["compose", "kubernetes"],
)
def test_example_configurations_are_valid(toml_text: str) -> None:
    """The example configurations validate and give the connector its own pull interval."""
    data: dict[str, Any] = tomllib.loads(toml_text)
    config = LedgerlinkConfig(**data)
    assert stream_interval_seconds(config, "stripe", "invoices") == 120


def kubernetes_documents() -> dict[str, dict[str, Any]]:
    documents = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            documents[document["kind"]] = document
    return documents


def test_kubernetes_deployment_probes_the_daemon_endpoints() -> None:
    """The Deployment's liveness probe is /healthz, readiness /readyz, on its port, with a valid command."""
    documents = kubernetes_documents()
    assert set(documents) == {"ConfigMap", "Deployment", "Secret", "Service"}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    check_cli(container["args"])
    ports = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "http" in ports
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > 30
    volumes = {volume["name"] for volume in pod["volumes"]}
    assert {mount["name"] for mount in container["volumeMounts"]} <= volumes


def test_systemd_unit_runs_serve_with_a_stop_timeout_above_the_grace() -> None:
    """The systemd unit starts a valid `ledgerlink serve` and waits longer than its grace on stop."""
    unit: dict[str, str] = {}
    for line in (
        (DEPLOY / "systemd" / "ledgerlink.service").read_text(encoding="utf-8").splitlines()
    ):
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            unit.setdefault(key, value)
    command = shlex.split(unit["ExecStart"].replace("${CREDENTIALS_DIRECTORY}", "/run/creds"))
    assert command[0].endswith("/ledgerlink")
    check_cli(command[1:])
    assert int(unit["TimeoutStopSec"]) > 30
    assert unit["NoNewPrivileges"] == "yes"


def exported_metric_names() -> set[str]:
    names = set()
    suffixes = ("", "_total", "_bucket", "_sum", "_count", "_created", "_info")
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_alert_rules_are_well_formed_and_use_exported_metrics() -> None:
    """Every alert rule has an expression, severity and summary, and names only metrics ledgerlink exports."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    (group,) = rules["groups"]
    exported = exported_metric_names()
    alerts = {rule["alert"] for rule in group["rules"]}
    assert {"LedgerlinkNotReady", "LedgerlinkStreamStale", "LedgerlinkStreamFailing"} <= alerts
    for rule in group["rules"]:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
        for metric in re.findall(r"\bledgerlink_\w+", rule["expr"]):
            assert metric in exported, (rule["alert"], metric)


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    """Every panel query of deploy/grafana/ledgerlink.json names metrics ledgerlink exports, and the outbox, review and quota panels exist."""
    dashboard = json.loads((DEPLOY / "grafana" / "ledgerlink.json").read_text(encoding="utf-8"))
    exported = exported_metric_names()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for metric in re.findall(r"\bledgerlink_\w+", target["expr"]):
                assert metric in exported, (panel["title"], metric)
                used.add(metric)
    assert {
        "ledgerlink_outbox_oldest_pending_age_seconds",
        "ledgerlink_review_queue_records",
        "ledgerlink_quota_headroom_ratio",
        "ledgerlink_stream_lag_seconds",
    } <= used


def test_alert_rules_cover_outbox_age_review_queue_and_budgets() -> None:
    """The shipped alerts watch stuck writes, a growing review queue and budgets near exhaustion."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {rule["alert"] for rule in rules["groups"][0]["rules"]}
    assert {
        "LedgerlinkOutboxStuck",
        "LedgerlinkReviewQueueGrowing",
        "LedgerlinkQuotaNearlyExhausted",
        "LedgerlinkVendorLimitNearlyExhausted",
    } <= alerts
