"""The PBX administrator's pages, reached by a signed link (common/links.py) for one step:

- guide step 1: the two redirect URIs, submitted as the workflow's update (its reasons shown inline);
- guide step 6: client ID and tenant ID to copy, the secret shown once on a click (recorded in the
  status), then "I have signed in and the PBX shows Connected";
- a rotation: the new secret shown once, "I pasted the new secret", then the cut-over's progress.

A link works only for its integration and step, and only while that step is pending.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from common.links import InvalidLink, SignedLink
from common.secret_store import SecretNotFound, SecretStoreUnavailable
from control import Unavailable, UserError
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    Phase,
    RedirectUris,
    Reveal,
    RotationStage,
    admin_action,
)
from webapp.context import WebContext, web_context
from webapp.security import csrf_token
from webapp.views import card_steps, copyable, e, form, notice, page, progress
from workflows.integration import IntegrationWorkflow

log = structlog.get_logger(__name__)

TITLES = {
    "redirect-uris": "Step 1: the redirect URIs from the PBX portal",
    "connect": "Step 6: connect the PBX to Microsoft Entra ID",
    "rotation": "Paste the new client secret into the PBX",
}


async def _open(request: web.Request) -> tuple[WebContext, SignedLink, IntegrationStatus]:
    """The link, checked, and the integration's status; a page explaining why, if it can't be used."""
    context = web_context(request)
    try:
        link = context.links.verify(request.match_info["token"])
    except (InvalidLink, ValueError) as exc:
        raise _gone("This link can't be used", str(exc) if isinstance(exc, InvalidLink) else "") from None
    try:
        status = await context.control.status(link.integration_id)
    except (UserError, Unavailable) as exc:
        raise _gone("This link can't be used right now", str(exc)) from None
    return context, link, status


def _current(link: SignedLink, status: IntegrationStatus) -> bool:
    return admin_action(status) == link.action


def _gone(title: str, why: str) -> web.HTTPException:
    response = page(title, notice(why or "Ask the operator for a fresh link.", "warning"), status=410, no_store=True)
    return web.HTTPGone(text=response.text, content_type="text/html", headers={"Cache-Control": "no-store"})


def _done_page(link: SignedLink, status: IntegrationStatus) -> web.Response:
    """The step is no longer pending (done, or overtaken): where things stand, without a form or secret."""
    body = notice(f"This step is done. The integration is now: {status.phase.sentence}.")
    body += progress(f"/a/{link.token}/progress") if status.phase != Phase.OFFBOARDED else ""
    return page(TITLES[link.action.kind], body, no_store=True)


async def show(request: web.Request) -> web.Response:
    _, link, status = await _open(request)
    if not _current(link, status):
        return _done_page(link, status)
    return _render(request, link, status)


def _render(
    request: web.Request,
    link: SignedLink,
    status: IntegrationStatus,
    *,
    error: dict[str, str] | None = None,
    secret: str | None = None,
) -> web.Response:
    csrf, base = csrf_token(request), f"/a/{link.token}"
    card = status.pending_human_action
    kind = link.action.kind
    body = f"<p class=lead>Integration <b>{e(status.integration_id)}</b> · {e(status.phase.sentence)}</p>"
    if kind == "redirect-uris":
        errors = error or {}
        uris = status.redirect_uris
        body += card_steps(card)
        body += form(
            f"{base}/redirect-uris",
            csrf,
            _field("redirect_uri", "Redirect URI", uris.redirect_uri if uris else "", errors)
            + _field("sso_redirect_uri", "Client SSO Redirect URI (optional)", "", errors),
            button="Submit the redirect URIs",
            button_id="submit-uris",
        )
    else:
        assert status.app is not None
        body += card_steps(card)
        body += copyable("Application (client) ID", status.app.client_id, "client-id")
        body += copyable("Directory (tenant) ID", status.app.tenant_id, "tenant-id")
        if secret is not None:
            body += copyable("Client secret (shown this once: paste it now)", secret, "client-secret")
        elif error and "reveal" in error:
            body += notice(error["reveal"], "warning")
        else:
            body += form(f"{base}/reveal", csrf, "", button="Show the client secret", button_id="reveal")
        if kind == "rotation":
            body += _rotation_part(status, base, csrf)
        else:
            body += form(
                f"{base}/confirm",
                csrf,
                "",
                button="I have signed in and the PBX shows Connected",
                button_id="confirm",
            )
    return page(TITLES[kind], body, no_store=True, status=400 if error and "reveal" not in error else 200)


def _rotation_part(status: IntegrationStatus, base: str, csrf: str) -> str:
    rotation = status.rotation
    assert rotation is not None
    part = ""
    if rotation.stage == RotationStage.VERIFYING_CUTOVER:
        part += progress(f"{base}/progress")
    return part + form(
        f"{base}/confirm",
        csrf,
        "",
        button="I pasted the new secret and signed in again"
        if rotation.pbx_updated_at is None
        else "I pasted it again",
        button_id="confirm",
    )


def _field(name: str, label: str, value: str, errors: dict[str, str]) -> str:
    problem = errors.get(name)
    described = f' aria-describedby="{name}-error"' if problem else ""
    return (
        f'<div class=field><label for="{name}">{e(label)}</label>'
        f'<input id="{name}" name="{name}" type=url value="{e(value)}"{described}>'
        + (f'<p class=error id="{name}-error">{e(problem)}</p>' if problem else "")
        + "</div>"
    )


async def submit_redirect_uris(request: web.Request) -> web.StreamResponse:
    context, link, status = await _open(request)
    if not _current(link, status) or link.action.kind != "redirect-uris":
        return _done_page(link, status)
    posted = await request.post()
    uris = RedirectUris(
        redirect_uri=str(posted.get("redirect_uri", "")).strip(),
        sso_redirect_uri=str(posted.get("sso_redirect_uri", "")).strip() or None,
    )
    try:
        await context.control.update(link.integration_id, IntegrationWorkflow.submit_redirect_uris, uris)
    except UserError as exc:
        return _render(request, link, status, error=_by_field(str(exc)))
    raise web.HTTPSeeOther(f"/a/{link.token}")


def _by_field(reason: str) -> dict[str, str]:
    """The workflow's reasons, each next to the field it is about."""
    errors: dict[str, str] = {}
    for problem in reason.removeprefix("rejected: ").split("; "):
        field = "sso_redirect_uri" if problem.startswith("SSO redirect URI") else "redirect_uri"
        errors[field] = f"{errors[field]} {problem}".strip() if field in errors else problem
    return errors


