"""Entra's OpenID Connect discovery: which tenant GUID a domain names (the PBX and Graph want the GUID)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from urllib.parse import quote

import aiohttp

from clients.errors import InvalidRequest, NotFound, Transient

_ISSUER_TENANT = re.compile(r"/([0-9a-fA-F-]{36})(/|$)")


async def tenant_id_of(authority_host: str, tenant: str, ca_bundle: Path | None = None) -> str:
    """The tenant GUID behind ``tenant`` (a GUID or one of the tenant's domains), from the issuer in
    its OIDC discovery document. NotFound if Entra knows no such tenant."""
    url = f"{authority_host.rstrip('/')}/{quote(tenant, safe='')}/v2.0/.well-known/openid-configuration"
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(url, ssl=context) as response,
        ):
            document = await response.json(content_type=None) if response.content_length != 0 else {}
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise Transient(f"OIDC discovery for {tenant} failed: {type(exc).__name__}") from None
    if status in (400, 404):
        # AADSTS90002: the tenant does not exist (or the domain belongs to none).
        raise NotFound(f"Entra knows no tenant {tenant!r}", status=status, code="tenant_not_found")
    if status != 200:
        raise Transient(f"OIDC discovery for {tenant} answered HTTP {status}", status=status)
    match = _ISSUER_TENANT.search(str(document.get("issuer", "")))
    if match is None:
        raise InvalidRequest(f"the discovery document of {tenant} names no tenant in its issuer")
    return match.group(1).lower()
