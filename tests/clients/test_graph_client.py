"""GraphClient against the Entra simulator over real HTTPS, with real MSAL tokens.

Every test asserts on the simulator's state (what Graph would now hold), not only on return values.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from clients.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    NotYetReplicated,
    PermissionDenied,
    Throttled,
    Transient,
)
from clients.graph import GRAPH_APP_ID, GraphClient, _error_from_response
from clients.graph_models import Application, KeyCredential
from clients.msal_auth import CertificateCredential, MsalTokenProvider
from clients.retry import RetryConfig
from simulators.entra.catalog import DEFAULT_PROVISIONING_ROLES
from simulators.entra.server import EntraSimulator
from simulators.entra.state import Application as SimApplication
from simulators.entra.tokens import new_signing_key
from simulators.tls import LocalCA, create_client_certificate
from tests.clients.conftest import (
    FAST_RETRY,
    RecordingSleep,
    app_provider,
    provisioning_graph,
    route_count,
    sim_admin,
    token_requests,
)
from tests.conftest import StartEntra

APP_BODY: dict[str, Any] = {
    "displayName": "Yeastar PBX",
    "signInAudience": "AzureADMyOrg",
    "web": {"redirectUris": ["https://pbx.example.com/api/oauth/callback"]},
}
ADD_PASSWORD = "/v1.0/applications/{id}/addPassword"
USER_READ_ALL = "df021288-bdef-4463-88db-98f22de89214"
GROUP_READ_ALL = "5b567255-7703-4780-807c-7be8301ae99b"


async def new_app(graph: GraphClient) -> Application:
    app, created = await graph.upsert_application("yeastar-pbx", APP_BODY)
    assert created
    return app


# --- applications ---------------------------------------------------------------------------------


async def test_upsert_twice_creates_one_app_and_updates_it(graph: GraphClient, sim: EntraSimulator) -> None:
    first, created = await graph.upsert_application("yeastar-pbx", APP_BODY)
    second, created_again = await graph.upsert_application(
        "yeastar-pbx", {**APP_BODY, "displayName": "Yeastar PBX (renamed)"}
    )
    assert (created, created_again) == (True, False)
    assert second.id == first.id and second.display_name == "Yeastar PBX (renamed)"
    matching = [a for a in sim.state.applications() if a.unique_name == "yeastar-pbx"]
    assert len(matching) == 1
    assert matching[0].display_name == "Yeastar PBX (renamed)"
    assert matching[0].props["web"]["redirectUris"] == ["https://pbx.example.com/api/oauth/callback"]
    assert first.sign_in_audience == "AzureADMyOrg"
    assert first.web.redirect_uris == ["https://pbx.example.com/api/oauth/callback"]


async def test_upsert_reread_after_204_waits_for_replication(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a 204 the client re-reads the app: a 404 then is replication lag (the app exists)."""
    app = await new_app(graph)
    lookup = sim.state.application_by_unique_name
    lookups = 0

    def lagging_replica(unique_name: str) -> SimApplication | None:
        # The PATCH (lookup 1) sees the app; the first re-read (lookup 2) hits a replica that does not.
        nonlocal lookups
        lookups += 1
        return None if lookups == 2 else lookup(unique_name)

    monkeypatch.setattr(sim.state, "application_by_unique_name", lagging_replica)
    again, created = await graph.upsert_application("yeastar-pbx", APP_BODY)
    assert (again.id, created) == (app.id, False)
    assert len(sleep.delays) == 1 and lookups == 3


async def test_get_application_three_ways(graph: GraphClient) -> None:
    app = await new_app(graph)
    by_id = await graph.get_application(app.id)
    by_app_id = await graph.get_application_by_app_id(app.app_id)
    by_name = await graph.get_application_by_unique_name("yeastar-pbx")
    assert by_id == by_app_id == by_name
    assert by_id.unique_name == "yeastar-pbx"


async def test_missing_application_is_not_found_with_request_id(graph: GraphClient, sim: EntraSimulator) -> None:
    with pytest.raises(NotFound) as caught:
        await graph.get_application_by_unique_name("no-such-app")
    error = caught.value
    assert (error.status, error.code) == (404, "Request_ResourceNotFound")
    assert error.request_id == sim.state.request_log[-1].request_id
    assert str(error).startswith("NotFound: 404 Request_ResourceNotFound: Resource 'no-such-app' does not exist")
    assert str(error).endswith(f"(request-id {error.request_id})")
    assert not error.retryable


