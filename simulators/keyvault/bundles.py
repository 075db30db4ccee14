"""The JSON Key Vault answers with: SecretBundle, SecretItem, DeletedSecretBundle, DeletedSecretItem.

Values only ever appear in a SecretBundle from set or get; lists, updates, deletions and recoveries
carry everything but the value.
"""

from __future__ import annotations

from typing import Any

from simulators.keyvault.context import VaultContext
from simulators.keyvault.state import DeletedSecret, Secret, SecretVersion

Json = dict[str, Any]


def attributes_json(ctx: VaultContext, version: SecretVersion) -> Json:
    attributes: Json = {"enabled": version.enabled}
    if version.not_before is not None:
        attributes["nbf"] = version.not_before
    if version.expires is not None:
        attributes["exp"] = version.expires
    attributes["created"] = version.created
    attributes["updated"] = version.updated
    attributes["recoveryLevel"] = ctx.recovery_level
    attributes["recoverableDays"] = ctx.config.soft_delete_retention_days
    return attributes


def _properties(ctx: VaultContext, secret_id: str, version: SecretVersion) -> Json:
    properties: Json = {"id": secret_id, "attributes": attributes_json(ctx, version)}
    if version.tags is not None:
        properties["tags"] = dict(version.tags)
    if version.content_type is not None:
        properties["contentType"] = version.content_type
    return properties


def secret_url(ctx: VaultContext, secret: Secret, version: SecretVersion | None = None) -> str:
    """The secret's identifier: ``{vault}/secrets/{name}`` (base identifier) or ``.../{version}``."""
    base = f"{ctx.base_url}/secrets/{secret.name}"
    return base if version is None else f"{base}/{version.version}"


def secret_bundle(ctx: VaultContext, secret: Secret, version: SecretVersion, *, with_value: bool) -> Json:
    bundle = _properties(ctx, secret_url(ctx, secret, version), version)
    return {"value": version.value, **bundle} if with_value else bundle


def secret_item(ctx: VaultContext, secret: Secret, version: SecretVersion, *, versioned: bool) -> Json:
    """An entry of ``GET /secrets`` (base identifier, latest version) or of ``.../versions``."""
    return _properties(ctx, secret_url(ctx, secret, version if versioned else None), version)


def _deletion(ctx: VaultContext, deleted: DeletedSecret) -> Json:
    return {
        "recoveryId": f"{ctx.base_url}/deletedsecrets/{deleted.secret.name}",
        "deletedDate": deleted.deleted,
        "scheduledPurgeDate": deleted.scheduled_purge,
    }


def deleted_bundle(ctx: VaultContext, deleted: DeletedSecret) -> Json:
    secret = deleted.secret
    return {**_deletion(ctx, deleted), **secret_bundle(ctx, secret, secret.latest, with_value=False)}


def deleted_item(ctx: VaultContext, deleted: DeletedSecret) -> Json:
    secret = deleted.secret
    return {**_deletion(ctx, deleted), **secret_item(ctx, secret, secret.latest, versioned=False)}