async def reveal(request: web.Request) -> web.Response:
    context, link, status = await _open(request)
    if not _current(link, status) or link.action.kind == "redirect-uris":
        return _done_page(link, status)
    key_id = status.secret.key_id if link.action.kind == "connect" and status.secret else None
    if link.action.kind == "rotation" and status.rotation and status.rotation.new_secret:
        key_id = status.rotation.new_secret.key_id
    assert key_id is not None
    address = request.remote or "unknown"
    if not context.reveals.allow(address, link.integration_id):
        return _render(request, link, status, error={"reveal": "Too many reveals from here: wait ten minutes."})
    try:
        await context.control.update(
            link.integration_id,
            IntegrationWorkflow.record_reveal,
            Reveal(key_id=key_id, at=datetime.now(UTC), address=address),
        )
        secret = await context.store.get(link.integration_id, key_id)
    except UserError as exc:
        return _render(request, link, status, error={"reveal": str(exc).removeprefix("rejected: ").capitalize()})
    except SecretNotFound:
        return _render(request, link, status, error={"reveal": "The secret is not in this service's store."})
    except SecretStoreUnavailable as exc:
        log.warning("reveal failed: secret store unavailable", integration_id=link.integration_id, error=str(exc))
        message = "The service's secret store can't be reached right now: try again in a few minutes."
        return _render(request, link, status, error={"reveal": message})
    return _render(request, link, status, secret=secret.get_secret_value())


async def confirm(request: web.Request) -> web.StreamResponse:
    context, link, status = await _open(request)
    if not _current(link, status) or link.action.kind == "redirect-uris":
        return _done_page(link, status)
    confirmation = ConsentConfirmation(confirmed_by=f"the PBX administrator (web, {request.remote})")
    update = (
        IntegrationWorkflow.confirm_consent
        if link.action.kind == "connect"
        else IntegrationWorkflow.confirm_pbx_updated
    )
    try:
        await context.control.update(link.integration_id, update, confirmation)
    except UserError as exc:
        return page(TITLES[link.action.kind], notice(str(exc), "warning"), status=409, no_store=True)
    body = notice("Thank you. The service now checks the connection; this page follows it.")
    return page(TITLES[link.action.kind], body + progress(f"/a/{link.token}/progress"), no_store=True)


async def progress_json(request: web.Request) -> web.Response:
    *_, status = await _open(request)
    return web.json_response(_progress(status), headers={"Cache-Control": "no-store"})


def _progress(status: IntegrationStatus) -> dict[str, Any]:
    """What the page shows while it waits: the phase in words, the steps, the rotation's state."""
    rotation = status.rotation
    lines = [f"Now: {status.phase.sentence}."]
    lines += [f"{step.replace('_', ' ')}: {state.state}" for step, state in status.steps.items()]
    if rotation is not None:
        lines.append(
            f"Rotation: {rotation.stage.replace('_', ' ')}" + (f" — {rotation.message}" if rotation.message else "")
        )
        if rotation.card is not None:
            lines.append(rotation.card.title)
    elif status.last_rotation is not None and status.last_rotation.message:
        lines.append(f"Last rotation: {status.last_rotation.message}")
    done = status.phase in (Phase.CONNECTED, Phase.BLOCKED, Phase.EXPIRED, Phase.OFFBOARDED) and rotation is None
    return {"phase": str(status.phase), "sentence": status.phase.sentence, "lines": lines, "done": done}


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/a/{token}", show)
    r.add_post("/a/{token}/redirect-uris", submit_redirect_uris)
    r.add_post("/a/{token}/reveal", reveal)
    r.add_post("/a/{token}/confirm", confirm)
    r.add_get("/a/{token}/progress", progress_json)
