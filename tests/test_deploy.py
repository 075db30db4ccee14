"""deploy/prometheus (alert rules, their unit tests, the scrape config) and the Grafana dashboard.

Always, with PyYAML only: the files' shape, and that every metric their queries name is one the worker
exports (``common.metrics.EXPORTED_METRIC_NAMES``), and every one of the service's own is used.
With promtool on PATH (Debian: ``apt-get install --no-install-recommends prometheus``): promtool checks
the rules and the config, runs ``alerts_test.yml``, and parses every dashboard query.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.metrics import EXPORTED_METRIC_NAMES

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "yeastar-entra-dashboard.json"

JOB = "yeastar-entra-worker"

METRIC_NAME = re.compile(r"\b(?:yec|temporal)_[a-z0-9_]+")
HISTOGRAM_SERIES = re.compile(r"_(?:bucket|sum|count)$")

REQUIRED_ALERTS = {
    "SecretExpiresWithoutRotation": "warning",
    "SecretExpired": "critical",
    "HumanActionPendingTooLong": "warning",
    "IntegrationBlocked": "warning",
    "FleetMetricsStale": "warning",
    "WorkerDown": "critical",
    "GraphThrottling": "warning",
    "WorkflowTaskFailures": "warning",
}
# Alerts about one integration: their texts name it.
PER_INTEGRATION = {"SecretExpiresWithoutRotation", "SecretExpired", "HumanActionPendingTooLong", "IntegrationBlocked"}
# Unit tests in alerts_test.yml must show these firing.
TESTED_FIRING = {"SecretExpiresWithoutRotation", "HumanActionPendingTooLong", "IntegrationBlocked"}


def metric_names(expr: str) -> set[str]:
    return {HISTOGRAM_SERIES.sub("", name) for name in METRIC_NAME.findall(expr)}


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


@pytest.fixture(scope="module")
def rules() -> dict[str, dict[str, Any]]:
    """Every alerting rule in alerts.yml, by name."""
    found: dict[str, dict[str, Any]] = {}
    for group in load_yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule, f"{rule} is not an alerting rule"
            assert rule["alert"] not in found, f"{rule['alert']} is defined twice"
            found[rule["alert"]] = rule
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each query of the dashboard by "panel <id> <refId>"."""
    return {
        f"panel {panel['id']} {target['refId']}": target["expr"]
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    }


def test_alert_rules_name_severity_and_explain(rules: dict[str, dict[str, Any]]) -> None:
    assert set(REQUIRED_ALERTS) <= set(rules)
    for name, severity in REQUIRED_ALERTS.items():
        assert rules[name]["labels"]["severity"] == severity, name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert "starter.py status" in annotations["runbook"], f"{name}: the runbook hint names no starter.py status"
        if name in PER_INTEGRATION:
            for key in ("summary", "description", "runbook"):
                assert "{{ $labels.integration_id }}" in annotations[key], f"{name}: {key} names no integration"


def test_alert_thresholds(rules: dict[str, dict[str, Any]]) -> None:
    expiring = rules["SecretExpiresWithoutRotation"]["expr"]
    # One alert per integration however many workers export the fleet: aggregated by integration_id.
    assert "max by (integration_id) (yec_secret_expiry_timestamp_seconds) - time()" in expiring
    assert "7 * 86400" in expiring
    assert re.search(r"on \(integration_id\) \(max by \(integration_id\) \(yec_rotation_running\) == 1\)", expiring)
    pending = rules["HumanActionPendingTooLong"]
    assert "max by (integration_id, action) (yec_pending_human_action_age_seconds) > 3 * 86400" in pending["expr"]
    assert "3 * 86400" in pending["annotations"]["tuning"]
    assert (
        'max by (integration_id, tenant_id, phase) (yec_integration_info{phase="Blocked"})'
        in rules["IntegrationBlocked"]["expr"]
    )
    assert rules["IntegrationBlocked"]["for"] == "15m"
    assert "time() - yec_fleet_refresh_timestamp_seconds > 600" in rules["FleetMetricsStale"]["expr"]
    assert rules["WorkerDown"]["expr"] == f'up{{job="{JOB}"}} == 0'
    assert "yec_graph_throttled_total" in rules["GraphThrottling"]["expr"]
    assert rules["GraphThrottling"]["for"] == "15m"
    assert "temporal_workflow_task_execution_failed_total" in rules["WorkflowTaskFailures"]["expr"]


