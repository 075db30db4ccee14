"""Runs the worker: the integration and rotation workflows plus their activities.

    python worker.py            # settings from YEC_* env vars / .env (see README)

Connects to the Temporal service in settings (the local dev server by default: `python starter.py
dev-server`), registers the custom search attributes where the server allows it, logs JSON (console
on a TTY) through the redaction processor, serves /metrics and /healthz (monitoring.py), and shuts
down gracefully on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.notify import NotifyActivities
from activities.provisioning import ProvisioningActivities
from activities.schedule import ScheduleActivities
from common.logging import configure_logging
from common.secret_store import SecretStore, open_secret_store
from common.settings import Settings, SettingsError, load_settings
from common.temporal import compile_workflow_code, connect, ensure_search_attributes, exit_process
from monitoring import sdk_runtime, serving_monitoring
from workflows.integration import IntegrationWorkflow
from workflows.provisioning_credential import ProvisioningCredentialWorkflow, ProvisioningWatch, watcher_id_for
from workflows.rotation import SecretRotationWorkflow
from workflows.rotation_request import RotationRequestWorkflow

log = structlog.get_logger("worker")

WORKFLOWS = [IntegrationWorkflow, SecretRotationWorkflow, RotationRequestWorkflow, ProvisioningCredentialWorkflow]


@contextlib.asynccontextmanager
async def build_worker(client: Client, settings: Settings, store: SecretStore) -> AsyncIterator[Worker]:
    """A configured (not yet running) worker; closes the activities' HTTP clients afterwards."""
    for source in compile_workflow_code(WORKFLOWS):
        log.warning(
            "cannot write bytecode for a workflow module; every workflow run will compile it again",
            module=str(source),
            fix="run `python -m compileall` on the install, or make its __pycache__ writable",
        )
    provisioning = ProvisioningActivities(settings, store)
    notify = NotifyActivities(settings)
    schedule = ScheduleActivities(client, settings)
    # A local activity runs in the worker running the workflow; all others go to any activity worker.
    local: list[Callable[..., Any]] = [notify.notification_channels]
    remote: list[Callable[..., Any]] = [
        provisioning.preflight,
        provisioning.register_application,
        provisioning.set_redirect_uris,
        provisioning.grant_permissions,
        provisioning.create_client_secret,
        provisioning.prove_secret,
        provisioning.verify_integration,
        provisioning.check_credential,
        provisioning.adopt_application,
        provisioning.remove_client_secret,
        provisioning.discard_operation_secrets,
        provisioning.offboard_app,
        provisioning.cutover_evidence,
        provisioning.check_provisioning_credential,
        schedule.ensure_rotation_schedule,
        schedule.delete_rotation_schedule,
        notify.deliver_notification,
    ]
    role = settings.temporal.worker_role
    try:
        yield Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[] if role == "activities" else WORKFLOWS,
            activities=local if role == "workflows" else [*local, *remote],
            no_remote_activities=role == "workflows",
            # Bounded, so an idle fleet of thousands of integrations does not grow the worker's memory.
            max_cached_workflows=settings.temporal.max_cached_workflows,
            graceful_shutdown_timeout=timedelta(seconds=20),
        )
    finally:
        await provisioning.close()


async def watch_provisioning_credential(client: Client, settings: Settings) -> None:
    """Start (or find running) the workflow that reminds before the service's own credential expires."""
    entra = settings.entra
    assert entra.tenant_id is not None and entra.client_id is not None, "checked by require_provisioning_identity"
    handle = await client.start_workflow(
        ProvisioningCredentialWorkflow.run,
        ProvisioningWatch(tenant_id=entra.tenant_id, client_id=entra.client_id, options=settings.lifecycle_options()),
        id=watcher_id_for(entra.client_id),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    log.info("watching the provisioning credential", workflow_id=handle.id)


async def run(settings: Settings) -> None:
    settings.entra.require_provisioning_identity()
    try:
        runtime = sdk_runtime(settings)
    except RuntimeError as exc:
        raise SystemExit(
            f"error: cannot serve the Temporal SDK's metrics on 127.0.0.1:{settings.metrics.sdk_port} ({exc}); set "
            "YEC_METRICS__SDK_PORT to a free port (or YEC_METRICS__PORT=0 to turn metrics off)"
        ) from None
    try:
        client = await connect(settings, runtime)
    except RuntimeError as exc:
        raise SystemExit(
            f"error: cannot reach Temporal at {settings.temporal.address} ({exc}).\n"
            "Start the local dev server with `python starter.py dev-server`, or set YEC_TEMPORAL__ADDRESS."
        ) from None
    try:
        added = await ensure_search_attributes(client)
        if added:
            log.info("registered search attributes", added=added)
    except RPCError as exc:
        log.warning("could not register search attributes; create them on the cluster", error=str(exc))

    await watch_provisioning_credential(client, settings)
    store = open_secret_store(settings)
    async with (
        build_worker(client, settings, store) as worker,
        serving_monitoring(client, settings, store, worker),
    ):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "worker started",
            address=settings.temporal.address,
            namespace=settings.temporal.namespace,
            task_queue=settings.temporal.task_queue,
        )
        running = asyncio.create_task(worker.run())
        await asyncio.wait([running, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            log.info("shutting down: finishing running activities")
            await worker.shutdown()
        await running
    await store.close()
    log.info("worker stopped")


def main() -> None:
    try:
        settings = load_settings()
        settings.keys  # noqa: B018 - fail now, not at the first payload, if no encryption key is set
        open_secret_store(settings)  # and not at the first secret, if the store's settings are incomplete
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_process(2)
    except SystemExit as exc:  # a one-line reason; exit_process, as the SDK's threads may still run
        print(exc.code, file=sys.stderr)
        exit_process(1)
    exit_process(0)


if __name__ == "__main__":
    main()
