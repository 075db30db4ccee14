"""The service's own identity, set up by an administrator in one sitting (``starter.py bootstrap``), and the
customer tenants of a multi-tenant one (``starter.py tenant add|check``).

Bootstrap signs an administrator in with the device code flow (MSAL public client, by default Microsoft
Graph Command Line Tools, the client ``Connect-MgGraph`` uses) for the delegated permissions
Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All, then converges, reporting each change:

1. the app registration, found by its ``uniqueName``: display name, sign-in audience (single-tenant, or
   multi-tenant with ``--multi-tenant``; never made single-tenant again by bootstrap) and
   ``requiredResourceAccess`` = exactly the Microsoft Graph application permissions preflight checks
   (``activities.provisioning.REQUIRED_ROLES``' first alternatives plus ``OPTIONAL_ROLES``);
2. its service principal, and one app role assignment (admin consent) per permission;
3. a credential: a self-signed certificate made here (the private key stays in a 0600 PEM file) uploaded
   as a key credential, or with ``--secret`` a client secret; an existing one that still works for 30 days
   and more is kept;
4. ``.env`` (0600): YEC_ENTRA__TENANT_ID, YEC_ENTRA__CLIENT_ID and YEC_ENTRA__CERTIFICATE_PATH or
   YEC_ENTRA__CLIENT_SECRET; every other line stays as it was;
5. the check preflight makes: a token as the new app (MSAL confidential client), and its own app role
   assignments read with it, printed per permission.

Microsoft Graph application permissions can only be granted by a Global Administrator or a Privileged Role
Administrator (grant-admin-consent); a Cloud Application or Application Administrator can register the app
but not consent to them, so bootstrap refuses them before changing anything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from activities.app_review import GRAPH_APP_ID, graph_for
from activities.provisioning import OPTIONAL_ROLES, REQUIRED_ROLES, graph_roles_held
from clients.errors import ApiError, AuthenticationFailed, Conflict, NotFound, NotYetReplicated, PermissionDenied
from clients.graph import GraphClient
from clients.graph_models import Application, KeyCredential, ServicePrincipal
from clients.msal_auth import CertificateCredential, Credential, MsalTokenProvider, public_client_application
from clients.oidc import tenant_id_of
from clients.retry import RetryConfig, call_with_retries
from common.files import write_private
from common.settings import Settings, SettingsError

# Microsoft Graph Command Line Tools: Microsoft's public client that Connect-MgGraph signs in with.
GRAPH_CLI_CLIENT_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
# What creating the app and granting its app roles needs, delegated (Graph API reference: create
# application, create servicePrincipal, update application, addPassword: Application.ReadWrite.All;
# appRoleAssignedTo: AppRoleAssignment.ReadWrite.All with Application.Read.All, which the former includes).
DELEGATED_SCOPES = ("Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All")
UNIQUE_NAME = "yeastar-entra-connector-provisioning"
DEFAULT_NAME = "Yeastar Entra connector"
SINGLE_TENANT, MULTI_TENANT = "AzureADMyOrg", "AzureADMultipleOrgs"
# Graph's how-to: a key credential's endDateTime is at most one year after its startDateTime.
MAX_CERTIFICATE_DAYS = 365
MAX_SECRET_DAYS = 730
# A credential that expires sooner than this is replaced instead of kept.
RENEW_BEFORE = timedelta(days=30)
# How long a brand-new credential, service principal or assignment may take to replicate.
REPLICATION_TIMEOUT = 180.0

# Template IDs of the Microsoft Entra built-in roles (the ``wids`` claim of a user's token).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CONSENTING_ROLES = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
}
APP_ONLY_ROLES = {
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
}

ENV_TENANT = "YEC_ENTRA__TENANT_ID"
ENV_CLIENT = "YEC_ENTRA__CLIENT_ID"
ENV_CERTIFICATE = "YEC_ENTRA__CERTIFICATE_PATH"
ENV_SECRET = "YEC_ENTRA__CLIENT_SECRET"
MANAGED_ENV = (ENV_TENANT, ENV_CLIENT, ENV_CERTIFICATE, ENV_SECRET)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./~:@+\-]*$")

Output = Callable[[str], None]


def say(line: str) -> None:
    """Print at once: someone may be watching through a pipe for the sign-in code."""
    print(line, flush=True)


class BootstrapError(Exception):
    """A problem the administrator can fix; the message says how."""


def provisioning_permissions() -> list[str]:
    """Exactly what preflight checks: each required role's first alternative, then the optional ones."""
    return [alternatives[0] for alternatives in REQUIRED_ROLES.values()] + list(OPTIONAL_ROLES)


