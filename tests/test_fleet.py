"""Fleet operations as an MSP runs them (starter.py on the dev server, a worker process, the simulators):
adopting an app set up by hand, drift repaired by the daily check, discovery, plans that write nothing
and onboarding from a CSV file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from activities.app_review import GRAPH_APP_ID
from clients.graph import GraphClient
from clients.graph_models import Application
from clients.msal_auth import MsalTokenProvider
from models.integration import REQUIRED_GRAPH_PERMISSIONS
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from simulators.yeastar.server import YeastarSimConfig
from tests.conftest import settings_for, webhook_channel
from tests.operator import Operator, operator_env, worker_process
from tests.receivers import Receiver

pytestmark = pytest.mark.devserver


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    async with running_simulators(tmp_path / "sim", yeastar=YeastarSimConfig(sync_interval_seconds=0.3)) as running:
        yield running


@pytest.fixture
async def graph(sims: RunningSimulators, tmp_path: Path) -> AsyncIterator[GraphClient]:
    """Graph as an administrator clicking in the portal would change it (outside the service)."""
    entra = settings_for(sims, tmp_path / "admin").entra
    async with GraphClient(entra.graph_base_url, MsalTokenProvider.from_settings(entra), entra.ca_bundle) as client:
        yield client


async def app_by_hand(
    graph: GraphClient,
    name: str,
    redirect_uris: list[str],
    *,
    secret_days: float,
    consented: tuple[str, ...] = REQUIRED_GRAPH_PERMISSIONS,
) -> tuple[Application, SecretStr]:
    """The vendor's guide followed in the portal: app, redirect URIs, the six permissions, admin consent
    for ``consented`` of them, and a client secret."""
    graph_sp = await graph.get_graph_service_principal()
    roles = graph_sp.app_role_ids()
    app, _ = await graph.upsert_application(
        f"hand-{name}",
        {
            "displayName": name,
            "signInAudience": "AzureADMyOrg",
            "web": {"redirectUris": redirect_uris},
            "requiredResourceAccess": [
                {
                    "resourceAppId": GRAPH_APP_ID,
                    "resourceAccess": [{"id": roles[p], "type": "Role"} for p in REQUIRED_GRAPH_PERMISSIONS],
                }
            ],
        },
    )
    sp = await graph.create_service_principal(app.app_id)
    for permission in consented:
        await graph.assign_app_role(sp.id, graph_sp.id, roles[permission])
    secret = await graph.add_password(app.id, "PBX", datetime.now(UTC) + timedelta(days=secret_days))
    return app, secret.secret_text


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.of("/webhook")]


async def test_adopt_an_app_set_up_by_hand_then_drift_then_rotation(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, graph: GraphClient, receiver: Receiver, tmp_path: Path
) -> None:
    env = operator_env(
        dev_env,
        sims,
        tmp_path,
        YEC_NOTIFICATION_CHANNELS=json.dumps([webhook_channel(receiver, "ops")]),
        YEC_SIGN_IN_POLL_INTERVAL="PT1S",
        YEC_SIGN_IN_SETTLE_TIME="PT2S",
    )
    operator = Operator(env, [])
    async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
        uris = await human.read_redirect_uris()
        # By hand, five days before the secret expires; one admin consent was forgotten.
        app, secret = await app_by_hand(
            graph, "Yeastar PBX", uris.as_list(), secret_days=5, consented=REQUIRED_GRAPH_PERMISSIONS[:-1]
        )
        await human.save_app_registration(app.app_id, sims.entra.config.tenant_id, secret)
        await human.sign_in_and_accept(ADMIN_UPN)

    writes = sims.entra.state.write_count
    plan = await operator.run("adopt", "hand", "--app-id", app.app_id, "--plan")
    assert "no admin consent (app role assignment) for Presence.ReadWrite.All" in plan.stdout
    assert "appRoleAssignedTo  Presence.ReadWrite.All" in plan.stdout and "Plan only" in plan.stdout
    assert sims.entra.state.write_count == writes, "a plan writes nothing"

    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        adopted = await operator.run("adopt", "hand", "--app-id", app.app_id, "--yes")
        assert "adopts app" in adopted.stdout
        status = await operator.wait_for("hand", lambda s: s["phase"] == "Connected", "adopted")
        assert status["adopted_key_id"] == status["secret"]["key_id"]
        assert status["app"]["client_id"] == app.app_id
        assert "Presence.ReadWrite.All" in status["granted_permissions"], "the forgotten consent was repaired"

        urgent = [n for n in notifications(receiver) if n["kind"] == "secret_expiry"]
        assert [n["severity"] for n in urgent] == ["critical"], "one immediate critical reminder"
        assert urgent[0]["title"] == "Adopted: the client secret set up by hand expires in 5 days"
        assert urgent[0]["next_action"] == "python starter.py rotate hand", "a rotation offer"
        refused = await operator.run("secret", "hand", "--reveal", expect=2)
        assert "set up by hand and adopted" in refused.stderr

        # Drift: someone removes a consent and the SSO redirect URI and adds a secret in the portal.
        graph_sp = await graph.get_graph_service_principal()
        assignment = next(
            a
            for a in await graph.list_app_role_assignments(status["app"]["service_principal_id"])
            if a.resource_id == graph_sp.id
        )
        await graph.delete_app_role_assignment(graph_sp.id, assignment.id)
        await graph.update_application(app.id, {"web": {"redirectUris": [uris.redirect_uri]}})
        extra = await graph.add_password(app.id, "added by someone")
        checked = await operator.run("check", "hand")
        assert "repaired: no admin consent" in checked.stdout
        assert f"repaired: Web redirect URI(s) missing: {uris.sso_redirect_uri}" in checked.stdout
        assert f"needs you: client secret {extra.hint}… (key {extra.key_id}" in checked.stdout
        repaired = await graph.get_application(app.id)
        assert repaired.web.redirect_uris == uris.as_list()
        held = await graph.list_app_role_assignments(status["app"]["service_principal_id"])
        assert len([a for a in held if a.resource_id == graph_sp.id]) == 6
        (drift,) = [n for n in notifications(receiver) if n["kind"] == "app_drift"]
        assert "Needs you: client secret" in drift["summary"] and "Put back:" in drift["summary"]
        await operator.run("check", "hand")
        assert len([n for n in notifications(receiver) if n["kind"] == "app_drift"]) == 1, "told once"

        # The first rotation hands over a secret the service holds; the hand-made one goes after cut-over.
        await operator.run("rotate", "hand")
        rotating = await operator.wait_for(
            "hand", lambda s: (s["rotation"] or {}).get("stage") == "waiting_for_pbx", "new secret"
        )
        new_value = (await operator.run("secret", "hand", "--reveal", "--pending")).stdout.strip()
        async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
            await human.save_app_registration(app.app_id, sims.entra.config.tenant_id, SecretStr(new_value))
            await human.sign_in_and_accept(ADMIN_UPN)
        await operator.run("pbx-updated", "hand", "--by", ADMIN_UPN)
        done = await operator.wait_for("hand", lambda s: s["rotations_completed"] == 1, "rotated", limit=60)
    new_key = rotating["rotation"]["new_secret"]["key_id"]
    assert done["secret"]["key_id"] == new_key
    keys = {p.key_id for p in (await graph.get_application(app.id)).password_credentials}
    assert status["adopted_key_id"] not in keys and new_key in keys


async def test_plans_write_nothing_and_a_fleet_file_is_checked_before_anything_starts(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    # Integration IDs are unique across tests: they share one dev server, and an ID is a workflow ID.
    env = operator_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    writes = sims.entra.state.write_count

    plan = await operator.run("onboard", "planned", "--redirect-uri", "https://a.ras.yeastarcloud.com/cb", "--plan")
    assert "Onboarding would make 10 Microsoft Graph change(s)" in plan.stdout
    assert "addPassword" in plan.stdout and plan.stdout.count("appRoleAssignedTo") == 6

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,redirect_uri,sso_redirect_uri\n"
        "east,https://east.ras.yeastarcloud.com/cb,\n"
        "Bad_Name,https://x.ras.yeastarcloud.com/cb,\n"
        "west,http://west.example/cb,\n"
        "east,https://east2.ras.yeastarcloud.com/cb,\n"
    )
    refused = await operator.run("onboard", "--from", str(bad), expect=2)
    assert "nothing was started" in refused.stderr
    for line, problem in (
        (3, "id: integration ID 'Bad_Name'"),
        (4, "redirect_uri: redirect URI"),
        (5, "id east repeats line 2"),
    ):
        assert f"line {line}: {problem}" in refused.stderr

    good = tmp_path / "fleet.csv"
    good.write_text(
        "id,tenant,redirect_uri,display_name\n"
        f"csv-east,{sims.entra.config.tenant_id},https://east.ras.yeastarcloud.com/cb,East office\n"
        "csv-west,,https://west.ras.yeastarcloud.com/cb,\n"
    )
    planned = await operator.run("onboard", "--from", str(good), "--plan")
    assert planned.stdout.count("Graph change(s)") == 2 and "Plan only" in planned.stdout
    assert sims.entra.state.write_count == writes, "plans write nothing"

    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        started = await operator.run("onboard", "--from", str(good))
        assert "csv-east: started" in started.stdout and "csv-west: started" in started.stdout
        again = await operator.run("onboard", "--from", str(good))
        assert "csv-east: already running" in again.stdout
        listed = await operator.run("list", "--tenant", sims.entra.config.tenant_id)
        assert "csv-east" in listed.stdout and "csv-west" in listed.stdout
        other = await operator.run("list", "--tenant", "00000000-0000-4000-8000-000000000001")
        assert "no integrations" in other.stdout


async def test_discover_finds_hand_made_integrations_with_their_expiry(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, graph: GraphClient, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    pbx = await app_by_hand(graph, "Head office PBX", ["https://hq.ras.yeastarcloud.com/cb"], secret_days=20)
    await app_by_hand(graph, "Branch", ["https://branch.ras.yeastarcloud.com/cb"], secret_days=3)
    # Not a Yeastar integration: the six permissions alone are not enough, nor a PBX-ish URI alone.
    await app_by_hand(graph, "HR tool", ["https://hr.contoso.com/signin"], secret_days=100)

    found = await operator.run("adopt", "--discover")

    assert "2 app registration(s)" in found.stdout and "HR tool" not in found.stdout
    assert found.stdout.index("Branch") < found.stdout.index("Head office PBX"), "soonest expiry first"
    assert "why: Web redirect URI on a Yeastar cloud PBX domain: https://hq.ras.yeastarcloud.com/cb" in found.stdout
    assert f"python starter.py adopt hq --app-id {pbx[0].app_id}" in found.stdout

    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        adopted = await operator.run("adopt", "--discover", "--adopt-all", "--yes")
        assert "hq: adopting" in adopted.stdout and "branch: adopting" in adopted.stdout
        for name in ("hq", "branch"):
            await operator.wait_for(name, lambda s: s["phase"] == "Connected", "adopted")


async def test_fleet_commands_refuse_wrong_input_in_one_line(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    operator = Operator(operator_env(dev_env, sims, tmp_path), [])
    unknown_app = "00000000-0000-4000-8000-00000000abcd"
    for args, message in [
        (("adopt",), "adopt needs an integration ID and --app-id (or --discover)"),
        (("adopt", "x", "--app-id", "not-a-guid"), "--app-id: 'not-a-guid' is not an Application (client) ID"),
        (("adopt", "Bad_Name", "--app-id", unknown_app), "integration ID 'Bad_Name' must be"),
        (("adopt", "x", "--app-id", unknown_app, "--plan"), f"no app registration with client ID {unknown_app}"),
        (("adopt", "--adopt-all"), "--adopt-all goes with --discover"),
        (("adopt", "x", "--discover"), "--discover looks through the whole tenant"),
        (("onboard",), "onboard needs an integration ID (or --from fleet.csv)"),
        (("onboard", "x", "--from", "fleet.csv"), "give either an integration ID or --from, not both"),
        (("onboard", "--from", str(tmp_path / "missing.csv")), "--from: cannot read"),
    ]:
        refused = await operator.run(*args, expect=2)
        assert message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
