"""Login endpoints: OIDC discovery, the v2.0 token endpoint (client credentials with a secret or a
certificate assertion, authorization code with PKCE, device code, refresh token) and the device code
endpoint. The browser leg of the authorization code flow is in authorize.py.

Errors carry Entra's AADSTS numbers, e.g. 7000215 (wrong or not yet replicated secret), 7000222
(expired secret), 700027 (certificate unknown, expired or signature invalid), 700016 (unknown client),
90002 (unknown tenant), 54005 / 70008 / 500112 / 501481 (code redeemed / expired / other redirect URI /
wrong PKCE verifier).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509

from simulators.entra.catalog import (
    APP_ADMIN_ROLES,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    OIDC_SCOPES,
    ROLE_BY_VALUE,
    SCOPE_BY_ID,
    USER_CONSENTABLE_SCOPES,
    WELL_KNOWN_PUBLIC_CLIENTS,
)
from simulators.entra.context import (
    CORRELATION_ID_KEY,
    DEVICE_CODE_LIFETIME_SECONDS,
    MULTI_TENANT_SEGMENTS,
    NOW_KEY,
    TENANT_CTX_KEY,
    AuthorizationCode,
    DeviceAuthorization,
    SimContext,
    sim_of,
)
from simulators.entra.directory import graph_roles_of, record_sign_in, user_roles
from simulators.entra.errors import OAuthError
from simulators.entra.state import Application, DirectoryUser, KeyCredential, PasswordCredential
from simulators.entra.tokens import (
    ACCESS_TOKEN_LIFETIME,
    TokenInvalid,
    decode,
    issue_app_token,
    issue_user_tokens,
)

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_REFRESH_TOKEN = "refresh_token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Client assertions are signed with the client's wall clock, so they are checked against wall time.
ASSERTION_LEEWAY_SECONDS = 300
_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits


def is_multi_tenant_path(request: web.Request) -> bool:
    """``/organizations/...`` or ``/common/...``: the signed-in user's home tenant is meant."""
    return request.match_info["tenant"].lower() in MULTI_TENANT_SEGMENTS


def check_tenant(request: web.Request, error: str = "invalid_request", *, allow_multi: bool = False) -> None:
    """A hosted tenant's ID or domain in the path (``allow_multi``: or organizations/common), else 90002."""
    tenant = request.match_info["tenant"]
    if not sim_of(request).is_tenant(tenant) and not (allow_multi and is_multi_tenant_path(request)):
        raise OAuthError(
            400,
            error,
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )


async def openid_configuration(request: web.Request) -> web.Response:
    check_tenant(request, error="invalid_tenant", allow_multi=True)
    ctx = sim_of(request)
    base = ctx.base_url
    # For organizations/common, the endpoints keep that segment and the issuer names no tenant (as Entra's).
    multi = is_multi_tenant_path(request)
    tenant = request.match_info["tenant"].lower() if multi else ctx.tenant_id
    return web.json_response(
        {
            "issuer": f"{base}/{{tenantid}}/v2.0" if multi else ctx.issuer,
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "scopes_supported": sorted(OIDC_SCOPES),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "name", "oid", "tid", "preferred_username"],
            "request_uri_parameter_supported": False,
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": base.split("://", 1)[1],
        }
    )


async def jwks(request: web.Request) -> web.Response:
    check_tenant(request, error="invalid_tenant", allow_multi=True)
    # Tokens are HS256 with a private key: there is no public key to publish.
    return web.json_response({"keys": []})


def _scopes(form: Any) -> list[str]:
    return str(form.get("scope", "")).split()


def _graph_scope_names(scopes: list[str]) -> list[str]:
    """Delegated permission names from requested scopes (``https://graph.microsoft.com/X`` or ``X``);
    ``.default`` stands for everything a Global Administrator may consent to."""
    names: list[str] = []
    for scope in scopes:
        name = scope.rsplit("/", 1)[-1]
        if name == ".default":
            return sorted({*ROLE_BY_VALUE, *(p.value for p in SCOPE_BY_ID.values())} - OIDC_SCOPES)
        if name not in OIDC_SCOPES:
            names.append(name)
    return names


