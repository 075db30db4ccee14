"""Access, refresh and ID tokens: HS256 JWTs signed with the tenant's persisted key.

Token lifetimes follow the simulator clock, so advancing it expires tokens just as time would.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from simulators.entra.catalog import GRAPH_APP_ID, GRAPH_RESOURCE
from simulators.entra.context import SimContext
from simulators.entra.directory import groups_claim
from simulators.entra.errors import unauthenticated
from simulators.entra.state import Application, DirectoryUser, ServicePrincipal

ACCESS_TOKEN_LIFETIME = timedelta(seconds=3599)
REFRESH_TOKEN_LIFETIME = timedelta(days=90)
TokenKind = Literal["access", "refresh", "id"]


@dataclass(frozen=True)
class Principal:
    """The caller of a Graph request, from its access token."""

    kind: Literal["app", "user"]
    app_id: str
    object_id: str  # the service principal (app) or the user
    permissions: frozenset[str]  # roles of an app token, scp of a user token


def new_signing_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _encode(ctx: SimContext, claims: dict[str, Any], kind: TokenKind) -> str:
    key = base64.b64decode(ctx.state.signing_key)
    return jwt.encode({**claims, "sim_typ": kind}, key, algorithm="HS256", headers={"typ": "JWT"})


def _times(ctx: SimContext, now: datetime, lifetime: timedelta) -> dict[str, int]:
    issued = ctx.token_time(now)
    iat = int(issued.timestamp())
    return {"iat": iat, "nbf": iat, "exp": int((issued + lifetime).timestamp())}


def _issuer(ctx: SimContext) -> str:
    return f"https://sts.windows.net/{ctx.tenant_id}/"


def issue_app_token(
    ctx: SimContext,
    app: Application,
    sp: ServicePrincipal,
    roles: list[str],
    *,
    certificate: bool,
    now: datetime,
    audience: str = GRAPH_RESOURCE,
) -> str:
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": _issuer(ctx),
        **_times(ctx, now, ACCESS_TOKEN_LIFETIME),
        "app_displayname": app.display_name,
        "appid": app.app_id,
        "appidacr": "2" if certificate else "1",
        "idtyp": "app",
        "oid": sp.id,
        "sub": sp.id,
        "tid": ctx.tenant_id,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
    }
    if roles:
        claims["roles"] = roles
    return _encode(ctx, claims, "access")


def client_info(ctx: SimContext, user: DirectoryUser) -> str:
    """What Entra returns as ``client_info`` (MSAL's account key): base64url JSON, unpadded."""
    info = json.dumps({"uid": user.id, "utid": ctx.tenant_id}).encode()
    return base64.urlsafe_b64encode(info).decode().rstrip("=")


def issue_user_tokens(
    ctx: SimContext,
    client_id: str,
    user: DirectoryUser,
    scopes: list[str],
    now: datetime,
    *,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The token response of a delegated sign-in (authorization code, device code or refresh);
    ``nonce``: the authorization request's, echoed in the ID token."""
    access = {
        "aud": GRAPH_RESOURCE,
        "iss": _issuer(ctx),
        **_times(ctx, now, ACCESS_TOKEN_LIFETIME),
        "appid": client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.id,
        "scp": " ".join(scopes),
        "sub": user.id,
        "tid": ctx.tenant_id,
        "upn": user.user_principal_name,
        "wids": user.role_template_ids,
        "ver": "1.0",
    }
    id_token: dict[str, Any] = {
        "aud": client_id,
        "iss": ctx.issuer,
        **_times(ctx, now, ACCESS_TOKEN_LIFETIME),
        "name": user.display_name,
        "oid": user.id,
        "preferred_username": user.user_principal_name,
        "sub": user.id,
        "tid": ctx.tenant_id,
        "ver": "2.0",
    }
    if nonce is not None:
        id_token["nonce"] = nonce
    groups = groups_claim(ctx, client_id, user)
    if groups is not None:
        id_token["groups"] = groups
    refresh = {
        "client_id": client_id,
        "sub": user.id,
        "tid": ctx.tenant_id,
        "scp": " ".join(scopes),
        **_times(ctx, now, REFRESH_TOKEN_LIFETIME),
    }
    lifetime = int(ACCESS_TOKEN_LIFETIME.total_seconds())
    return {
        "token_type": "Bearer",
        "scope": " ".join(scopes),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": _encode(ctx, access, "access"),
        "refresh_token": _encode(ctx, refresh, "refresh"),
        "id_token": _encode(ctx, id_token, "id"),
        "client_info": client_info(ctx, user),
    }


class TokenInvalid(Exception):
    pass


class TokenExpired(TokenInvalid):
    """A well-formed token of ours whose lifetime has passed."""


def decode(ctx: SimContext, token: str, kind: TokenKind, now: datetime) -> dict[str, Any]:
    """Verify signature, kind and expiry."""
    key = base64.b64decode(ctx.state.signing_key)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise TokenInvalid("IDX14100: JWT is not well formed or its signature is invalid.") from exc
    if claims.get("sim_typ") != kind:
        raise TokenInvalid("Access token validation failure. Invalid audience.")
    if claims.get("exp", 0) <= ctx.token_time(now).timestamp():
        raise TokenExpired("Lifetime validation failed, the token is expired.")
    return claims


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or a 401 GraphError."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Access token is empty.")
    return token.strip()


def authenticate(ctx: SimContext, token: str, now: datetime) -> Principal:
    """The Graph caller from a bearer token of ``ctx``'s tenant, or a 401 GraphError."""
    try:
        claims = decode(ctx, token, "access", now)
    except TokenInvalid as exc:
        raise unauthenticated(str(exc)) from None
    if claims.get("aud") not in (GRAPH_RESOURCE, GRAPH_APP_ID) or claims.get("tid") != ctx.tenant_id:
        raise unauthenticated("Access token validation failure. Invalid audience.")
    if claims.get("idtyp") == "app":
        return Principal("app", claims["appid"], claims["oid"], frozenset(claims.get("roles", ())))
    return Principal("user", claims["appid"], claims["oid"], frozenset(str(claims.get("scp", "")).split()))
