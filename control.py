"""What an operator can do with the fleet, shared by the CLI (starter.py) and the web console: each
operation checks what it needs first (a worker polling, the integration existing) and fails with a
one-line reason (UserError: the operator can fix it; Unavailable: Temporal or the worker)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ResetStickyTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from clients.errors import ApiError
from clients.oidc import tenant_id_of
from common import search_attributes
from common.links import LinkSigner
from common.settings import Settings
from models.integration import (
    GUID_RE,
    IntegrationStatus,
    OnboardInput,
    OnboardRequest,
    Phase,
    RotationRequest,
    SecretRef,
    StepState,
    admin_action,
    in_words,
    schedule_id_for,
    validate_integration_id,
    workflow_id_for,
)
from workflows.integration import IntegrationWorkflow

# How long to wait for Temporal to answer, and for a workflow to answer a query (longer: just after a
# worker died, the server first tries that worker for a few seconds).
ANSWER_WITHIN = timedelta(seconds=5)
QUERY_WITHIN = timedelta(seconds=20)


def _secret(ref: SecretRef) -> str:
    return f"{ref.hint}… key {ref.key_id}, expires {ref.expires_at:%Y-%m-%d %H:%M} UTC"


def render_status(status: IntegrationStatus, links: LinkSigner | None = None) -> str:
    """The status for people; with ``links``, the administrator's page for the pending step too."""
    lines = [f"Integration {status.integration_id}: {status.phase.sentence} (phase {status.phase})"]
    if status.blocked:
        lines += [
            f"  BLOCKED at {status.blocked.step}: {status.blocked.message}",
            f"  Fix: {status.blocked.fix}",
        ]
    lines.append("Steps:")
    marks = {
        StepState.DONE: "✔",
        StepState.SKIPPED: "-",
        StepState.RUNNING: "…",
        StepState.WAITING: "⏸",
        StepState.FAILED: "✖",
        StepState.PENDING: " ",
    }
    for step, st in status.steps.items():
        extra = []
        if st.attempts > 1:
            extra.append(f"{st.attempts} attempts")
        if st.detail:
            extra.append(st.detail)
        if st.last_error and st.state == StepState.FAILED:
            extra.append(f"last error: {st.last_error}")
        suffix = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(f"  [{marks[st.state]}] {step:<17} {st.state}{suffix}")
    if status.app:
        lines += [
            f"Tenant ID:            {status.app.tenant_id}",
            f"Client (app) ID:      {status.app.client_id}",
            f"Application object:   {status.app.application_object_id}",
        ]
        if status.app.service_principal_id:
            lines.append(f"Service principal:    {status.app.service_principal_id}")
    if status.secret:
        lines.append(f"Client secret:        {_secret(status.secret)}")
    if status.adopted_at:
        lines.append(f"Adopted:              {status.adopted_at:%Y-%m-%d %H:%M} UTC (set up by hand before)")
    if status.verification:
        v = status.verification
        lines.append(
            f"Verified:             token ok, users readable, {len(v.role_assignments)} Graph roles"
            + (f", {v.extension_count} PBX extensions" if v.extension_count is not None else "")
        )
        if v.admin_consent_evidence:
            lines.append(f"Admin sign-in:        {v.admin_consent_evidence}")
    if status.rotation:
        r = status.rotation
        lines.append(f"Rotation:             {r.stage} ({r.reason}, started {r.started_at:%Y-%m-%d %H:%M} UTC)")
        if r.new_secret:
            lines.append(f"  new secret:         {_secret(r.new_secret)}")
        if r.message:
            lines.append(f"  {r.message}")
        if r.warning:
            lines.append(f"  warning: {r.warning}")
    elif status.last_rotation and status.last_rotation.finished_at:
        r = status.last_rotation
        lines.append(f"Last rotation:        {r.stage} at {r.finished_at:%Y-%m-%d %H:%M} UTC: {r.message}")
        if r.cutover_evidence:
            lines.append(f"  cut-over evidence:  {r.cutover_evidence}")
    for key in status.retired_keys:
        lines.append(f"Old key to remove:    {key.key_id} ({key.hint}…, expires {key.expires_at:%Y-%m-%d} UTC)")
    if status.last_check_at:
        repaired = [f.detail for f in status.drift if f.repaired]
        lines.append(
            f"Last check:           {status.last_check_at:%Y-%m-%d %H:%M} UTC"
            + (f"; repaired: {'; '.join(repaired)}" if repaired else "")
        )
    if status.next_check_at and status.phase == Phase.CONNECTED:
        lines.append(f"Next daily check:     {status.next_check_at:%Y-%m-%d %H:%M} UTC")
    for warning in status.warnings:
        lines.append(f"Warning: {warning}")
    card = status.pending_human_action
    if card:
        since = f" (waiting since {status.pending_since:%Y-%m-%d %H:%M} UTC)" if status.pending_since else ""
        lines += ["", f"Next: {card.title}{since}"]
        lines += [f"  {i}. {step}" for i, step in enumerate(card.steps, 1)]
        lines += [f"  {name}: {value}" for name, value in card.values.items()]
        lines += [f"  $ {command}" for command in card.commands]
        if links is not None and (action := admin_action(status)) is not None:
            lines.append(
                f"  Or on the web (a link for the PBX administrator): {links.url(status.integration_id, action)}"
            )
    return "\n".join(lines)


