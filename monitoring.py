"""The worker's HTTP endpoint for operations: ``/metrics`` for Prometheus, ``/healthz`` for orchestrators.

``/metrics`` is this process's own metrics (common/metrics.py), the fleet gauges read from Temporal
(``FleetGauges``: phases, secret expiries, running rotations, pending human actions and their age) and
the Temporal SDK's metrics, which the SDK serves on a loopback port of its own and are passed through
here so Prometheus scrapes one target per worker.

``/healthz`` answers 200 only when Temporal answers, this worker polls its task queue, and the secret
store can be read and written; 503 with the failing checks otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker

from common.metrics import UP
from common.secret_store import SecretStore, SecretStoreUnavailable
from common.settings import Settings
from control import Control, Listed, Unavailable, UserError, list_integrations
from models.integration import Phase, admin_action
from workflows.rotation import SecretRotationWorkflow

log = structlog.get_logger(__name__)

PHASES_WAITING_FOR_PEOPLE = {Phase.WAITING_FOR_REDIRECT_URIS, Phase.WAITING_FOR_CONSENT, Phase.EXPIRED}
# Status queries for pending actions: a few at a time, each bounded, so one stuck workflow can't stall
# the refresh.
_QUERY_CONCURRENCY = 8
_QUERY_WITHIN = timedelta(seconds=5)
_CHECK_WITHIN = 5.0


def sdk_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves the SDK's metrics on loopback (None: metrics are off)."""
    metrics = settings.metrics
    if not metrics.enabled:
        return None
    config = PrometheusConfig(
        bind_address=f"127.0.0.1:{metrics.sdk_port}", counters_total_suffix=True, durations_as_seconds=True
    )
    return Runtime(telemetry=TelemetryConfig(metrics=config))


# ------------------------------------------------------------------------------------ fleet gauges


@dataclass(frozen=True)
class PendingAction:
    integration_id: str
    action: str  # "redirect-uris", "connect" or "rotation" (models.integration.AdminAction)
    since: datetime


@dataclass
class Fleet:
    integrations: list[Listed] = field(default_factory=list)
    rotating: set[str] = field(default_factory=set)
    pending: list[PendingAction] = field(default_factory=list)
    refreshed_at: datetime | None = None


class FleetGauges(Collector):
    """The last fleet read from Temporal, as gauges (refreshed by :func:`refresh_fleet`, not on scrape:
    a scrape must stay cheap whatever the fleet's size)."""

    def __init__(self) -> None:
        self.fleet = Fleet()

    def collect(self) -> Iterable[Metric]:
        fleet = self.fleet
        if fleet.refreshed_at is None:
            return
        now = datetime.now(UTC)
        info = GaugeMetricFamily(
            "yec_integration_info", "One per running integration", labels=["integration_id", "tenant_id", "phase"]
        )
        by_phase = GaugeMetricFamily("yec_integrations", "Running integrations by phase", labels=["phase"])
        expiry = GaugeMetricFamily(
            "yec_secret_expiry_timestamp_seconds",
            "When the integration's client secret expires",
            labels=["integration_id"],
        )
        rotating = GaugeMetricFamily(
            "yec_rotation_running", "1 while a rotation runs for the integration", labels=["integration_id"]
        )
        counts = dict.fromkeys(Phase, 0)
        for row in fleet.integrations:
            info.add_metric([row.integration_id, row.tenant_id, row.phase], 1)
            if row.phase in counts:
                counts[Phase(row.phase)] += 1
            if row.secret_expires is not None:
                expiry.add_metric([row.integration_id], row.secret_expires.timestamp())
            rotating.add_metric([row.integration_id], 1 if row.integration_id in fleet.rotating else 0)
        for phase, count in counts.items():
            by_phase.add_metric([str(phase)], count)
        yield from (info, by_phase, expiry, rotating)

        expiries = [row.secret_expires for row in fleet.integrations if row.secret_expires is not None]
        if expiries:
            yield GaugeMetricFamily(
                "yec_secret_soonest_expiry_seconds",
                "Seconds until the soonest client-secret expiry in the fleet (negative: expired)",
                value=(min(expiries) - now).total_seconds(),
            )
        pending = GaugeMetricFamily(
            "yec_pending_human_actions", "Human actions waited for, by action", labels=["action"]
        )
        age = GaugeMetricFamily(
            "yec_pending_human_action_age_seconds",
            "How long each human action has been waited for",
            labels=["integration_id", "action"],
        )
        per_action: dict[str, int] = {"redirect-uris": 0, "connect": 0, "rotation": 0}
        for action in fleet.pending:
            per_action[action.action] = per_action.get(action.action, 0) + 1
            age.add_metric([action.integration_id, action.action], (now - action.since).total_seconds())
        for name, count in per_action.items():
            pending.add_metric([name], count)
        yield from (pending, age)
        yield GaugeMetricFamily(
            "yec_fleet_refresh_timestamp_seconds",
            "When the fleet gauges were last read from Temporal",
            value=fleet.refreshed_at.timestamp(),
        )


