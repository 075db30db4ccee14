"""MsalTokenProvider with real MSAL against the Entra simulator's login endpoints over HTTPS."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from structlog.testing import capture_logs

from clients.errors import AuthenticationFailed, NotFound, Throttled, Transient
from clients.graph import GraphClient
from clients.graph_models import NewPassword
from clients.msal_auth import SIGN_IN_IDS_KEPT, CertificateCredential, MsalTokenProvider
from clients.oidc import tenant_id_of
from common.settings import SettingsError
from simulators.entra.catalog import TENANT_DOMAIN
from simulators.entra.server import EntraSimulator
from simulators.tls import LocalCA, create_client_certificate, server_ssl_context
from tests.clients.conftest import (
    FAST_RETRY,
    RecordingSleep,
    app_provider,
    entra_settings,
    provisioning_graph,
    sim_admin,
    token_requests,
)
from tests.conftest import StartEntra

UNKNOWN_APP_ID = "00000000-0000-4000-8000-0000000000aa"
STUB_TENANT = "33333333-3333-4333-8333-333333333333"


async def test_token_is_reused_until_invalidated(provider: MsalTokenProvider, sim: EntraSimulator) -> None:
    app_id = sim.config.provisioning_client_id
    first = await provider.token()
    again = await asyncio.gather(*(provider.token() for _ in range(5)))
    assert set(again) == {first}
    assert token_requests(sim, app_id) == 1  # MSAL's cache answered the other five

    await provider.invalidate(first)
    fresh = await provider.token()
    assert fresh != first
    assert token_requests(sim, app_id) == 2


async def test_provider_never_shows_its_secret(provider: MsalTokenProvider, sim: EntraSimulator) -> None:
    await provider.token()
    assert sim.config.provisioning_secret not in repr(provider)
    assert sim.config.provisioning_secret not in repr(vars(provider))


async def test_wrong_secret_is_authentication_failed(sim: EntraSimulator, ca: LocalCA) -> None:
    secret = "definitely-not-the-secret"
    provider = app_provider(sim, ca, sim.config.provisioning_client_id, SecretStr(secret))
    with pytest.raises(AuthenticationFailed) as caught:
        await provider.token()
    error = caught.value
    assert (error.aadsts, error.status, error.code) == ("AADSTS7000215", 401, "invalid_client")
    assert error.message.startswith("AADSTS7000215: Invalid client secret provided.")
    assert "Trace ID" not in error.message and error.request_id
    assert secret not in str(error) and secret not in repr(error)
    assert not error.retryable
    [sign_in] = sim.state.sign_ins(sim.config.provisioning_client_id)
    assert sign_in.error_code == 7000215


async def test_unknown_app_is_authentication_failed(sim: EntraSimulator, ca: LocalCA) -> None:
    provider = app_provider(sim, ca, UNKNOWN_APP_ID, SecretStr("whatever"))
    with pytest.raises(AuthenticationFailed) as caught:
        await provider.token()
    assert (caught.value.aadsts, caught.value.status, caught.value.code) == ("AADSTS700016", 400, "unauthorized_client")


async def test_unknown_tenant_fails_discovery(sim: EntraSimulator, ca: LocalCA) -> None:
    settings = entra_settings(sim, ca, tenant_id="99999999-9999-4999-8999-999999999999")
    with pytest.raises(AuthenticationFailed) as caught:
        await MsalTokenProvider.from_settings(settings).token()
    assert caught.value.code == "authority_discovery_failed"
    assert token_requests(sim, sim.config.provisioning_client_id) == 0


async def test_unreachable_login_is_transient(sim: EntraSimulator, ca: LocalCA) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{probe.getsockname()[1]}"
    provider = MsalTokenProvider.from_settings(entra_settings(sim, ca, authority_host=url))
    with pytest.raises(Transient) as caught:
        await provider.token()
    assert caught.value.status is None and caught.value.retryable


def test_from_settings_needs_a_complete_identity(sim: EntraSimulator, ca: LocalCA) -> None:
    with pytest.raises(SettingsError, match="YEC_ENTRA__CLIENT_SECRET or YEC_ENTRA__CERTIFICATE_PATH"):
        MsalTokenProvider.from_settings(entra_settings(sim, ca, client_secret=None))


# --- certificate credential -------------------------------------------------------------------------


async def test_certificate_credential_signs_in(start_entra: StartEntra, ca: LocalCA, tmp_path: Path) -> None:
    certificate = create_client_certificate(tmp_path, "provisioning")
    sim = await start_entra(provisioning_certificate_pem=certificate.cert_pem)
    settings = entra_settings(sim, ca, client_secret=None, certificate_path=certificate.pem_path)
    provider = MsalTokenProvider.from_settings(settings)
    async with GraphClient(sim.url, provider, ca.ca_file, retry=FAST_RETRY) as graph:
        graph_sp = await graph.get_graph_service_principal()
    assert graph_sp.app_roles
    [sign_in] = sim.state.sign_ins(sim.config.provisioning_client_id)
    assert (sign_in.credential_type, sign_in.credential_thumbprint) == ("certificate", certificate.thumbprint_sha1_hex)


def test_certificate_file_thumbprint_and_checks(tmp_path: Path) -> None:
    mine = create_client_certificate(tmp_path, "mine")
    other = create_client_certificate(tmp_path, "other")
    credential = CertificateCredential.from_pem_file(mine.pem_path)
    assert credential.thumbprint == mine.thumbprint_sha1_hex
    assert "PRIVATE KEY" not in repr(credential)

    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(mine.private_key_pem + other.cert_pem)
    with pytest.raises(ValueError, match="does not belong to the private key"):
        CertificateCredential.from_pem_file(mixed)
    key_only = tmp_path / "key-only.pem"
    key_only.write_bytes(mine.private_key_pem)
    with pytest.raises(ValueError, match="need an unencrypted private key and a certificate"):
        CertificateCredential.from_pem_file(key_only)


# --- proving a brand-new secret ----------------------------------------------------------------------


@dataclass
class NewApp:
    app_id: str
    password: NewPassword


async def create_app_with_secret(sim: EntraSimulator, ca: LocalCA, *, secret_replication: float = 0.0) -> NewApp:
    """An app with a service principal and a secret that replicates in ``secret_replication`` seconds."""
    async with provisioning_graph(sim, ca) as graph:
        app, _ = await graph.upsert_application(
            "consumer", {"displayName": "consumer", "signInAudience": "AzureADMyOrg"}
        )
        await graph.create_service_principal(app.app_id)
        sim.config.replication_delay_seconds = secret_replication
        password = await graph.add_password(app.id, "op-1")
    return NewApp(app.app_id, password)


async def test_new_secret_is_proven_after_replication(
    start_entra: StartEntra, ca: LocalCA, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await start_entra()
    new = await create_app_with_secret(sim, ca, secret_replication=0.3)
    secret = new.password.secret_text.get_secret_value()
    provider = app_provider(sim, ca, new.app_id, new.password.secret_text)
    sleep = RecordingSleep()
    caplog.set_level(logging.DEBUG)  # MSAL's and urllib3's own logging too
    with capture_logs() as logs:
        took = await provider.prove_secret_works(timeout=5.0, sleep=sleep)
    sign_ins = sim.state.sign_ins(new.app_id)  # newest first
    assert sign_ins[0].error_code == 0 and sign_ins[0].credential_key_id == new.password.key_id
    rejected = [s.error_code for s in sign_ins[1:]]
    assert rejected and set(rejected) == {7000215}  # each attempt really asked Entra again
    assert len(sleep.delays) == len(rejected)
    assert took >= 0.2
    assert {entry["event"] for entry in logs} == {"api_call.retry"}
    assert all(entry["code"] == "AADSTS7000215" for entry in logs)
    assert secret not in repr(logs) and secret not in caplog.text

    # The proven application is kept: the next token comes from its cache.
    await provider.token()
    assert token_requests(sim, new.app_id) == len(sign_ins)


async def test_secret_that_never_works_raises_after_timeout(start_entra: StartEntra, ca: LocalCA) -> None:
    sim = await start_entra()
    new = await create_app_with_secret(sim, ca, secret_replication=60)
    provider = app_provider(sim, ca, new.app_id, new.password.secret_text)
    started = asyncio.get_running_loop().time()
    with pytest.raises(AuthenticationFailed) as caught:
        await provider.prove_secret_works(timeout=0.3)
    assert caught.value.aadsts == "AADSTS7000215"
    assert asyncio.get_running_loop().time() - started < 2.0
    assert token_requests(sim, new.app_id) >= 2


async def test_expired_secret_is_not_waited_for(start_entra: StartEntra, ca: LocalCA) -> None:
    sim = await start_entra()
    new = await create_app_with_secret(sim, ca)
    assert new.password.end_date_time is not None
    lifetime = new.password.end_date_time - datetime.now(UTC)
    await sim_admin(sim, ca, "clock/advance", {"seconds": (lifetime + timedelta(days=1)).total_seconds()})
    provider = app_provider(sim, ca, new.app_id, new.password.secret_text)
    with pytest.raises(AuthenticationFailed) as caught:
        await provider.prove_secret_works(timeout=5.0)
    assert caught.value.aadsts == "AADSTS7000222"
    assert token_requests(sim, new.app_id) == 1


# --- telling the provider's own sign-ins from anyone else's ------------------------------------------


async def plain_token_request(sim: EntraSimulator, ca: LocalCA, client_id: str, secret: str) -> str:
    """A token request made without MSAL (e.g. by the PBX); returns the client-request-id it sent."""
    request_id = str(uuid.uuid4())
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": f"{sim.url}/.default",
    }
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.authority}/oauth2/v2.0/token", data=form, headers={"client-request-id": request_id}, ssl=context
        ) as response,
    ):
        assert response.status == 200, await response.text()
    return request_id


async def test_sign_in_ids_are_the_correlation_ids_of_the_providers_own_sign_ins(
    start_entra: StartEntra, ca: LocalCA
) -> None:
    sim = await start_entra()
    new = await create_app_with_secret(sim, ca, secret_replication=0.3)
    provider = app_provider(sim, ca, new.app_id, new.password.secret_text)
    await provider.prove_secret_works(timeout=5.0, sleep=RecordingSleep())
    proving = provider.sign_in_ids
    assert len(proving) >= 2 and len(set(proving)) == len(proving)  # rejected attempts, then success

    someone_else = await plain_token_request(sim, ca, new.app_id, new.password.secret_text.get_secret_value())
    await provider.invalidate(await provider.token())
    await provider.token()
    assert provider.sign_in_ids[: len(proving)] == proving and len(provider.sign_in_ids) == len(proving) + 1

    async with provisioning_graph(sim, ca) as graph:
        sign_ins = await graph.list_service_principal_sign_ins(new.app_id)  # newest first
    logged = [s.correlation_id for s in reversed(sign_ins)]
    assert logged == [*proving, someone_else, provider.sign_in_ids[-1]]
    assert someone_else not in provider.sign_in_ids
    assert [s.status.error_code for s in reversed(sign_ins)][: len(proving)] == [7000215] * (len(proving) - 1) + [0]


async def test_a_chosen_correlation_id_marks_every_sign_in_of_the_provider(
    start_entra: StartEntra, ca: LocalCA
) -> None:
    """The workflow picks the ID before the activity runs, so its own sign-ins stay recognisable even
    when an attempt dies before reporting anything back."""
    sim = await start_entra()
    new = await create_app_with_secret(sim, ca, secret_replication=0.3)
    chosen = "5b0c7c3e-9d51-4a53-9f0e-3d2b8c1d0a11"
    provider = app_provider(sim, ca, new.app_id, new.password.secret_text, correlation_id=chosen)
    await provider.prove_secret_works(timeout=5.0, sleep=RecordingSleep())
    someone_else = await plain_token_request(sim, ca, new.app_id, new.password.secret_text.get_secret_value())
    logged = [s.correlation_id for s in reversed(sim.state.sign_ins(new.app_id))]
    assert len(logged) >= 3 and set(logged[:-1]) == {chosen} and logged[-1] == someone_else
    assert set(provider.sign_in_ids) == {chosen}


async def test_sign_in_ids_keep_the_newest(provider: MsalTokenProvider, sim: EntraSimulator) -> None:
    for _ in range(SIGN_IN_IDS_KEPT + 2):
        await provider.invalidate(await provider.token())
    assert token_requests(sim, provider.client_id) == SIGN_IN_IDS_KEPT + 2
    newest = [s.correlation_id for s in reversed(sim.state.sign_ins(provider.client_id)[:SIGN_IN_IDS_KEPT])]
    assert provider.sign_in_ids == newest


# --- the provisioning identity's own credential expiring -------------------------------------------


async def test_expired_provisioning_secret_is_authentication_failed(sim: EntraSimulator, ca: LocalCA) -> None:
    await sim_admin(sim, ca, "provisioning-credential", {"expires_in_days": -1})
    with pytest.raises(AuthenticationFailed) as caught:
        await MsalTokenProvider.from_settings(entra_settings(sim, ca)).token()
    error = caught.value
    assert (error.aadsts, error.status, error.code) == ("AADSTS7000222", 401, "invalid_client")
    assert error.message.startswith(
        f"AADSTS7000222: The provided client secret keys for app '{sim.config.provisioning_client_id}' are expired."
    )


async def test_expired_provisioning_certificate_is_authentication_failed(
    start_entra: StartEntra, ca: LocalCA, tmp_path: Path
) -> None:
    certificate = create_client_certificate(tmp_path, "provisioning")
    sim = await start_entra(provisioning_certificate_pem=certificate.cert_pem)
    await sim_admin(sim, ca, "provisioning-credential", {"expires_in_days": -1})
    settings = entra_settings(sim, ca, client_secret=None, certificate_path=certificate.pem_path)
    with pytest.raises(AuthenticationFailed) as caught:
        await MsalTokenProvider.from_settings(settings).token()
    assert (caught.value.aadsts, caught.value.status) == ("AADSTS700027", 401)
    assert "[Reason - The key used is expired." in caught.value.message


# --- throttling and outages at the token endpoint (the simulator injects no faults there) ------------


@dataclass
class StubLogin:
    """A minimal HTTPS login host: OIDC discovery plus a token endpoint answering from a script."""

    url: str = ""
    answers: list[web.Response] = field(default_factory=list)
    token_hits: int = 0
    discovery_hits: int = 0
    connections: set[int] = field(default_factory=set)  # client ports seen: one per TLS connection


@pytest.fixture
async def stub_login(ca: LocalCA) -> AsyncIterator[StubLogin]:
    stub = StubLogin()

    async def discovery(request: web.Request) -> web.Response:
        stub.discovery_hits += 1
        base = f"{stub.url}/{STUB_TENANT}"
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
            }
        )

    async def token(request: web.Request) -> web.Response:
        stub.token_hits += 1
        assert request.transport is not None
        stub.connections.add(request.transport.get_extra_info("peername")[1])
        return stub.answers.pop(0)

    app = web.Application()
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", discovery)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    stub.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock, ssl_context=server_ssl_context(ca)).start()
    yield stub
    await runner.cleanup()


def stub_provider(stub: StubLogin, ca: LocalCA, client_id: str = UNKNOWN_APP_ID) -> MsalTokenProvider:
    return MsalTokenProvider(
        STUB_TENANT,
        client_id,
        SecretStr("secret"),
        authority_host=stub.url,
        graph_base_url=stub.url,
        ca_bundle=ca.ca_file,
        instance_discovery=False,
    )


async def test_token_endpoint_429_is_throttled_and_not_asked_again_early(stub_login: StubLogin, ca: LocalCA) -> None:
    stub_login.answers.append(
        web.json_response(
            {"error": "temporarily_unavailable", "error_description": "AADSTS50196: Too many requests."},
            status=429,
            headers={"Retry-After": "1"},
        )
    )
    provider = stub_provider(stub_login, ca)
    with pytest.raises(Throttled) as caught:
        await provider.token()
    assert (caught.value.retry_after, caught.value.code) == (1.0, "temporarily_unavailable")
    # Within Retry-After MSAL would only replay the 429: the provider says how long to wait instead.
    with pytest.raises(Throttled) as again:
        await provider.token()
    assert 0 < again.value.retry_after <= 1.0
    assert stub_login.token_hits == 1


async def test_token_endpoint_5xx_is_transient(stub_login: StubLogin, ca: LocalCA) -> None:
    stub_login.answers.append(web.Response(status=503, text="upstream unavailable"))
    with pytest.raises(Transient) as caught:
        await stub_provider(stub_login, ca).token()
    assert caught.value.status == 503


async def test_new_applications_share_discovery_and_connections(stub_login: StubLogin, ca: LocalCA) -> None:
    """Each integration signs in as its own new app: those sign-ins reuse the OIDC discovery answer and
    the pooled TLS connection instead of paying for both again."""
    apps = [f"00000000-0000-4000-8000-00000000010{n}" for n in range(3)]
    for n, client_id in enumerate(apps):
        stub_login.answers.append(
            web.json_response({"access_token": f"token-{n}", "token_type": "Bearer", "expires_in": 3599})
        )
        assert await stub_provider(stub_login, ca, client_id).token() == f"token-{n}"
    assert stub_login.token_hits == 3
    assert stub_login.discovery_hits <= 1  # none if an earlier test in this process fetched it already
    assert len(stub_login.connections) == 1


# --- which tenant a domain names -------------------------------------------------------------------


async def test_a_tenant_domain_resolves_to_its_guid(sim: EntraSimulator, ca: LocalCA) -> None:
    assert await tenant_id_of(sim.url, TENANT_DOMAIN, ca.ca_file) == sim.config.tenant_id
    assert await tenant_id_of(sim.url, sim.config.tenant_id.upper(), ca.ca_file) == sim.config.tenant_id
    with pytest.raises(NotFound, match=r"no tenant 'fabrikam\.onmicrosoft\.com'"):
        await tenant_id_of(sim.url, "fabrikam.onmicrosoft.com", ca.ca_file)
