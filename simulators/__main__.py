"""Run the simulators until SIGINT/SIGTERM, keeping their state under a data directory.

    python -m simulators all --data-dir .data/sim --entra-port 8443 --yeastar-port 8444 --keyvault-port 8445
    python -m simulators entra --data-dir .data/sim --replication-delay 2 --throttle-every 0
    python -m simulators yeastar --data-dir .data/sim --entra-url https://localhost:8443

``{data-dir}/simulators.env`` (mode 0600) receives the YEC_* settings that point the service at the
simulators. It holds the provisioning secret and the Yeastar API secret, and is read back on the next
start so both secrets stay the same across restarts. Nothing printed contains a secret.

``all`` also runs a Key Vault simulator trusting that Entra's tokens. It is not in the settings file (the
local secret store stays the default) and keeps its secrets in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

from common.files import write_private
from common.logging import configure_logging
from simulators.clock import OffsetClock
from simulators.entra import EntraSimConfig, EntraSimulator, start_entra_simulator
from simulators.entra.catalog import CUSTOMER_DOMAIN, CUSTOMER_TENANT_ID
from simulators.entra.config import ExtraTenant
from simulators.harness import entra_env, running_simulators, yeastar_env
from simulators.keyvault import KeyVaultSimulator
from simulators.tls import load_or_create_local_ca, server_ssl_context
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator, start_yeastar_simulator

ENV_FILE = "simulators.env"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path(".data/sim"))
    common.add_argument("--host", default="localhost")
    common.add_argument("--log-level", default="INFO")

    entra = argparse.ArgumentParser(add_help=False)
    group = entra.add_argument_group("Entra simulator")
    group.add_argument("--entra-port", type=int, default=8443)
    group.add_argument("--users", type=int, default=5, help="seeded users (on first start)")
    group.add_argument("--replication-delay", type=float, default=0.0, help="seconds")
    group.add_argument("--throttle-every", type=int, default=0, help="every Nth Graph write answers 429")
    group.add_argument("--retry-after", type=float, default=1.0, help="seconds, on a 429")
    group.add_argument("--error-rate", type=float, default=0.0, help="fraction of Graph requests → 503")
    group.add_argument("--drop-rate", type=float, default=0.0, help="fraction of dropped connections")
    group.add_argument("--latency-ms", type=float, default=0.0)
    group.add_argument("--sign-in-delay", type=float, default=0.0, help="seconds until sign-ins show")
    group.add_argument("--no-p1", action="store_true", help="no Entra P1 licence (beta sign-ins 403)")
    group.add_argument(
        "--customer-tenant",
        action="store_true",
        help=f"also host a customer tenant ({CUSTOMER_TENANT_ID}, {CUSTOMER_DOMAIN}, admin@{CUSTOMER_DOMAIN})",
    )

    yeastar = argparse.ArgumentParser(add_help=False)
    group = yeastar.add_argument_group("Yeastar simulator")
    group.add_argument("--yeastar-port", type=int, default=8444)
    group.add_argument("--firmware", default="84.12.0.30")
    group.add_argument("--pbx-domain", default="contoso.ras.yeastarcloud.com")
    group.add_argument("--sync-interval", type=float, default=5.0, help="portal sync, seconds")
    group.add_argument("--extensions", type=int, default=5, help="seeded extensions (on first start)")

    keyvault = argparse.ArgumentParser(add_help=False)
    group = keyvault.add_argument_group("Key Vault simulator")
    group.add_argument("--keyvault-port", type=int, default=8445)

    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("all", parents=[common, entra, yeastar, keyvault], help="every simulator, one CA, one clock")
    commands.add_parser("entra", parents=[common, entra], help="Entra ID + Graph only")
    alone = commands.add_parser("yeastar", parents=[common, yeastar], help="Yeastar PBX only")
    alone.add_argument("--entra-url", help="an Entra simulator for the portal's sync")
    alone.add_argument("--entra-ca-file", type=Path, help="CA bundle of that Entra simulator")
    return parser


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, raw = line.partition("=")
                parts = shlex.split(raw)
                values[key.strip()] = parts[0] if parts else ""
    return values


def _entra_config(args: argparse.Namespace, data_dir: Path, env: dict[str, str]) -> EntraSimConfig:
    config = EntraSimConfig(
        users=args.users,
        replication_delay_seconds=args.replication_delay,
        throttle_every_n_writes=args.throttle_every,
        retry_after_seconds=args.retry_after,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        latency_ms=args.latency_ms,
        sign_in_delay_seconds=args.sign_in_delay,
        p1_license=not args.no_p1,
        state_file=data_dir / "entra.json",
        extra_tenants=[ExtraTenant()] if args.customer_tenant else [],
    )
    if "YEC_ENTRA__CLIENT_SECRET" in env:
        config.provisioning_secret = env["YEC_ENTRA__CLIENT_SECRET"]
    return config


def _yeastar_config(args: argparse.Namespace, data_dir: Path, env: dict[str, str]) -> YeastarSimConfig:
    config = YeastarSimConfig(
        firmware_version=args.firmware,
        pbx_domain=args.pbx_domain,
        sync_interval_seconds=args.sync_interval,
        extensions=args.extensions,
        state_file=data_dir / "yeastar.json",
        entra_url=getattr(args, "entra_url", None),
        entra_ca_file=getattr(args, "entra_ca_file", None),
    )
    if "YEC_YEASTAR__CLIENT_SECRET" in env:
        config.api_client_secret = env["YEC_YEASTAR__CLIENT_SECRET"]
    return config


async def _serve(args: argparse.Namespace, env: dict[str, str]) -> None:
    data_dir: Path = args.data_dir
    env_file = data_dir / ENV_FILE
    lines: list[str] = []
    entra_sim: EntraSimulator | None = None
    yeastar_sim: YeastarSimulator | None = None
    keyvault_sim: KeyVaultSimulator | None = None
    async with AsyncExitStack() as stack:
        if args.command == "all":
            sims = await stack.enter_async_context(
                running_simulators(
                    data_dir,
                    entra=_entra_config(args, data_dir, env),
                    yeastar=_yeastar_config(args, data_dir, env),
                    entra_port=args.entra_port,
                    yeastar_port=args.yeastar_port,
                    keyvault_port=args.keyvault_port,
                    host=args.host,
                )
            )
            env.update(sims.env())
            entra_sim, yeastar_sim, keyvault_sim, ca = sims.entra, sims.yeastar, sims.keyvault, sims.ca
        else:
            ca = load_or_create_local_ca(data_dir / "ca")
            context = server_ssl_context(ca)
            if args.command == "entra":
                entra_sim = await start_entra_simulator(
                    _entra_config(args, data_dir, env),
                    context,
                    host=args.host,
                    port=args.entra_port,
                    clock=OffsetClock(),
                )
                stack.push_async_callback(entra_sim.stop)
                env.update(entra_env(entra_sim, ca))
            else:
                yeastar_sim = await start_yeastar_simulator(
                    _yeastar_config(args, data_dir, env),
                    context,
                    host=args.host,
                    port=args.yeastar_port,
                    clock=OffsetClock(),
                )
                stack.push_async_callback(yeastar_sim.stop)
                env.update(yeastar_env(yeastar_sim, ca))
        write_private(env_file, "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items())).encode())

        if entra_sim is not None:
            lines.append(
                f"Entra simulator:   {entra_sim.url}  (tenant {entra_sim.config.tenant_id}, "
                f"provisioning app {entra_sim.config.provisioning_client_id})"
            )
            lines.extend(
                f"  customer tenant: {extra.tenant_id} ({extra.domain}, {extra.admin_upn})"
                for extra in entra_sim.config.extra_tenants
            )
        if yeastar_sim is not None:
            lines.append(
                f"Yeastar simulator: {yeastar_sim.url}  (firmware "
                f"{yeastar_sim.config.firmware_version}, {len(yeastar_sim.state.extensions)} "
                f"extensions; portal {yeastar_sim.url}/_sim/portal/microsoft365)"
            )
        if keyvault_sim is not None:
            lines.append(
                f"Key Vault simulator: {keyvault_sim.url}  (vault {keyvault_sim.config.vault_name}, secrets in "
                "memory; YEC_SECRET_STORE__BACKEND=azure-key-vault and __VAULT_URL, __CA_BUNDLE select it)"
            )
        lines.append(f"CA bundle:         {ca.ca_file}")
        lines.append(f"Settings:          {env_file} (0600, holds the secrets: source it or use it as .env)")
        lines.append(f"simulators ready: {args.command}, state in {data_dir}; Ctrl-C to stop")
        print("\n".join(lines), flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("simulators: stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    # Secrets from the last run, so the service's settings stay valid across restarts.
    asyncio.run(_serve(args, _read_env(args.data_dir / ENV_FILE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
