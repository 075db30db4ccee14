"""The operator's CLI: start an integration, hand over the human steps, watch it, reveal the secret.

    python starter.py onboard acme --redirect-uri https://… [--sso-redirect-uri https://…] [--plan]
    python starter.py onboard --from fleet.csv [--plan]      # every row checked before any starts
    python starter.py adopt acme --app-id <client ID> [--plan] [--no-repair] [--yes]   # set up by hand
    python starter.py adopt --discover [--adopt-all] [--yes] # apps that look like Yeastar integrations
    python starter.py check acme            # the daily check now: drift repaired or reported
    python starter.py bootstrap [--multi-tenant] [--secret]   # create the provisioning identity (device code)
    python starter.py tenant add fabrikam.com [--wait]        # a customer tenant consents to it
    python starter.py status acme [--watch] [--json]
    python starter.py list [--tenant contoso.com]
    python starter.py redirect-uris acme --redirect-uri https://… [--sso-redirect-uri https://…]
    python starter.py consent acme [--by admin@contoso.com]
    python starter.py retry acme
    python starter.py secret acme --reveal [--pending]
    python starter.py rotate acme           # new secret now; `pbx-updated` once it is in the PBX
    python starter.py pbx-updated acme [--by admin@contoso.com]
    python starter.py schedule acme [--pause | --resume] [--note why]
    python starter.py offboard acme [--delete-app] [--yes]    # end it: no more reminders, secrets removed
    python starter.py cancel acme [--yes]   # end one that never connected (deletes its app)
    python starter.py dev-server            # the embedded Temporal dev server (SQLite under the data dir)
    python starter.py generate-key [--for payload|store]   # new YEC_ENCRYPTION_KEYS / YEC_SECRET_STORE__KEYS
    python starter.py secrets check         # can this process read and write the secret store?
    python starter.py secrets re-encrypt    # the local store's files under its newest key

Every failure is one line: exit code 2 for a mistake the operator can fix (a refused flag, a payload
this process can't decrypt), 3 when Temporal or the worker can't be reached or doesn't answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from temporalio.service import RPCError

import bootstrap as bootstrap_module
from clients.errors import ApiError, PermissionDenied
from common.codec import UnreadablePayload
from common.dev_server import dev_server_command
from common.links import LinkSigner
from common.secret_store import SecretNotFound, SecretStoreUnavailable, open_local_store, open_secret_store
from common.settings import Settings, SettingsError, load_settings
from common.temporal import connect, exit_process
from control import (
    Control,
    Unavailable,
    UserError,
    list_integrations,
    onboard,
    onboard_request,
    render_status,
    resolve_tenant,
    rotation_schedule,
)
from fleet import adopt, discover, plan_onboarding, read_fleet_csv, review_app, suggested_id
from models.integration import (
    GUID_RE,
    MAX_SECRET_LIFETIME_DAYS,
    ConsentConfirmation,
    IntegrationStatus,
    OffboardRequest,
    OnboardInput,
    OnboardRequest,
    Phase,
    RedirectUris,
    in_words,
    validate_integration_id,
)
from models.review import AppReview, Finding, PlannedChange
from workflows.integration import IntegrationWorkflow

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
TERMINAL_WATCH_PHASES = {Phase.CONNECTED, Phase.BLOCKED, Phase.EXPIRED, Phase.OFFBOARDED}
FLAG_NAMES = {
    "integration_id": "integration ID",
    "tenant": "--tenant",
    "display_name": "--display-name",
    "secret_lifetime_days": "--secret-lifetime-days",
    "redirect_uris": "--redirect-uri",
}


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    exit_process(code)


# ----------------------------------------------------------------- output


def print_status(status: IntegrationStatus, as_json: bool, links: LinkSigner) -> None:
    print(status.model_dump_json(indent=2) if as_json else render_status(status, links))


# ------------------------------------------------------------- commands


def onboard_fields(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    if args.sso_redirect_uri and not args.redirect_uri:
        raise UserError("--sso-redirect-uri needs --redirect-uri as well")
    tenant = args.tenant or settings.entra.tenant_id
    if tenant is None:
        raise UserError("no tenant: pass --tenant or set YEC_ENTRA__TENANT_ID")
    fields: dict[str, Any] = {
        "integration_id": args.integration_id,
        "tenant": tenant,
        "display_name": args.display_name,
        "secret_lifetime_days": args.secret_lifetime_days,
    }
    if args.redirect_uri:
        fields["redirect_uris"] = {"redirect_uri": args.redirect_uri, "sso_redirect_uri": args.sso_redirect_uri}
    return fields


async def cmd_onboard(cli: Control, args: argparse.Namespace) -> None:
    if args.source is not None:
        await onboard_fleet(cli, args)
        return
    if args.integration_id is None:
        raise UserError("onboard needs an integration ID (or --from fleet.csv)")
    request = onboard_request(onboard_fields(cli.settings, args), FLAG_NAMES)
    if args.plan:
        print_plan(await plan_for(cli, request))
        return
    started = await onboard(cli, request, FLAG_NAMES)
    if started.attached:
        print(f"Integration {started.integration_id} is already running with these settings.")
    else:
        print(f"Integration {started.integration_id} running as workflow {started.workflow_id}.")
    if args.wait:
        await watch(cli, started.integration_id, as_json=False, until=TERMINAL_WATCH_PHASES)
    else:
        status = await cli.until(started.integration_id, lambda s: s.phase != Phase.STARTING, limit=5)
        print(render_status(status, cli.links))


async def plan_for(cli: Control, request: OnboardRequest) -> list[PlannedChange]:
    start = OnboardInput(
        integration_id=request.integration_id,
        tenant_id=await resolve_tenant(cli.settings, request.tenant, "--tenant"),
        display_name=request.display_name,
        redirect_uris=request.redirect_uris,
    )
    return await plan_onboarding(cli, start)


def print_plan(changes: list[PlannedChange], what: str = "Onboarding") -> None:
    print(f"{what} would make {len(changes)} Microsoft Graph change(s):")
    for change in changes:
        print(f"  {change}")
    print("Plan only: nothing was changed.")


async def onboard_fleet(cli: Control, args: argparse.Namespace) -> None:
    """Every row checked first (nothing starts on a bad file), then one line per row."""
    if args.integration_id is not None:
        raise UserError("give either an integration ID or --from, not both")
    rows = read_fleet_csv(Path(args.source), cli.settings.entra.tenant_id)
    if not args.plan:
        await cli.require_worker()
    failed = 0
    for row in rows:
        name = row.request.integration_id
        try:
            if args.plan:
                changes = await plan_for(cli, row.request)
                print(f"{name}: {len(changes)} Graph change(s): " + "; ".join(f"{c.method} {c.what}" for c in changes))
                continue
            started = await onboard(cli, row.request, {"tenant": "tenant", "redirect_uris": "redirect_uri"})
        except (UserError, Unavailable) as exc:
            failed += 1
            print(f"{name}: failed: {exc}")
            continue
        print(f"{name}: {'already running' if started.attached else 'started'} ({started.workflow_id})")
    if args.plan:
        print("Plan only: nothing was changed.")
    if failed:
        raise UserError(f"{failed} of {len(rows)} row(s) failed (see above); the others are running")


async def cmd_adopt(cli: Control, args: argparse.Namespace) -> None:
    if args.adopt_all and not args.discover:
        raise UserError("--adopt-all goes with --discover")
    if args.discover and (args.integration_id or args.app_id):
        raise UserError("--discover looks through the whole tenant: give no integration ID or --app-id with it")
    if not args.discover and (args.integration_id is None or args.app_id is None):
        raise UserError("adopt needs an integration ID and --app-id (or --discover)")
    if args.app_id is not None and not GUID_RE.match(args.app_id):
        raise UserError(f"--app-id: {args.app_id!r} is not an Application (client) ID (a GUID, as in the PBX portal)")
    if not (args.tenant or cli.settings.entra.tenant_id):
        raise UserError("no tenant: pass --tenant or set YEC_ENTRA__TENANT_ID")
    tenant = await resolve_tenant(cli.settings, args.tenant or cli.settings.entra.tenant_id or "", "--tenant")
    if args.discover:
        await adopt_discovered(cli, args, tenant)
        return
    validate_integration_id(args.integration_id)
    found = await review_app(cli, tenant, args.app_id)
    print_review(found)
    if args.plan:
        print_plan(found.changes, "Adopting")
        return
    repairs = [f for f in found.findings if f.repairable]
    repair = bool(repairs) and not args.no_repair
    if repair:
        _confirm(f"Make these {len(found.changes)} Graph change(s) and adopt {args.integration_id}?", args)
    started = await adopt(cli, args.integration_id, tenant, args.app_id, repair=repair)
    print(f"Integration {started.integration_id} adopts app {args.app_id} as workflow {started.workflow_id}.")
    status = await cli.until(started.integration_id, lambda s: s.phase in TERMINAL_WATCH_PHASES, limit=30)
    print(render_status(status, cli.links))


async def adopt_discovered(cli: Control, args: argparse.Namespace, tenant: str) -> None:
    candidates = await discover(cli, tenant)
    if not candidates:
        print(f"No app registration in tenant {tenant} looks like a Yeastar integration this service doesn't run.")
        return
    now = datetime.now(UTC)
    print(f"{len(candidates)} app registration(s) in tenant {tenant} look like Yeastar integrations:")
    for candidate in candidates:
        app, expiry = candidate.review, candidate.soonest_expiry
        left = f"{expiry:%Y-%m-%d} ({in_words(expiry - now)} left)" if expiry and expiry > now else "EXPIRED"
        print(f"\n  {app.display_name or '(no name)'}  client ID {app.client_id}")
        print(f"    secret expires: {left if expiry else 'no client secret'}")
        for reason in candidate.reasons:
            print(f"    why: {reason}")
        if app.findings:
            print(f"    differs from the guide: {'; '.join(f.detail for f in app.findings)}")
        print(f"    adopt: python starter.py adopt {suggested_id(candidate)} --app-id {app.client_id}")
    if not args.adopt_all:
        return
    _confirm(f"\nAdopt all {len(candidates)} (repairing what Graph can)?", args)
    for candidate in candidates:
        name = suggested_id(candidate)
        try:
            started = await adopt(cli, name, tenant, candidate.review.client_id, repair=True)
        except (UserError, Unavailable) as exc:
            print(f"{name}: not adopted: {exc}")
            continue
        print(f"{name}: adopting as workflow {started.workflow_id}")


def print_review(found: AppReview) -> None:
    now = datetime.now(UTC)
    print(f"App {found.display_name or '(no name)'!r}: client ID {found.client_id}, tenant {found.tenant_id}")
    print(f"  redirect URIs:      {', '.join(found.redirect_uris) or 'none'}")
    print(f"  Graph permissions:  {', '.join(found.granted) or 'none'} consented")
    for secret in found.secrets:
        expiry = secret.expires_at
        when = (
            (f"expires {expiry:%Y-%m-%d} ({in_words(expiry - now)} left)" if expiry > now else "EXPIRED")
            if expiry
            else ""
        )
        print(
            f"  client secret:      {secret.hint}… key {secret.key_id} {when}{' (this service)' if secret.ours else ''}"
        )
    if not found.findings:
        print("It matches the vendor's guide.")
        return
    print("Differences from the vendor's guide:")
    for finding in found.findings:
        print(f"  {'repairable' if finding.repairable else 'needs you '}  {finding.detail}")


async def cmd_check(cli: Control, args: argparse.Namespace) -> None:
    drift: list[Finding] = await cli.update(args.integration_id, IntegrationWorkflow.check_now)
    if not drift:
        print(f"{args.integration_id}: the app matches what the integration requires; the client secret is there.")
    for finding in drift:
        print(f"{'repaired' if finding.repaired else 'needs you'}: {finding.detail}")
    print(render_status(await cli.status(args.integration_id), cli.links))


async def watch(cli: Control, integration_id: str, *, as_json: bool, until: set[Phase] | None) -> None:
    """Print the status whenever it changes; stop at a phase in `until` (or never, until Ctrl-C)."""
    last = ""
    while True:
        status = await cli.status(integration_id)
        shown = render_status(status, cli.links) if not as_json else status.model_dump_json(indent=2)
        if shown != last:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"--- {stamp} ---\n{shown}", flush=True)
            last = shown
        if until and status.phase in until:
            return
        await asyncio.sleep(1.0)


async def cmd_status(cli: Control, args: argparse.Namespace) -> None:
    if args.watch:
        await watch(cli, args.integration_id, as_json=args.json, until=None)
    else:
        print_status(await cli.status(args.integration_id), args.json, cli.links)


async def cmd_list(cli: Control, args: argparse.Namespace) -> None:
    rows = [
        (
            row.integration_id,
            row.phase,
            row.tenant_id,
            f"{row.secret_expires:%Y-%m-%d}" if row.secret_expires else "-",
            "running" if row.running else "ended",
        )
        for row in await list_integrations(
            cli,
            phase=args.phase,
            tenant_id=await resolve_tenant(cli.settings, args.tenant, "--tenant") if args.tenant else None,
            closed=args.all,
        )
    ]
    if not rows:
        print("no integrations" + (f" in phase {args.phase}" if args.phase else ""))
        return
    header = ("INTEGRATION", "PHASE", "TENANT", "SECRET EXPIRES", "WORKFLOW")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def cmd_redirect_uris(cli: Control, args: argparse.Namespace) -> None:
    uris = RedirectUris(redirect_uri=args.redirect_uri, sso_redirect_uri=args.sso_redirect_uri)
    if problems := uris.problems():
        raise UserError("; ".join(problems))
    before = await cli.status(args.integration_id)
    await cli.update(args.integration_id, IntegrationWorkflow.submit_redirect_uris, uris)
    if before.phase == Phase.WAITING_FOR_REDIRECT_URIS:
        status = await cli.until(args.integration_id, lambda s: s.phase != Phase.WAITING_FOR_REDIRECT_URIS)
    else:
        print("The app registration now has these redirect URIs.")
        status = await cli.status(args.integration_id)
    print(render_status(status, cli.links))


async def cmd_consent(cli: Control, args: argparse.Namespace) -> None:
    await cli.update(
        args.integration_id, IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by=args.by)
    )
    print(f"Consent confirmed for {args.integration_id}; the service now verifies the connection.")


async def cmd_retry(cli: Control, args: argparse.Namespace) -> None:
    step = await cli.retry(args.integration_id)
    print(f"Retrying {args.integration_id} from step {step}.")


async def cmd_secret(cli: Control, args: argparse.Namespace) -> None:
    status = await cli.status(args.integration_id)
    secret = status.secret
    if args.pending:
        if status.rotation is None or status.rotation.new_secret is None:
            raise UserError(f"{args.integration_id} has no rotation with a new secret in progress")
        secret = status.rotation.new_secret
    if secret is None:
        raise UserError(f"{args.integration_id} has no client secret yet ({status.phase.sentence.lower()})")
    if not args.reveal:
        raise UserError("the secret is only shown with --reveal (it is a credential: keep it off screenshots)")
    if secret.key_id == status.adopted_key_id:
        raise UserError(
            f"{args.integration_id} was set up by hand and adopted: the service never knew the value of key "
            f"{secret.key_id}. `python starter.py rotate {args.integration_id}` creates a new secret it holds"
        )
    store = open_secret_store(cli.settings)
    try:
        value = await store.get(args.integration_id, secret.key_id)
    except SecretNotFound as exc:
        raise UserError(
            f"{exc} (looked in the {store.backend} secret store at {store.location}: use the worker's "
            "YEC_SECRET_STORE__* settings, and for the local store its YEC_DATA_DIR)"
        ) from None
    except SecretStoreUnavailable as exc:
        raise Unavailable(str(exc)) from None
    finally:
        await store.close()
    print(
        f"warning: revealing the client secret of {args.integration_id} (key {secret.key_id}, expires "
        f"{secret.expires_at:%Y-%m-%d}); paste it into the PBX and clear your terminal.",
        file=sys.stderr,
    )
    print(value.get_secret_value())


async def cmd_allow_reveal(cli: Control, args: argparse.Namespace) -> None:
    key_id = await cli.update(args.integration_id, IntegrationWorkflow.allow_reveal, None)
    print(f"The secret waiting to be pasted (key {key_id}) may be shown once more on the administrator's page.")


async def cmd_rotate(cli: Control, args: argparse.Namespace) -> None:
    # The schedule keeps its own cadence; this one shows as "manual".
    rotation_id = await cli.rotate_now(args.integration_id)
    print(
        f"Rotation of {args.integration_id}: starting {rotation_id}. "
        f"Follow it with: python starter.py status {args.integration_id}"
    )


async def cmd_pbx_updated(cli: Control, args: argparse.Namespace) -> None:
    await cli.update(
        args.integration_id, IntegrationWorkflow.confirm_pbx_updated, ConsentConfirmation(confirmed_by=args.by)
    )
    print(f"Noted. The old secret of {args.integration_id} is removed once sign-ins show the PBX on the new one.")


async def cmd_offboard(cli: Control, args: argparse.Namespace) -> None:
    status = await cli.status(args.integration_id)
    if status.phase == Phase.OFFBOARDED:
        raise UserError(f"{args.integration_id} is already offboarded")
    cancel = args.command == "cancel"
    app = f"its app registration {status.app.client_id}" if status.app else "nothing in Entra (no app yet)"
    if cancel:
        effect = f"This ends its onboarding and deletes {app}."
    elif args.delete_app:
        effect = f"This stops its reminders and secret rotation and deletes {app} (restorable for 30 days)."
    else:
        effect = "This stops its reminders and secret rotation and removes the service's client secrets from its app."
    _confirm(f"{'Cancel' if cancel else 'Offboard'} {args.integration_id}? {effect} The PBX loses Entra sync.", args)
    request = OffboardRequest(cancel=cancel, delete_app=getattr(args, "delete_app", False), by=args.by)
    await cli.update(args.integration_id, IntegrationWorkflow.offboard, request)
    final = await cli.until(args.integration_id, lambda s: s.phase == Phase.OFFBOARDED, limit=60)
    if final.phase != Phase.OFFBOARDED:
        print(f"Still winding up (follow it with: python starter.py status {args.integration_id})")
    print(render_status(final, cli.links))


def _confirm(question: str, args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} Not done: confirm with --yes when there is no terminal to ask on")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise UserError("not done")


async def cmd_schedule(cli: Control, args: argparse.Namespace) -> None:
    paused = True if args.pause else False if args.resume else None
    schedule = await rotation_schedule(cli, args.integration_id, paused=paused, note=args.note or "")
    print(f"Schedule {schedule.schedule_id}: every {schedule.every}, {'PAUSED' if schedule.paused else 'active'}")
    if schedule.note:
        print(f"  note: {schedule.note}")
    for when in schedule.next_runs:
        print(f"  next rotation: {when:%Y-%m-%d %H:%M} UTC")
    for when in schedule.recent_runs:
        print(f"  ran: {when:%Y-%m-%d %H:%M} UTC")


COMMANDS: dict[str, Callable[[Control, argparse.Namespace], Awaitable[None]]] = {
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
    "allow-reveal": cmd_allow_reveal,
    "offboard": cmd_offboard,
    "cancel": cmd_offboard,
    "adopt": cmd_adopt,
    "check": cmd_check,
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


def generate_key(purpose: str | None) -> None:
    """New keys, one per purpose: a key never serves both the payloads and the secret store."""
    key_id = datetime.now(UTC).strftime("k%Y%m%d")
    names = {"payload": "YEC_ENCRYPTION_KEYS", "store": "YEC_SECRET_STORE__KEYS"}
    for name in [names[purpose]] if purpose else names.values():
        print(f"{name}={key_id}:{base64.b64encode(os.urandom(32)).decode()}")


async def check_secret_store(settings: Settings) -> None:
    store = open_secret_store(settings)
    try:
        await store.check()
    except SecretStoreUnavailable as exc:
        raise Unavailable(str(exc)) from None
    finally:
        await store.close()
    print(f"The {store.backend} secret store at {store.location} can be read and written.")


def re_encrypt_secret_store(settings: Settings) -> None:
    if settings.secret_store.backend != "local":
        raise UserError(f"re-encrypt is for the local store; the {settings.secret_store.backend} store encrypts itself")
    store = open_local_store(settings)
    # The payload keys may have sealed the store's files before it had keys of its own.
    previous = settings.keys if settings.encryption_keys is not None else {}
    done = store.re_encrypt(previous)
    print(
        f"{done.rewritten} secret(s) re-encrypted with the store's newest key, {done.current} already were "
        f"({store.location})."
    )
    if done.unreadable:
        raise UserError(
            f"{len(done.unreadable)} file(s) open with none of YEC_SECRET_STORE__KEYS or YEC_ENCRYPTION_KEYS and "
            f"were left as they are: {', '.join(str(p) for p in done.unreadable)}"
        )


# ------------------------------------------------- the service's own identity

IDENTITY_COMMANDS = ("bootstrap", "tenant")


def add_identity_parsers(sub: Any) -> None:
    """``bootstrap`` and ``tenant add|check`` (bootstrap.py does the work)."""
    boot_help = "create or repair the provisioning app registration (an administrator signs in with a code)"
    boot = sub.add_parser("bootstrap", help=boot_help, description=bootstrap_module.__doc__.split("\n\n")[0])
    boot.add_argument("--tenant", help="tenant ID or domain (default: YEC_ENTRA__TENANT_ID, else the admin's own)")
    boot.add_argument("--multi-tenant", action="store_true", help="a multi-tenant app, for customers' tenants too")
    boot.add_argument("--secret", action="store_true", help="a client secret instead of a certificate")
    boot.add_argument("--env-file", type=Path, default=Path(".env"), help="the settings file to update (.env)")
    boot.add_argument("--name", default=bootstrap_module.DEFAULT_NAME, help="the app registration's display name")
    boot.add_argument(
        "--days",
        type=int,
        default=bootstrap_module.MAX_CERTIFICATE_DAYS,
        help="lifetime of a new certificate (at most 365) or secret (at most 730), default 365",
    )
    boot.add_argument(
        "--public-client-id",
        default=bootstrap_module.GRAPH_CLI_CLIENT_ID,
        help="the public client to sign in with (default: Microsoft Graph Command Line Tools)",
    )
    tenant = sub.add_parser("tenant", help="customer tenants of a multi-tenant provisioning app")
    actions = tenant.add_subparsers(dest="tenant_action", required=True, metavar="ACTION")
    for action, help_text in (
        ("add", "print the admin consent URL for a customer's tenant, then check it"),
        ("check", "can the provisioning app work in this tenant? (per permission)"),
    ):
        command = actions.add_parser(action, help=help_text, description=help_text)
        command.add_argument("tenant", help="the customer's tenant ID or one of its domains")
        command.add_argument("--env-file", type=Path, default=Path(".env"), help="the settings file (.env)")
        if action == "add":
            command.add_argument("--wait", action="store_true", help="check until the consent is there")


def run_identity_command(args: argparse.Namespace) -> NoReturn:
    """Bootstrap or a tenant command, each failure one line: exit 2 for what the administrator can fix
    (a refusal says why), 3 when Entra or Graph failed otherwise."""
    try:
        if args.command == "bootstrap":
            # The credential settings are what bootstrap (re)makes: a stale one must not stop it.
            settings = load_settings(_env_file=args.env_file, entra={"client_secret": None, "certificate_path": None})
            options = bootstrap_module.BootstrapOptions(
                env_file=args.env_file,
                tenant=args.tenant,
                multi_tenant=args.multi_tenant,
                secret=args.secret,
                name=args.name,
                days=args.days,
                public_client_id=args.public_client_id,
            )
            asyncio.run(bootstrap_module.bootstrap(settings, options))
        else:
            settings = load_settings(_env_file=args.env_file)
            if args.tenant_action == "add":
                asyncio.run(bootstrap_module.add_tenant(settings, args.tenant, wait=args.wait))
            else:
                asyncio.run(bootstrap_module.check_tenant(settings, args.tenant))
    except KeyboardInterrupt:
        exit_process(130)
    except (bootstrap_module.BootstrapError, SettingsError) as exc:
        fail(str(exc))
    except PermissionDenied as exc:
        fail(f"Microsoft Graph refused: {exc}")
    except ApiError as exc:
        fail(f"Microsoft Entra ID or Graph failed: {exc}", EXIT_UNAVAILABLE)
    exit_process(0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_id(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("integration_id", help="your name for this PBX integration, e.g. acme-hq")
        return cmd

    onboard_help = "start an integration (or show the one running under this name)"
    onboard = sub.add_parser("onboard", help=onboard_help, description=onboard_help)
    onboard.add_argument("integration_id", nargs="?", help="your name for this PBX integration, e.g. acme-hq")
    onboard.add_argument(
        "--from",
        dest="source",
        metavar="FLEET.CSV",
        help="onboard every row of a CSV file (columns id, tenant, redirect_uri, sso_redirect_uri, display_name)",
    )
    onboard.add_argument("--plan", action="store_true", help="print the Graph changes it would make, make none")
    onboard.add_argument("--redirect-uri", help="the PBX's Redirect URI (else submit it later with redirect-uris)")
    onboard.add_argument("--sso-redirect-uri", help="the PBX's Client SSO Redirect URI (optional: Linkus SSO)")
    onboard.add_argument("--tenant", help="Entra tenant: its GUID or a domain of it (default: YEC_ENTRA__TENANT_ID)")
    onboard.add_argument("--display-name", help="name of the Entra application (default: Yeastar P-Series PBX (ID))")
    onboard.add_argument(
        "--secret-lifetime-days",
        type=int,
        help=f"client secret lifetime, 1-{MAX_SECRET_LIFETIME_DAYS} days (default YEC_SECRET_LIFETIME_DAYS, 180; "
        "the tenant's policy may shorten it)",
    )
    onboard.add_argument("--wait", action="store_true", help="follow progress until Connected, Blocked or Expired")

    status = with_id("status", "show phase, steps, IDs and the pending human action")
    status.add_argument("--watch", action="store_true", help="keep printing changes until Ctrl-C")
    status.add_argument("--json", action="store_true", help="the full status as JSON")

    listing = sub.add_parser("list", help="list integrations")
    listing.add_argument("--phase", choices=[str(p) for p in Phase], help="only those in this phase")
    listing.add_argument("--all", action="store_true", help="include finished (offboarded) integrations")
    listing.add_argument("--tenant", help="only this tenant's (its GUID or a domain of it)")

    adopting_help = "take over an integration set up by hand in the Entra portal"
    adopting = sub.add_parser("adopt", help=adopting_help, description=adopting_help)
    adopting.add_argument("integration_id", nargs="?", help="your name for it, e.g. acme-hq")
    adopting.add_argument("--app-id", help="the app's Application (client) ID, as in the PBX portal")
    adopting.add_argument("--tenant", help="Entra tenant: its GUID or a domain of it (default: YEC_ENTRA__TENANT_ID)")
    adopting.add_argument("--plan", action="store_true", help="print the review and the Graph changes, make none")
    adopting.add_argument("--no-repair", action="store_true", help="adopt as it is, repairing nothing")
    adopting.add_argument("--discover", action="store_true", help="list the tenant's apps that look like Yeastar's")
    adopting.add_argument("--adopt-all", action="store_true", help="with --discover: adopt every one found")
    adopting.add_argument("--yes", action="store_true", help="don't ask for confirmation (scripts)")
    with_id("check", "check the app and its secret now (the daily check): repair drift, report the rest")

    uris = with_id("redirect-uris", "give the redirect URIs read in the PBX portal (or new ones, later)")
    uris.add_argument("--redirect-uri", required=True, help="the PBX's Redirect URI")
    uris.add_argument("--sso-redirect-uri", help="the PBX's Client SSO Redirect URI (optional)")

    consent = with_id("consent", "confirm the PBX was connected and the admin signed in (guide step 6)")
    consent.add_argument("--by", help="who signed in (recorded in the status)")

    with_id("retry", "resume a Blocked or Expired integration after fixing the cause")

    secret = with_id("secret", "reveal the client secret to paste into the PBX")
    secret.add_argument("--reveal", action="store_true", help="really print it")
    secret.add_argument("--pending", action="store_true", help="the new secret of a rotation in progress")

    with_id("allow-reveal", "let the administrator's page show the secret to paste once more")
    with_id("rotate", "rotate the client secret now (new secret first, old removed after cut-over)")
    updated = with_id("pbx-updated", "confirm the new secret was pasted into the PBX (during a rotation)")
    updated.add_argument("--by", help="who updated the PBX (recorded in the status)")

    schedule = with_id("schedule", "show, pause or resume the rotation schedule")
    toggle = schedule.add_mutually_exclusive_group()
    toggle.add_argument("--pause", action="store_true", help="no scheduled rotations until --resume")
    toggle.add_argument("--resume", action="store_true", help="scheduled rotations again")
    schedule.add_argument("--note", help="why (shown in the schedule)")

    for name, help_text in (
        ("offboard", "end an integration: stop reminders and rotation, remove the service's secrets"),
        ("cancel", "end an integration that never connected, and delete its app registration"),
    ):
        ending = with_id(name, help_text)
        if name == "offboard":
            ending.add_argument("--delete-app", action="store_true", help="delete the whole app registration")
        ending.add_argument("--yes", action="store_true", help="don't ask for confirmation (scripts)")
        ending.add_argument("--by", help="who ends it (recorded in the final status)")

    dev = sub.add_parser("dev-server", help="run the embedded Temporal dev server (foreground)")
    dev.add_argument("--port", type=int, default=7233, help="gRPC port (default 7233)")
    dev.add_argument("--ui-port", type=int, default=8233, help="web UI port (default 8233)")
    dev.add_argument("--headless", action="store_true", help="no web UI")

    keys = sub.add_parser("generate-key", help="print new keys for the payloads and the secret store")
    keys.add_argument("--for", dest="purpose", choices=["payload", "store"], help="only this one (to rotate it)")

    secrets = sub.add_parser("secrets", help="the secret store: check it, re-encrypt the local one")
    secrets.add_argument("action", choices=["check", "re-encrypt"])
    add_identity_parsers(sub)
    return p


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        raise Unavailable(
            f"cannot reach Temporal at {settings.temporal.address}: {exc}. Start it with `python starter.py "
            "dev-server` (or `make demo`), or set YEC_TEMPORAL__ADDRESS."
        ) from None
    await COMMANDS[args.command](Control(client, settings), args)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "generate-key":
        generate_key(args.purpose)
        return
    if args.command in IDENTITY_COMMANDS:  # no Temporal, no encryption keys: they make the identity
        run_identity_command(args)
    try:
        settings = load_settings()
        if args.command == "dev-server":
            run_dev_server(settings, args)
        if args.command == "secrets":
            # The store only, no Temporal: these work while the worker is stopped.
            if args.action == "check":
                asyncio.run(check_secret_store(settings))
            else:
                re_encrypt_secret_store(settings)
            exit_process(0)
        settings.keys  # noqa: B018 - a missing key is a configuration error, reported now
        asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        exit_process(130)
    except Exception as exc:
        fail(*_one_line(exc))
    exit_process(0)


def _one_line(exc: Exception) -> tuple[str, int]:
    """What to tell the operator, and the exit code (2: their mistake, 3: Temporal or the worker)."""
    cause: BaseException | None = exc
    while cause is not None:  # a payload this process can't decrypt surfaces wrapped in the SDK's errors
        if isinstance(cause, UnreadablePayload):
            return str(cause), EXIT_USAGE
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, Unavailable):
        return str(exc), EXIT_UNAVAILABLE
    if isinstance(exc, SettingsError | UserError | ValueError):  # ValueError: e.g. a malformed integration ID
        return str(exc), EXIT_USAGE
    if isinstance(exc, RPCError):
        return f"Temporal refused the request: {exc.message}", EXIT_UNAVAILABLE
    return f"unexpected {type(exc).__name__}: {exc}", EXIT_UNAVAILABLE


if __name__ == "__main__":
    main()
