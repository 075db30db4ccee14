"""Validation of application bodies, with Graph's error codes (details say what exactly failed)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from simulators.entra.context import SimContext
from simulators.entra.directory import (
    GROUP_MEMBERSHIP_CLAIMS,
    WRITABLE_APP_PROPERTIES,
    certificate_credential,
    group_membership_claims,
)
from simulators.entra.errors import GraphError, bad_request, invalid_value
from simulators.entra.state import Application, KeyCredential

Json = dict[str, Any]

SIGN_IN_AUDIENCES = frozenset(
    {"AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"}
)
MAX_URI_LENGTH = 256
MAX_REDIRECT_URIS = 256
MAX_DISPLAY_NAME = 256
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PLATFORMS = ("web", "spa", "publicClient")
_PLATFORM_KEYS = {
    "web": frozenset({"homePageUrl", "logoutUrl", "redirectUris", "redirectUriSettings", "implicitGrantSettings"}),
    "spa": frozenset({"redirectUris"}),
    "publicClient": frozenset({"redirectUris"}),
}


def _redirect_uri_problem(uri: object, *, https_only: bool) -> str | None:
    if not isinstance(uri, str) or not uri:
        return "redirect URIs must be non-empty strings"
    if len(uri) > MAX_URI_LENGTH:
        return f"redirect URI longer than {MAX_URI_LENGTH} characters"
    if "*" in uri:
        return f"wildcards are not allowed in redirect URIs: {uri}"
    parts = urlsplit(uri)
    if not parts.scheme:
        return f"redirect URI is not absolute: {uri}"
    if https_only and not (
        (parts.scheme == "https" and parts.netloc) or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)
    ):
        return f"redirect URIs must use https (http only for localhost): {uri}"
    return None


def _validate_platform(name: str, value: object) -> int:
    """Raise on a bad platform object; return how many redirect URIs it holds."""
    if not isinstance(value, dict):
        raise invalid_value(name, "Application", f"{name} must be an object")
    for key in value:
        if key not in _PLATFORM_KEYS[name]:
            raise bad_request(f"Invalid property '{key}'.")
    uris = value.get("redirectUris", [])
    if not isinstance(uris, list):
        raise invalid_value(name, "Application", "redirectUris must be an array")
    if len(uris) > MAX_REDIRECT_URIS:
        raise invalid_value(name, "Application", f"more than {MAX_REDIRECT_URIS} redirect URIs")
    for uri in uris:
        problem = _redirect_uri_problem(uri, https_only=name != "publicClient")
        if problem:
            raise invalid_value(name, "Application", problem)
    return len(uris)


def _validate_required_resource_access(ctx: SimContext, value: object) -> None:
    prop = "requiredResourceAccess"
    if not isinstance(value, list):
        raise invalid_value(prop, "Application", "requiredResourceAccess must be an array")
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("resourceAppId"), str):
            raise invalid_value(prop, "Application", "each entry needs resourceAppId and resourceAccess")
        accesses = entry.get("resourceAccess")
        if not isinstance(accesses, list):
            raise invalid_value(prop, "Application", "resourceAccess must be an array")
        resource = ctx.state.service_principal_by_app_id(entry["resourceAppId"])
        for access in accesses:
            if not isinstance(access, dict) or access.get("type") not in ("Role", "Scope"):
                raise invalid_value(prop, "Application", "resourceAccess entries need an id and type Role or Scope")
            # Resources outside the tenant cannot be checked (Entra accepts them too).
            if resource is None:
                continue
            defined = resource.app_roles if access["type"] == "Role" else resource.oauth2_permission_scopes
            if all(item.get("id") != access.get("id") for item in defined):
                raise invalid_value(
                    prop,
                    "Application",
                    f"{access['type']} '{access.get('id')}' is not defined by resource '{resource.app_id}'",
                )


def _validate_string_list(name: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_value(name, "Application", f"{name} must be an array of strings")


def validate_application(ctx: SimContext, body: Json, *, existing: Application | None) -> None:
    """Check a create (``existing`` None) or update body the way Graph does."""
    for key in body:
        if key not in WRITABLE_APP_PROPERTIES:
            raise bad_request(f"Invalid property '{key}'.")
    if existing is None or "displayName" in body:
        name = body.get("displayName")
        if name is None and existing is None:
            raise bad_request("Property 'displayName' is required when creating an application.")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_DISPLAY_NAME:
            raise invalid_value("displayName", "Application", f"1 to {MAX_DISPLAY_NAME} characters required")
    if "uniqueName" in body:
        _validate_unique_name(ctx, body["uniqueName"], existing)
    if "signInAudience" in body and body["signInAudience"] not in SIGN_IN_AUDIENCES:
        raise invalid_value("signInAudience", "Application", f"one of {sorted(SIGN_IN_AUDIENCES)}")
    total = 0
    for platform in _PLATFORMS:
        if platform in body:
            total += _validate_platform(platform, body[platform])
        elif existing is not None:
            total += len(existing.props.get(platform, {}).get("redirectUris", []))
    if total > MAX_REDIRECT_URIS:
        raise invalid_value("web", "Application", f"more than {MAX_REDIRECT_URIS} redirect URIs in all")
    if "requiredResourceAccess" in body:
        _validate_required_resource_access(ctx, body["requiredResourceAccess"])
    for key in ("tags", "identifierUris"):
        if key in body:
            _validate_string_list(key, body[key])
    if body.get("isFallbackPublicClient") not in (None, True, False):
        raise invalid_value("isFallbackPublicClient", "Application", "must be a boolean")
    claims = body.get("groupMembershipClaims")
    if claims is not None and (
        not isinstance(claims, str) or not group_membership_claims(claims) <= GROUP_MEMBERSHIP_CLAIMS
    ):
        raise invalid_value("groupMembershipClaims", "Application", f"one or more of {sorted(GROUP_MEMBERSHIP_CLAIMS)}")


def _validate_unique_name(ctx: SimContext, value: object, existing: Application | None) -> None:
    if not isinstance(value, str) or not value.strip():
        raise invalid_value("uniqueName", "Application", "uniqueName must be a non-empty string")
    if existing is not None and existing.unique_name is not None:
        if existing.unique_name != value:
            raise bad_request("Property 'uniqueName' is immutable once set.")
        return
    holder = ctx.state.application_by_unique_name(value)
    if holder is not None and holder is not existing:
        raise GraphError(
            409,
            "Request_MultipleObjectsWithSameKeyValue",
            "Another object with the same value for property uniqueName already exists.",
        )


_KEY_CREDENTIAL_PROPERTIES = frozenset(
    {"customKeyIdentifier", "displayName", "endDateTime", "key", "keyId", "startDateTime", "type", "usage"}
)


def _key_time(entry: Json, prop: str) -> datetime | None:
    value = entry.get(prop)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise invalid_value("keyCredentials", "Application", f"{prop} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise invalid_value("keyCredentials", "Application", f"{prop} needs a time zone (e.g. Z)")
    return parsed


def _one_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


def _key_credential(entry: object, existing: list[KeyCredential]) -> KeyCredential:
    """One entry of a keyCredentials collection as Graph's "add a certificate to an app" how-to describes
    it: type AsymmetricX509Cert, usage Verify, key = the certificate (DER) in base64; the validity window
    (startDateTime/endDateTime) within the certificate's and at most one year, by default the certificate's
    start and one year later (or its end, if sooner)."""
    prop = "keyCredentials"
    if not isinstance(entry, dict):
        raise invalid_value(prop, "Application", "each key credential must be an object")
    for key in entry:
        if key not in _KEY_CREDENTIAL_PROPERTIES:
            raise bad_request(f"Invalid property '{key}'.")
    if entry.get("type") != "AsymmetricX509Cert" or entry.get("usage") != "Verify":
        raise invalid_value(prop, "Application", "type must be AsymmetricX509Cert and usage Verify")
    try:
        der = base64.b64decode(str(entry.get("key") or ""), validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise invalid_value(prop, "Application", "key must be an X.509 certificate (DER) in base64") from None
    valid_from, valid_to = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    start = _key_time(entry, "startDateTime") or valid_from
    end = _key_time(entry, "endDateTime") or min(valid_to, _one_year_after(start))
    if not valid_from <= start < end <= valid_to:
        raise invalid_value(prop, "Application", "the validity must lie within the certificate's own")
    if end > _one_year_after(start):
        raise invalid_value(prop, "Application", "endDateTime can be at most one year after startDateTime")
    key_id = entry.get("keyId")
    if key_id is not None:
        try:
            key_id = str(uuid.UUID(str(key_id)))
        except ValueError:
            raise invalid_value(prop, "Application", "keyId must be a GUID") from None
    display_name = entry.get("displayName")
    if display_name is not None and not isinstance(display_name, str):
        raise invalid_value(prop, "Application", "displayName must be a string")
    credential = certificate_credential(certificate, display_name, start=start, end=end)
    # The same certificate sent back keeps its key ID (the append pattern resends every certificate).
    same = next((k for k in existing if k.sha1_thumbprint == credential.sha1_thumbprint), None)
    credential.key_id = key_id or (same.key_id if same is not None else credential.key_id)
    return credential


def key_credentials(value: object, existing: list[KeyCredential]) -> list[KeyCredential]:
    """The app's certificates after writing ``keyCredentials``: PATCH replaces the whole collection, so
    every certificate to keep must be sent again (with its key, read with $select=keyCredentials)."""
    if not isinstance(value, list):
        raise invalid_value("keyCredentials", "Application", "keyCredentials must be an array")
    credentials = [_key_credential(entry, existing) for entry in value]
    thumbprints = [c.sha1_thumbprint for c in credentials]
    if len(set(thumbprints)) != len(thumbprints) or len({c.key_id for c in credentials}) != len(credentials):
        raise invalid_value("keyCredentials", "Application", "the same certificate or keyId appears twice")
    return credentials
