"""The secrets data plane: set, get, update, list (paged), versions, soft delete, and the deleted
secrets' get, list, purge and recover."""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

from aiohttp import web

from simulators.keyvault.auth import requires
from simulators.keyvault.bundles import Json, deleted_bundle, deleted_item, secret_bundle, secret_item
from simulators.keyvault.context import NOW_KEY, VaultContext, vault_of
from simulators.keyvault.errors import (
    bad_parameter,
    being_deleted,
    deleted_but_recoverable,
    deleted_secret_not_found,
    invalid_name,
    purge_protected,
    secret_disabled,
    secret_not_found,
)
from simulators.keyvault.state import DeletedSecret, Secret, SecretVersion

NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
# A page holds at most 25 items, also the default ("If not specified the service will return up to 25").
MAX_PAGE_SIZE = 25
_SECONDS_PER_DAY = 86400


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise invalid_name(name)
    return name


def _now(request: web.Request) -> int:
    return int(request[NOW_KEY].timestamp())


async def _body(request: web.Request) -> Json:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def _content_type(body: Json) -> str | None:
    value = body.get("contentType")
    if value is not None and not isinstance(value, str):
        raise bad_parameter("Property contentType has invalid value.")
    return value


def _tags(body: Json) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise bad_parameter("Property tags has invalid value.")
    return tags


def _attributes(body: Json) -> dict[str, Any]:
    """The SecretVersion fields that ``attributes`` sets; an absent or null attribute is left alone."""
    attributes = body.get("attributes")
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise bad_parameter("Property attributes has invalid value.")
    updates: dict[str, Any] = {}
    for key, field, kind in (("enabled", "enabled", bool), ("nbf", "not_before", int), ("exp", "expires", int)):
        value = attributes.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad_parameter(f"Property attributes.{key} has invalid value.")
        updates[field] = value
    return updates


def _version(ctx: VaultContext, request: web.Request) -> tuple[Secret, SecretVersion]:
    """The secret and the version a ``/secrets/{name}[/{version}]`` path names (no version: the latest)."""
    name = _name(request)
    secret = ctx.state.secret(name)
    if secret is None:
        raise secret_not_found(name)
    wanted = request.match_info.get("version", "")
    version = secret.version(wanted) if wanted else secret.latest
    if version is None:
        raise secret_not_found(f"{name}/{wanted}")
    return secret, version


def _deleted(ctx: VaultContext, request: web.Request) -> DeletedSecret:
    """A soft-deleted secret whose deletion has completed (until then it is found nowhere)."""
    name = _name(request)
    deleted = ctx.state.deleted(name)
    if deleted is None or not deleted.complete:
        raise deleted_secret_not_found(name)
    return deleted


def _skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
    except (ValueError, KeyError, TypeError):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise bad_parameter("The $skiptoken is not valid.")
    return offset


def _page_size(raw: str | None) -> int:
    if raw is None:
        return MAX_PAGE_SIZE
    size = int(raw) if raw.isdigit() else 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise bad_parameter(f"Invalid maxresults: {raw}. It must be between 1 and {MAX_PAGE_SIZE}.")
    return size


def _page(request: web.Request, items: list[Json]) -> web.Response:
    """One page of a list; ``nextLink`` (absolute, like Key Vault's) carries the rest, else it is null."""
    size = _page_size(request.query.get("maxresults"))
    start = _offset(request.query.get("$skiptoken"))
    next_link = None
    if start + size < len(items):
        next_link = (
            f"{vault_of(request).base_url}{request.path}?api-version={request.query['api-version']}"
            f"&$skiptoken={_skiptoken(start + size)}&maxresults={size}"
        )
    return web.json_response({"value": items[start : start + size], "nextLink": next_link})


@requires("set")
async def set_secret(request: web.Request) -> web.Response:
    """A new version, the latest from now on (PUT creates the secret if need be)."""
    ctx = vault_of(request)
    name = _name(request)
    deleted = ctx.state.deleted(name)
    if deleted is not None:
        raise deleted_but_recoverable(name) if deleted.complete else being_deleted(name)
    body = await _body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise bad_parameter("Property value is required and must be a string.")
    attributes = _attributes(body)
    now = _now(request)
    version = SecretVersion(
        version=uuid.uuid4().hex,
        value=value,
        content_type=_content_type(body),
        tags=_tags(body),
        enabled=attributes.get("enabled", True),
        not_before=attributes.get("not_before"),
        expires=attributes.get("expires"),
        created=now,
        updated=now,
    )
    secret = ctx.state.add_version(name, version)
    return web.json_response(secret_bundle(ctx, secret, version, with_value=True))


