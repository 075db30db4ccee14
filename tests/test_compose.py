"""docker-compose.yml, Dockerfile and .dockerignore.

docker-compose itself validates the file where it is installed; with PyYAML the file's shape is
checked too: the services, pinned images (no deprecated ``temporalio/auto-setup``), the start-up
order, and that the setup job creates exactly the search attributes the code uses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from common.search_attributes import dev_server_flags

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"postgresql", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "worker", "web"}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("docker-compose is not on PATH (Debian: apt-get install docker-compose)")
    return executable


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the compose file refers to, with the empty ``.env`` an operator starts from (the real
    one holds secrets and is git-ignored, so it cannot be relied on here)."""
    directory = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, directory / name)
    shutil.copytree(ROOT / "deploy", directory / "deploy")
    (directory / ".env").touch()
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

    assert set(run_compose(docker_compose, project, "config", "--services").split()) == SERVICES


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; docker-compose validates the file")
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(spec["services"]) == SERVICES
    return dict(spec["services"])


def test_images_are_pinned_and_schema_tools_match_the_server(services: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in services.items()}

    assert not any("auto-setup" in image for image in images.values())
    for image in images.values():
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+[\w.-]*", image), f"{image} is not pinned to a version"
    version = images["temporal"].removeprefix("temporalio/server:")
    # admin-tools carries the schema of its own release.
    assert images["temporal-schema"] == images["temporal-setup"] == f"temporalio/admin-tools:{version}"
    assert images["temporal-ui"].startswith("temporalio/ui:")
    # One image, built from here, for the worker and the web app.
    assert services["worker"]["build"] == services["web"]["build"] == "."
    assert images["worker"] == images["web"]


def test_start_up_order(services: dict[str, Any]) -> None:
    order = {
        name: {dependency: c["condition"] for dependency, c in service["depends_on"].items()}
        for name, service in services.items()
        if "depends_on" in service
    }

    assert order == {
        "temporal-schema": {"postgresql": "service_healthy"},
        "temporal": {"temporal-schema": "service_completed_successfully"},
        "temporal-setup": {"temporal": "service_healthy"},
        "temporal-ui": {"temporal": "service_healthy"},
        "worker": {"temporal": "service_healthy", "temporal-setup": "service_completed_successfully"},
        "web": {"temporal": "service_healthy", "temporal-setup": "service_completed_successfully"},
    }
    assert {name for name, service in services.items() if "healthcheck" in service} == {"postgresql", "temporal"}


def test_jobs_set_up_both_databases_and_the_codes_search_attributes(services: dict[str, Any]) -> None:
    schema = services["temporal-schema"]["command"][0]
    setup = services["temporal-setup"]["command"][0]

    for database in ("temporal", "temporal_visibility"):
        for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
            assert f"sql --db {database} {step}" in schema
    flags = dev_server_flags()
    wanted = {tuple(flag.split("=")) for flag in flags[1::2]}
    assert set(re.findall(r"^attribute (\w+) (\w+)$", setup, re.MULTILINE)) == wanted


def test_worker_web_app_and_published_ports(services: dict[str, Any]) -> None:
    worker, web = services["worker"], services["web"]
    shared = {
        "YEC_TEMPORAL__ADDRESS": "temporal:7233",
        "YEC_DATA_DIR": "/data",
        "YEC_WEB__BASE_URL": "${YEC_WEB__BASE_URL:-http://localhost:8000}",
    }

    for service in (worker, web):
        assert service["env_file"] == ".env"
        assert service["volumes"] == ["worker-data:/data"]
    # Cards link to the web app: the worker signs links with the address the web app is reached at.
    assert worker["environment"] == shared
    assert web["environment"] == shared | {
        "YEC_WEB__HOST": "0.0.0.0",
        "YEC_WEB__PORT": "8000",
        "YEC_WEB__TEMPORAL_UI_ORIGIN": "http://localhost:8080",
    }
    assert web["command"] == ["python", "web.py"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    ui = services["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "${YEC_WEB__BASE_URL:-http://localhost:8000}/codec"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("127.0.0.1:") for port in ports)


def test_image_runs_unprivileged_and_leaves_secrets_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.MULTILINE)
    assert "RUN pip install ." in dockerfile
    assert re.search(r"^USER (?!root)\w+$", dockerfile, re.MULTILINE)
    assert dockerfile.rstrip().endswith('CMD ["python", "worker.py"]')
    assert {".env", ".env.*", "*.pem", ".data/", ".venv/", ".git/"} <= ignored
