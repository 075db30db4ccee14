"""Validation of application bodies, with Graph's error codes (details say what exactly failed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from simulators.entra.context import SimContext
from simulators.entra.directory import GROUP_MEMBERSHIP_CLAIMS, WRITABLE_APP_PROPERTIES, group_membership_claims
from simulators.entra.errors import GraphError, bad_request, invalid_value
from simulators.entra.state import Application

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
