"""The operator console, behind sign-in: the fleet as one table, filterable by phase and by "expires
within N days" (search attributes), with the CLI's actions. Operators sign in with Microsoft Entra ID
(OpenID Connect authorization code flow with PKCE through MSAL, members of one group only) or, the
demo's default, with a static operator token."""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from clients.msal_auth import sign_in_application
from control import (
    Control,
    Listed,
    Unavailable,
    UserError,
    list_integrations,
    onboard,
    onboard_request,
    render_status,
    rotation_schedule,
)
from models.integration import IntegrationStatus, OffboardRequest, Phase, admin_action
from webapp.context import WebContext, web_context
from webapp.security import csrf_token
from webapp.views import e, form, notice, page
from workflows.integration import IntegrationWorkflow

FIELD_NAMES = {
    "integration_id": "Integration ID",
    "tenant": "Tenant",
    "display_name": "Display name",
    "secret_lifetime_days": "Secret lifetime",
    "redirect_uris": "Redirect URI",
}
SIGN_IN_FLOW_SECONDS = 600
# The table asks each shown integration for its status: at most this many, a few at a time.
TABLE_ROWS = 100
STATUS_QUERIES_AT_ONCE = 8


def _operator(request: web.Request) -> str:
    who = web_context(request).sessions.operator(request)
    if who is None:
        raise web.HTTPSeeOther("/console/signin")
    return who


# ------------------------------------------------------------------ sign-in


async def signin_page(request: web.Request) -> web.Response:
    context = web_context(request)
    body = ""
    if context.settings.web.oidc_configured:
        body += '<p><a class=button id=signin-microsoft href="/console/signin/microsoft">Sign in with Microsoft</a></p>'
    if context.settings.web.operator_token is not None:
        body += form(
            "/console/signin",
            csrf_token(request),
            "<div class=field><label for=token>Operator token</label><input id=token name=token type=password "
            "autocomplete=current-password></div>",
            button="Sign in",
            button_id="signin-token",
        )
    if not body:
        body = notice("No sign-in is configured: set YEC_WEB__OPERATOR_TOKEN or the YEC_WEB__OIDC_* settings.")
    if error := request.query.get("error"):
        body = notice(error, "warning") + body
    return page("Operator console: sign in", body)


async def signin_with_token(request: web.Request) -> web.Response:
    context = web_context(request)
    expected = context.settings.web.operator_token
    given = str((await request.post()).get("token", ""))
    if expected is None or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise web.HTTPSeeOther("/console/signin?error=That+token+is+not+the+operator+token.")
    response = web.HTTPSeeOther("/console")
    context.sessions.start(response, "operator (token)")
    raise response


async def signin_with_microsoft(request: web.Request) -> web.Response:
    context = web_context(request)
    app = await asyncio.to_thread(_msal_app, context)
    # form_post: the code comes back in a POST body, never in a URL (browser history, logs, Referer).
    flow: dict[str, Any] = await asyncio.to_thread(
        app.initiate_auth_code_flow, [], redirect_uri=_callback_url(context), response_mode="form_post"
    )
    now = time.monotonic()
    context.sign_ins = {
        state: started for state, started in context.sign_ins.items() if now - started["at"] < SIGN_IN_FLOW_SECONDS
    }
    context.sign_ins[flow["state"]] = {"flow": flow, "at": now}
    raise web.HTTPSeeOther(flow["auth_uri"])


async def signin_callback(request: web.Request) -> web.Response:
    context = web_context(request)
    answer = {name: str(value) for name, value in (await request.post()).items()}
    started = context.sign_ins.pop(answer.get("state", ""), None)
    if started is None:
        raise web.HTTPSeeOther("/console/signin?error=That+sign-in+took+too+long+or+was+not+started+here.")
    app = await asyncio.to_thread(_msal_app, context)
    result: dict[str, Any] = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, started["flow"], answer)
    claims = result.get("id_token_claims")
    if not claims:
        reason = result.get("error_description") or result.get("error") or "no ID token"
        raise web.HTTPSeeOther(f"/console/signin?error=Microsoft+sign-in+failed:+{reason.split('.')[0]}")
    who = str(claims.get("preferred_username") or claims.get("name") or claims.get("oid"))
    if context.settings.web.oidc_allowed_group not in claims.get("groups", []):
        return page(
            "Not an operator",
            notice(f"You are signed in as {who}, who is not a member of the operators' group.", "warning"),
            status=403,
        )
    response = web.HTTPSeeOther("/console")
    context.sessions.start(response, who)
    raise response


async def signout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/console/signin")
    web_context(request).sessions.end(response)
    raise response


def _msal_app(context: WebContext) -> Any:
    web_settings, entra = context.settings.web, context.settings.entra
    assert web_settings.oidc_tenant_id and web_settings.oidc_client_id and web_settings.oidc_client_secret
    return sign_in_application(
        web_settings.oidc_tenant_id,
        web_settings.oidc_client_id,
        web_settings.oidc_client_secret,
        authority_host=entra.authority_host,
        ca_bundle=entra.ca_bundle,
        instance_discovery=entra.instance_discovery,
    )