class UserError(Exception):
    """A mistake the operator can fix; shown as one line."""


class Unavailable(Exception):
    """Temporal or the worker can't be reached or doesn't answer."""


class Control:
    """A connection to the fleet, with the checks every operation that talks to a workflow makes first."""

    def __init__(self, client: Client, settings: Settings, *, answer_within: timedelta = QUERY_WITHIN) -> None:
        self.client, self.settings = client, settings
        self.answer_within = answer_within
        self.links = LinkSigner.from_settings(settings)
        self._worker_seen = False

    def handle(self, integration_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id_for(validate_integration_id(integration_id)))

    async def require_worker(self) -> None:
        """A workflow only answers (queries, updates) while a worker polls its task queue: say so now
        instead of waiting for a timeout."""
        if self._worker_seen:
            return
        temporal = self.settings.temporal
        try:
            described = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.client.namespace,
                    task_queue=TaskQueue(name=temporal.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=ANSWER_WITHIN,
            )
        except RPCError as exc:
            raise Unavailable(f"Temporal at {temporal.address} did not answer: {exc.message}") from None
        if not described.pollers:
            raise Unavailable(
                f"no worker is polling the task queue {temporal.task_queue!r} at {temporal.address}: start one "
                "with `python worker.py` (same YEC_TEMPORAL__* settings), then try again"
            )
        self._worker_seen = True

    async def status(self, integration_id: str) -> IntegrationStatus:
        status: IntegrationStatus = await self.query(integration_id, IntegrationWorkflow.status)
        return status

    async def query(self, integration_id: str, query: Any) -> Any:
        """Ask the integration's workflow; every way it can't answer becomes a one-line reason."""
        await self.require_worker()
        # The server refuses queries while a workflow task is being retried (after it failed or timed
        # out on a busy worker). That normally passes within seconds, so ask again until the deadline.
        deadline = time.monotonic() + self.answer_within.total_seconds()
        sticky_reset = False
        while (left := deadline - time.monotonic()) > 0:
            try:
                return await self.handle(integration_id).query(query, rpc_timeout=timedelta(seconds=left))
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise UserError(
                        f"no integration {integration_id!r}; start one with: python starter.py onboard {integration_id}"
                    ) from None
                if _no_recent_poller(exc) and not sticky_reset:
                    # Queries go to the worker that ran the workflow last; if it died, to the shared queue.
                    await self._reset_sticky(integration_id)
                    sticky_reset = True
                elif not (_workflow_not_ready(exc) or _timed_out(exc) or _no_recent_poller(exc)):
                    raise Unavailable(f"integration {integration_id!r} can't answer: {exc.message}") from None
            await asyncio.sleep(0.5)
        raise await self._no_answer(integration_id)

    async def _reset_sticky(self, integration_id: str) -> None:
        # Not supported everywhere (the time-skipping server): the retries still apply.
        with contextlib.suppress(RPCError):
            await self.client.workflow_service.reset_sticky_task_queue(
                ResetStickyTaskQueueRequest(
                    namespace=self.client.namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id_for(integration_id)),
                ),
                timeout=ANSWER_WITHIN,
            )

    async def _no_answer(self, integration_id: str) -> Unavailable:
        """Why a workflow gave no answer in time, as far as the server can tell."""
        try:
            described = await self.handle(integration_id).describe(rpc_timeout=timedelta(seconds=5))
        except RPCError:
            described = None
        if described is not None:
            raw = described.raw_description
            attempt = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0
            if attempt > 1:
                return Unavailable(
                    f"integration {integration_id!r} can't answer: its workflow task keeps failing (attempt "
                    f"{attempt}); the worker's log says why"
                )
            # The workflow's own queue (the description's task_queue may name a worker's sticky queue).
            task_queue = raw.execution_config.task_queue.name or described.task_queue
            if task_queue != self.settings.temporal.task_queue:
                return Unavailable(
                    f"integration {integration_id!r} can't answer: it runs on the task queue "
                    f"{task_queue!r}, which this deployment's workers don't poll"
                )
        return Unavailable(
            f"the worker did not answer within {self.answer_within.total_seconds():.0f} s (overloaded, stopped or "
            "stuck? see its log)"
        )

    async def update(self, integration_id: str, update: Any, arg: Any = None) -> Any:
        """Send a workflow update; a refusal by its validator is the operator's mistake, said in one line."""
        await self.status(integration_id)  # a clear error if the integration doesn't exist or can't answer
        try:
            return await self.handle(integration_id).execute_update(update, args=[] if arg is None else [arg])
        except WorkflowUpdateFailedError as exc:
            raise UserError(f"rejected: {getattr(exc.cause, 'message', exc.cause)}") from None

    async def retry(self, integration_id: str) -> str:
        """Resume a Blocked or Expired integration; the step it resumes from."""
        status = await self.status(integration_id)
        if status.phase not in (Phase.BLOCKED, Phase.EXPIRED) or status.blocked is None:
            raise UserError(f"{integration_id} is {status.phase.sentence.lower()}, not Blocked: nothing to retry")
        await self.handle(integration_id).signal(IntegrationWorkflow.retry)
        return str(status.blocked.step)

    async def rotate_now(self, integration_id: str) -> str:
        """A manual rotation next to the schedule (the integration refuses a second one while one runs);
        the rotation's workflow ID."""
        request = RotationRequest(integration_id=integration_id, request_id=f"manual-{uuid.uuid4()}", reason="manual")
        rotation_id: str = await self.update(integration_id, IntegrationWorkflow.rotate_now, request)
        return rotation_id

    async def until(
        self, integration_id: str, moved_on: Callable[[IntegrationStatus], bool], limit: float = 10.0
    ) -> IntegrationStatus:
        """The status once the workflow has acted on what it was just told (or after ``limit`` seconds)."""
        deadline = time.monotonic() + limit
        while True:
            status = await self.status(integration_id)
            if moved_on(status) or time.monotonic() >= deadline:
                return status
            await asyncio.sleep(0.3)


