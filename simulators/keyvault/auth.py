"""Key Vault's challenge-based bearer authentication and its access check.

A request without a token gets 401 and a ``WWW-Authenticate: Bearer authorization="...",
resource="..."`` challenge naming the tenant's authority: the SDK's ChallengeAuthPolicy first sends a
bodiless probe, reads the challenge, gets a token for ``{resource}/.default`` and sends the request
again. Every 401 carries the challenge, as Key Vault's do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from simulators.entra.catalog import KEY_VAULT_APP_ID, KEY_VAULT_RESOURCE
from simulators.entra.tokens import TokenExpired, TokenInvalid
from simulators.keyvault.context import VaultContext, vault_of
from simulators.keyvault.errors import VaultError, access_denied

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class Principal:
    """The caller, from its access token."""

    app_id: str  # appid (v1 tokens) or azp (v2)
    object_id: str
    issuer: str

    @property
    def description(self) -> str:
        """How Key Vault names a caller in its 403 messages."""
        return f"appid={self.app_id};oid={self.object_id};iss={self.issuer}"


PRINCIPAL_KEY = web.RequestKey("keyvault_sim_principal", Principal)


def challenge(ctx: VaultContext) -> str:
    return f'Bearer authorization="{ctx.issuer.authority}", resource="{KEY_VAULT_RESOURCE}"'


def _unauthorized(ctx: VaultContext, message: str) -> VaultError:
    return VaultError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge(ctx)})


async def authenticate(ctx: VaultContext, authorization: str | None) -> Principal:
    """The caller of a request with this ``Authorization`` header, or a 401 VaultError."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(ctx, "AKV10000: Request is missing a Bearer or PoP token.")
    try:
        claims = await ctx.issuer.verify_access_token(token.strip())
    except TokenExpired:
        raise _unauthorized(ctx, "[TokenExpired] Error validating token: 'S2S12086'.") from None
    except TokenInvalid as exc:
        raise _unauthorized(ctx, f"Error validating token: {exc}") from None
    audience = claims.get("aud")
    if audience not in (KEY_VAULT_RESOURCE, KEY_VAULT_APP_ID):
        raise _unauthorized(ctx, f"AKV10022: Invalid audience. Expected {KEY_VAULT_RESOURCE}, found: {audience}.")
    issuer = str(claims.get("iss", ""))
    if claims.get("tid") != ctx.tenant_id:
        expected = f"https://sts.windows.net/{ctx.tenant_id}/"
        raise _unauthorized(ctx, f"AKV10032: Invalid issuer. Expected one of {expected}, found {issuer}.")
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    return Principal(app_id=app_id, object_id=str(claims.get("oid", "")), issuer=issuer)


def requires(permission: str) -> Callable[[Handler], Handler]:
    """Let a handler run only for callers the vault's access allows (``permission``: the access policy's
    name for the operation, which a 403 names)."""

    def decorate(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.Response:
            ctx = vault_of(request)
            allowed = ctx.config.allowed_app_ids
            principal = request[PRINCIPAL_KEY]
            if allowed is not None and principal.app_id.lower() not in {a.lower() for a in allowed}:
                raise access_denied(principal.description, permission, ctx.config.vault_name, ctx.config.location)
            return await handler(request)

        return checked

    return decorate