def _callback_url(context: WebContext) -> str:
    return f"{context.settings.web.base_url}/console/signin/callback"


# ------------------------------------------------------------------ the fleet


async def fleet(request: web.Request) -> web.Response:
    who = _operator(request)
    context = web_context(request)
    phase = request.query.get("phase") or None
    within = request.query.get("expires_within_days", "")
    try:
        expiring = timedelta(days=int(within)) if within else None
        rows = (await list_integrations(context.control, phase=phase, expiring_within=expiring))[:TABLE_ROWS]
    except ValueError:
        raise web.HTTPSeeOther("/console") from None
    statuses = await _statuses(context.control, rows)
    csrf = csrf_token(request)
    body = f"<p class=lead>Signed in as {e(who)}</p>" + form(
        "/console/signout", csrf, "", button="Sign out", button_id="signout"
    )
    if message := request.query.get("message"):
        body += notice(message, "warning" if request.query.get("failed") else "info")
    body += _filters(phase, within) + _table(context, rows, statuses, csrf) + _onboard_form(csrf)
    return page("Operator console", body)


async def _statuses(control: Control, rows: list[Listed]) -> dict[str, IntegrationStatus | str]:
    """Each shown integration's status, asked a few at a time; the reason instead where none came."""
    limit = asyncio.Semaphore(STATUS_QUERIES_AT_ONCE)

    async def one(row: Listed) -> IntegrationStatus | str:
        async with limit:
            try:
                return await control.status(row.integration_id)
            except (UserError, Unavailable) as exc:
                return str(exc)

    answers = await asyncio.gather(*(one(row) for row in rows))
    return {row.integration_id: answer for row, answer in zip(rows, answers, strict=True)}


def _filters(phase: str | None, within: str) -> str:
    options = "".join(f'<option value="{p}"{" selected" if p == phase else ""}>{e(p.sentence)}</option>' for p in Phase)
    return (
        "<form method=get action=/console class=filters>"
        f"<label>Phase <select name=phase id=phase><option value=''>any</option>{options}</select></label>"
        f"<label>Secret expires within <input name=expires_within_days id=expires-within type=number min=0 "
        f"value='{e(within)}'> days</label><button type=submit id=filter>Filter</button></form>"
    )


def _table(context: WebContext, rows: list[Listed], statuses: dict[str, IntegrationStatus | str], csrf: str) -> str:
    if not rows:
        return notice("No integrations match.")
    head = (
        "<tr><th>Integration</th><th>Tenant</th><th>Phase</th><th>Secret expires</th>"
        "<th>Waiting for</th><th>Last rotation</th><th>Warnings</th><th>Actions</th></tr>"
    )
    return (
        f"<table id=fleet><thead>{head}</thead><tbody>"
        + "".join(_row(context, row, statuses[row.integration_id], csrf) for row in rows)
        + "</tbody></table>"
    )


def _row(context: WebContext, row: Listed, status: IntegrationStatus | str, csrf: str) -> str:
    name = e(row.integration_id)
    if isinstance(status, str):
        return f"<tr><td>{name}</td><td>{e(row.tenant_id)}</td><td colspan=6>{e(status)}</td></tr>"
    expiry = "-"
    if status.secret is not None:
        days = (status.secret.expires_at - datetime.now(UTC)).days
        tone = "bad" if days <= 7 else "warn" if days <= 30 else "good"
        expiry = f"<span class='days {tone}'>{days} days</span><br><small>{status.secret.expires_at:%Y-%m-%d}</small>"
    waiting = "-"
    if status.pending_human_action is not None and status.phase != Phase.CONNECTED:
        since = f"<br><small>since {status.pending_since:%Y-%m-%d %H:%M}</small>" if status.pending_since else ""
        waiting = e(status.pending_human_action.title) + since
    last = status.last_rotation
    rotated = (
        f"{e(str(last.stage))}<br><small>{last.finished_at:%Y-%m-%d}</small>" if last and last.finished_at else "-"
    )
    return (
        f"<tr id='row-{name}'><td><a href='/console/integration/{name}'>{name}</a></td><td>{e(row.tenant_id)}</td>"
        f"<td class=phase>{e(status.phase.sentence)}</td><td>{expiry}</td><td>{waiting}</td><td>{rotated}</td>"
        f"<td>{len(status.warnings) or ''}</td><td class=actions>{_actions(context, status, csrf)}</td></tr>"
    )