def _workflow_not_ready(error: RPCError) -> bool:
    details = error.grpc_status.details
    return error.status == RPCStatusCode.FAILED_PRECONDITION and any(
        d.type_url.endswith("WorkflowNotReadyFailure") for d in details
    )


def _timed_out(error: RPCError) -> bool:
    return error.status == RPCStatusCode.DEADLINE_EXCEEDED or "timeout" in error.message.lower()


def _no_recent_poller(error: RPCError) -> bool:
    # Said for a task queue partition no poller reached lately: right after workers (re)start, or for
    # a workflow on a queue nobody polls. Asked again until the deadline; _no_answer then says which.
    return "no poller seen" in error.message.lower()


def onboard_request(fields: Mapping[str, Any], names: Mapping[str, str]) -> OnboardRequest:
    """``fields`` checked as a whole (the same model for CLI flags and the console's form); every
    problem in one line, each named as the operator entered it (``names``: field → flag or label)."""
    try:
        return OnboardRequest.model_validate(fields)
    except ValidationError as exc:
        raise UserError("; ".join(_problem(error, names) for error in exc.errors())) from None


def _problem(error: Any, names: Mapping[str, str]) -> str:
    where = names.get(str(error["loc"][0]) if error["loc"] else "", "")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@dataclass(frozen=True)