async def test_update_replaces_redirect_uris(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    uris = ["https://pbx.example.com/api/oauth/callback", "https://pbx.example.com/sso/callback"]
    await graph.update_application(app.id, {"web": {"redirectUris": uris}})
    stored = sim.state.application(app.id)
    assert stored is not None and stored.props["web"]["redirectUris"] == uris
    assert (await graph.get_application(app.id)).web.redirect_uris == uris


async def test_delete_application(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    await graph.delete_application(app.id)
    assert sim.state.application(app.id) is None
    assert app.id in sim.state.deleted_applications
    with pytest.raises(NotFound):
        await graph.get_application(app.id)


async def test_invalid_body_is_invalid_request(graph: GraphClient, sim: EntraSimulator) -> None:
    body = {**APP_BODY, "web": {"redirectUris": ["http://pbx.example.com/callback"]}}
    with pytest.raises(InvalidRequest) as caught:
        await graph.upsert_application("yeastar-pbx", body)
    assert caught.value.status == 400 and not caught.value.retryable
    assert sim.state.application_by_unique_name("yeastar-pbx") is None


# --- secrets -------------------------------------------------------------------------------------


async def test_password_add_list_remove(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=180)
    new = await graph.add_password(app.id, "op-1234", end=end)
    secret = new.secret_text.get_secret_value()
    assert secret not in repr(new) and secret not in str(new)
    stored = sim.state.application(app.id)
    assert stored is not None
    [credential] = stored.password_credentials
    assert credential.key_id == new.key_id and credential.display_name == "op-1234"
    assert credential.matches(secret) and credential.end == end
    listed = await graph.list_passwords(app.id)
    assert [(p.key_id, p.display_name, p.end_date_time) for p in listed] == [(new.key_id, "op-1234", end)]
    await graph.remove_password(app.id, new.key_id)
    assert stored.password_credentials == []
    assert await graph.list_passwords(app.id) == []


async def test_add_password_whose_answer_was_lost_after_commit_is_transient(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)
    sim.config.drop_after_commit_rate = 1.0
    with pytest.raises(Transient) as caught:
        await graph.add_password(app.id, "op-1")
    assert caught.value.status is None
    # The secret exists although the caller never saw it: only listing by its tag can find it.
    stored = sim.state.application(app.id)
    assert stored is not None and [c.display_name for c in stored.password_credentials] == ["op-1"]
    assert route_count(sim, "POST", ADD_PASSWORD) == 1 and sleep.delays == []


async def test_remove_password_converges_when_its_answer_was_lost(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)
    new = await graph.add_password(app.id, "op-1")
    sim.config.drop_after_commit_rate = 1.0
    sleep.on_sleep = lambda: setattr(sim.config, "drop_after_commit_rate", 0.0)
    await graph.remove_password(app.id, new.key_id)
    stored = sim.state.application(app.id)
    assert stored is not None and stored.password_credentials == []
    # The first attempt removed the key but its answer was lost; the re-sent one found it gone.
    assert [r.status for r in sim.state.request_log if r.route.endswith("/removePassword")] == [0, 404]
    assert len(sleep.delays) == 1


async def test_removing_a_key_that_is_already_gone_succeeds(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    kept = await graph.add_password(app.id, "kept")
    await graph.remove_password(app.id, str(uuid.uuid4()))
    stored = sim.state.application(app.id)
    assert stored is not None and [c.key_id for c in stored.password_credentials] == [kept.key_id]
    await graph.delete_application(app.id)
    await graph.remove_password(app.id, kept.key_id)  # the app itself is gone
    statuses = [r.status for r in sim.state.request_log if r.route.endswith("/removePassword")]
    assert statuses == [404, 404]


async def test_quick_second_secret_hits_concurrency_violation_and_is_retried(
    start_entra: StartEntra, ca: LocalCA, sleep: RecordingSleep
) -> None:
    """409 Directory_ConcurrencyViolation proves the add did not run, so even addPassword is re-sent."""
    sim = await start_entra(replication_delay_seconds=0.05)
    async with provisioning_graph(sim, ca, sleep=sleep) as graph:
        app = await new_app(graph)
        await graph.add_password(app.id, "first")
        await graph.add_password(app.id, "second")
    stored = sim.state.application(app.id)
    assert stored is not None
    assert [c.display_name for c in stored.password_credentials] == ["first", "second"]
    assert route_count(sim, "POST", ADD_PASSWORD) > 2
    assert any(r.status == 409 for r in sim.state.request_log)


async def test_add_password_is_not_resent_after_a_dropped_connection(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)
    sim.config.drop_rate = 1.0
    calls_before = graph.calls
    with pytest.raises(Transient) as caught:
        await graph.add_password(app.id, "op-1")
    assert caught.value.status is None and caught.value.retryable
    # Exactly one attempt reached the server and nothing was retried: the caller must reconcile.
    assert route_count(sim, "POST", ADD_PASSWORD) == 1
    assert graph.calls == calls_before + 1
    assert sleep.delays == []


async def test_idempotent_call_is_retried_after_a_dropped_connection(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)
    sim.config.drop_rate = 1.0
    sleep.on_sleep = lambda: setattr(sim.config, "drop_rate", 0.0)
    assert (await graph.get_application(app.id)).id == app.id
    assert len(sleep.delays) == 1
    # aiohttp itself re-sends an idempotent request once when a pooled keep-alive connection turns
    # out to be closed, so the dropped attempt may have reached the server twice.
    assert route_count(sim, "GET", "/v1.0/applications/{id}") in (2, 3)


async def test_add_password_is_resent_after_a_503_with_graph_error(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)
    sim.config.error_rate = 1.0
    sleep.on_sleep = lambda: setattr(sim.config, "error_rate", 0.0)
    new = await graph.add_password(app.id, "op-1")
    stored = sim.state.application(app.id)
    assert stored is not None and [c.key_id for c in stored.password_credentials] == [new.key_id]
    assert route_count(sim, "POST", ADD_PASSWORD) == 2


async def test_persistent_503_gives_up_as_transient(graph: GraphClient, sim: EntraSimulator) -> None:
    sim.config.error_rate = 1.0
    with pytest.raises(Transient) as caught:
        await graph.get_graph_service_principal()
    assert (caught.value.status, caught.value.code) == (503, "ServiceUnavailable")
    assert caught.value.request_id is not None
    assert route_count(sim, "GET", "/v1.0/servicePrincipals(appId='{app_id}')") == FAST_RETRY.max_attempts


async def test_policy_blocking_secrets(graph: GraphClient, sim: EntraSimulator, ca: LocalCA) -> None:
    app = await new_app(graph)
    assert not (await graph.get_default_app_management_policy()).password_addition_blocked()
    await sim_admin(sim, ca, "policy", {"passwordAddition": True, "maxLifetimeDays": 90})
    policy = await graph.get_default_app_management_policy()
    assert policy.password_addition_blocked()
    assert policy.password_max_lifetime() == timedelta(days=90)
    # Apps created before the restriction date are exempt.
    assert not policy.password_addition_blocked(app_created=datetime(2018, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidRequest) as caught:
        await graph.add_password(app.id, "op-1")
    assert caught.value.code == "CredentialTypeNotAllowedAsPerAppPolicy"
    stored = sim.state.application(app.id)
    assert stored is not None and stored.password_credentials == []


# --- throttling ------------------------------------------------------------------------------------


async def test_throttled_write_waits_retry_after(
    graph: GraphClient, sim: EntraSimulator, sleep: RecordingSleep
) -> None:
    app = await new_app(graph)  # write 1
    sim.config.retry_after_seconds = 0.05
    sim.config.throttle_every_n_writes = 2  # write 2 (the first addPassword) answers 429
    sleep.on_sleep = lambda: setattr(sim.config, "throttle_every_n_writes", 0)
    new = await graph.add_password(app.id, "op-1")
    assert sleep.delays == [0.05]
    stored = sim.state.application(app.id)
    assert stored is not None and [c.key_id for c in stored.password_credentials] == [new.key_id]
    assert [r.status for r in sim.state.request_log if r.route == ADD_PASSWORD] == [429, 200]


async def test_throttling_that_persists_raises_throttled(
    sim: EntraSimulator, ca: LocalCA, provider: MsalTokenProvider, sleep: RecordingSleep
) -> None:
    sim.config.retry_after_seconds = 0.01
    sim.config.throttle_every_n_writes = 1
    retry = RetryConfig(max_attempts=3, base_delay=0.01, max_delay=0.01)
    async with GraphClient(sim.url, provider, ca.ca_file, retry=retry, sleep=sleep) as graph:
        with pytest.raises(Throttled) as caught:
            await graph.upsert_application("yeastar-pbx", APP_BODY)
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, "TooManyRequests", 0.01)
    assert sleep.delays == [0.01, 0.01]
    assert sim.state.application_by_unique_name("yeastar-pbx") is None


# --- service principals, replication, consent -----------------------------------------------------


async def test_service_principal_right_after_app_waits_for_replication(
    start_entra: StartEntra, ca: LocalCA, sleep: RecordingSleep
) -> None:
    sim = await start_entra(replication_delay_seconds=0.3)
    async with provisioning_graph(sim, ca, sleep=sleep) as graph:
        app = await new_app(graph)
        sp = await graph.create_service_principal(app.app_id)
        fetched = await graph.get_service_principal_by_app_id(app.app_id)
    assert sp.app_id == app.app_id and fetched.id == sp.id
    stored = sim.state.service_principal_by_app_id(app.app_id)
    assert stored is not None and stored.id == sp.id
    attempts = route_count(sim, "POST", "/v1.0/servicePrincipals")
    assert attempts >= 2 and len(sleep.delays) == attempts - 1
    assert sum(sleep.delays) >= 0.2  # it really waited for replication


async def test_replication_that_never_catches_up_raises_not_yet_replicated(
    start_entra: StartEntra, ca: LocalCA, sleep: RecordingSleep
) -> None:
    sim = await start_entra(replication_delay_seconds=60)
    retry = RetryConfig(base_delay=0.02, max_delay=0.05, replication_timeout=0.2)
    async with provisioning_graph(sim, ca, retry=retry, sleep=sleep) as graph:
        app = await new_app(graph)
        with pytest.raises(NotYetReplicated) as caught:
            await graph.create_service_principal(app.app_id)
    assert caught.value.status == 400 and caught.value.retryable
    assert "does not reference a valid application object" in caught.value.message
    assert sim.state.service_principal_by_app_id(app.app_id) is None


def _seed_answering_400_first(draws: int) -> int:
    """A simulator seed whose first ``draws`` coin flips all pick the 400 "Not a valid reference
    update" answer for a not-yet-replicated principal; the other answer, a 404, stays NotFound."""

    def all_400(seed: int) -> bool:
        flips = random.Random(seed)
        return all(flips.random() >= 0.5 for _ in range(draws))

    return next(seed for seed in range(100_000) if all_400(seed))


async def test_consent_assignment_right_after_sp_waits_for_replication(
    start_entra: StartEntra, ca: LocalCA, sleep: RecordingSleep
) -> None:
    sim = await start_entra(replication_delay_seconds=0.15, seed=_seed_answering_400_first(12))
    async with provisioning_graph(sim, ca, sleep=sleep) as graph:
        app = await new_app(graph)
        sp = await graph.create_service_principal(app.app_id)
        graph_sp = await graph.get_graph_service_principal()
        sleep.delays.clear()
        assignment = await graph.assign_app_role(sp.id, graph_sp.id, USER_READ_ALL)
    assert (assignment.principal_id, assignment.resource_id, assignment.app_role_id) == (
        sp.id,
        graph_sp.id,
        USER_READ_ALL,
    )
    assert sleep.delays  # at least one "Not a valid reference update" was waited out
    assert [a.app_role_id for a in sim.state.app_role_assignments(sp.id)] == [USER_READ_ALL]


async def test_app_role_assignments_list_duplicate_and_delete(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    sp = await graph.create_service_principal(app.app_id)
    graph_sp = await graph.get_graph_service_principal()
    assert graph_sp.app_id == GRAPH_APP_ID
    roles = graph_sp.app_role_ids()
    assert roles["User.Read.All"] == USER_READ_ALL and roles["Group.Read.All"] == GROUP_READ_ALL

    first = await graph.assign_app_role(sp.id, graph_sp.id, USER_READ_ALL)
    second = await graph.assign_app_role(sp.id, graph_sp.id, GROUP_READ_ALL)
    with pytest.raises(Conflict) as caught:
        await graph.assign_app_role(sp.id, graph_sp.id, USER_READ_ALL)
    assert caught.value.status == 400 and "already exists" in caught.value.message

    mine = await graph.list_app_role_assignments(sp.id)
    assert {a.id for a in mine} == {first.id, second.id}
    granted = await graph.list_app_role_assigned_to(graph_sp.id)
    assert {first.id, second.id} <= {a.id for a in granted}

    await graph.delete_app_role_assignment(graph_sp.id, first.id)
    assert [a.app_role_id for a in sim.state.app_role_assignments(sp.id)] == [GROUP_READ_ALL]
    assert [a.id for a in await graph.list_app_role_assignments(sp.id)] == [second.id]


async def test_second_service_principal_is_conflict(graph: GraphClient, sim: EntraSimulator) -> None:
    app = await new_app(graph)
    sp = await graph.create_service_principal(app.app_id)
    with pytest.raises(Conflict) as caught:
        await graph.create_service_principal(app.app_id)
    assert (caught.value.status, caught.value.code) == (409, "Request_MultipleObjectsWithSameKeyValue")
    assert [s.id for s in sim.state.service_principals() if s.app_id == app.app_id] == [sp.id]


async def test_missing_service_principal_is_not_found(graph: GraphClient) -> None:
    with pytest.raises(NotFound):
        await graph.get_service_principal_by_app_id("00000000-0000-4000-8000-000000000000")


async def test_interactive_consent_grant_is_listed(graph: GraphClient, sim: EntraSimulator, ca: LocalCA) -> None:
    app = await new_app(graph)
    sp = await graph.create_service_principal(app.app_id)
    assert await graph.list_oauth2_permission_grants(sp.id) == []
    await sim_admin(sim, ca, "interactive-consent", {"appId": app.app_id, "scope": "User.Read offline_access"})
    [grant] = await graph.list_oauth2_permission_grants(sp.id)
    assert (grant.client_id, grant.consent_type) == (sp.id, "AllPrincipals")
    assert grant.scopes == {"User.Read", "offline_access"}
    graph_sp = sim.state.service_principal_by_app_id(GRAPH_APP_ID)
    assert graph_sp is not None and grant.resource_id == graph_sp.id


# --- reads ----------------------------------------------------------------------------------------


async def test_list_users_follows_next_links(start_entra: StartEntra, ca: LocalCA) -> None:
    sim = await start_entra(users=6, provisioning_roles=["User.Read.All"])
    async with provisioning_graph(sim, ca) as graph:
        everyone = await graph.list_users(top=2)
        pages = graph.calls
        first_three = await graph.list_users(top=2, max_items=3)
    expected = sim.state.users()  # six seeded users plus the administrator
    assert [u.id for u in everyone] == [u.id for u in expected] and len(expected) == 7
    assert pages == 4
    assert [u.id for u in first_three] == [u.id for u in expected[:3]]
    assert graph.calls - pages == 2  # stopped paging once it had enough
    assert all(u.mail for u in everyone)


async def test_sign_ins_show_the_credential_a_client_used(graph: GraphClient, sim: EntraSimulator, ca: LocalCA) -> None:
    app = await new_app(graph)
    await graph.create_service_principal(app.app_id)
    new = await graph.add_password(app.id, "op-1")
    before_use = datetime.now(UTC) - timedelta(seconds=1)
    assert await graph.list_service_principal_sign_ins(app.app_id) == []
    consumer = app_provider(sim, ca, app.app_id, new.secret_text)
    await consumer.token()
    [sign_in] = await graph.list_service_principal_sign_ins(app.app_id, since=before_use)
    assert (sign_in.app_id, sign_in.service_principal_credential_key_id) == (app.app_id, new.key_id)
    assert sign_in.status.error_code == 0
    assert await graph.list_service_principal_sign_ins(app.app_id, since=datetime.now(UTC) + timedelta(hours=1)) == []


async def test_sign_ins_without_licence_are_permission_denied(
    graph: GraphClient, sim: EntraSimulator, ca: LocalCA
) -> None:
    await sim_admin(sim, ca, "license", {"p1": False})
    with pytest.raises(PermissionDenied) as caught:
        await graph.list_service_principal_sign_ins(sim.config.provisioning_client_id)
    assert (caught.value.status, caught.value.code) == (403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    assert caught.value.permission == "AuditLog.Read.All (with an Entra ID P1/P2 licence)"


async def test_missing_permission_is_permission_denied(start_entra: StartEntra, ca: LocalCA) -> None:
    sim = await start_entra(provisioning_roles=["Application.ReadWrite.All"])
    async with provisioning_graph(sim, ca) as graph:
        with pytest.raises(PermissionDenied) as caught:
            await graph.get_default_app_management_policy()
    assert (caught.value.status, caught.value.code) == (403, "Authorization_RequestDenied")
    assert caught.value.permission == "Policy.Read.All"
    assert str(caught.value) == (
        "PermissionDenied: 403 Authorization_RequestDenied: Insufficient privileges to complete the operation. "
        f"(needs the Microsoft Graph application permission Policy.Read.All) (request-id {caught.value.request_id})"
    )
    assert graph.calls == 1


async def test_consent_grants_need_directory_read_all(start_entra: StartEntra, ca: LocalCA) -> None:
    roles = [role for role in DEFAULT_PROVISIONING_ROLES if role != "Directory.Read.All"]
    sim = await start_entra(provisioning_roles=roles)
    async with provisioning_graph(sim, ca) as graph:
        provisioning_sp = await graph.get_service_principal_by_app_id(sim.config.provisioning_client_id)
        with pytest.raises(PermissionDenied) as caught:
            await graph.list_oauth2_permission_grants(provisioning_sp.id)
    assert (caught.value.status, caught.value.permission) == (403, "Directory.Read.All")


GraphCall = Callable[[GraphClient], Awaitable[object]]
SOME_ID = "00000000-0000-4000-8000-0000000000ff"
# Every GraphClient call and the least-privileged application permission Microsoft documents for it.
LEAST_PRIVILEGE: list[tuple[str, GraphCall, str]] = [
    ("upsert_application", lambda g: g.upsert_application("x", APP_BODY), "Application.ReadWrite.All"),
    ("list_applications", lambda g: g.list_applications(), "Application.Read.All"),
    ("get_application", lambda g: g.get_application(SOME_ID), "Application.Read.All"),
    ("get_application_by_app_id", lambda g: g.get_application_by_app_id(SOME_ID), "Application.Read.All"),
    ("get_application_by_unique_name", lambda g: g.get_application_by_unique_name("x"), "Application.Read.All"),
    ("update_application", lambda g: g.update_application(SOME_ID, {}), "Application.ReadWrite.All"),
    ("delete_application", lambda g: g.delete_application(SOME_ID), "Application.ReadWrite.All"),
    ("add_password", lambda g: g.add_password(SOME_ID, "x"), "Application.ReadWrite.All"),
    ("remove_password", lambda g: g.remove_password(SOME_ID, SOME_ID), "Application.ReadWrite.All"),
    ("list_passwords", lambda g: g.list_passwords(SOME_ID), "Application.Read.All"),
    ("get_key_credentials", lambda g: g.get_key_credentials(SOME_ID), "Application.Read.All"),
    ("create_service_principal", lambda g: g.create_service_principal(SOME_ID), "Application.ReadWrite.All"),
    ("get_service_principal_by_app_id", lambda g: g.get_service_principal_by_app_id(SOME_ID), "Application.Read.All"),
    ("get_graph_service_principal", lambda g: g.get_graph_service_principal(), "Application.Read.All"),
    ("list_app_role_assignments", lambda g: g.list_app_role_assignments(SOME_ID), "Application.Read.All"),
    ("list_app_role_assigned_to", lambda g: g.list_app_role_assigned_to(SOME_ID), "Application.Read.All"),
    ("assign_app_role", lambda g: g.assign_app_role(SOME_ID, SOME_ID, SOME_ID), "AppRoleAssignment.ReadWrite.All"),
    (
        "delete_app_role_assignment",
        lambda g: g.delete_app_role_assignment(SOME_ID, SOME_ID),
        "AppRoleAssignment.ReadWrite.All",
    ),
    ("list_users", lambda g: g.list_users(), "User.Read.All"),
    ("list_oauth2_permission_grants", lambda g: g.list_oauth2_permission_grants(SOME_ID), "Directory.Read.All"),
    ("get_default_app_management_policy", lambda g: g.get_default_app_management_policy(), "Policy.Read.All"),
    (
        "list_service_principal_sign_ins",
        lambda g: g.list_service_principal_sign_ins(SOME_ID),
        "AuditLog.Read.All (with an Entra ID P1/P2 licence)",
    ),
]


async def test_every_refusal_names_the_permission_the_call_needs(start_entra: StartEntra, ca: LocalCA) -> None:
    sim = await start_entra(provisioning_roles=[])  # a provisioning app holding no Graph permission
    async with provisioning_graph(sim, ca) as graph:
        for name, call, permission in LEAST_PRIVILEGE:
            with pytest.raises(PermissionDenied) as caught:
                await call(graph)
            assert (name, caught.value.status, caught.value.permission) == (name, 403, permission)
            assert f"(needs the Microsoft Graph application permission {permission})" in str(caught.value)
    public = {name for name in vars(GraphClient) if not name.startswith("_")} - {"close"}
    assert public == {name for name, _, _ in LEAST_PRIVILEGE}  # a new method gets a row here


async def test_reading_the_provisioning_apps_own_credential_expiry(
    start_entra: StartEntra, ca: LocalCA, tmp_path: Path
) -> None:
    certificate = create_client_certificate(tmp_path, "provisioning")
    sim = await start_entra(provisioning_certificate_pem=certificate.cert_pem)
    configured = sim.provisioning_credentials
    assert configured.secret is not None and configured.certificate is not None
    async with provisioning_graph(sim, ca) as graph:
        app = await graph.get_application_by_app_id(sim.config.provisioning_client_id)
        [secret] = app.password_credentials
        assert (secret.key_id, secret.hint) == (configured.secret.key_id, sim.config.provisioning_secret[:3])
        assert secret.end_date_time == configured.secret.end
        [key] = app.key_credentials
        assert key.thumbprint == CertificateCredential.from_pem_file(certificate.pem_path).thumbprint
        assert key.end_date_time == x509.load_pem_x509_certificate(certificate.cert_pem).not_valid_after_utc
        assert (key.key_id, key.type, key.usage) == (configured.certificate.key_id, "AsymmetricX509Cert", "Verify")

        await sim_admin(sim, ca, "provisioning-credential", {"expires_in_days": 10})
        in_ten_days = await sim.clock.now() + timedelta(days=10)
        moved = await graph.get_application_by_app_id(sim.config.provisioning_client_id)
    for end in (moved.password_credentials[0].end_date_time, moved.key_credentials[0].end_date_time):
        assert end is not None and timedelta(0) <= in_ten_days - end < timedelta(seconds=5)


@pytest.mark.parametrize("identifier", [None, "", "not base64!", "aGVsbG8="])  # "aGVsbG8=": 5 bytes, not a SHA-1
def test_key_credential_without_a_thumbprint(identifier: str | None) -> None:
    assert KeyCredential(key_id=SOME_ID, custom_key_identifier=identifier).thumbprint is None


# --- tokens and requests ----------------------------------------------------------------------------


async def test_rejected_token_is_refreshed_once(
    graph: GraphClient, sim: EntraSimulator, provider: MsalTokenProvider
) -> None:
    await graph.get_graph_service_principal()
    hits = token_requests(sim, sim.config.provisioning_client_id)
    sim.state.signing_key = new_signing_key()  # tokens MSAL still caches are now rejected
    calls = graph.calls
    await graph.get_graph_service_principal()
    assert graph.calls - calls == 2  # the 401 and the re-send with a new token
    assert token_requests(sim, sim.config.provisioning_client_id) == hits + 1


async def test_invalid_token_without_refresh_is_permission_denied(sim: EntraSimulator, ca: LocalCA) -> None:
    class StaticToken:
        async def token(self) -> str:
            return "not-a-token"

    async with GraphClient(sim.url, StaticToken(), ca.ca_file, retry=FAST_RETRY) as graph:
        with pytest.raises(PermissionDenied) as caught:
            await graph.get_graph_service_principal()
    assert (caught.value.status, caught.value.code) == (401, "InvalidAuthenticationToken")
    assert graph.calls == 1


async def test_each_request_has_its_own_client_request_id(
    sim: EntraSimulator, ca: LocalCA, provider: MsalTokenProvider
) -> None:
    sent: list[str] = []

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(params.headers["client-request-id"])

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with GraphClient(sim.url, provider, ca.ca_file, retry=FAST_RETRY, session=session) as graph:
            await graph.get_graph_service_principal()
            await graph.get_graph_service_principal()
        assert not session.closed  # a caller's session stays the caller's
    assert len(sent) == 2 and len(set(sent)) == 2
    assert all(len(value) == 36 for value in sent)


async def test_unreachable_graph_is_transient(provider: MsalTokenProvider, ca: LocalCA) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    async with GraphClient(f"https://127.0.0.1:{port}", provider, ca.ca_file, retry=FAST_RETRY, sleep=sleep) as graph:
        with pytest.raises(Transient) as caught:
            await graph.get_graph_service_principal()
    assert caught.value.status is None
    assert graph.calls == FAST_RETRY.max_attempts and len(sleep.delays) == FAST_RETRY.max_attempts - 1


# --- error mapping details (shapes the simulator has no trigger for) --------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (
            403,
            "Authorization_RequestDenied",
            "When using this permission, the backing application of the "
            "service principal being created must in the local tenant",
            NotYetReplicated,
        ),
        (400, "Request_BadRequest", "Not a valid reference update.", NotYetReplicated),
        (409, "Directory_ConcurrencyViolation", "Another update to the object is in progress.", NotYetReplicated),
        (409, "Request_MultipleObjectsWithSameKeyValue", "Another object with the same value exists.", Conflict),
        (404, "Request_ResourceNotFound", "Resource 'x' does not exist.", NotFound),
        (401, "InvalidAuthenticationToken", "Access token has expired.", PermissionDenied),
        (502, "BadGateway", "Bad gateway.", Transient),
        (413, "RequestEntityTooLarge", "Too large.", InvalidRequest),
    ],
)
def test_error_mapping(status: int, code: str, message: str, expected: type[ApiError]) -> None:
    body = f'{{"error": {{"code": "{code}", "message": "{message}", "innerError": {{"request-id": "r-1"}}}}}}'
    error = _error_from_response(status, {}, body)
    assert type(error) is expected
    assert (error.status, error.code, error.message, error.request_id) == (status, code, message, "r-1")


def test_permission_denied_names_the_permission() -> None:
    body = '{"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges."}}'
    unknown = _error_from_response(403, {}, body)
    assert isinstance(unknown, PermissionDenied) and unknown.permission is None
    assert str(unknown) == "PermissionDenied: 403 Authorization_RequestDenied: Insufficient privileges."
    named = _error_from_response(403, {"request-id": "r-3"}, body, permission="User.Read.All")
    assert isinstance(named, PermissionDenied) and named.message == "Insufficient privileges."
    assert str(named) == (
        "PermissionDenied: 403 Authorization_RequestDenied: Insufficient privileges. "
        "(needs the Microsoft Graph application permission User.Read.All) (request-id r-3)"
    )
    # Only a refusal names it.
    assert not isinstance(_error_from_response(404, {}, body, permission="User.Read.All"), PermissionDenied)


def test_error_without_graph_body_uses_headers() -> None:
    error = _error_from_response(429, {"Retry-After": "3", "request-id": "r-2"}, "<html>busy</html>")
    assert isinstance(error, Throttled)
    assert (error.retry_after, error.code, error.request_id, error.message) == (3.0, "", "r-2", "HTTP 429")
