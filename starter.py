"""The operator's CLI: start an integration, hand over the human steps, watch it, reveal the secret.

    python starter.py onboard acme --redirect-uri https://… [--sso-redirect-uri https://…]
    python starter.py status acme [--watch] [--json]
    python starter.py list
    python starter.py redirect-uris acme --redirect-uri https://… [--sso-redirect-uri https://…]
    python starter.py consent acme [--by admin@contoso.com]
    python starter.py retry acme
    python starter.py secret acme --reveal [--pending]
    python starter.py rotate acme           # new secret now; `pbx-updated` once it is in the PBX
    python starter.py pbx-updated acme [--by admin@contoso.com]
    python starter.py schedule acme [--pause | --resume] [--note why]
    python starter.py dev-server            # the embedded Temporal dev server (SQLite under the data dir)
    python starter.py generate-key          # a new YEC_ENCRYPTION_KEYS value

User mistakes end with a one-line message and exit code 2; Temporal being unreachable with 3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from common import search_attributes
from common.dev_server import dev_server_command
from common.secret_store import LocalSecretStore, SecretNotFound
from common.settings import Settings, SettingsError, load_settings
from common.temporal import connect, exit_process
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    OnboardInput,
    Phase,
    RedirectUris,
    RotationRequest,
    StepState,
    schedule_id_for,
    validate_integration_id,
    workflow_id_for,
)
from workflows.integration import IntegrationWorkflow

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
TERMINAL_WATCH_PHASES = {Phase.CONNECTED, Phase.BLOCKED, Phase.EXPIRED}


class UserError(Exception):
    """A mistake the operator can fix; printed without a traceback."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    exit_process(code)


# ----------------------------------------------------------------- output


def render_status(status: IntegrationStatus) -> str:
    lines = [f"Integration {status.integration_id}: {status.phase}"]
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
        lines.append(
            f"Client secret:        {status.secret.hint}… key {status.secret.key_id}, "
            f"expires {status.secret.expires_at:%Y-%m-%d %H:%M} UTC"
        )
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
            lines.append(
                f"  new secret:         {r.new_secret.hint}… key {r.new_secret.key_id}, "
                f"expires {r.new_secret.expires_at:%Y-%m-%d %H:%M} UTC"
            )
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
    return "\n".join(lines)


def print_status(status: IntegrationStatus, as_json: bool) -> None:
    print(status.model_dump_json(indent=2) if as_json else render_status(status))


# ------------------------------------------------------------- commands


async def _handle(client: Client, integration_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(workflow_id_for(validate_integration_id(integration_id)))


async def _query_status(client: Client, integration_id: str) -> IntegrationStatus:
    handle = await _handle(client, integration_id)
    try:
        status: IntegrationStatus = await handle.query(IntegrationWorkflow.status)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(
                f"no integration {integration_id!r}; start one with: python starter.py onboard {integration_id}"
            ) from None
        raise
    return status


async def cmd_onboard(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    uris = None
    if args.redirect_uri:
        uris = RedirectUris(redirect_uri=args.redirect_uri, sso_redirect_uri=args.sso_redirect_uri)
        if problems := uris.problems():
            raise UserError("; ".join(problems))
    elif args.sso_redirect_uri:
        raise UserError("--sso-redirect-uri needs --redirect-uri as well")
    tenant = args.tenant or settings.entra.tenant_id
    if tenant is None:
        raise UserError("no tenant: pass --tenant or set YEC_ENTRA__TENANT_ID")
    lifetime_days = args.secret_lifetime_days
    onboard = OnboardInput(
        integration_id=args.integration_id,
        tenant_id=tenant,
        display_name=args.display_name,
        redirect_uris=uris,
        yeastar_configured=settings.yeastar.configured,
        options=settings.lifecycle_options(lifetime_days),
    )
    handle = await client.start_workflow(
        IntegrationWorkflow.run,
        args=[onboard, None],
        id=workflow_id_for(onboard.integration_id),
        task_queue=settings.temporal.task_queue,
        # Starting the same integration again attaches to the running one; a finished one starts anew.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.INTEGRATION_ID, onboard.integration_id),
                SearchAttributePair(search_attributes.INTEGRATION_PHASE, str(Phase.STARTING)),
                SearchAttributePair(search_attributes.TENANT_ID, tenant),
            ]
        ),
    )
    print(f"Integration {onboard.integration_id} running as workflow {handle.id} (run {handle.result_run_id}).")
    if args.wait:
        await watch(client, onboard.integration_id, as_json=False, until=TERMINAL_WATCH_PHASES)
    else:
        print(render_status(await _query_status(client, onboard.integration_id)))


async def watch(client: Client, integration_id: str, *, as_json: bool, until: set[Phase] | None) -> None:
    """Print the status whenever it changes; stop at a phase in `until` (or never, until Ctrl-C)."""
    last = ""
    while True:
        status = await _query_status(client, integration_id)
        shown = render_status(status) if not as_json else status.model_dump_json(indent=2)
        if shown != last:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"--- {stamp} ---\n{shown}", flush=True)
            last = shown
        if until and status.phase in until:
            return
        await asyncio.sleep(1.0)