class Started:
    integration_id: str
    workflow_id: str
    attached: bool  # it was already running with these settings


async def onboard(control: Control, request: OnboardRequest, names: Mapping[str, str]) -> Started:
    """Start the integration, or attach to the one running with the same settings; one that runs
    with other settings is a UserError saying what differs (fields named as in ``names``)."""
    settings = control.settings
    await control.require_worker()
    tenant_id = await resolve_tenant(settings, request.tenant, names.get("tenant", "tenant"))
    start = OnboardInput(
        integration_id=request.integration_id,
        tenant_id=tenant_id,
        display_name=request.display_name,
        redirect_uris=request.redirect_uris,
        yeastar_configured=settings.yeastar.configured,
        options=settings.lifecycle_options(request.secret_lifetime_days),
    )
    workflow_id = workflow_id_for(start.integration_id)
    if (running := await _running_input(control, start.integration_id)) is not None:
        if differences := _differences(running, start, request):
            raise UserError(
                f"{start.integration_id} already runs with other settings: {'; '.join(differences)}. Nothing was "
                f"changed: offboard it first (python starter.py offboard {start.integration_id}), or change its "
                "redirect URIs with redirect-uris"
            )
        return Started(start.integration_id, workflow_id, attached=True)
    return await start_integration(control, start)


async def resolve_tenant(settings: Settings, tenant: str, label: str = "tenant") -> str:
    """A tenant's GUID, given it or one of its domains (Entra's discovery document names the GUID)."""
    if GUID_RE.match(tenant):
        return tenant
    try:
        return await tenant_id_of(settings.entra.authority_host, tenant, settings.entra.ca_bundle)
    except ApiError as exc:
        raise UserError(f"{label}: {exc.message}") from None


async def start_integration(control: Control, start: OnboardInput) -> Started:
    """Start the integration's workflow (a second start racing this one attaches)."""
    workflow_id = workflow_id_for(start.integration_id)
    await control.client.start_workflow(
        IntegrationWorkflow.run,
        args=[start, None],
        id=workflow_id,
        task_queue=control.settings.temporal.task_queue,
        # A second start racing this one attaches; a finished integration starts anew.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.INTEGRATION_ID, start.integration_id),
                SearchAttributePair(search_attributes.INTEGRATION_PHASE, str(Phase.STARTING)),
                SearchAttributePair(search_attributes.TENANT_ID, start.tenant_id),
            ]
        ),
    )
    return Started(start.integration_id, workflow_id, attached=False)