@dataclass(frozen=True)
class BootstrapOptions:
    env_file: Path = Path(".env")
    tenant: str | None = None  # ID or domain; None: the setting, else the administrator's home tenant
    multi_tenant: bool = False
    secret: bool = False
    name: str = DEFAULT_NAME
    days: int = MAX_CERTIFICATE_DAYS  # lifetime of a new certificate or secret
    public_client_id: str = GRAPH_CLI_CLIENT_ID

    @property
    def certificate_path(self) -> Path:
        """Next to the .env file, under .data (as written into it: relative the way the .env path is)."""
        return self.env_file.parent / ".data" / "provisioning.pem"

    def problems(self) -> list[str]:
        limit = MAX_SECRET_DAYS if self.secret else MAX_CERTIFICATE_DAYS
        found = []
        if not 1 <= self.days <= limit:
            what = "a client secret" if self.secret else "a certificate (Graph's limit for a key credential)"
            found.append(f"--days: 1 to {limit} for {what}")
        if not self.name.strip() or len(self.name) > 120:
            found.append("--name: 1 to 120 characters")
        return found


@dataclass
class BootstrapResult:
    tenant_id: str
    client_id: str
    changes: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)


# --- the administrator's sign-in ---------------------------------------------------------------


@dataclass
class _AdminSession:
    """The signed-in administrator's delegated Graph token (valid about an hour: longer than bootstrap)."""

    tenant_id: str
    username: str
    access_token: str
    expires_at: float  # time.monotonic()

    async def token(self) -> str:
        if time.monotonic() > self.expires_at:
            raise BootstrapError("the administrator's sign-in expired; run bootstrap again")
        return self.access_token


