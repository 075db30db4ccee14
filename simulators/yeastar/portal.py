"""Stand-in for the PBX portal's Integrations > Collaboration > Microsoft 365 page.

The real page has no API; this one lets tests and the demo play the human's part: Save the App
Registration (client ID, tenant ID, client secret), then "sign in with Microsoft and Accept".
After that the simulated PBX syncs for real against the Entra simulator with the saved secret, so a
wrong, expired or removed secret shows up exactly where an admin would see it: status Error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

from clients.yeastar import ORG_CONSENT_MIN_FIRMWARE, parse_firmware
from simulators.clock import Clock
from simulators.yeastar.state import YeastarState

if TYPE_CHECKING:
    from simulators.yeastar.server import YeastarSimConfig

PORTAL_PATH = "/_sim/portal/microsoft365"
# Delegated permissions the PBX's Microsoft sign-in asks the admin to accept.
SIGN_IN_SCOPE = (
    "openid profile offline_access User.Read User.Read.All Directory.Read.All Group.Read.All "
    "Contacts.Read Presence.Read.All"
)

log = structlog.get_logger(__name__)


class SyncFailed(Exception):
    """What the portal shows as ``last_error`` (an AADSTS or Graph message, never a secret)."""


class Portal:
    def __init__(
        self, config: YeastarSimConfig, state: YeastarState, clock: Clock, persist: Callable[[], None]
    ) -> None:
        self._config = config
        self._state = state
        self._clock = clock
        self._persist = persist
        self._http: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PORTAL_PATH, self.get)
        app.router.add_post(PORTAL_PATH, self.save)
        app.router.add_post(f"{PORTAL_PATH}/sign-in", self.sign_in)
        app.router.add_post(f"{PORTAL_PATH}/sync", self.sync)

    async def start(self) -> None:
        if self._config.entra_url is not None:
            context = ssl.create_default_context(
                cafile=str(self._config.entra_ca_file) if self._config.entra_ca_file else None
            )
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=30)
            )
        portal = self._state.portal
        # A restarted PBX keeps syncing an integration that was signed in.
        if portal.signed_in_as is not None and portal.secret is not None:
            self._start_loop()

    async def stop(self) -> None:
        await self._stop_loop()
        if self._http is not None:
            await self._http.close()

    def view(self) -> dict[str, Any]:
        portal = self._state.portal
        domain = self._config.pbx_domain
        return {
            "redirect_uri": f"https://{domain}/api/microsoft365/oauth2/callback",
            "sso_redirect_uri": f"https://{domain}/api/linkus/sso/microsoft365/callback",
            "status": portal.status,
            "client_id": portal.client_id,
            "tenant_id": portal.tenant_id,
            "secret_set": portal.secret is not None,
            "signed_in_as": portal.signed_in_as,
            "consent_for_organization": portal.consent_for_organization,
            "last_sync": portal.last_sync.isoformat() if portal.last_sync else None,
            "sync_ok_count": portal.sync_ok_count,
            "sync_failure_count": portal.sync_failure_count,
            "last_error": portal.last_error,
        }

    # --- handlers -----------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self.view())

    async def save(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        fields = {name: body.get(name) for name in ("client_id", "tenant_id", "client_secret")}
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value.strip()]
        if missing:
            return web.json_response({"error": f"required: {', '.join(missing)}"}, status=400)
        await self._stop_loop()
        portal = self._state.portal
        portal.client_id = str(fields["client_id"]).strip()
        portal.tenant_id = str(fields["tenant_id"]).strip()
        portal.secret = str(fields["client_secret"]).strip()
        # As on the real page, Save leads to the Microsoft sign-in: not connected until then.
        portal.status = "Saved"
        portal.signed_in_as = None
        portal.last_error = None
        self._persist()
        log.info("portal.saved", client_id=portal.client_id, tenant_id=portal.tenant_id)
        return web.json_response(self.view())

    async def sign_in(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        upn = body.get("user_principal_name")
        for_org = body.get("consent_for_organization", False)
        portal = self._state.portal
        if not isinstance(upn, str) or not upn or not isinstance(for_org, bool):
            return web.json_response(
                {"error": "user_principal_name (string) and consent_for_organization (bool) required"},
                status=400,
            )
        if portal.status == "Disconnected" or portal.secret is None:
            return web.json_response({"error": "Save the App Registration first"}, status=409)
        if self._http is None:
            return web.json_response({"error": "no Entra simulator configured (entra_url)"}, status=409)
        if for_org and parse_firmware(self._config.firmware_version) < ORG_CONSENT_MIN_FIRMWARE:
            return web.json_response(
                {"error": "consent on behalf of the organization needs firmware 84.10.0.30 or later"},
                status=400,
            )
        await self._stop_loop()
        try:
            await self._interactive_consent(upn)
        except SyncFailed as failure:
            portal.status = "Error"
            portal.last_error = str(failure)
            self._persist()
            return web.json_response(self.view())
        portal.signed_in_as = upn
        portal.consent_for_organization = for_org
        portal.status = "Connected"
        self._persist()
        log.info("portal.signed_in", user=upn, consent_for_organization=for_org)
        # The real page runs a first sync right after OK; its result decides Connected vs Error.
        result = await self.sync_once()
        self._start_loop()
        return web.json_response({**self.view(), "sync": result})

    async def sync(self, request: web.Request) -> web.Response:
        if self._state.portal.signed_in_as is None:
            return web.json_response({"error": "not signed in"}, status=409)
        return web.json_response(await self.sync_once())

    # --- sync ---------------------------------------------------------------------------------

    def _start_loop(self) -> None:
        if self._http is not None:
            self._loop_task = asyncio.create_task(self._sync_loop(), name="yeastar-portal-sync")

    async def _stop_loop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.sync_interval_seconds)
            try:
                await self.sync_once()
            except Exception:
                # A bug in one round must not end the PBX's syncing for good.
                log.exception("portal.sync_crashed")

    async def sync_once(self) -> dict[str, Any]:
        """One Entra → PBX sync with the saved credentials; records the outcome on the page."""
        async with self._sync_lock:
            portal = self._state.portal
            try:
                token = await self._app_token()
                users = await self._users(token)
            except SyncFailed as failure:
                portal.status = "Error"
                portal.last_error = str(failure)
                portal.sync_failure_count += 1
                self._persist()
                log.warning("portal.sync_failed", error=str(failure))
                return {"ok": False, "status": portal.status, "error": str(failure)}
            created, updated = self._upsert(users)
            portal.status = "Connected"
            portal.last_error = None
            portal.last_sync = await self._clock.now()
            portal.sync_ok_count += 1
            self._persist()
            log.info("portal.synced", users=len(users), created=created, updated=updated)
            return {"ok": True, "status": portal.status, "users": len(users), "created": created, "updated": updated}

    def _upsert(self, users: list[dict[str, Any]]) -> tuple[int, int]:
        by_mail = {e.email_addr.lower(): e for e in self._state.extensions}
        created = updated = 0
        for user in users:
            mail = user.get("mail")
            if not isinstance(mail, str) or not mail:
                continue  # the PBX syncs users with a mailbox address only
            name = str(user.get("displayName") or mail)
            mobile = str(user.get("mobilePhone") or "")
            ext = by_mail.get(mail.lower())
            if ext is None:
                self._state.add_extension(name, mail, mobile, source="microsoft365")
                created += 1
            elif (ext.caller_id_name, ext.mobile_number, ext.source) != (name, mobile, "microsoft365"):
                ext.caller_id_name, ext.mobile_number, ext.source = name, mobile, "microsoft365"
                updated += 1
        return created, updated

    def _entra(self) -> tuple[aiohttp.ClientSession, str]:
        if self._http is None or self._config.entra_url is None:
            raise SyncFailed("no Entra simulator configured")
        return self._http, self._config.entra_url.rstrip("/")

    async def _interactive_consent(self, upn: str) -> None:
        http, base = self._entra()
        body = {"appId": self._state.portal.client_id, "scope": SIGN_IN_SCOPE, "userPrincipalName": upn}
        await _call(http, "POST", f"{base}/_sim/interactive-consent", "sign-in", json=body)

    async def _app_token(self) -> str:
        """Client-credentials token with the saved secret (what the PBX does on every sync)."""
        http, base = self._entra()
        portal = self._state.portal
        if portal.secret is None:
            raise SyncFailed("no client secret saved")
        form = {
            "grant_type": "client_credentials",
            "client_id": portal.client_id or "",
            "client_secret": portal.secret,
            "scope": f"{base}/.default",
        }
        answer = await _call(http, "POST", f"{base}/{portal.tenant_id}/oauth2/v2.0/token", "token", data=form)
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise SyncFailed("token endpoint answered without access_token")
        return token

    async def _users(self, token: str) -> list[dict[str, Any]]:
        http, base = self._entra()
        url: str | None = f"{base}/v1.0/users?$select=id,displayName,mail,userPrincipalName,mobilePhone"
        users: list[dict[str, Any]] = []
        while url is not None:
            page = await _call(http, "GET", url, "users", headers={"Authorization": f"Bearer {token}"})
            users.extend(u for u in page.get("value", []) if isinstance(u, dict))
            next_link = page.get("@odata.nextLink")
            url = next_link if isinstance(next_link, str) else None
        return users


async def _call(http: aiohttp.ClientSession, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    """One request to the Entra simulator; any failure becomes SyncFailed with Entra's message."""
    try:
        async with http.request(method, url, **kwargs) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            status = response.status
    except aiohttp.ClientError as exc:
        raise SyncFailed(f"{what}: cannot reach Microsoft Entra ID ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise SyncFailed(f"{what}: HTTP {status} without a JSON answer")
    if status >= 400:
        raise SyncFailed(f"{what}: {_error_text(body, status)}")
    return body


def _error_text(body: dict[str, Any], status: int) -> str:
    # Token endpoint: {"error", "error_description": "AADSTS7000215: ...\r\nTrace ID: ..."}.
    description = body.get("error_description")
    if isinstance(description, str) and description:
        return description.splitlines()[0].strip()
    # Graph: {"error": {"code", "message"}}; the simulator's admin API: {"error": "message"}.
    error = body.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', status)}: {error.get('message', '')}".strip()
    return str(error) if isinstance(error, str) and error else f"HTTP {status}"


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
