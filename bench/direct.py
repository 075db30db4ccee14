"""The same onboarding without Temporal: what durability costs, by difference.

Calls the worker's own activity code (activities/provisioning.py, through the SDK's ActivityEnvironment,
which needs no server) step after step for each integration, so it makes exactly the Graph calls the
workflow's activities make, with the same clients, token cache and secret store, and no history,
no codec, no task round trips. The onboarding benchmark runs it as a process of its own:

    python -m bench.direct --count 200 --concurrency 100 --json-out FILE   # YEC_* as for worker.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.provisioning import ProvisioningActivities
from bench._common import Window
from bench._fleet import redirect_uris_for
from common.logging import configure_logging
from common.secret_store import open_secret_store
from common.settings import Settings, load_settings
from common.temporal import exit_process
from models.activities import (
    CheckCredentialInput,
    CreateSecretInput,
    PermissionsInput,
    PreflightInput,
    ProveSecretInput,
    RedirectUrisInput,
    RegisterInput,
    VerifyInput,
)
from models.integration import REQUIRED_GRAPH_PERMISSIONS, LifecycleOptions, OnboardInput


async def onboard(activities: ProvisioningActivities, tenant_id: str, integration_id: str) -> CheckCredentialInput:
    """IntegrationWorkflow's steps with the inputs it would build, up to Connected; returns what the
    credential check that follows Connected needs."""
    env = ActivityEnvironment()
    start = OnboardInput(
        integration_id=integration_id, tenant_id=tenant_id, redirect_uris=redirect_uris_for(integration_id)
    )
    options, uris = LifecycleOptions(), redirect_uris_for(integration_id)
    preflight = await env.run(
        activities.preflight,
        PreflightInput(tenant_id=tenant_id, requested_lifetime=options.secret_lifetime, check_yeastar=False),
    )
    registered = await env.run(
        activities.register_application,
        RegisterInput(
            tenant_id=tenant_id,
            unique_name=start.unique_name,
            display_name=start.app_display_name,
            redirect_uri=uris.redirect_uri,
        ),
    )
    app = registered.app
    await env.run(
        activities.set_redirect_uris,
        RedirectUrisInput(
            tenant_id=tenant_id, application_object_id=app.application_object_id, redirect_uris=uris.as_list()
        ),
    )
    granted = await env.run(
        activities.grant_permissions,
        PermissionsInput(tenant_id=tenant_id, app=app, permissions=list(REQUIRED_GRAPH_PERMISSIONS)),
    )
    app.service_principal_id = granted.service_principal_id
    now = datetime.now(UTC)
    secret = await env.run(
        activities.create_client_secret,
        CreateSecretInput(
            integration_id=integration_id,
            tenant_id=tenant_id,
            application_object_id=app.application_object_id,
            operation_id=f"{integration_id}-0-direct",
            description=f"Yeastar PBX {integration_id}",
            expires_at=now + preflight.secret_lifetime,
        ),
    )
    await env.run(
        activities.prove_secret,
        ProveSecretInput(
            integration_id=integration_id,
            tenant_id=tenant_id,
            client_id=app.client_id,
            key_id=secret.key_id,
            timeout=options.secret_replication_timeout,
            sign_in_id=str(uuid.uuid4()),
        ),
    )
    await env.run(
        activities.verify_integration,
        VerifyInput(
            integration_id=integration_id,
            app=app,
            key_id=secret.key_id,
            permissions=list(REQUIRED_GRAPH_PERMISSIONS),
            handed_over_at=now,
            sign_in_id=str(uuid.uuid4()),
            own_sign_in_ids=[],
            check_yeastar=False,
        ),
    )
    return CheckCredentialInput(
        tenant_id=tenant_id, application_object_id=app.application_object_id, key_id=secret.key_id
    )


async def run(settings: Settings, integration_ids: list[str], concurrency: int) -> dict[str, Any]:
    assert settings.entra.tenant_id is not None, "YEC_ENTRA__TENANT_ID"
    tenant_id = settings.entra.tenant_id
    activities = ProvisioningActivities(settings, open_secret_store(settings))
    slots = asyncio.Semaphore(concurrency)
    connected: dict[str, float] = {}

    async def one(integration_id: str) -> None:
        async with slots:
            credential = await onboard(activities, tenant_id, integration_id)
            connected[integration_id] = time.time()
            # After Connected the workflow checks the credential once, then sleeps until the next day.
            await ActivityEnvironment().run(activities.check_credential, credential)

    window = Window({"direct": os.getpid()}).open()
    requested_at = time.time()
    try:
        await asyncio.gather(*(one(i) for i in integration_ids))
    finally:
        await activities.close()
    window.close()
    return {
        "requested_at": requested_at,
        "connected_at": connected,
        "cpu_seconds": window.cpu_seconds["direct"],
        "peak_rss": window.peak_rss["direct"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.direct", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--prefix", default="direct")
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings(_env_file=None)
    configure_logging(settings.log_level, settings.log_format)  # as worker.py does: logging costs the same
    ids = [f"{args.prefix}-{i:05d}" for i in range(args.count)]
    result = asyncio.run(run(settings, ids, args.concurrency))
    args.json_out.write_text(json.dumps(result))
    exit_process(0)


if __name__ == "__main__":
    main()