async def _running_input(control: Control, integration_id: str) -> OnboardInput | None:
    handle = control.handle(integration_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    started: OnboardInput = await control.query(integration_id, IntegrationWorkflow.started_with)
    return started


def _differences(running: OnboardInput, asked: OnboardInput, request: OnboardRequest) -> list[str]:
    """What a repeated `onboard` asks for that the running integration was not started with."""
    found = []
    if running.tenant_id != asked.tenant_id:
        found.append(f"tenant {running.tenant_id} (you gave {asked.tenant_id})")
    if request.display_name is not None and running.app_display_name != asked.app_display_name:
        found.append(f"display name {running.app_display_name!r} (you gave {asked.app_display_name!r})")
    if request.secret_lifetime_days is not None and running.options.secret_lifetime != asked.options.secret_lifetime:
        lifetime = in_words(running.options.secret_lifetime)
        found.append(f"secret lifetime {lifetime} (you gave {request.secret_lifetime_days} days)")
    if request.redirect_uris is not None and running.redirect_uris not in (None, request.redirect_uris):
        assert running.redirect_uris is not None
        found.append(
            f"redirect URI {running.redirect_uris.redirect_uri} (you gave {request.redirect_uris.redirect_uri})"
        )
    return found


@dataclass(frozen=True)
class Listed:
    integration_id: str
    phase: str
    tenant_id: str
    secret_expires: datetime | None
    running: bool


async def list_integrations(
    control: Control,
    *,
    phase: str | None = None,
    tenant_id: str | None = None,
    expiring_within: timedelta | None = None,
    closed: bool = False,
) -> list[Listed]:
    """This deployment's fleet (its task queue) from Temporal's visibility (search attributes): no
    workflow is asked anything."""
    task_queue = control.settings.temporal.task_queue.replace("'", "\\'")
    query = f"WorkflowType = 'IntegrationWorkflow' AND TaskQueue = '{task_queue}'"
    if phase:
        query += f" AND IntegrationPhase = '{Phase(phase)}'"
    if tenant_id:
        if not GUID_RE.match(tenant_id):  # resolved by the caller; never a quote into the query
            raise UserError(f"tenant {tenant_id!r} is not a GUID")
        query += f" AND TenantId = '{tenant_id}'"
    if expiring_within is not None:
        query += f" AND SecretExpiry < '{(datetime.now(UTC) + expiring_within).isoformat()}'"
    if not closed:
        query += " AND ExecutionStatus = 'Running'"
    found = []
    async for wf in control.client.list_workflows(query):
        attrs = wf.typed_search_attributes
        found.append(
            Listed(
                integration_id=attrs.get(search_attributes.INTEGRATION_ID) or wf.id,
                phase=attrs.get(search_attributes.INTEGRATION_PHASE) or "?",
                tenant_id=attrs.get(search_attributes.TENANT_ID) or "?",
                secret_expires=attrs.get(search_attributes.SECRET_EXPIRY),
                running=wf.status == WorkflowExecutionStatus.RUNNING,
            )
        )
    return sorted(found, key=lambda row: row.integration_id)


@dataclass(frozen=True)
class ScheduleState:
    schedule_id: str
    every: str
    paused: bool
    note: str | None
    next_runs: list[datetime]
    recent_runs: list[datetime]


async def rotation_schedule(
    control: Control, integration_id: str, *, paused: bool | None = None, note: str = ""
) -> ScheduleState:
    """The integration's rotation schedule, after pausing or resuming it if ``paused`` says so."""
    await control.status(integration_id)
    handle = control.client.get_schedule_handle(schedule_id_for(integration_id))
    try:
        if paused is True:
            await handle.pause(note=note or "paused by an operator")
        elif paused is False:
            await handle.unpause(note=note or "resumed by an operator")
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"{integration_id} has no rotation schedule (it is created at Connected)") from None
        raise
    state, info = description.schedule.state, description.info
    return ScheduleState(
        schedule_id=handle.id,
        every=", ".join(in_words(i.every) for i in description.schedule.spec.intervals),
        paused=state.paused,
        note=state.note,
        next_runs=list(info.next_action_times[:3]),
        recent_runs=[action.started_at for action in info.recent_actions[-3:]],
    )