def _is_graph_default_scope(ctx: SimContext, scope: str) -> bool:
    resource, _, suffix = scope.rpartition("/")
    return suffix == ".default" and resource.rstrip("/") in (GRAPH_RESOURCE, GRAPH_APP_ID, ctx.base_url)


def _is_key_vault_default_scope(scope: str) -> bool:
    resource, _, suffix = scope.rpartition("/")
    return suffix == ".default" and resource.rstrip("/") in (KEY_VAULT_RESOURCE, KEY_VAULT_APP_ID)


def missing_parameter(name: str) -> OAuthError:
    return OAuthError(
        400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
    )


def client_app(ctx: SimContext, client_id: str) -> Application:
    """The client's app registration as seen from ``ctx``'s tenant: its own, or a multi-tenant app of
    another tenant consented here (it has a service principal here)."""
    if not client_id:
        raise missing_parameter("client_id")
    app = ctx.client_application(client_id)
    if app is None:
        raise OAuthError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{ctx.tenant_id}'. "
            "This can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to the wrong "
            "tenant.",
        )
    return app


def _check_secret(ctx: SimContext, app: Application, secret: str, now: datetime) -> PasswordCredential:
    match = next((c for c in app.password_credentials if c.matches(secret)), None)
    if match is not None and now > match.end:
        raise OAuthError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.app_id}' are expired. Visit the Azure portal to create "
            "new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for "
            "added security: https://aka.ms/certCreds.",
        )
    # A brand-new secret is rejected exactly like a wrong one until it has replicated.
    if match is None or now < match.start or not ctx.replicated(match.created, now):
        raise OAuthError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app '{app.app_id}'.",
        )
    return match


def _us_time(moment: datetime) -> str:
    """How Entra's error descriptions show a key's validity window (UTC)."""
    return moment.astimezone(UTC).strftime("%m/%d/%Y %H:%M:%S")


