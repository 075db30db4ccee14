"""Bootstrap against the simulators: an administrator signs in with a device code (the test plays them at
the simulator's approve endpoint), the provisioning app is created, repaired and checked, and a
multi-tenant one works in a customer's tenant next to its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from temporalio.testing import WorkflowEnvironment

import bootstrap
from clients.msal_auth import CertificateCredential, MsalTokenProvider
from common.settings import Settings, settings_from_env
from models.integration import Phase, RedirectUris
from simulators.clock import CallableClock
from simulators.entra import EntraSimConfig
from simulators.entra.catalog import CUSTOMER_DOMAIN, CUSTOMER_TENANT_ID, ROLE_BY_VALUE, SIM_TENANT_ID, TENANT_DOMAIN
from simulators.entra.config import ExtraTenant
from simulators.harness import RunningSimulators, running_simulators
from tests.conftest import bounded, harness_for, wait_for_phase

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"enter the code (\w+)")
PERMISSIONS = bootstrap.provisioning_permissions()
UNIQUE_NAME = bootstrap.UNIQUE_NAME


def sim_config(**fields: Any) -> EntraSimConfig:
    # MSAL polls the token endpoint every `interval` seconds: keep the wait for an approval short.
    return EntraSimConfig(device_code_interval_seconds=1, **fields)


def entra_env(sims: RunningSimulators) -> dict[str, str]:
    """Where Entra and Graph are, without any provisioning identity (bootstrap makes that)."""
    return {k: v for k, v in sims.env().items() if k.startswith("YEC_ENTRA__") and k not in bootstrap.MANAGED_ENV}


def cli_env(sims: RunningSimulators) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("YEC_")}
    return {**inherited, **entra_env(sims)}


@contextlib.asynccontextmanager
async def https(sims: RunningSimulators) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(sims.ca.ca_file)))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def approver(session: aiohttp.ClientSession, sims: RunningSimulators, upn: str | None = None) -> Approve:
    """The administrator at /devicelogin: enters the code and signs in (the page's form post)."""

    async def approve(code: str) -> int:
        form = {"user_code": code, "userPrincipalName": upn or f"admin@{TENANT_DOMAIN}"}
        async with session.post(f"{sims.entra.url}/_sim/device/approve", data=form) as response:
            return response.status

    return approve


Approve = Callable[[str], Awaitable[int]]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def changes(self) -> list[str]:
        block = self.stdout.split("Changes:\n", 1)[1] if "Changes:\n" in self.stdout else ""
        return [line[4:] for line in block.splitlines() if line.startswith("  - ")]


OnLine = Callable[[str], Awaitable[None]]


def on_code(approve: Approve) -> OnLine:
    """Answer the device code a line shows."""

    async def answer(line: str) -> None:
        if code := CODE.search(line):
            await approve(code.group(1))

    return answer


async def starter(env: dict[str, str], cwd: Path, *args: str, on_line: OnLine | None = None) -> Run:
    """starter.py as a process; ``on_line`` sees each line of its output as it comes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "starter.py"),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.create_task(process.stderr.read())
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            lines.append(line)
            if on_line is not None:
                await on_line(line)

    try:
        await bounded(read(), f"starter.py {' '.join(args)}", limit=120)
        returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    return Run(returncode, "".join(lines), (await errors).decode())


async def in_process(
    settings: Settings,
    options: bootstrap.BootstrapOptions,
    session: aiohttp.ClientSession,
    sims: RunningSimulators,
    upn: str,
) -> tuple[bootstrap.BootstrapResult | BaseException, list[str], int]:
    """bootstrap() in this process, approved by ``upn``; returns its result or error, its output and the
    approval's HTTP status."""
    lines: list[str] = []
    task = asyncio.create_task(bootstrap.bootstrap(settings, options, lines.append))
    status = 0
    for _ in range(300):
        code = next((c.group(1) for line in lines if (c := CODE.search(line))), None)
        if code is not None:
            status = await approver(session, sims, upn)(code)
            break
        await asyncio.sleep(0.05)
    try:
        result: bootstrap.BootstrapResult | BaseException = await bounded(task, "bootstrap", limit=90)
    except bootstrap.BootstrapError as exc:
        result = exc
    return result, lines, status


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def sign_in_with(sims: RunningSimulators, tenant: str, client_id: str, pem: Path) -> dict[str, Any]:
    tokens = MsalTokenProvider(
        tenant,
        client_id,
        CertificateCredential.from_pem_file(pem),
        authority_host=sims.entra.url,
        graph_base_url=sims.entra.url,
        ca_bundle=sims.ca.ca_file,
        instance_discovery=False,
    )
    claims: dict[str, Any] = jwt.decode(await tokens.token(), options={"verify_signature": False})
    return claims


async def test_bootstrap_through_the_device_code_then_nothing_then_exactly_the_repair(tmp_path: Path) -> None:
    async with running_simulators(tmp_path / "sim", entra=sim_config()) as sims, https(sims) as session:
        home = tmp_path / "home"
        home.mkdir()
        env_file = home / ".env"
        env_file.write_text("# the operator's own settings\nYEC_LOG_LEVEL=DEBUG\nYEC_ENTRA__CLIENT_SECRET=stale\n")
        env_file.chmod(0o644)
        env = cli_env(sims)

        first = await starter(env, home, "bootstrap", on_line=on_code(approver(session, sims)))
        assert first.returncode == 0, first.stdout + first.stderr
        assert "/devicelogin" in first.stdout and "Signed in as admin@" in first.stdout
        app = sims.entra.state.application_by_unique_name(UNIQUE_NAME)
        assert app is not None
        client_id = app.app_id
        assert app.props["signInAudience"] == "AzureADMyOrg"
        [graph_access] = app.props["requiredResourceAccess"]
        assert sorted(a["id"] for a in graph_access["resourceAccess"]) == sorted(
            ROLE_BY_VALUE[p].id for p in PERMISSIONS
        )
        assert len(app.key_credentials) == 1 and not app.password_credentials
        sp = sims.entra.state.service_principal_by_app_id(client_id)
        assert sp is not None
        assert sorted(a.app_role_id for a in sims.entra.state.app_role_assignments(sp.id)) == sorted(
            ROLE_BY_VALUE[p].id for p in PERMISSIONS
        )
        assert len(first.changes) == 1 + 1 + len(PERMISSIONS) + 1 + 1  # app, SP, consents, certificate, .env

        # .env: the settings it produced, the operator's lines kept, the stale secret gone, 0600.
        written = env_file.read_text()
        assert written.splitlines() == [
            "# the operator's own settings",
            "YEC_LOG_LEVEL=DEBUG",
            f"YEC_ENTRA__TENANT_ID={SIM_TENANT_ID}",
            f"YEC_ENTRA__CLIENT_ID={client_id}",
            "YEC_ENTRA__CERTIFICATE_PATH=.data/provisioning.pem",
        ]
        pem = home / ".data" / "provisioning.pem"
        assert mode(env_file) == 0o600 and mode(pem) == 0o600
        assert "PRIVATE KEY" not in first.stdout + first.stderr
        for permission in PERMISSIONS:
            assert re.search(rf"{re.escape(permission)}\s+(required|optional)\s+granted", first.stdout), first.stdout
        claims = await sign_in_with(sims, SIM_TENANT_ID, client_id, pem)
        assert claims["appid"] == client_id and sorted(claims["roles"]) == sorted(PERMISSIONS)

        # Again: nothing changes.
        second = await starter(env, home, "bootstrap", on_line=on_code(approver(session, sims)))
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Nothing to change" in second.stdout and second.changes == []
        assert env_file.read_text() == written and len(app.key_credentials) == 1

        # An admin consent revoked by hand: the next run puts back exactly that one.
        audit = ROLE_BY_VALUE["AuditLog.Read.All"].id
        revoked = next(a for a in sims.entra.state.app_role_assignments(sp.id) if a.app_role_id == audit)
        sims.entra.state.remove_app_role_assignment(revoked)
        third = await starter(env, home, "bootstrap", on_line=on_code(approver(session, sims)))
        assert third.returncode == 0, third.stdout + third.stderr
        assert third.changes == ["granted admin consent for AuditLog.Read.All"]
        assert len(sims.entra.state.app_role_assignments(sp.id)) == len(PERMISSIONS)


async def test_who_may_bootstrap(tmp_path: Path) -> None:
    async with running_simulators(tmp_path / "sim", entra=sim_config()) as sims, https(sims) as session:
        # An ordinary user can't consent to what bootstrap asks for: the sign-in ends without a token.
        settings = settings_from_env(entra_env(sims))
        options = bootstrap.BootstrapOptions(env_file=tmp_path / "user" / ".env")
        result, _, status = await in_process(settings, options, session, sims, f"adele.vance@{TENANT_DOMAIN}")
        assert status == 403
        assert isinstance(result, bootstrap.BootstrapError)
        assert "AADSTS90094" in str(result) and "Global Administrator or Privileged Role Administrator" in str(result)

        # A Cloud Application Administrator signs in but can't grant Graph's application permissions:
        # refused before anything is made, in one line.
        reply = await session.post(
            f"{sims.entra.url}/_sim/users",
            json={"userPrincipalName": f"apps@{TENANT_DOMAIN}", "directoryRoles": ["Cloud Application Administrator"]},
        )
        assert reply.status == 201
        home = tmp_path / "cloud-admin"
        home.mkdir()
        refused = await starter(
            cli_env(sims), home, "bootstrap", on_line=on_code(approver(session, sims, f"apps@{TENANT_DOMAIN}"))
        )
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "is Cloud Application Administrator: that can register the app but not grant" in refused.stderr
        assert sims.entra.state.application_by_unique_name(UNIQUE_NAME) is None
        assert not (home / ".env").exists() and not (tmp_path / "user" / ".env").exists()


async def test_a_client_secret_on_request_never_printed(tmp_path: Path) -> None:
    async with running_simulators(tmp_path / "sim", entra=sim_config()) as sims, https(sims) as session:
        settings = settings_from_env(entra_env(sims))
        env_file = tmp_path / "cfg" / ".env"
        options = bootstrap.BootstrapOptions(env_file=env_file, secret=True, tenant=TENANT_DOMAIN, days=90)
        result, lines, _ = await in_process(settings, options, session, sims, f"admin@{TENANT_DOMAIN}")
        assert isinstance(result, bootstrap.BootstrapResult), lines
        written = bootstrap.read_env(env_file)
        secret = written[bootstrap.ENV_SECRET]
        assert bootstrap.ENV_CERTIFICATE not in written and mode(env_file) == 0o600
        assert secret not in "\n".join(lines) and any("added a client secret" in line for line in lines)
        app = sims.entra.state.application_by_app_id(result.client_id)
        assert app is not None and [p.hint for p in app.password_credentials] == [secret[:3]]
        identity = settings_from_env({**entra_env(sims), **written})
        tokens = MsalTokenProvider.from_settings(identity.entra)
        assert jwt.decode(await tokens.token(), options={"verify_signature": False})["appid"] == result.client_id


async def test_multi_tenant_provisioning_app_onboards_in_two_tenants_side_by_side(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    entra = sim_config(extra_tenants=[ExtraTenant()])
    clock = CallableClock(ts_env.get_current_time)
    async with harness_for(ts_env, tmp_path, entra=entra, clock=clock) as h, https(h.sims) as session:
        sims = h.sims
        # Bootstrap with no tenant configured: the administrator's home tenant (/organizations).
        nobody = h.settings.entra.model_copy(update={"tenant_id": None, "client_id": None, "client_secret": None})
        env_file = tmp_path / "msp" / ".env"
        options = bootstrap.BootstrapOptions(env_file=env_file, multi_tenant=True)
        result, lines, _ = await in_process(
            h.settings.model_copy(update={"entra": nobody}), options, session, sims, f"admin@{TENANT_DOMAIN}"
        )
        assert isinstance(result, bootstrap.BootstrapResult), lines
        assert result.tenant_id == SIM_TENANT_ID
        app = sims.entra.state.application_by_app_id(result.client_id)
        assert app is not None and app.props["signInAudience"] == "AzureADMultipleOrgs"

        # The customer's admin approves at the URL `tenant add` prints; it waits until the app can work there.
        customer = sims.entra.tenant_state(CUSTOMER_TENANT_ID)

        consent_url = re.compile(r"https://\S+/adminconsent\?client_id=\S+")

        async def consent_as_customer_admin(line: str) -> None:
            """The customer's administrator opens the printed URL, signs in and accepts."""
            url = consent_url.search(line)
            if url is None:
                return
            async with session.get(url.group(0)) as page:
                text = await page.text()
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text))
            form = {**fields, "username": f"admin@{CUSTOMER_DOMAIN}", "password": entra.user_password}
            async with session.post(url.group(0).split("?")[0], data=form) as accepted:
                assert accepted.status == 200, await accepted.text()

        env = cli_env(sims)
        add = ("tenant", "add", CUSTOMER_DOMAIN, "--wait", "--env-file", str(env_file))
        adding = asyncio.create_task(starter(env, tmp_path, *add, on_line=consent_as_customer_admin))
        added = await bounded(adding, "tenant add --wait", limit=90)
        assert added.returncode == 0, added.stdout + added.stderr
        assert f"/{CUSTOMER_TENANT_ID}/adminconsent?client_id={result.client_id}" in added.stdout
        assert f"Tenant {CUSTOMER_TENANT_ID} is ready" in added.stdout
        checked = await starter(env, tmp_path, "tenant", "check", CUSTOMER_DOMAIN, "--env-file", str(env_file))
        assert checked.returncode == 0 and "ready" in checked.stdout, checked.stdout + checked.stderr

        # A worker with the bootstrapped identity onboards one PBX in each tenant.
        identity = bootstrap.read_env(env_file)
        h.settings = h.settings.model_copy(
            update={
                "entra": h.settings.entra.model_copy(
                    update={
                        "tenant_id": identity[bootstrap.ENV_TENANT],
                        "client_id": identity[bootstrap.ENV_CLIENT],
                        "client_secret": None,
                        "certificate_path": Path(identity[bootstrap.ENV_CERTIFICATE]),
                    }
                )
            }
        )
        async with h.worker():
            ours = await h.start(
                h.onboard_input("home-pbx", redirect_uris=RedirectUris(redirect_uri="https://home.example.com/cb"))
            )
            theirs = await h.start(
                h.onboard_input(
                    "customer-pbx", redirect_uris=RedirectUris(redirect_uri="https://fabrikam.example.com/cb")
                ).model_copy(update={"tenant_id": CUSTOMER_TENANT_ID})
            )
            home_status = await wait_for_phase(ours, Phase.WAITING_FOR_CONSENT, Phase.BLOCKED)
            customer_status = await wait_for_phase(theirs, Phase.WAITING_FOR_CONSENT, Phase.BLOCKED)
        assert home_status.phase == Phase.WAITING_FOR_CONSENT, home_status.blocked
        assert customer_status.phase == Phase.WAITING_FOR_CONSENT, customer_status.blocked
        assert home_status.app is not None and customer_status.app is not None
        assert (home_status.app.tenant_id, customer_status.app.tenant_id) == (SIM_TENANT_ID, CUSTOMER_TENANT_ID)
        assert sims.entra.state.application_by_app_id(home_status.app.client_id) is not None
        assert customer.application_by_app_id(home_status.app.client_id) is None
        assert customer.application_by_app_id(customer_status.app.client_id) is not None
        assert sims.entra.state.application_by_app_id(customer_status.app.client_id) is None
        # Each tenant's preflight ran as the provisioning app in that tenant.
        assert customer.sign_ins(result.client_id) and sims.entra.state.sign_ins(result.client_id)


