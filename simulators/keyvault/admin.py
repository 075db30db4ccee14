"""``/_sim`` admin API (no auth, never part of the vault's data plane):

- ``GET /_sim/state[?values=1]``: secrets (names, versions, attributes, tags; values only with
  ``values=1``), soft-deleted secrets, access, faults and request counts by method and route template
- ``POST /_sim/faults {"throttle_next": N, "retry_after_seconds": S, "delete_delay_seconds": D}`` (each
  optional): the next N authenticated requests answer 429 with ``Retry-After: S``; deletions take D s
- ``POST /_sim/purge-protection {"enabled": bool}``
- ``POST /_sim/access {"allowed_app_ids": [app ID, ...] | null}``: null lets in any app of the tenant
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.entra.errors import AdminError
from simulators.entra.state import iso
from simulators.keyvault.bundles import Json, attributes_json
from simulators.keyvault.context import VaultContext, vault_of
from simulators.keyvault.state import Secret

_Body = TypeVar("_Body", bound=BaseModel)


class _Faults(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    throttle_next: int | None = Field(default=None, ge=0)
    retry_after_seconds: float | None = Field(default=None, ge=0)
    delete_delay_seconds: float | None = Field(default=None, ge=0)


class _PurgeProtection(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool


class _Access(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    allowed_app_ids: list[str] | None


async def _parse(request: web.Request, model: type[_Body]) -> _Body:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise AdminError(400, reasons) from None


def _versions(ctx: VaultContext, secret: Secret, *, values: bool) -> list[Json]:
    return [
        {
            "version": v.version,
            "attributes": attributes_json(ctx, v),
            "contentType": v.content_type,
            "tags": v.tags,
            **({"value": v.value} if values else {}),
        }
        for v in secret.versions
    ]


def _settings_json(ctx: VaultContext) -> Json:
    allowed = ctx.config.allowed_app_ids
    return {
        "purgeProtection": ctx.config.purge_protection,
        "recoveryLevel": ctx.recovery_level,
        "allowedAppIds": sorted(allowed) if allowed is not None else None,
        "faults": {
            "throttleNext": ctx.state.throttle_next,
            "retryAfterSeconds": ctx.config.retry_after_seconds,
            "deleteDelaySeconds": ctx.config.delete_delay_seconds,
        },
    }


async def get_state(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    state = ctx.state
    values = request.query.get("values") == "1"
    return web.json_response(
        {
            "vaultUrl": ctx.base_url,
            "tenantId": ctx.tenant_id,
            "now": iso(await ctx.clock.now()),
            **_settings_json(ctx),
            "counters": {"requests": sum(state.request_counts.values()), "byRoute": dict(state.request_counts)},
            "secrets": [{"name": s.name, "versions": _versions(ctx, s, values=values)} for s in state.secrets()],
            "deleted": [
                {
                    "name": d.secret.name,
                    "deletedDate": d.deleted,
                    "scheduledPurgeDate": d.scheduled_purge,
                    "deletionComplete": d.complete,
                    "versions": _versions(ctx, d.secret, values=values),
                }
                for d in state.deleted_secrets()
            ],
        }
    )


async def set_faults(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    body = await _parse(request, _Faults)
    if body.throttle_next is not None:
        ctx.state.throttle_next = body.throttle_next
    if body.retry_after_seconds is not None:
        ctx.config.retry_after_seconds = body.retry_after_seconds
    if body.delete_delay_seconds is not None:
        ctx.config.delete_delay_seconds = body.delete_delay_seconds
    return web.json_response(_settings_json(ctx))


async def set_purge_protection(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    ctx.config.purge_protection = (await _parse(request, _PurgeProtection)).enabled
    return web.json_response(_settings_json(ctx))


async def set_access(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    allowed = (await _parse(request, _Access)).allowed_app_ids
    ctx.config.allowed_app_ids = frozenset(allowed) if allowed is not None else None
    return web.json_response(_settings_json(ctx))


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/state", get_state)
    r.add_post("/_sim/faults", set_faults)
    r.add_post("/_sim/purge-protection", set_purge_protection)
    r.add_post("/_sim/access", set_access)