@requires("get")
async def get_secret(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    secret, version = _version(ctx, request)
    # Outside its nbf / exp window a secret is still returned: Key Vault allows get on expired and
    # not-yet-valid secrets (for recovery and tests); only a disabled one is refused.
    if not version.enabled:
        raise secret_disabled()
    return web.json_response(secret_bundle(ctx, secret, version, with_value=True))


@requires("set")
async def update_secret(request: web.Request) -> web.Response:
    """Content type, tags (replaced as a whole) and attributes of one version; never its value."""
    ctx = vault_of(request)
    secret, version = _version(ctx, request)
    body = await _body(request)
    attributes = _attributes(body)
    if "contentType" in body:
        version.content_type = _content_type(body)
    if "tags" in body:
        version.tags = _tags(body)
    for field, value in attributes.items():
        setattr(version, field, value)
    version.updated = _now(request)
    return web.json_response(secret_bundle(ctx, secret, version, with_value=False))


@requires("list")
async def list_secrets(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    return _page(request, [secret_item(ctx, s, s.latest, versioned=False) for s in ctx.state.secrets()])


@requires("list")
async def list_versions(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    secret = ctx.state.secret(_name(request))
    items = [] if secret is None else [secret_item(ctx, secret, v, versioned=True) for v in secret.versions]
    return _page(request, items)


@requires("delete")
async def delete_secret(request: web.Request) -> web.Response:
    """Soft delete of every version. The secret leaves /secrets at once but reaches /deletedsecrets only
    after ``delete_delay_seconds``, as Key Vault's asynchronous deletion does."""
    ctx = vault_of(request)
    name = _name(request)
    secret = ctx.state.secret(name)
    if secret is None:
        raise secret_not_found(name)
    now = _now(request)
    deleted = ctx.state.delete(
        secret,
        deleted=now,
        scheduled_purge=now + ctx.config.soft_delete_retention_days * _SECONDS_PER_DAY,
        delay_seconds=ctx.config.delete_delay_seconds,
    )
    return web.json_response(deleted_bundle(ctx, deleted))


@requires("list")
async def list_deleted_secrets(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    return _page(request, [deleted_item(ctx, d) for d in ctx.state.deleted_secrets() if d.complete])


@requires("get")
async def get_deleted_secret(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    return web.json_response(deleted_bundle(ctx, _deleted(ctx, request)))


@requires("purge")
async def purge_deleted_secret(request: web.Request) -> web.Response:
    ctx = vault_of(request)
    deleted = _deleted(ctx, request)
    if ctx.config.purge_protection:
        raise purge_protected(ctx.config.vault_name, ctx.config.location)
    ctx.state.purge(deleted)
    return web.Response(status=204)


@requires("recover")
async def recover_deleted_secret(request: web.Request) -> web.Response:
    """Every version comes back as it was; the answer is the latest, without its value."""
    ctx = vault_of(request)
    secret = ctx.state.recover(_deleted(ctx, request))
    return web.json_response(secret_bundle(ctx, secret, secret.latest, with_value=False))


def add_secret_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/secrets", list_secrets)
    r.add_put("/secrets/{name}", set_secret)
    r.add_delete("/secrets/{name}", delete_secret)
    r.add_get("/secrets/{name}", get_secret)
    r.add_get("/secrets/{name}/versions", list_versions)
    # The SDK asks for the latest version as /secrets/{name}/ (an empty version segment).
    r.add_get("/secrets/{name}/{version:[^/]*}", get_secret)
    r.add_patch("/secrets/{name}/{version:[^/]*}", update_secret)
    r.add_get("/deletedsecrets", list_deleted_secrets)
    r.add_get("/deletedsecrets/{name}", get_deleted_secret)
    r.add_delete("/deletedsecrets/{name}", purge_deleted_secret)
    r.add_post("/deletedsecrets/{name}/recover", recover_deleted_secret)
