"""Run the Entra, Yeastar and Key Vault simulators in-process with one local CA and one clock.

Used by tests, the demo and the benchmarks::

    async with running_simulators(tmp_path) as sims:
        settings = load_settings(**...)  # or os.environ.update(sims.env())
        sims.clock.advance(3600)         # moves every simulator
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from simulators.clock import Clock, OffsetClock
from simulators.entra import EntraSimConfig, EntraSimulator, start_entra_simulator
from simulators.keyvault import KeyVaultSimConfig, KeyVaultSimulator, start_keyvault_simulator
from simulators.tls import LocalCA, load_or_create_local_ca, server_ssl_context
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator, start_yeastar_simulator


def entra_env(sim: EntraSimulator, ca: LocalCA) -> dict[str, str]:
    """The YEC_ENTRA__* settings that point the service at an Entra simulator."""
    return {
        "YEC_ENTRA__AUTHORITY_HOST": sim.url,
        "YEC_ENTRA__GRAPH_BASE_URL": sim.url,
        "YEC_ENTRA__CA_BUNDLE": str(ca.ca_file),
        "YEC_ENTRA__INSTANCE_DISCOVERY": "false",
        "YEC_ENTRA__TENANT_ID": sim.config.tenant_id,
        "YEC_ENTRA__CLIENT_ID": sim.config.provisioning_client_id,
        "YEC_ENTRA__CLIENT_SECRET": sim.config.provisioning_secret,
    }


def yeastar_env(sim: YeastarSimulator, ca: LocalCA) -> dict[str, str]:
    """The YEC_YEASTAR__* settings that point the service at a Yeastar simulator."""
    return {
        "YEC_YEASTAR__BASE_URL": sim.url,
        "YEC_YEASTAR__CLIENT_ID": sim.config.api_client_id,
        "YEC_YEASTAR__CLIENT_SECRET": sim.config.api_client_secret,
        "YEC_YEASTAR__CA_BUNDLE": str(ca.ca_file),
    }


@dataclass
class RunningSimulators:
    ca: LocalCA
    entra: EntraSimulator
    yeastar: YeastarSimulator
    keyvault: KeyVaultSimulator
    clock: Clock

    def env(self) -> dict[str, str]:
        """Environment variables for :class:`common.settings.Settings` (they hold secrets)."""
        return {**entra_env(self.entra, self.ca), **yeastar_env(self.yeastar, self.ca)}

    def keyvault_env(self) -> dict[str, str]:
        """The YEC_SECRET_STORE__* settings that keep client secrets in the Key Vault simulator; not part
        of :meth:`env`, so the local store stays the default. The service signs in to the vault as the
        provisioning app (``env()``'s YEC_ENTRA__*)."""
        return {
            "YEC_SECRET_STORE__BACKEND": "azure-key-vault",
            "YEC_SECRET_STORE__VAULT_URL": self.keyvault.url,
            "YEC_SECRET_STORE__CA_BUNDLE": str(self.ca.ca_file),
        }


@asynccontextmanager
async def running_simulators(
    directory: Path,
    *,
    entra: EntraSimConfig | None = None,
    yeastar: YeastarSimConfig | None = None,
    keyvault: KeyVaultSimConfig | None = None,
    clock: Clock | None = None,
    entra_port: int = 0,
    yeastar_port: int = 0,
    keyvault_port: int = 0,
    host: str = "localhost",
) -> AsyncIterator[RunningSimulators]:
    """Start the simulators (CA under ``directory/ca``); the Yeastar portal syncs from this Entra, and
    the vault accepts this Entra's tokens."""
    ca = load_or_create_local_ca(directory / "ca")
    context = server_ssl_context(ca)
    # One clock for all, so advancing it (here or via /_sim/clock/advance) moves every simulator.
    clock = clock or OffsetClock()
    async with AsyncExitStack() as stack:
        entra_sim = await start_entra_simulator(
            entra or EntraSimConfig(), context, host=host, port=entra_port, clock=clock
        )
        stack.push_async_callback(entra_sim.stop)
        yeastar_config = yeastar or YeastarSimConfig()
        if yeastar_config.entra_url is None:
            yeastar_config = dataclasses.replace(yeastar_config, entra_url=entra_sim.url, entra_ca_file=ca.ca_file)
        yeastar_sim = await start_yeastar_simulator(yeastar_config, context, host=host, port=yeastar_port, clock=clock)
        stack.push_async_callback(yeastar_sim.stop)
        keyvault_sim = await start_keyvault_simulator(
            keyvault or KeyVaultSimConfig(), context, issuer=entra_sim, host=host, port=keyvault_port, clock=clock
        )
        stack.push_async_callback(keyvault_sim.stop)
        yield RunningSimulators(ca=ca, entra=entra_sim, yeastar=yeastar_sim, keyvault=keyvault_sim, clock=clock)