def _claims(jwt: str) -> dict[str, Any]:
    """A JWT's payload, unverified: the token came straight from the token endpoint over TLS."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _signed_in_roles(wids: object) -> tuple[list[str], list[str]] | None:
    """(roles that can consent to Graph app roles, application-only admin roles) from ``wids``; None if the
    token names no roles at all (a tenant may leave the claim out)."""
    if not isinstance(wids, list):
        return None
    return (
        [name for role, name in CONSENTING_ROLES.items() if role in wids],
        [name for role, name in APP_ONLY_ROLES.items() if role in wids],
    )


def _device_flow_problem(result: Mapping[str, Any]) -> str:
    error, description = str(result.get("error", "")), str(result.get("error_description", ""))
    description = re.split(r"\s*Trace ID:", description, maxsplit=1)[0].strip() or error
    if error == "authorization_pending":
        return "nobody signed in before the code expired; run bootstrap again"
    if error == "expired_token":
        return "the code expired before the sign-in finished; run bootstrap again"
    if error in ("authorization_declined", "access_denied"):
        return (
            f"the sign-in ended without consent ({description}). Sign in as a Global Administrator or "
            "Privileged Role Administrator of the tenant"
        )
    return f"the sign-in failed: {description}"


async def sign_in_administrator(settings: Settings, tenant: str, out: Output, client_id: str) -> _AdminSession:
    """Device code sign-in of an administrator who can grant Microsoft Graph application permissions."""
    entra = settings.entra
    authority = f"{entra.authority_host}/{tenant}"
    scopes = [f"{entra.graph_base_url}/{scope}" for scope in DELEGATED_SCOPES]
    try:
        app = await asyncio.to_thread(
            public_client_application,
            client_id,
            authority,
            ca_bundle=entra.ca_bundle,
            instance_discovery=entra.instance_discovery,
        )
        flow: dict[str, Any] = await asyncio.to_thread(app.initiate_device_flow, scopes=scopes)
    except ValueError:
        raise BootstrapError(f"Entra knows no tenant {tenant!r} (OIDC discovery at {authority} failed)") from None
    except requests.RequestException as exc:
        raise BootstrapError(f"cannot reach {entra.authority_host}: {type(exc).__name__}") from None
    if "user_code" not in flow:
        raise BootstrapError(f"the device code request failed: {flow.get('error_description') or flow}")
    out(flow["message"])
    out("Waiting for the sign-in (a Global Administrator or Privileged Role Administrator)…")
    last_note = [time.monotonic()]

    def still_waiting(state: dict[str, Any]) -> bool:
        left = float(state.get("expires_at", 0)) - time.time()
        if time.monotonic() - last_note[0] >= 30 and left > 0:
            last_note[0] = time.monotonic()
            out(f"  still waiting for the sign-in (the code expires in {int(left // 60)} min {int(left % 60)} s)")
        return left <= 0

    try:
        result: dict[str, Any] = await asyncio.to_thread(
            app.acquire_token_by_device_flow, flow, exit_condition=still_waiting
        )
    except requests.RequestException as exc:
        raise BootstrapError(f"cannot reach {entra.authority_host}: {type(exc).__name__}") from None
    if "access_token" not in result:
        raise BootstrapError(_device_flow_problem(result))
    id_claims: dict[str, Any] = result.get("id_token_claims") or {}
    access = _claims(str(result["access_token"]))
    tenant_id = str(id_claims.get("tid") or access.get("tid") or "")
    username = str(id_claims.get("preferred_username") or access.get("upn") or "the signed-in user")
    granted = {s.rsplit("/", 1)[-1] for s in str(result.get("scope", "")).split()}
    missing = [s for s in DELEGATED_SCOPES if s not in granted]
    if missing:
        raise BootstrapError(f"the sign-in did not grant {', '.join(missing)}; consent to them and run bootstrap again")
    roles = _signed_in_roles(access.get("wids"))
    if roles is None:
        out(f"Signed in as {username} (tenant {tenant_id}); the token names no directory roles, so Graph decides.")
    elif roles[0]:
        out(f"Signed in as {username} ({', '.join(roles[0])}) in tenant {tenant_id}.")
    elif roles[1]:
        raise BootstrapError(
            f"{username} is {' and '.join(roles[1])}: that can register the app but not grant Microsoft Graph "
            "application permissions (admin consent for Graph app roles needs a Global Administrator or "
            "Privileged Role Administrator). Run bootstrap again signed in as one of those"
        )
    else:
        raise BootstrapError(
            f"{username} is not an administrator of tenant {tenant_id}: bootstrap needs a Global Administrator or "
            "Privileged Role Administrator (only they can grant Microsoft Graph application permissions)"
        )
    expires_in = float(result.get("expires_in", 3599))
    return _AdminSession(tenant_id, username, str(result["access_token"]), time.monotonic() + expires_in - 60)


# --- the app registration ----------------------------------------------------------------------


def _required_resource_access(app: Application | None, role_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """The app's requiredResourceAccess with Microsoft Graph's entry set to exactly the provisioning
    permissions; entries for other APIs stay."""
    others = [
        r.model_dump(by_alias=True, include={"resource_app_id", "resource_access"})
        for r in (app.required_resource_access if app is not None else [])
        if r.resource_app_id != GRAPH_APP_ID
    ]
    graph = {
        "resourceAppId": GRAPH_APP_ID,
        "resourceAccess": [{"id": role_ids[name], "type": "Role"} for name in provisioning_permissions()],
    }
    return [*others, graph]


def _requested(app: Application, names: Mapping[str, str]) -> tuple[set[str], bool]:
    """The Graph application permissions the app requests, and whether its Graph entry asks for anything
    else (delegated permissions)."""
    entries = [r for r in app.required_resource_access if r.resource_app_id == GRAPH_APP_ID]
    accesses = [a for r in entries for a in r.resource_access]
    roles = {names.get(a.id, a.id) for a in accesses if a.type == "Role"}
    return roles, any(a.type != "Role" for a in accesses) or len(entries) > 1


@dataclass
class _Converge:
    """One run's Graph writes as the administrator; each change made is described in ``changes``."""

    graph: GraphClient
    settings: Settings
    options: BootstrapOptions
    out: Output
    changes: list[str] = field(default_factory=list)

    async def application(self, role_ids: Mapping[str, str]) -> Application:
        options, graph = self.options, self.graph
        try:
            app = await graph.get_application_by_unique_name(UNIQUE_NAME)
        except NotFound:
            audience = MULTI_TENANT if options.multi_tenant else SINGLE_TENANT
            body: dict[str, Any] = {
                "displayName": options.name,
                "signInAudience": audience,
                "requiredResourceAccess": _required_resource_access(None, role_ids),
            }
            app, _ = await graph.upsert_application(UNIQUE_NAME, body)
            self.changes.append(f"created the app registration {options.name!r} ({audience}), client ID {app.app_id}")
            return app
        self.out(f"Found the app registration {app.display_name!r}, client ID {app.app_id}.")
        patch: dict[str, Any] = {}
        if app.display_name != options.name:
            patch["displayName"] = options.name
            self.changes.append(f"renamed the app registration from {app.display_name!r} to {options.name!r}")
        if options.multi_tenant and app.sign_in_audience != MULTI_TENANT:
            patch["signInAudience"] = MULTI_TENANT
            self.changes.append(f"made the app multi-tenant ({app.sign_in_audience} -> {MULTI_TENANT})")
        elif app.sign_in_audience not in (SINGLE_TENANT, MULTI_TENANT):
            patch["signInAudience"] = SINGLE_TENANT
            self.changes.append(f"made the app single-tenant ({app.sign_in_audience} -> {SINGLE_TENANT})")
        elif app.sign_in_audience == MULTI_TENANT and not options.multi_tenant:
            self.out("  It stays multi-tenant (other tenants may have consented to it).")
        names = {role_id: name for name, role_id in role_ids.items()}
        requested, other_graph_entries = _requested(app, names)
        wanted = set(provisioning_permissions())
        if requested != wanted or other_graph_entries:
            patch["requiredResourceAccess"] = _required_resource_access(app, role_ids)
            added, removed = sorted(wanted - requested), sorted(requested - wanted)
            detail = "; ".join([*(f"+{n}" for n in added), *(f"-{n}" for n in removed)]) or "application only"
            self.changes.append(f"set the requested Microsoft Graph permissions ({detail})")
        if patch:
            await graph.update_application(app.id, patch)
        return app

    async def service_principal(self, app: Application) -> ServicePrincipal:
        with contextlib.suppress(NotFound):
            return await self.graph.get_service_principal_by_app_id(app.app_id)
        try:
            sp = await self.graph.create_service_principal(app.app_id)
        except Conflict:  # created meanwhile (or by an earlier attempt whose answer was lost)
            return await self.graph.get_service_principal_by_app_id(app.app_id)
        self.changes.append(f"created the service principal {sp.id}")
        return sp

    async def consent(self, sp: ServicePrincipal, graph_sp: ServicePrincipal) -> None:
        """One app role assignment (admin consent) on Microsoft Graph per provisioning permission."""
        graph, role_ids = self.graph, graph_sp.app_role_ids()
        held = {a.app_role_id for a in await graph.list_app_role_assignments(sp.id) if a.resource_id == graph_sp.id}
        for name in provisioning_permissions():
            if role_ids[name] in held:
                continue

            async def assign(role_id: str = role_ids[name]) -> None:
                try:
                    await graph.assign_app_role(sp.id, graph_sp.id, role_id)
                except Conflict:
                    pass  # granted by an earlier attempt whose answer was lost
                except NotFound as exc:  # the new service principal hasn't replicated there yet
                    raise NotYetReplicated(exc.message, status=exc.status, code=exc.code) from None

            await call_with_retries(
                assign, _replication(self.settings), idempotent=True, describe=f"grant {name} to the app"
            )
            self.changes.append(f"granted admin consent for {name}")
        names = {role_id: name for name, role_id in role_ids.items()}
        extra = sorted(names.get(r, r) for r in held - {role_ids[n] for n in provisioning_permissions()})
        if extra:
            self.out(f"  Note: the app also holds {', '.join(extra)}, which the service doesn't need (left as is).")

    async def credential(self, app: Application, env: Mapping[str, str]) -> tuple[Credential, dict[str, str | None]]:
        """The credential the .env will name (kept if it works for 30 days more), and the .env values for it."""
        options, now = self.options, datetime.now(UTC)
        if options.secret:
            secret = _usable_secret(app, env, now)
            if secret is not None:
                self.out(f"  Keeping the client secret in {options.env_file} (hint {secret.get_secret_value()[:3]}…).")
            else:
                name, end = f"{options.name} (bootstrap {now:%Y-%m-%d})", now + timedelta(days=options.days)
                new = await self.graph.add_password(app.id, name, end)
                secret = new.secret_text
                expires = f"{new.end_date_time or end:%Y-%m-%d}"
                self.changes.append(
                    f"added a client secret (hint {new.hint}…, expires {expires}); its value is in .env"
                )
            return secret, {ENV_SECRET: secret.get_secret_value(), ENV_CERTIFICATE: None}
        certificate = _usable_certificate(app, env, now)
        if certificate is not None:
            self.out(f"  Keeping the certificate in {env[ENV_CERTIFICATE]} (thumbprint {certificate.thumbprint}).")
            return certificate, {ENV_CERTIFICATE: env[ENV_CERTIFICATE], ENV_SECRET: None}
        certificate = await self.add_certificate(app, now)
        return certificate, {ENV_CERTIFICATE: str(options.certificate_path), ENV_SECRET: None}

    async def add_certificate(self, app: Application, now: datetime) -> CertificateCredential:
        """A new certificate: the PEM written (0600) first, then the public part uploaded next to the app's
        other certificates (PATCH replaces the collection, so they are sent again)."""
        options = self.options
        pem, certificate = new_certificate(options.name, options.days, now)
        write_private(options.certificate_path, pem, durable=True)
        existing = await self.graph.get_key_credentials(app.id)
        new_key = {
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode(),
            "displayName": f"CN={options.name[:64]} (bootstrap {now:%Y-%m-%d})",
            "startDateTime": _graph_time(certificate.not_valid_before_utc),
            "endDateTime": _graph_time(certificate.not_valid_after_utc),
        }
        keys = [*map(_key_credential_json, existing), new_key]
        await self.graph.update_application(app.id, {"keyCredentials": keys})
        credential = CertificateCredential.from_pem_file(options.certificate_path)
        expires = f"{certificate.not_valid_after_utc:%Y-%m-%d}"
        self.changes.append(
            f"added a certificate (thumbprint {credential.thumbprint}, expires {expires}); "
            f"its private key is in {options.certificate_path} (0600)"
        )
        return credential