def test_unit_tests_cover_the_key_alerts() -> None:
    spec = load_yaml(ALERTS_TEST)

    assert spec["rule_files"] == [ALERTS.name]
    firing = {
        case["alertname"]
        for test in spec["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing >= TESTED_FIRING
    # The "rotation running" case: an integration expiring in 5 days whose rotation runs.
    series = [s["series"] for test in spec["tests"] for s in test.get("input_series", [])]
    assert any(s.startswith("yec_rotation_running{") for s in series)


def test_scrape_config() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)

    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "30s"
    assert job["static_configs"] == [{"targets": ["worker:9464"]}]


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        where = f"panel {panel['id']} ({panel.get('title')})"
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), where
        assert grid["w"] > 0 and grid["h"] > 0, where
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{where} is wider than the dashboard"
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{where} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, where
        assert panel.get("title"), where
        targets = panel["targets"]
        assert targets, f"{where} has no query"
        for target in targets:
            assert target["expr"].strip(), where
            assert target.get("datasource", datasource) == datasource, where
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), where


def test_queries_use_only_exported_metrics(rules: dict[str, dict[str, Any]], dashboard: dict[str, Any]) -> None:
    """Against what the worker declares it exports (a scrape on the dev server checks that declaration:
    tests/test_monitoring.py)."""
    queries = {f"alert {name}": rule["expr"] for name, rule in rules.items()} | dashboard_queries(dashboard)

    unknown = {where: sorted(metric_names(expr) - EXPORTED_METRIC_NAMES) for where, expr in queries.items()}
    assert not {where: names for where, names in unknown.items() if names}, "queries name metrics the worker lacks"
    used = set().union(*(metric_names(expr) for expr in queries.values()))
    # Every metric of the service's own is shown or alerted on.
    own = {name for name in EXPORTED_METRIC_NAMES if name.startswith("yec_")}
    assert own <= used, f"neither shown nor alerted on: {sorted(own - used)}"


# promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    executable = shutil.which("promtool")
    if executable is None:
        pytest.skip("promtool is not on PATH (Debian: apt-get install --no-install-recommends prometheus)")
    return executable


def run_promtool(promtool: str, *args: str | Path) -> str:
    result = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_promtool_checks_the_rules(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "rules", ALERTS)


def test_promtool_checks_the_config(promtool: str, tmp_path: Path) -> None:
    """prometheus.yml names the rules where the container mounts them; the check reads the local file."""
    config = load_yaml(PROMETHEUS_CONFIG)
    config["rule_files"] = [str(ALERTS)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))

    assert "is valid prometheus config file syntax" in run_promtool(promtool, "check", "config", local)


def test_promtool_runs_the_alert_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", ALERTS_TEST)


def test_promtool_parses_the_dashboard_queries(promtool: str, dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana's range variables filled in), so promtool parses it."""
    grafana_variables = {"$__rate_interval": "2m", "$__range": "1d", "$__interval": "1m"}
    recorded = []
    for where, query in dashboard_queries(dashboard).items():
        expr = query
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a variable promtool cannot fill in"
        recorded.append({"record": "dashboard:" + where.replace(" ", "_"), "expr": expr})
    rule_file = tmp_path / "dashboard.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))

    assert f"SUCCESS: {len(recorded)} rules found" in run_promtool(promtool, "check", "rules", rule_file)