async def cmd_status(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    if args.watch:
        await watch(client, args.integration_id, as_json=args.json, until=None)
    else:
        print_status(await _query_status(client, args.integration_id), args.json)


async def cmd_list(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    query = "WorkflowType = 'IntegrationWorkflow'"
    if args.phase:
        query += f" AND IntegrationPhase = '{args.phase}'"
    if not args.all:
        query += " AND ExecutionStatus = 'Running'"
    rows = []
    async for wf in client.list_workflows(query):
        attrs = wf.typed_search_attributes
        expiry = attrs.get(search_attributes.SECRET_EXPIRY)
        rows.append(
            (
                attrs.get(search_attributes.INTEGRATION_ID) or wf.id,
                attrs.get(search_attributes.INTEGRATION_PHASE) or "?",
                attrs.get(search_attributes.TENANT_ID) or "?",
                f"{expiry:%Y-%m-%d}" if expiry else "-",
                wf.status.name if wf.status else "?",
            )
        )
    if not rows:
        print("no integrations" + (f" in phase {args.phase}" if args.phase else ""))
        return
    header = ("INTEGRATION", "PHASE", "TENANT", "SECRET EXPIRES", "WORKFLOW")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *sorted(rows)]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def cmd_redirect_uris(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    uris = RedirectUris(redirect_uri=args.redirect_uri, sso_redirect_uri=args.sso_redirect_uri)
    if problems := uris.problems():
        raise UserError("; ".join(problems))
    print(render_status(await _update(client, args.integration_id, IntegrationWorkflow.submit_redirect_uris, uris)))


async def cmd_consent(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await _update(
        client, args.integration_id, IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by=args.by)
    )
    print(f"Consent confirmed for {args.integration_id}; the service now verifies the connection.")


async def _update(client: Client, integration_id: str, update: Any, arg: Any) -> Any:
    """Send a workflow update; a refusal by its validator is the operator's mistake, said in one line."""
    await _query_status(client, integration_id)  # a clear error if the integration doesn't exist
    handle = await _handle(client, integration_id)
    try:
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as exc:
        raise UserError(f"rejected: {getattr(exc.cause, 'message', exc.cause)}") from None


async def cmd_retry(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    status = await _query_status(client, args.integration_id)
    if status.phase not in (Phase.BLOCKED, Phase.EXPIRED):
        raise UserError(f"{args.integration_id} is {status.phase}, not Blocked: nothing to retry")
    await (await _handle(client, args.integration_id)).signal(IntegrationWorkflow.retry)
    print(f"Retrying {args.integration_id} from step {status.blocked.step if status.blocked else '?'}.")


async def cmd_secret(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    status = await _query_status(client, args.integration_id)
    secret = status.secret
    if args.pending:
        if status.rotation is None or status.rotation.new_secret is None:
            raise UserError(f"{args.integration_id} has no rotation with a new secret in progress")
        secret = status.rotation.new_secret
    if secret is None:
        raise UserError(f"{args.integration_id} has no client secret yet (phase {status.phase})")
    if not args.reveal:
        raise UserError("the secret is only shown with --reveal (it is a credential: keep it off screenshots)")
    store = LocalSecretStore(settings.data_dir / "secrets", settings.keys)
    try:
        value = await store.get(args.integration_id, secret.key_id)
    except SecretNotFound as exc:
        raise UserError(str(exc)) from None
    print(
        f"warning: revealing the client secret of {args.integration_id} (key {secret.key_id}, expires "
        f"{secret.expires_at:%Y-%m-%d}); paste it into the PBX and clear your terminal.",
        file=sys.stderr,
    )
    print(value.get_secret_value())


async def cmd_rotate(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    # Asked of the integration, which runs every rotation as its own child workflow and refuses a
    # second one while one runs (the schedule keeps its own cadence; this shows as "manual").
    request = RotationRequest(integration_id=args.integration_id, request_id=f"manual-{uuid.uuid4()}", reason="manual")
    rotation_id = await _update(client, args.integration_id, IntegrationWorkflow.rotate_now, request)
    print(
        f"Rotation of {args.integration_id}: starting {rotation_id}. "
        f"Follow it with: python starter.py status {args.integration_id}"
    )


async def cmd_pbx_updated(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await _update(
        client, args.integration_id, IntegrationWorkflow.confirm_pbx_updated, ConsentConfirmation(confirmed_by=args.by)
    )
    print(f"Noted. The old secret of {args.integration_id} is removed once sign-ins show the PBX on the new one.")


async def cmd_schedule(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await _query_status(client, args.integration_id)
    handle = client.get_schedule_handle(schedule_id_for(args.integration_id))
    try:
        if args.pause:
            await handle.pause(note=args.note or "paused with starter.py")
        elif args.resume:
            await handle.unpause(note=args.note or "resumed with starter.py")
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"{args.integration_id} has no rotation schedule (it is created at Connected)") from None
        raise
    state, info = description.schedule.state, description.info
    every = ", ".join(str(i.every) for i in description.schedule.spec.intervals)
    print(f"Schedule {handle.id}: every {every}, {'PAUSED' if state.paused else 'active'}")
    if state.note:
        print(f"  note: {state.note}")
    for when in info.next_action_times[:3]:
        print(f"  next rotation: {when:%Y-%m-%d %H:%M} UTC")
    for action in info.recent_actions[-3:]:
        print(f"  ran: {action.started_at:%Y-%m-%d %H:%M} UTC")


COMMANDS: dict[str, Callable[[Client, Settings, argparse.Namespace], Awaitable[None]]] = {
    "onboard": cmd_onboard,
    "status": cmd_status,
    "list": cmd_list,
    "redirect-uris": cmd_redirect_uris,
    "consent": cmd_consent,
    "retry": cmd_retry,
    "secret": cmd_secret,
    "rotate": cmd_rotate,
    "pbx-updated": cmd_pbx_updated,
    "schedule": cmd_schedule,
}


def run_dev_server(settings: Settings, args: argparse.Namespace) -> None:
    command = dev_server_command(settings.data_dir, port=args.port, ui_port=args.ui_port, headless=args.headless)
    print(
        f"Temporal dev server on 127.0.0.1:{args.port}"
        + ("" if args.headless else f", UI http://127.0.0.1:{args.ui_port}")
    )
    try:
        sys.exit(subprocess.call(command))
    except KeyboardInterrupt:
        sys.exit(0)


def generate_key() -> None:
    key_id = datetime.now(UTC).strftime("k%Y%m%d")
    print(f"YEC_ENCRYPTION_KEYS={key_id}:{base64.b64encode(os.urandom(32)).decode()}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_id(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("integration_id", help="your name for this PBX integration, e.g. acme-hq")
        return cmd

    onboard = with_id("onboard", "start (or attach to) an integration")
    onboard.add_argument("--redirect-uri", help="the PBX's Redirect URI (else submit later with redirect-uris)")
    onboard.add_argument("--sso-redirect-uri", help="the PBX's Client SSO Redirect URI (optional)")
    onboard.add_argument("--tenant", help="Entra tenant ID (default: YEC_ENTRA__TENANT_ID)")
    onboard.add_argument("--display-name", help="name of the Entra application")
    onboard.add_argument("--secret-lifetime-days", type=int, help="client secret lifetime (default 180)")
    onboard.add_argument("--wait", action="store_true", help="follow progress until Connected/Blocked")

    status = with_id("status", "show phase, steps, IDs and the pending human action")
    status.add_argument("--watch", action="store_true", help="keep printing changes until Ctrl-C")
    status.add_argument("--json", action="store_true")

    listing = sub.add_parser("list", help="list integrations")
    listing.add_argument("--phase", choices=[str(p) for p in Phase])
    listing.add_argument("--all", action="store_true", help="include finished workflows")

    uris = with_id("redirect-uris", "submit the redirect URIs read in the PBX portal")
    uris.add_argument("--redirect-uri", required=True)
    uris.add_argument("--sso-redirect-uri")

    consent = with_id("consent", "confirm the PBX was connected and the admin signed in")
    consent.add_argument("--by", help="who signed in (recorded in the status)")

    with_id("retry", "resume a Blocked integration after fixing the cause")

    secret = with_id("secret", "reveal the client secret to paste into the PBX")
    secret.add_argument("--reveal", action="store_true", help="really print it")
    secret.add_argument("--pending", action="store_true", help="the new secret of a rotation in progress")

    with_id("rotate", "rotate the client secret now (new secret first, old removed after cut-over)")
    updated = with_id("pbx-updated", "confirm the new secret was pasted into the PBX (during a rotation)")
    updated.add_argument("--by", help="who updated the PBX (recorded in the status)")

    schedule = with_id("schedule", "show, pause or resume the rotation schedule")
    toggle = schedule.add_mutually_exclusive_group()
    toggle.add_argument("--pause", action="store_true")
    toggle.add_argument("--resume", action="store_true")
    schedule.add_argument("--note", help="why (shown in the schedule)")

    dev = sub.add_parser("dev-server", help="run the embedded Temporal dev server (foreground)")
    dev.add_argument("--port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.add_argument("--headless", action="store_true")

    sub.add_parser("generate-key", help="print a new YEC_ENCRYPTION_KEYS value")
    return p


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        fail(
            f"cannot reach Temporal at {settings.temporal.address}: {exc}\n"
            "Start it with `python starter.py dev-server` (or `make demo`), or set YEC_TEMPORAL__ADDRESS.",
            EXIT_UNAVAILABLE,
        )
    await COMMANDS[args.command](client, settings, args)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "generate-key":
        generate_key()
        return
    try:
        settings = load_settings()
        if args.command == "dev-server":
            run_dev_server(settings, args)
        settings.keys  # noqa: B018 - a missing key is a configuration error, reported now
        asyncio.run(_run(settings, args))
    except (SettingsError, UserError, ValueError) as exc:  # ValueError: e.g. a malformed integration ID
        fail(str(exc))
    except KeyboardInterrupt:
        exit_process(130)
    exit_process(0)


if __name__ == "__main__":
    main()