def _replication(settings: Settings) -> RetryConfig:
    """The retries of a run that creates objects and waits for them to replicate."""
    return replace(settings.entra.retry, replication_timeout=REPLICATION_TIMEOUT)


# --- the credential ------------------------------------------------------------------------------


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_certificate(name: str, days: int, now: datetime) -> tuple[bytes, x509.Certificate]:
    """A self-signed certificate (RSA 2048, SHA-256) valid ``days`` from five minutes ago, and the PEM file
    holding its private key and itself."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    start = (now - timedelta(minutes=5)).replace(microsecond=0)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    return pem, certificate


def _key_credential_json(key: KeyCredential) -> dict[str, Any]:
    """An existing certificate as a PATCH must send it again to keep it."""
    if not key.key:
        raise BootstrapError(
            f"Graph did not return certificate {key.key_id}'s key, so it can't be kept; nothing changed"
        )
    body: dict[str, Any] = {
        "keyId": key.key_id,
        "type": key.type or "AsymmetricX509Cert",
        "usage": key.usage or "Verify",
        "key": key.key,
        "displayName": key.display_name,
    }
    if key.start_date_time is not None and key.end_date_time is not None:
        body.update(startDateTime=_graph_time(key.start_date_time), endDateTime=_graph_time(key.end_date_time))
    return body


def _usable_certificate(app: Application, env: Mapping[str, str], now: datetime) -> CertificateCredential | None:
    path = env.get(ENV_CERTIFICATE)
    if not path or env.get(ENV_CLIENT, "").lower() != app.app_id.lower() or not Path(path).is_file():
        return None
    try:
        credential = CertificateCredential.from_pem_file(Path(path))
    except ValueError:
        return None
    registered = [k for k in app.key_credentials if k.thumbprint == credential.thumbprint and k.end_date_time]
    return credential if any(k.end_date_time and k.end_date_time > now + RENEW_BEFORE for k in registered) else None


def _usable_secret(app: Application, env: Mapping[str, str], now: datetime) -> SecretStr | None:
    secret = env.get(ENV_SECRET)
    if not secret or env.get(ENV_CLIENT, "").lower() != app.app_id.lower():
        return None
    live = [p for p in app.password_credentials if p.hint == secret[:3] and p.end_date_time]
    return SecretStr(secret) if any(p.end_date_time and p.end_date_time > now + RENEW_BEFORE for p in live) else None


# --- .env ------------------------------------------------------------------------------------------


def _unquote(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].strip()


def read_env(path: Path) -> dict[str, str]:
    """The settings bootstrap manages, as the .env file has them (missing file: none)."""
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match and match.group(1) in MANAGED_ENV:
            found[match.group(1)] = _unquote(match.group(2))
    return found


def _env_value(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    raise BootstrapError(f"a value for .env contains a quote or line break: {value[:20]!r}…")


def update_env(path: Path, values: Mapping[str, str | None]) -> list[str]:
    """Set (or, for None, remove) these settings in the .env file, keeping every other line; the file ends
    up mode 0600 either way. Returns the names whose lines changed."""
    lines = path.read_text().splitlines() if path.is_file() else []
    written: set[str] = set()
    changed: set[str] = set()
    kept: list[str] = []
    for line in lines:
        match = _ENV_LINE.match(line)
        if match is None or match.group(1) not in values:
            kept.append(line)
            continue
        name, value = match.group(1), values[match.group(1)]
        if value is None or name in written:  # removed, or a second line for a name already written
            changed.add(name)
            continue
        if _unquote(match.group(2)) != value:
            changed.add(name)
        kept.append(f"{name}={_env_value(value)}")
        written.add(name)
    for name, value in values.items():
        if value is not None and name not in written:
            kept.append(f"{name}={_env_value(value)}")
            changed.add(name)
    if changed or not path.is_file():
        write_private(path, ("\n".join(kept) + "\n").encode(), durable=True)
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return sorted(changed)


def _environment_overrides(values: Mapping[str, str | None], out: Output) -> None:
    """Process environment variables win over .env: say so when one would hide what bootstrap wrote."""
    for name, value in values.items():
        if name in os.environ and os.environ[name] != (value or ""):
            out(f"  Note: {name} is set in this shell's environment and takes precedence over the .env file.")


# --- the check preflight makes ----------------------------------------------------------------------


@dataclass(frozen=True)
class PermissionCheck:
    tenant_id: str
    granted: list[str]

    @property
    def missing_required(self) -> list[str]:
        return [need for need, any_of in REQUIRED_ROLES.items() if not set(any_of) & set(self.granted)]

    @property
    def missing_optional(self) -> list[str]:
        return [role for role in OPTIONAL_ROLES if role not in self.granted]

    def table(self, client_id: str) -> list[str]:
        rows = [f"Microsoft Graph application permissions of {client_id} in tenant {self.tenant_id}:"]
        for name, any_of in REQUIRED_ROLES.items():
            held = [a for a in any_of if a in self.granted]
            state = f"granted ({held[0]})" if held and held[0] != name else "granted" if held else "MISSING"
            rows.append(f"  {name:<34} required  {state}")
        for name, effect in OPTIONAL_ROLES.items():
            rows.append(f"  {name:<34} optional  {'granted' if name in self.granted else 'missing: ' + effect}")
        return rows


async def _roles_as_app(graph: GraphClient, client_id: str, tenant_id: str) -> PermissionCheck:
    sp = await graph.get_service_principal_by_app_id(client_id)
    return PermissionCheck(tenant_id, await graph_roles_held(graph, sp.id))


async def verify_provisioning_identity(
    settings: Settings, tenant_id: str, client_id: str, credential: Credential, out: Output
) -> PermissionCheck:
    """Sign in as the app with its new credential (waiting out replication) and read its own app role
    assignments, as preflight does."""
    entra = settings.entra
    tokens = MsalTokenProvider.for_app(entra, tenant_id, client_id, credential)
    out("Signing in as the provisioning app…")
    waited = await tokens.prove_secret_works(timeout=REPLICATION_TIMEOUT)
    out(f"  Token received{f' after {waited:.0f} s' if waited >= 1 else ''}.")
    async with GraphClient(entra.graph_base_url, tokens, entra.ca_bundle, retry=entra.retry) as graph:
        return await _roles_as_app(graph, client_id, tenant_id)


# --- bootstrap -----------------------------------------------------------------------------------


async def bootstrap(settings: Settings, options: BootstrapOptions, out: Output = say) -> BootstrapResult:
    """Create or repair the provisioning app registration and write its settings (see the module's text)."""
    if problems := options.problems():
        raise BootstrapError("; ".join(problems))
    env = read_env(options.env_file)
    tenant = options.tenant or env.get(ENV_TENANT) or settings.entra.tenant_id or "organizations"
    admin = await sign_in_administrator(settings, tenant, out, options.public_client_id)
    entra = settings.entra
    async with GraphClient(entra.graph_base_url, admin, entra.ca_bundle, retry=_replication(settings)) as graph:
        run = _Converge(graph, settings, options, out)
        changes = run.changes
        try:
            graph_sp = await graph.get_graph_service_principal()
            role_ids = graph_sp.app_role_ids()
            if unknown := [name for name in provisioning_permissions() if name not in role_ids]:
                raise BootstrapError(f"Microsoft Graph here has no application permission {', '.join(unknown)}")
            app = await run.application(role_ids)
            sp = await run.service_principal(app)
            await run.consent(sp, graph_sp)
            credential, env_values = await run.credential(app, env)
        except PermissionDenied as exc:
            raise BootstrapError(
                f"Microsoft Graph refused {admin.username}: {exc.message} ({exc.code}). The account needs to be a "
                "Global Administrator (or a Privileged Role Administrator where users may register applications)"
            ) from None
    values: dict[str, str | None] = {ENV_TENANT: admin.tenant_id, ENV_CLIENT: app.app_id, **env_values}
    written = update_env(options.env_file, values)
    if written:
        changes.append(f"wrote {', '.join(written)} to {options.env_file} (mode 0600)")
    _environment_overrides(values, out)
    if changes:
        out("Changes:")
        out("\n".join(f"  - {change}" for change in changes))
    else:
        out("Nothing to change: the app registration, its consent, credential and .env are as they should be.")
    check = await verify_provisioning_identity(settings, admin.tenant_id, app.app_id, credential, out)
    out("\n".join(check.table(app.app_id)))
    if check.missing_required:
        raise BootstrapError(
            f"the app still lacks {', '.join(check.missing_required)} (consent not visible yet?); run bootstrap again"
        )
    if options.multi_tenant or app.sign_in_audience == MULTI_TENANT:
        out("Customer tenants: python starter.py tenant add <tenant ID or domain>")
    return BootstrapResult(admin.tenant_id, app.app_id, changes, check.granted)


# --- customer tenants ------------------------------------------------------------------------------


def admin_consent_url(settings: Settings, tenant_id: str, client_id: str) -> str:
    """The tenant-wide admin consent URL the Entra admin center builds (grant-admin-consent)."""
    return f"{settings.entra.authority_host}/{tenant_id}/adminconsent?client_id={client_id}"


@dataclass(frozen=True)
class TenantState:
    """Whether the provisioning app can act in a tenant: consented (a token there) and its permissions."""

    tenant_id: str
    consented: bool
    check: PermissionCheck | None = None
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.check is not None and not self.check.missing_required

    def summary(self) -> str:
        if not self.consented:
            return f"not consented yet ({self.problem})"
        assert self.check is not None
        missing = self.check.missing_required
        return "ready: every required permission is granted" if not missing else f"missing {', '.join(missing)}"


def _require_identity(settings: Settings) -> str:
    """The provisioning app's client ID, or the hint to bootstrap it first."""
    try:
        settings.entra.require_provisioning_identity()
    except SettingsError as exc:
        raise BootstrapError(
            f"{exc.problems[0]}: run `python starter.py bootstrap` first (or point --env-file at the .env it wrote)"
        ) from None
    assert settings.entra.client_id is not None
    return settings.entra.client_id


async def resolve_tenant_id(settings: Settings, tenant: str) -> str:
    try:
        return await tenant_id_of(settings.entra.authority_host, tenant, settings.entra.ca_bundle)
    except ApiError as exc:
        raise BootstrapError(f"tenant {tenant!r}: {exc.message}") from None


async def tenant_state(settings: Settings, tenant_id: str) -> TenantState:
    """As the provisioning app in ``tenant_id``: a token, then its own app role assignments (preflight's check)."""
    client_id = settings.entra.client_id
    assert client_id is not None, "checked by require_provisioning_identity"
    async with graph_for(settings, tenant_id) as graph:
        try:
            return TenantState(tenant_id, True, await _roles_as_app(graph, client_id, tenant_id))
        except AuthenticationFailed as exc:
            if exc.aadsts == "AADSTS700016":  # no service principal there: nobody consented
                return TenantState(tenant_id, False, problem=f"{exc.aadsts}: the app is not in that directory")
            raise BootstrapError(f"signing in as the provisioning app in {tenant_id} failed: {exc}") from None
        except NotFound:  # token but no service principal: just removed
            return TenantState(tenant_id, False, problem="no service principal of the app in that directory")
        except PermissionDenied as exc:
            return TenantState(tenant_id, True, PermissionCheck(tenant_id, []), problem=str(exc))


async def _provisioning_app_audience(settings: Settings) -> str | None:
    """The provisioning app's signInAudience, read in its own tenant as itself."""
    entra = settings.entra
    assert entra.tenant_id is not None and entra.client_id is not None
    async with graph_for(settings, entra.tenant_id) as graph:
        return (await graph.get_application_by_app_id(entra.client_id)).sign_in_audience


async def add_tenant(
    settings: Settings,
    tenant: str,
    *,
    wait: bool,
    out: Output = say,
    poll_every: float = 5.0,
    give_up_after: float = 3600.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TenantState:
    """Print the admin consent URL of the (multi-tenant) provisioning app for ``tenant``; with ``wait``,
    check until it can act there with every required permission."""
    _require_identity(settings)
    entra = settings.entra
    assert entra.tenant_id is not None and entra.client_id is not None
    tenant_id = await resolve_tenant_id(settings, tenant)
    if tenant_id == entra.tenant_id.lower():
        out(f"{tenant} is the provisioning app's own tenant: bootstrap consented there already.")
    else:
        try:
            audience = await _provisioning_app_audience(settings)
        except (NotFound, PermissionDenied) as exc:
            raise BootstrapError(
                f"can't read the provisioning app {entra.client_id} to check it is multi-tenant: {exc}"
            ) from None
        if audience != MULTI_TENANT:
            raise BootstrapError(
                f"the provisioning app {entra.client_id} is single-tenant ({audience}), so no other tenant can consent "
                "to it. Make it multi-tenant with `python starter.py bootstrap --multi-tenant` (an administrator of "
                f"tenant {entra.tenant_id} signs in), then run tenant add again"
            )
        out(f"Tenant {tenant_id}: an administrator of it (Global Administrator or Privileged Role Administrator)")
        out("opens this URL, signs in and accepts the permissions:")
        out(f"  {admin_consent_url(settings, tenant_id, entra.client_id)}")
    state = await tenant_state(settings, tenant_id)
    if not wait:
        out(f"Now: {state.summary()}. Check again with: python starter.py tenant check {tenant}")
        return state
    deadline = time.monotonic() + give_up_after
    last = ""
    while not state.ready:
        if state.summary() != last:
            last = state.summary()
            out(f"  waiting: {last}")
        if time.monotonic() > deadline:
            raise BootstrapError(f"tenant {tenant_id} is still {last} after {give_up_after / 60:.0f} min")
        await sleep(poll_every)
        state = await tenant_state(settings, tenant_id)
    assert state.check is not None
    out("\n".join(state.check.table(entra.client_id)))
    out(f"Tenant {tenant_id} is ready: onboard its PBXs with --tenant {tenant}.")
    return state


async def check_tenant(settings: Settings, tenant: str, out: Output = say) -> TenantState:
    """The provisioning app's standing in ``tenant``, per permission (BootstrapError if it can't work there)."""
    client_id = _require_identity(settings)
    tenant_id = await resolve_tenant_id(settings, tenant)
    state = await tenant_state(settings, tenant_id)
    if not state.consented:
        raise BootstrapError(
            f"the provisioning app can't act in tenant {tenant_id}: {state.summary()}. "
            f"Run: python starter.py tenant add {tenant}"
        )
    assert state.check is not None
    out("\n".join(state.check.table(client_id)))
    if state.problem:
        out(f"Note: {state.problem}")
    if state.check.missing_required:
        raise BootstrapError(
            f"in tenant {tenant_id} the provisioning app lacks {', '.join(state.check.missing_required)}: an "
            f"administrator of it consents again at {admin_consent_url(settings, tenant_id, client_id)}"
        )
    out(f"Tenant {tenant_id}: ready.")
    return state
