"""The in-process harness and ``python -m simulators``."""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
from dotenv import dotenv_values
from pydantic import SecretStr

from clients.yeastar import YeastarClient
from common.settings import load_settings
from simulators.clock import OffsetClock
from simulators.harness import running_simulators

REPO = Path(__file__).resolve().parents[2]


async def test_env_points_settings_at_both_simulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_simulators(tmp_path) as sims:
        for name, value in sims.env().items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        entra, yeastar = settings.entra, settings.yeastar
        assert entra.authority_host == entra.graph_base_url == sims.entra.url
        assert entra.ca_bundle == sims.ca.ca_file and entra.instance_discovery is False
        assert (entra.tenant_id, entra.client_id) == (
            sims.entra.config.tenant_id,
            sims.entra.config.provisioning_client_id,
        )
        assert yeastar.configured and yeastar.base_url == sims.yeastar.url

        # The provisioning secret from env() gets a Graph token; the Yeastar one an OpenAPI token.
        assert entra.client_secret is not None and entra.client_id is not None
        form = {
            "grant_type": "client_credentials",
            "client_id": entra.client_id,
            "client_secret": entra.client_secret.get_secret_value(),
            "scope": "https://graph.microsoft.com/.default",
        }
        tls = ssl.create_default_context(cafile=sims.ca.ca_file)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{sims.entra.authority}/oauth2/v2.0/token", data=form, ssl=tls) as response,
        ):
            assert response.status == 200
        assert yeastar.base_url and yeastar.client_id and yeastar.client_secret
        async with YeastarClient(
            yeastar.base_url, yeastar.client_id, yeastar.client_secret, yeastar.ca_bundle
        ) as client:
            assert await client.extension_count() == 5

        # One clock: advancing it moves both simulators.
        assert isinstance(sims.clock, OffsetClock)
        before = await sims.entra.clock.now()
        sims.clock.advance(86400)
        assert (await sims.entra.clock.now() - before).days == 1
        assert (await sims.yeastar.clock.now() - before).days == 1


async def _start_cli(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators",
        "all",
        "--data-dir",
        str(data_dir),
        "--entra-port",
        "0",
        "--yeastar-port",
        "0",
        "--keyvault-port",
        "0",
        "--extensions",
        "3",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    printed = ""
    async with asyncio.timeout(30):
        while "simulators ready" not in printed:
            line = await process.stdout.readline()
            assert line, f"simulators exited early: {printed}"
            printed += line.decode()
    return process, printed


async def _stop_cli(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await process.wait() == 0


async def test_cli_runs_both_until_sigterm_and_keeps_secrets_stable(tmp_path: Path) -> None:
    data_dir = tmp_path / "sim"
    process, printed = await _start_cli(data_dir)
    try:
        env_file = data_dir / "simulators.env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        env = {k: v or "" for k, v in dotenv_values(env_file).items()}
        for name in ("YEC_ENTRA__CLIENT_SECRET", "YEC_YEASTAR__CLIENT_SECRET"):
            assert env[name] and env[name] not in printed
        yeastar_url = re.search(r"Yeastar simulator: (https://\S+)", printed)
        entra_url = re.search(r"Entra simulator: +(https://\S+)", printed)
        assert yeastar_url and entra_url
        assert env["YEC_YEASTAR__BASE_URL"] == yeastar_url[1] and env["YEC_ENTRA__AUTHORITY_HOST"] == entra_url[1]

        settings = load_settings(_env_file=str(env_file))
        assert settings.yeastar.base_url and settings.yeastar.client_id and settings.yeastar.client_secret
        async with YeastarClient(
            settings.yeastar.base_url,
            settings.yeastar.client_id,
            settings.yeastar.client_secret,
            settings.yeastar.ca_bundle,
        ) as client:
            assert await client.extension_count() == 3
        tls = ssl.create_default_context(cafile=env["YEC_ENTRA__CA_BUNDLE"])
        discovery = f"{entra_url[1]}/{env['YEC_ENTRA__TENANT_ID']}/v2.0/.well-known/openid-configuration"
        async with aiohttp.ClientSession() as http, http.get(discovery, ssl=tls) as response:
            assert response.status == 200
    finally:
        await _stop_cli(process)

    # A restart keeps both secrets (the service's settings stay valid) and the PBX state.
    process, _ = await _start_cli(data_dir)
    try:
        again = {k: v or "" for k, v in dotenv_values(data_dir / "simulators.env").items()}
        for name in ("YEC_ENTRA__CLIENT_SECRET", "YEC_YEASTAR__CLIENT_SECRET"):
            assert again[name] == env[name]
        async with YeastarClient(
            again["YEC_YEASTAR__BASE_URL"],
            again["YEC_YEASTAR__CLIENT_ID"],
            SecretStr(again["YEC_YEASTAR__CLIENT_SECRET"]),
            Path(again["YEC_YEASTAR__CA_BUNDLE"]),
        ) as client:
            assert await client.extension_count() == 3
    finally:
        await _stop_cli(process)