def _assertion_error(aadsts: int, description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", aadsts, description)


def _check_assertion(ctx: SimContext, app: Application, assertion: str, now: datetime) -> KeyCredential:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise OAuthError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
    algorithm = header.get("alg")
    # MSAL sends x5t (SHA-1, RS256) or, given the public certificate, x5t#S256 (PS256).
    if algorithm not in ("RS256", "PS256"):
        raise _assertion_error(5002738, f"Invalid JWT token. '{algorithm}' is not a supported signature algorithm.")
    thumbprints = {"x5t": "sha1_thumbprint", "x5t#S256": "sha256_thumbprint"}
    key: KeyCredential | None = None
    for claim, attribute in thumbprints.items():
        if claim in header:
            wanted = base64.urlsafe_b64decode(header[claim] + "=" * (-len(header[claim]) % 4)).hex().upper()
            key = next((k for k in app.key_credentials if getattr(k, attribute) == wanted), None)
            break
    if key is None:
        raise _assertion_error(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application. "
            "[Reason - The key was not found.]",
        )
    if not key.start <= now <= key.end:
        # Entra's wording for an expired key (public reports); "not yet valid" is our own by analogy.
        reason = "The key used is expired." if now > key.end else "The key used is not yet valid."
        raise _assertion_error(
            700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: "
            f"'{key.sha1_thumbprint}', Found key 'Start={_us_time(key.start)}, End={_us_time(key.end)}']",
        )
    public_key = x509.load_pem_x509_certificate(key.certificate_pem.encode()).public_key()
    try:
        jwt.decode(
            assertion,
            public_key,  # type: ignore[arg-type]  # an RSA key from a registered certificate
            algorithms=[algorithm],
            audience=[ctx.token_endpoint, f"{ctx.base_url}/{ctx.tenant_id}/oauth2/token"],
            issuer=app.app_id,
            leeway=ASSERTION_LEEWAY_SECONDS,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.InvalidSignatureError:
        raise _assertion_error(700027, "Client assertion failed signature validation.") from None
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        raise _assertion_error(700024, "Client assertion is not within its valid time range.") from None
    except jwt.PyJWTError as exc:
        raise _assertion_error(700027, f"Client assertion is invalid: {exc}.") from None
    return key


def _has_credential(form: Any) -> bool:
    return bool(form.get("client_assertion") or form.get("client_secret"))


def _authenticate_client(
    ctx: SimContext, app: Application, form: Any, now: datetime, *, missing: OAuthError
) -> dict[str, str]:
    """Check a confidential client's secret or certificate assertion (``missing``: the error when it sent
    neither); returns the credential's sign-in log fields."""
    if form.get("client_assertion"):
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        key = _check_assertion(ctx, app, str(form["client_assertion"]), now)
        return {
            "credential_key_id": key.key_id,
            "credential_type": "certificate",
            "credential_thumbprint": key.sha1_thumbprint,
        }
    if form.get("client_secret"):
        password = _check_secret(ctx, app, str(form["client_secret"]), now)
        return {"credential_key_id": password.key_id, "credential_type": "clientSecret"}
    raise missing


def _credential_required() -> OAuthError:
    return OAuthError(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )


async def _client_credentials(request: web.Request, form: Any) -> dict[str, Any]:
    ctx, now = sim_of(request), request[NOW_KEY]
    app = client_app(ctx, str(form.get("client_id", "")))
    scopes = _scopes(form)
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise OAuthError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {' '.join(scopes) or '(empty)'} is not valid. Client credential flows "
            "must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    key_vault = _is_key_vault_default_scope(scopes[0])
    if not key_vault and not _is_graph_default_scope(ctx, scopes[0]):
        raise OAuthError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {scopes[0].removesuffix('/.default')} was not found in the tenant "
            f"named {ctx.tenant_id}.",
        )
    sign_in: dict[str, Any] = {
        "app_id": app.app_id,
        "app_display_name": app.display_name,
        "event_type": "servicePrincipal",
        "ip_address": request.remote,
        "correlation_id": request[CORRELATION_ID_KEY],
    }
    sp = ctx.state.service_principal_by_app_id(app.app_id)
    sign_in["service_principal_id"] = sp.id if sp else None
    try:
        credential = _authenticate_client(
            ctx,
            app,
            form,
            now,
            missing=OAuthError(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            ),
        )
        if sp is None:
            raise OAuthError(
                400,
                "invalid_client",
                7000229,
                f"The client application {app.app_id} is missing service principal in the tenant {ctx.tenant_id}.",
            )
    except OAuthError as exc:
        record_sign_in(ctx, now, error_code=exc.aadsts, failure_reason=exc.description, **sign_in)
        raise
    certificate = credential["credential_type"] == "certificate"
    if key_vault:  # the vault authorizes by its own access policy: no Graph roles in its tokens
        token = issue_app_token(ctx, app, sp, [], certificate=certificate, now=now, audience=KEY_VAULT_RESOURCE)
    else:
        token = issue_app_token(ctx, app, sp, graph_roles_of(ctx, sp), certificate=certificate, now=now)
    record_sign_in(ctx, now, **sign_in, **credential)
    lifetime = int(ACCESS_TOKEN_LIFETIME.total_seconds())
    return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}


def _public_client(ctx: SimContext, client_id: str) -> str:
    """The display name of a client allowed to run public flows, else the error Entra gives."""
    if client_id in WELL_KNOWN_PUBLIC_CLIENTS:
        return WELL_KNOWN_PUBLIC_CLIENTS[client_id]
    app = client_app(ctx, client_id)
    if not app.props.get("isFallbackPublicClient"):
        raise _credential_required()
    return app.display_name


def _user_tokens(
    request: web.Request, client_id: str, user: DirectoryUser, scopes: list[str], client_name: str, *, interactive: bool
) -> dict[str, Any]:
    ctx, now = sim_of(request), request[NOW_KEY]
    record_sign_in(
        ctx,
        now,
        app_id=client_id,
        app_display_name=client_name,
        event_type="interactiveUser" if interactive else "nonInteractiveUser",
        ip_address=request.remote,
        correlation_id=request[CORRELATION_ID_KEY],
        user_id=user.id,
        user_principal_name=user.user_principal_name,
        user_display_name=user.display_name,
    )
    return issue_user_tokens(ctx, client_id, user, scopes, now)