async def read_fleet(control: Control) -> Fleet:
    """This deployment's integrations from visibility, their running rotations, and, for those waiting
    on a person, what they wait for and since when (a status query each)."""
    integrations = await list_integrations(control)
    workflow_ids = {control.handle(row.integration_id).id: row.integration_id for row in integrations}
    task_queue = control.settings.temporal.task_queue.replace("'", "\\'")
    rotating: set[str] = set()
    async for child in control.client.list_workflows(
        f"WorkflowType = '{SecretRotationWorkflow.__name__}' AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{task_queue}'"
    ):
        if child.parent_id in workflow_ids:
            rotating.add(workflow_ids[child.parent_id])

    limit = asyncio.Semaphore(_QUERY_CONCURRENCY)

    async def pending_of(integration_id: str) -> PendingAction | None:
        async with limit:
            try:
                status = await control.status(integration_id)
            except (Unavailable, UserError) as exc:
                log.info("fleet metrics: status not readable", integration_id=integration_id, reason=str(exc))
                return None
        action = admin_action(status)
        if action is None:
            return None
        since = status.pending_since
        if action.kind == "rotation" and status.rotation is not None:
            since = status.rotation.handed_over_at or status.rotation.started_at
        return PendingAction(integration_id, action.kind, since) if since is not None else None

    asked = [
        row.integration_id
        for row in integrations
        if row.phase in PHASES_WAITING_FOR_PEOPLE or row.integration_id in rotating
    ]
    pending = [found for found in await asyncio.gather(*map(pending_of, asked)) if found is not None]
    return Fleet(integrations, rotating, pending, refreshed_at=datetime.now(UTC))


async def refresh_fleet(control: Control, gauges: FleetGauges, every: timedelta) -> None:
    """Forever: read the fleet, then wait. A failed read keeps the last figures (their timestamp ages,
    which the FleetMetricsStale alert watches)."""
    while True:
        try:
            gauges.fleet = await read_fleet(control)
        except (RPCError, Unavailable) as exc:
            log.warning("fleet metrics not refreshed", error=str(exc))
        await asyncio.sleep(every.total_seconds())


# ---------------------------------------------------------------------------------------- health


class Health:
    def __init__(self, client: Client, settings: Settings, store: SecretStore, worker: Worker) -> None:
        self._client, self._settings, self._store, self._worker = client, settings, store, worker

    async def check(self) -> dict[str, str]:
        """Each check's problem, by name; empty when all pass."""
        checks = {"temporal": self._temporal(), "polling": self._polling(), "secret_store": self._secret_store()}
        results = await asyncio.gather(*checks.values())
        return {name: problem for name, problem in zip(checks, results, strict=True) if problem}

    async def _temporal(self) -> str | None:
        try:
            await self._client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=_CHECK_WITHIN)
            )
        except RPCError as exc:
            return f"Temporal at {self._settings.temporal.address} did not answer: {exc.message}"
        return None

    async def _polling(self) -> str | None:
        if not self._worker.is_running:
            return "the worker is not running"
        temporal = self._settings.temporal
        kinds = {
            "all": (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
            "workflows": (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,),
            "activities": (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,),
        }[temporal.worker_role]
        for kind in kinds:
            try:
                described = await self._client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self._client.namespace,
                        task_queue=TaskQueue(name=temporal.task_queue),
                        task_queue_type=kind,
                    ),
                    timeout=timedelta(seconds=_CHECK_WITHIN),
                )
            except RPCError as exc:
                return f"could not describe task queue {temporal.task_queue!r}: {exc.message}"
            if self._client.identity not in {poller.identity for poller in described.pollers}:
                what = TaskQueueType.Name(kind).removeprefix("TASK_QUEUE_TYPE_").lower()
                return f"this worker ({self._client.identity}) is not polling {temporal.task_queue!r} for {what} tasks"
        return None

    async def _secret_store(self) -> str | None:
        try:
            async with asyncio.timeout(_CHECK_WITHIN):
                await self._store.check()
        except SecretStoreUnavailable as exc:
            return str(exc)
        except TimeoutError:
            return f"the {self._store.backend} secret store at {self._store.location} did not answer in time"
        return None


# ------------------------------------------------------------------------------------ the endpoint


def monitoring_app(health: Health, sdk_metrics_url: str) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        own = generate_latest(REGISTRY).decode()
        session: aiohttp.ClientSession = request.app[_SESSION]
        try:
            async with session.get(sdk_metrics_url, timeout=aiohttp.ClientTimeout(total=_CHECK_WITHIN)) as answer:
                sdk = await answer.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("the SDK's metrics are unavailable", error=str(exc) or type(exc).__name__)
            sdk = ""
        return web.Response(body=(own + sdk).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        problems = await health.check()
        body = {"status": "fail" if problems else "ok", "problems": problems}
        return web.json_response(body, status=503 if problems else 200)

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as client_session:
            app[_SESSION] = client_session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


_SESSION = web.AppKey("sdk_session", aiohttp.ClientSession)


@contextlib.asynccontextmanager
async def serving_monitoring(
    client: Client, settings: Settings, store: SecretStore, worker: Worker
) -> AsyncIterator[None]:
    """Serve /metrics and /healthz and keep the fleet gauges fresh while the block runs."""
    metrics = settings.metrics
    if not metrics.enabled:
        yield
        return
    gauges = FleetGauges()
    REGISTRY.register(gauges)
    UP.set(1)
    runner = web.AppRunner(
        monitoring_app(Health(client, settings, store, worker), f"http://127.0.0.1:{metrics.sdk_port}/metrics"),
        access_log=None,
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, metrics.host, metrics.port).start()
        except OSError as exc:
            raise SystemExit(
                f"error: cannot serve metrics on {metrics.host}:{metrics.port} ({exc.strerror}); set "
                "YEC_METRICS__PORT to a free port (0 turns metrics off)"
            ) from None
        log.info("serving /metrics and /healthz", address=f"http://{metrics.host}:{metrics.port}")
        control = Control(client, settings, answer_within=_QUERY_WITHIN)
        refresher = asyncio.create_task(refresh_fleet(control, gauges, metrics.fleet_refresh_interval))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
    finally:
        await runner.cleanup()
        REGISTRY.unregister(gauges)