@pytest.mark.parametrize("problem", ["single-tenant", "unknown tenant"])
async def test_tenant_add_says_what_is_wrong(tmp_path: Path, problem: str) -> None:
    async with running_simulators(tmp_path / "sim", entra=sim_config(extra_tenants=[ExtraTenant()])) as sims:
        env = {**cli_env(sims), **{k: v for k, v in sims.env().items() if k in bootstrap.MANAGED_ENV}}
        tenant = CUSTOMER_DOMAIN if problem == "single-tenant" else "nowhere.example.com"
        run = await starter(env, tmp_path, "tenant", "add", tenant, "--env-file", str(tmp_path / "none.env"))
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stdout + run.stderr
        if problem == "single-tenant":
            assert "is single-tenant (AzureADMyOrg)" in run.stderr and "bootstrap --multi-tenant" in run.stderr
        else:
            assert "Entra knows no tenant 'nowhere.example.com'" in run.stderr


async def test_a_certificate_near_its_end_is_replaced_and_the_old_one_kept(tmp_path: Path) -> None:
    async with running_simulators(tmp_path / "sim", entra=sim_config()) as sims, https(sims) as session:
        settings = settings_from_env(entra_env(sims))
        env_file = tmp_path / "cfg" / ".env"
        options = bootstrap.BootstrapOptions(env_file=env_file, days=30)
        first, lines, _ = await in_process(settings, options, session, sims, f"admin@{TENANT_DOMAIN}")
        assert isinstance(first, bootstrap.BootstrapResult), lines
        app = sims.entra.state.application_by_app_id(first.client_id)
        assert app is not None
        [old] = app.key_credentials
        # 30 days is inside the renewal window: the next run makes a new certificate and keeps the old one
        # registered (a worker may still hold it), sending it back with its key.
        second, lines, _ = await in_process(settings, options, session, sims, f"admin@{TENANT_DOMAIN}")
        assert isinstance(second, bootstrap.BootstrapResult), lines
        assert [c.split(" (")[0] for c in second.changes][:1] == ["added a certificate"]
        kept, added = app.key_credentials
        pem = Path(bootstrap.read_env(env_file)[bootstrap.ENV_CERTIFICATE])
        assert kept.key_id == old.key_id and (kept.start, kept.end) == (old.start, old.end)
        assert added.sha1_thumbprint == CertificateCredential.from_pem_file(pem).thumbprint != old.sha1_thumbprint
        assert (await sign_in_with(sims, SIM_TENANT_ID, first.client_id, pem))["appid"] == first.client_id