async def _device_code_grant(request: web.Request, form: Any) -> dict[str, Any]:
    ctx, now = sim_of(request), request[NOW_KEY]
    client_id = str(form.get("client_id", ""))
    client_name = _public_client(ctx, client_id)
    flow = ctx.devices.get(str(form.get("device_code", "")))
    if flow is None or flow.client_id != client_id:
        raise OAuthError(400, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
    if now > flow.expires:
        raise OAuthError(
            400,
            "expired_token",
            70020,
            "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
        )
    if flow.declined is not None:
        ctx.devices.pop(flow.device_code, None)
        ctx.devices_by_user_code.pop(flow.user_code, None)
        raise OAuthError(400, "authorization_declined", *flow.declined)
    if flow.approved_user_id is None:
        raise OAuthError(
            400,
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )
    ctx.devices.pop(flow.device_code, None)
    ctx.devices_by_user_code.pop(flow.user_code, None)
    # The tokens are the signed-in user's tenant's (for /organizations, their home tenant).
    tenant = ctx.tenants.get((flow.approved_tenant_id or ctx.tenant_id).lower())
    user = tenant.user(flow.approved_user_id) if tenant is not None else None
    if tenant is None or user is None:
        raise OAuthError(400, "invalid_grant", 70000, "The signed-in user no longer exists.")
    request[TENANT_CTX_KEY] = ctx.for_tenant(tenant)
    return _user_tokens(request, client_id, user, _graph_scope_names(flow.scopes), client_name, interactive=True)


def device_consent_problem(ctx: SimContext, flow: DeviceAuthorization, user: DirectoryUser) -> tuple[int, str] | None:
    """Why ``user`` (of ``ctx``'s tenant) can't complete this device sign-in: the client asks for delegated
    permissions only an administrator may consent to, the user isn't one who can (Global, Privileged Role,
    Cloud Application or Application Administrator) and nobody consented for the whole organisation.
    Entra shows "Need admin approval" then; the polling client hears authorization_declined."""
    needed = [s for s in _graph_scope_names(flow.scopes) if s not in USER_CONSENTABLE_SCOPES]
    if not needed or user_roles(user) & APP_ADMIN_ROLES:
        return None
    sp = ctx.state.service_principal_by_app_id(flow.client_id)
    granted = {
        scope
        for grant in (ctx.state.permission_grants(sp.id) if sp is not None else [])
        if grant.consent_type == "AllPrincipals" and grant.resource_id == ctx.graph_sp.id
        for scope in grant.scope.split()
    }
    missing = [s for s in needed if s not in granted]
    if not missing:
        return None
    return (
        90094,
        f"The grant requires admin permission: '{flow.client_id}' needs permission to access resources in "
        f"the organization that only an admin can grant ({', '.join(missing)}). Ask an admin to grant "
        "permission to this app before you can use it.",
    )


async def _refresh_token_grant(request: web.Request, form: Any) -> dict[str, Any]:
    refresh_token = str(form.get("refresh_token", ""))
    # At /organizations the refresh token's own tenant answers.
    ctx, now = sim_of(request).for_token(refresh_token), request[NOW_KEY]
    request[TENANT_CTX_KEY] = ctx
    client_id = str(form.get("client_id", ""))
    try:
        claims = decode(ctx, refresh_token, "refresh", now)
    except TokenInvalid:
        claims = {}
    user = ctx.state.user(str(claims.get("sub", "")))
    if claims.get("client_id") != client_id or user is None:
        raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
    if _has_credential(form):  # a confidential client (e.g. a web app) refreshing what its code gave it
        app = client_app(ctx, client_id)
        _authenticate_client(ctx, app, form, now, missing=_credential_required())
        client_name = app.display_name
    else:
        client_name = _public_client(ctx, client_id)
    return _user_tokens(request, client_id, user, str(claims["scp"]).split(), client_name, interactive=False)


def _pkce_matches(code: AuthorizationCode, verifier: str) -> bool:
    if code.code_challenge is None:
        return True
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hmac.compare_digest(verifier.encode(), code.code_challenge.encode())


async def _authorization_code_grant(request: web.Request, form: Any) -> dict[str, Any]:
    """Redeem a code from /authorize (authorize.py). The sign-in was logged there, not here."""
    ctx, now = sim_of(request), request[NOW_KEY]
    app = client_app(ctx, str(form.get("client_id", "")))
    _authenticate_client(ctx, app, form, now, missing=_credential_required())
    value = str(form.get("code", ""))
    if not value:
        raise missing_parameter("code")
    code = ctx.authorization_codes.get(value)
    if code is None:
        raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
    if code.client_id != app.app_id:
        raise OAuthError(400, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
    if code.redeemed:
        raise OAuthError(
            400,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
            "existing refresh token.",
        )
    if now > code.expires:
        raise OAuthError(
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new "
            "interactive authorization request for this user and resource.",
        )
    redirect_uri = str(form.get("redirect_uri", ""))
    if redirect_uri != code.redirect_uri:
        raise OAuthError(
            400,
            "invalid_grant",
            500112,
            f"The reply address '{redirect_uri}' does not match the reply address '{code.redirect_uri}' "
            "provided when requesting Authorization code.",
        )
    if not _pkce_matches(code, str(form.get("code_verifier", ""))):
        raise OAuthError(
            400,
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        )
    code.redeemed = True
    user = ctx.state.user(code.user_id)
    if user is None:
        raise OAuthError(400, "invalid_grant", 70000, "The signed-in user no longer exists.")
    return issue_user_tokens(ctx, app.app_id, user, _graph_scope_names(code.scopes), now, nonce=code.nonce)


_GRANTS = {
    GRANT_AUTHORIZATION_CODE: _authorization_code_grant,
    GRANT_CLIENT_CREDENTIALS: _client_credentials,
    GRANT_DEVICE_CODE: _device_code_grant,
    GRANT_REFRESH_TOKEN: _refresh_token_grant,
}


async def token(request: web.Request) -> web.Response:
    check_tenant(request, allow_multi=True)
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    grant = _GRANTS.get(grant_type)
    if grant is None:
        raise OAuthError(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
        )
    if is_multi_tenant_path(request) and grant_type not in (GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN):
        # Simulated for device sign-ins only; an app's own token needs its tenant (our wording).
        raise OAuthError(
            400,
            "invalid_request",
            90002,
            f"Tenant '{request.match_info['tenant']}' can't be used for the '{grant_type}' grant in this simulator; "
            "use the tenant's ID or domain.",
        )
    return web.json_response(await grant(request, form))


async def devicecode(request: web.Request) -> web.Response:
    check_tenant(request, allow_multi=True)
    ctx, now = sim_of(request), request[NOW_KEY]
    form = await request.post()
    client_id = str(form.get("client_id", ""))
    if client_id not in WELL_KNOWN_PUBLIC_CLIENTS:
        client_app(ctx, client_id)
    user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
    flow = DeviceAuthorization(
        device_code=secrets.token_urlsafe(48),
        user_code=user_code,
        client_id=client_id,
        scopes=_scopes(form),
        expires=now + timedelta(seconds=DEVICE_CODE_LIFETIME_SECONDS),
        tenant_id=None if is_multi_tenant_path(request) else ctx.tenant_id,
    )
    ctx.devices[flow.device_code] = flow
    ctx.devices_by_user_code[user_code] = flow
    verification_uri = f"{ctx.base_url}/devicelogin"
    return web.json_response(
        {
            "user_code": user_code,
            "device_code": flow.device_code,
            "verification_uri": verification_uri,
            "expires_in": DEVICE_CODE_LIFETIME_SECONDS,
            "interval": ctx.config.device_code_interval_seconds,
            "message": f"To sign in, use a web browser to open the page {verification_uri} and enter the code "
            f"{user_code} to authenticate.",
        }
    )


def add_oauth_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    r.add_get("/{tenant}/discovery/v2.0/keys", jwks)
    r.add_post("/{tenant}/oauth2/v2.0/token", token)
    r.add_post("/{tenant}/oauth2/v2.0/devicecode", devicecode)