def _actions(context: WebContext, status: IntegrationStatus, csrf: str) -> str:
    name = status.integration_id
    buttons = []

    def act(action: str, label: str, confirm: str | None = None) -> None:
        buttons.append(
            form(
                f"/console/integration/{name}/{action}",
                csrf,
                "",
                button=label,
                button_id=f"{action}-{name}",
                confirm=confirm,
            )
        )

    if status.phase in (Phase.BLOCKED, Phase.EXPIRED) and status.blocked is not None:
        act("retry", "Retry")
    if status.phase == Phase.CONNECTED:
        act("rotate", "Rotate now")
    if status.connected_at is not None and status.phase != Phase.OFFBOARDED:
        act("pause", "Pause rotations")
        act("resume", "Resume rotations")
    if (action := admin_action(status)) is not None:
        link = context.links.url(name, action)
        buttons.append(
            f"<input id='link-{e(name)}' value='{e(link)}' readonly hidden>"
            f"<button type=button class=copy data-copy='link-{e(name)}'>Copy the administrator's link</button>"
        )
        if action.kind != "redirect-uris":
            act("allow-reveal", "Allow one more reveal")
    if status.phase != Phase.OFFBOARDED:
        act(
            "offboard",
            "Offboard",
            confirm=f"Offboard {name}? Its reminders and rotation stop and the service's "
            "secrets are removed from its app. The PBX loses Entra sync.",
        )
    return "".join(buttons)


def _onboard_form(csrf: str) -> str:
    fields = "".join(
        f"<div class=field><label for={name}>{e(label)}</label><input id={name} name={name}></div>"
        for name, label in (
            ("integration_id", "Integration ID (e.g. acme-hq)"),
            ("tenant", "Tenant (GUID or domain; empty: the service's own)"),
            ("redirect_uri", "Redirect URI (optional)"),
            ("sso_redirect_uri", "Client SSO Redirect URI (optional)"),
        )
    )
    return "<h2>Onboard a PBX</h2>" + form("/console/onboard", csrf, fields, button="Onboard", button_id="onboard")


async def detail(request: web.Request) -> web.Response:
    _operator(request)
    context = web_context(request)
    integration_id = request.match_info["integration_id"]
    try:
        status = await context.control.status(integration_id)
    except (UserError, Unavailable) as exc:
        return page(integration_id, notice(str(exc), "warning"), status=404)
    text = render_status(status, context.links)
    return page(f"Integration {integration_id}", f"<p><a href=/console>Back to the fleet</a></p><pre>{e(text)}</pre>")


# ------------------------------------------------------------------ actions


async def act(request: web.Request) -> web.Response:
    who = _operator(request)
    control = web_context(request).control
    integration_id, action = request.match_info["integration_id"], request.match_info["action"]
    try:
        done = await _do(control, integration_id, action, who)
    except (UserError, Unavailable) as exc:
        raise web.HTTPSeeOther(_back(f"{integration_id}: {exc}", failed=True)) from None
    raise web.HTTPSeeOther(_back(f"{integration_id}: {done}"))


async def _do(control: Control, integration_id: str, action: str, who: str) -> str:
    if action == "retry":
        return f"retrying from step {await control.retry(integration_id)}"
    if action == "rotate":
        return f"starting {await control.rotate_now(integration_id)}"
    if action in ("pause", "resume"):
        schedule = await rotation_schedule(control, integration_id, paused=action == "pause", note=f"by {who}")
        return f"rotations every {schedule.every}, {'paused' if schedule.paused else 'active'}"
    if action == "allow-reveal":
        key_id = await control.update(integration_id, IntegrationWorkflow.allow_reveal, None)
        return f"the secret {key_id} may be shown once more"
    if action == "offboard":
        await control.update(integration_id, IntegrationWorkflow.offboard, OffboardRequest(by=who))
        return "offboarding"
    raise web.HTTPNotFound()


async def start_onboarding(request: web.Request) -> web.Response:
    _operator(request)
    context = web_context(request)
    posted = await request.post()
    fields: dict[str, Any] = {
        "integration_id": str(posted.get("integration_id", "")).strip(),
        "tenant": str(posted.get("tenant", "")).strip() or context.settings.entra.tenant_id,
    }
    if redirect_uri := str(posted.get("redirect_uri", "")).strip():
        sso = str(posted.get("sso_redirect_uri", "")).strip() or None
        fields["redirect_uris"] = {"redirect_uri": redirect_uri, "sso_redirect_uri": sso}
    try:
        started = await onboard(context.control, onboard_request(fields, FIELD_NAMES), FIELD_NAMES)
    except (UserError, Unavailable) as exc:
        raise web.HTTPSeeOther(_back(str(exc), failed=True)) from None
    verb = "was already running" if started.attached else "started"
    raise web.HTTPSeeOther(_back(f"{started.integration_id} {verb}"))


def _back(message: str, *, failed: bool = False) -> str:
    return "/console?" + urlencode({"message": message, **({"failed": "1"} if failed else {})})


def add_console_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console", fleet)
    r.add_get("/console/signin", signin_page)
    r.add_post("/console/signin", signin_with_token)
    r.add_get("/console/signin/microsoft", signin_with_microsoft)
    r.add_post("/console/signin/callback", signin_callback)
    r.add_post("/console/signout", signout)
    r.add_post("/console/onboard", start_onboarding)
    r.add_get("/console/integration/{integration_id}", detail)
    r.add_post("/console/integration/{integration_id}/{action}", act)