def test_env_file_lines_are_kept_and_only_the_managed_ones_change(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "export YEC_ENTRA__CLIENT_ID='old'\nYEC_ENTRA__CLIENT_ID=older\n# comment\nYEC_X=1 # trailing\n"
        'YEC_ENTRA__CERTIFICATE_PATH="/a path/with spaces.pem"\n'
    )
    assert bootstrap.read_env(env_file) == {
        bootstrap.ENV_CLIENT: "older",
        bootstrap.ENV_CERTIFICATE: "/a path/with spaces.pem",
    }
    changed = bootstrap.update_env(
        env_file,
        {bootstrap.ENV_CLIENT: "new", bootstrap.ENV_CERTIFICATE: None, bootstrap.ENV_SECRET: "abc8Q~x.y_z-"},
    )
    assert changed == sorted([bootstrap.ENV_CLIENT, bootstrap.ENV_CERTIFICATE, bootstrap.ENV_SECRET])
    assert env_file.read_text().splitlines() == [
        "YEC_ENTRA__CLIENT_ID=new",
        "# comment",
        "YEC_X=1 # trailing",
        "YEC_ENTRA__CLIENT_SECRET=abc8Q~x.y_z-",
    ]
    assert mode(env_file) == 0o600
    assert bootstrap.update_env(env_file, {bootstrap.ENV_CLIENT: "new"}) == []
    assert bootstrap.update_env(env_file, {bootstrap.ENV_CERTIFICATE: "/dir with space/p.pem"}) == [
        bootstrap.ENV_CERTIFICATE
    ]
    assert bootstrap.read_env(env_file)[bootstrap.ENV_CERTIFICATE] == "/dir with space/p.pem"
