"""The automated steps of the vendor's guide (2-5) plus preflight, verification and the credential
check, as activities over Microsoft Graph. Every one is idempotent: it reads first and converges."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from pydantic import SecretStr
from temporalio import activity

from activities.app_review import GRAPH_APP_ID, SERVICE_TAG, graph_for, read_app, repair, review
from activities.errors import blocking, graph_activity
from clients.errors import ApiError, Conflict, InvalidRequest, NotFound, NotYetReplicated, PermissionDenied
from clients.graph import GraphClient
from clients.graph_models import PasswordCredential, ServicePrincipal
from clients.msal_auth import CertificateCredential, MsalTokenProvider
from clients.yeastar import MIN_FIRMWARE, YeastarClient, parse_firmware
from common.secret_store import SecretNotFound, SecretStore
from common.settings import Settings
from models import activity_names as names
from models.activities import (
    ActivityResult,
    AdoptInput,
    AdoptResult,
    CheckCredentialInput,
    CreateSecretInput,
    CredentialCheck,
    CutoverEvidence,
    CutoverInput,
    DiscardSecretsInput,
    DiscardSecretsResult,
    OffboardAppInput,
    OffboardResult,
    PermissionsInput,
    PermissionsResult,
    PreflightInput,
    PreflightResult,
    ProveSecretInput,
    ProveSecretResult,
    ProvisioningCheck,
    ProvisioningCredential,
    RedirectUrisInput,
    RegisterInput,
    RegisterResult,
    RemoveSecretInput,
    VerifyInput,
)
from models.integration import AppIds, SecretRef, Verification

log = structlog.get_logger(__name__)

# The Microsoft Graph application permissions of the provisioning identity. Required: each is needed
# by a step every integration goes through (any one of the alternatives will do).
REQUIRED_ROLES = {
    "Application.ReadWrite.All": ("Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"),
    "AppRoleAssignment.ReadWrite.All": ("AppRoleAssignment.ReadWrite.All",),
    "Application.Read.All": ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"),
}
# Optional: without each, the named feature degrades (the README's table says the same).
OPTIONAL_ROLES = {
    "Directory.Read.All": "without Directory.Read.All the administrator's organisation-wide consent (guide "
    "step 6) can't be read; verification relies on sign-in logs alone",
    "AuditLog.Read.All": "without AuditLog.Read.All (and an Entra ID P1 licence) sign-in logs can't be read: "
    "no evidence that the PBX signs in, and a rotation waits a grace period instead of seeing the PBX on the "
    "new secret",
    "Policy.Read.All": "without Policy.Read.All the tenant's secret-lifetime policy can't be read; assuming none",
}
# Every credential the service adds carries an operation's own tag in its display name; its prefix
# (SERVICE_TAG) marks the service's credentials, e.g. for offboarding.
OPERATION_TAG = SERVICE_TAG + "{}]"


def _attempt() -> int:
    return activity.info().attempt


class ProvisioningActivities:
    """Holds one Graph client per tenant for the provisioning identity; resolves secrets by reference."""

    def __init__(self, settings: Settings, secrets: SecretStore) -> None:
        self._settings = settings
        self._secrets = secrets
        self._graphs: dict[str, GraphClient] = {}
        self._pbx: YeastarClient | None = None

    async def close(self) -> None:
        for graph in self._graphs.values():
            await graph.close()
        if self._pbx is not None:
            # Revoking the PBX token is a courtesy (it expires within 30 minutes anyway): an
            # unresponsive PBX must not hold up the worker's shutdown.
            try:
                async with asyncio.timeout(5):
                    await self._pbx.close()
            except (TimeoutError, ApiError) as exc:
                log.warning("could not revoke the PBX API token; it expires on its own", error=str(exc) or "timed out")

    def _graph(self, tenant_id: str) -> GraphClient:
        if tenant_id not in self._graphs:
            self._graphs[tenant_id] = graph_for(self._settings, tenant_id)
        return self._graphs[tenant_id]

    def _graph_client(self, tokens: MsalTokenProvider) -> GraphClient:
        entra = self._settings.entra
        return GraphClient(entra.graph_base_url, tokens, entra.ca_bundle, retry=entra.retry)

    def _token_provider_for_app(
        self, tenant_id: str, client_id: str, secret: SecretStr, sign_in_id: str
    ) -> MsalTokenProvider:
        """Sign in as an integration's app, every sign-in marked with the workflow's ``sign_in_id``."""
        return MsalTokenProvider.for_app(self._settings.entra, tenant_id, client_id, secret, correlation_id=sign_in_id)

    async def _yeastar(self) -> YeastarClient:
        """One client for the worker's lifetime: one PBX API token (refreshed as it nears expiry)
        instead of a login and logout per step, well inside the PBX's limit of 8 tokens. After the
        PBX refused the credentials, the next step (the operator's retry) gets one fresh login."""
        if self._pbx is not None and self._pbx.refused:
            await self._pbx.close()
            self._pbx = None
        if self._pbx is None:
            pbx = self._settings.yeastar
            assert pbx.base_url and pbx.client_id and pbx.client_secret, "checked by YeastarSettings"
            self._pbx = YeastarClient(pbx.base_url, pbx.client_id, pbx.client_secret, pbx.ca_bundle)
        return self._pbx

    async def _stored_secret(self, integration_id: str, key_id: str) -> SecretStr:
        try:
            return await self._secrets.get(integration_id, key_id)
        except SecretNotFound as exc:
            store = self._secrets
            raise blocking(
                "SecretNotInStore",
                str(exc),
                f"The secret's value is not in the {store.backend} secret store at {store.location}. Every worker "
                "must open the same store: one YEC_DATA_DIR and YEC_SECRET_STORE__KEYS for the local store, or "
                "YEC_SECRET_STORE__BACKEND=azure-key-vault for workers on several hosts. Then retry.",
            ) from None

    # ----------------------------------------------------------- preflight

    @activity.defn(name=names.PREFLIGHT)
    @graph_activity
    async def preflight(self, req: PreflightInput) -> PreflightResult:
        graph = self._graph(req.tenant_id)
        client_id = self._settings.entra.client_id
        assert client_id is not None, "provisioning identity is checked at worker start-up"
        own_sp = await graph.get_service_principal_by_app_id(client_id)
        granted = await graph_roles_held(graph, own_sp.id)
        missing = [need for need, any_of in REQUIRED_ROLES.items() if not set(any_of) & set(granted)]
        if missing:
            raise blocking(
                "MissingPermissions",
                f"The provisioning app {client_id} lacks the Microsoft Graph application permission(s) "
                f"{', '.join(missing)} (it has: {', '.join(granted) or 'none'}).",
                f"In Entra admin center > App registrations > {own_sp.display_name or client_id} > "
                f"API permissions, add {', '.join(missing)} (Application), click 'Grant admin consent', "
                "then retry.",
            )
        notes = [note for role, note in OPTIONAL_ROLES.items() if role not in granted]
        lifetime = req.requested_lifetime
        if "Policy.Read.All" in granted:
            policy = await graph.get_default_app_management_policy()
            if policy.password_addition_blocked():
                raise blocking(
                    "SecretsForbiddenByPolicy",
                    "The tenant's app management policy forbids adding client secrets to new apps, and "
                    "the PBX can only authenticate with a client secret.",
                    "In Entra admin center > Enterprise applications > App management policies, exempt "
                    "this app or allow password credentials, then retry.",
                )
            max_lifetime = policy.password_max_lifetime()
            if max_lifetime is not None and max_lifetime < lifetime:
                notes.append(
                    f"secret lifetime clamped from {lifetime.days} to {max_lifetime.days} days by the "
                    "tenant's app management policy"
                )
                lifetime = max_lifetime
        own = await self._own_credential(graph)
        if own.problem:
            notes.append(own.problem)
        firmware = None
        if req.check_yeastar:
            pbx = await self._yeastar()
            firmware = (await pbx.system_info()).firmware_version
            if parse_firmware(firmware) < MIN_FIRMWARE:
                raise blocking(
                    "FirmwareTooOld",
                    f"The PBX runs firmware {firmware}; the Microsoft Entra ID integration needs "
                    f"{'.'.join(map(str, MIN_FIRMWARE))} or later.",
                    "Upgrade the PBX (PBX portal > Maintenance > Upgrade), then retry.",
                )
        log.info("preflight passed", tenant_id=req.tenant_id, granted=granted, lifetime_days=lifetime.days)
        return PreflightResult(
            granted_roles=granted,
            secret_lifetime=lifetime,
            notes=notes,
            provisioning_credential=own.credential,
            firmware_version=firmware,
            attempt=_attempt(),
        )

    @activity.defn(name=names.CHECK_PROVISIONING_CREDENTIAL)
    @graph_activity
    async def check_provisioning_credential(self, tenant_id: str) -> ProvisioningCheck:
        return await self._own_credential(self._graph(tenant_id))

    async def _own_credential(self, graph: GraphClient) -> ProvisioningCheck:
        """When the provisioning identity's own secret or certificate expires, read from its app
        registration: the certificate by thumbprint, the secret by its hint (first 3 characters)."""
        entra = self._settings.entra
        assert entra.client_id is not None, "provisioning identity is checked at worker start-up"
        try:
            app = await graph.get_application_by_app_id(entra.client_id)
        except (PermissionDenied, NotFound) as exc:
            return ProvisioningCheck(
                problem=f"the expiry of the provisioning app's own credential can't be read ({exc}); watch it yourself",
                attempt=_attempt(),
            )
        found: list[ProvisioningCredential] = []
        if entra.certificate_path is not None:
            thumbprint = CertificateCredential.from_pem_file(entra.certificate_path).thumbprint
            found = [
                ProvisioningCredential(
                    kind="certificate", key_id=k.key_id, expires_at=k.end_date_time, display_name=k.display_name
                )
                for k in app.key_credentials
                if k.thumbprint == thumbprint and k.end_date_time is not None
            ]
        elif entra.client_secret is not None:
            hint = entra.client_secret.get_secret_value()[:3]
            found = [
                ProvisioningCredential(
                    kind="client secret", key_id=p.key_id, expires_at=p.end_date_time, display_name=p.display_name
                )
                for p in app.password_credentials
                if p.hint == hint and p.end_date_time is not None
            ]
        if not found:
            return ProvisioningCheck(
                problem="the provisioning app's own credential in use is not among its app registration's "
                "credentials, so its expiry is unknown; watch it yourself",
                attempt=_attempt(),
            )
        # Two secrets can share a hint: remind about the one expiring first rather than too late.
        return ProvisioningCheck(credential=min(found, key=lambda c: c.expires_at), attempt=_attempt())

    # ------------------------------------------------ steps 2-4: the app

    @activity.defn(name=names.REGISTER_APPLICATION)
    @graph_activity
    async def register_application(self, req: RegisterInput) -> RegisterResult:
        graph = self._graph(req.tenant_id)
        app, created = await graph.upsert_application(
            req.unique_name,
            {
                "displayName": req.display_name,
                "signInAudience": "AzureADMyOrg",
                "web": {"redirectUris": [req.redirect_uri]},
            },
        )
        log.info("application registered", client_id=app.app_id, created=created)
        return RegisterResult(
            app=AppIds(tenant_id=req.tenant_id, application_object_id=app.id, client_id=app.app_id),
            created=created,
            attempt=_attempt(),
        )

    @activity.defn(name=names.SET_REDIRECT_URIS)
    @graph_activity
    async def set_redirect_uris(self, req: RedirectUrisInput) -> ActivityResult:
        # PATCH replaces the whole collection, so send every URI, not just the new one.
        await self._graph(req.tenant_id).update_application(
            req.application_object_id, {"web": {"redirectUris": req.redirect_uris}}
        )
        return ActivityResult(attempt=_attempt())

    @activity.defn(name=names.GRANT_PERMISSIONS)
    @graph_activity
    async def grant_permissions(self, req: PermissionsInput) -> PermissionsResult:
        graph = self._graph(req.tenant_id)
        graph_sp = await graph.get_graph_service_principal()
        role_ids = graph_sp.app_role_ids()
        unknown = [p for p in req.permissions if p not in role_ids]
        if unknown:
            raise blocking(
                "UnknownPermission",
                f"Microsoft Graph in this tenant has no application permission named {', '.join(unknown)}.",
                "Check the permission names against Microsoft Graph's permissions reference.",
            )
        await graph.update_application(
            req.app.application_object_id,
            {
                "requiredResourceAccess": [
                    {
                        "resourceAppId": GRAPH_APP_ID,
                        "resourceAccess": [{"id": role_ids[p], "type": "Role"} for p in req.permissions],
                    }
                ]
            },
        )
        our_sp = await self._ensure_service_principal(graph, req.app.client_id)
        held = {a.app_role_id for a in await graph.list_app_role_assignments(our_sp.id) if a.resource_id == graph_sp.id}
        assigned = 0
        for permission in req.permissions:
            if role_ids[permission] in held:
                continue
            try:
                await graph.assign_app_role(our_sp.id, graph_sp.id, role_ids[permission])
                assigned += 1
            except Conflict:
                pass  # granted by an earlier attempt whose answer was lost
            except NotFound as exc:
                # The new service principal hasn't replicated to where the assignment lands yet.
                raise NotYetReplicated(exc.message, status=exc.status, code=exc.code) from None
        log.info("admin consent granted", client_id=req.app.client_id, newly_assigned=assigned)
        return PermissionsResult(
            service_principal_id=our_sp.id,
            granted=list(req.permissions),
            newly_assigned=assigned,
            attempt=_attempt(),
        )

    async def _ensure_service_principal(self, graph: GraphClient, app_id: str) -> ServicePrincipal:
        with contextlib.suppress(NotFound):
            return await graph.get_service_principal_by_app_id(app_id)
        try:
            return await graph.create_service_principal(app_id)
        except Conflict:
            return await graph.get_service_principal_by_app_id(app_id)

    # ------------------------------------------------- step 5: the secret

    @activity.defn(name=names.CREATE_CLIENT_SECRET)
    @graph_activity
    async def create_client_secret(self, req: CreateSecretInput) -> SecretRef:
        """Add a password exactly once per operation ID, even if an earlier attempt's answer was lost."""
        graph = self._graph(req.tenant_id)
        tag = OPERATION_TAG.format(req.operation_id)
        # The operation tag decides what is this operation's: only a credential carrying it is ever
        # reused or removed here. Every other credential (a rotation's, one added by hand) is left alone,
        # whatever the store holds.
        for credential in await graph.list_passwords(req.application_object_id):
            if tag not in (credential.display_name or ""):
                continue
            try:
                await self._secrets.get(req.integration_id, credential.key_id)
            except SecretNotFound:
                # An earlier attempt of this operation added it and died before storing the value: the
                # value can't be recovered and was never handed out (the workflow never saw this key).
                log.warning(
                    "removing this operation's client secret whose value was never stored", key_id=credential.key_id
                )
                await graph.remove_password(req.application_object_id, credential.key_id)
                continue
            log.info("client secret already created by an earlier attempt", key_id=credential.key_id)
            return _secret_ref(credential, req.expires_at)
        display_name = f"{req.description} {tag}"
        new = await graph.add_password(req.application_object_id, display_name, req.expires_at)
        await self._secrets.put(
            req.integration_id, new.key_id, new.secret_text, expires_at=new.end_date_time or req.expires_at
        )
        log.info("client secret created", key_id=new.key_id, expires=new.end_date_time)
        return _secret_ref(new, req.expires_at)

    @activity.defn(name=names.PROVE_SECRET)
    @graph_activity
    async def prove_secret(self, req: ProveSecretInput) -> ProveSecretResult:
        """Sign in as the new app until Entra accepts the brand-new secret (replication takes seconds)."""
        secret = await self._stored_secret(req.integration_id, req.key_id)
        tokens = self._token_provider_for_app(req.tenant_id, req.client_id, secret, req.sign_in_id)
        waited = await tokens.prove_secret_works(timeout=req.timeout.total_seconds())
        log.info("new client secret works", key_id=req.key_id, waited_seconds=round(waited, 1))
        return ProveSecretResult(waited_seconds=waited, attempt=_attempt())

    # ---------------------------------------------------- step 6 verified

    @activity.defn(name=names.VERIFY_INTEGRATION)
    @graph_activity
    async def verify_integration(self, req: VerifyInput) -> Verification:
        app = req.app
        assert app.service_principal_id is not None, "permissions step sets the service principal"
        graph = self._graph(app.tenant_id)
        warnings: list[str] = []
        evidence = await self._pbx_evidence(graph, app, req, warnings)

        held = await graph_roles_held(graph, app.service_principal_id)
        missing = [p for p in req.permissions if p not in held]

        secret = await self._stored_secret(req.integration_id, req.key_id)
        tokens = self._token_provider_for_app(app.tenant_id, app.client_id, secret, req.sign_in_id)
        async with self._graph_client(tokens) as as_app:
            users = await as_app.list_users(top=1, max_items=1)

        extensions = None
        if req.check_yeastar:
            pbx = await self._yeastar()
            extensions = await pbx.extension_count()
        if missing:
            raise blocking(
                "PermissionsMissing",
                f"The app {app.client_id} is missing admin consent for {', '.join(missing)}.",
                "Retry: the permissions step grants them again (someone may have revoked them).",
            )
        if evidence is None:
            warnings.append(
                "no sign-in by the PBX and no organisation-wide consent is visible for the app since the "
                "credentials were handed over; check the PBX portal shows Connected"
            )
        log.info("integration verified", client_id=app.client_id, users_visible=len(users), extensions=extensions)
        return Verification(
            token_ok=True,
            users_readable=True,
            role_assignments=held,
            missing_roles=missing,
            extension_count=extensions,
            admin_consent_evidence=evidence,
            warnings=warnings,
        )

    async def _pbx_evidence(self, graph: GraphClient, app: AppIds, req: VerifyInput, warnings: list[str]) -> str | None:
        """What the administrator's work in the PBX left behind: an organisation-wide delegated consent,
        or sign-ins by the app since the hand-over that are not the service's own."""
        assert app.service_principal_id is not None
        try:
            grants = await graph.list_oauth2_permission_grants(app.service_principal_id)
        except PermissionDenied as exc:
            warnings.append(f"the organisation-wide consent can't be read (needs {exc.permission or exc.code})")
            grants = []
        org_wide = [g for g in grants if g.consent_type == "AllPrincipals"]
        if org_wide:
            scopes = " ".join(sorted(org_wide[0].scopes))
            return f"organisation-wide delegated consent recorded (scopes: {scopes})"
        try:
            sign_ins = await graph.list_service_principal_sign_ins(app.client_id, since=req.handed_over_at)
        except (PermissionDenied, InvalidRequest) as exc:  # no AuditLog.Read.All or Entra P1 licence
            warnings.append(f"sign-in logs not readable ({exc.code or exc.status}); skipped that check")
            return None
        own = set(req.own_sign_in_ids)
        by_pbx = [s for s in sign_ins if s.status.error_code == 0 and s.correlation_id not in own]
        if by_pbx:
            return f"{len(by_pbx)} sign-in(s) with the app's credentials by the PBX since they were handed over"
        return None

    @activity.defn(name=names.REMOVE_CLIENT_SECRET)
    @graph_activity
    async def remove_client_secret(self, req: RemoveSecretInput) -> ActivityResult:
        """Remove one key ID from the app and its value from the store; already gone counts as done."""
        await self._graph(req.tenant_id).remove_password(req.application_object_id, req.key_id)
        await self._secrets.delete(req.integration_id, req.key_id)
        log.info("client secret removed", key_id=req.key_id)
        return ActivityResult(attempt=_attempt())

    @activity.defn(name=names.DISCARD_OPERATION_SECRETS)
    @graph_activity
    async def discard_operation_secrets(self, req: DiscardSecretsInput) -> DiscardSecretsResult:
        """Remove whatever one operation (a rotation that ended before its card) added, found by its
        tag, whether or not its answer ever reached the workflow."""
        graph = self._graph(req.tenant_id)
        tag = OPERATION_TAG.format(req.operation_id)
        try:
            tagged = [c for c in await graph.list_passwords(req.application_object_id) if tag in (c.display_name or "")]
        except NotFound:  # the app itself is gone
            tagged = []
        for credential in tagged:
            await graph.remove_password(req.application_object_id, credential.key_id)
            await self._secrets.delete(req.integration_id, credential.key_id)
        log.info("operation's secrets discarded", operation_id=req.operation_id, removed=len(tagged))
        return DiscardSecretsResult(removed=[c.key_id for c in tagged], attempt=_attempt())

    @activity.defn(name=names.OFFBOARD_APP)
    @graph_activity
    async def offboard_app(self, req: OffboardAppInput) -> OffboardResult:
        """Remove the service's client secrets (every credential it tagged) or the whole app, and the
        integration's secrets from the store. Converges: already gone counts as done."""
        graph = self._graph(req.tenant_id)
        removed: list[str] = []
        if req.delete_app:
            with contextlib.suppress(NotFound):
                await graph.delete_application(req.application_object_id)
        else:
            with contextlib.suppress(NotFound):  # the app itself is gone
                for credential in await graph.list_passwords(req.application_object_id):
                    if SERVICE_TAG in (credential.display_name or ""):
                        await graph.remove_password(req.application_object_id, credential.key_id)
                        removed.append(credential.key_id)
        for key_id in await self._secrets.key_ids(req.integration_id):
            await self._secrets.delete(req.integration_id, key_id)
        log.info(
            "integration offboarded", integration_id=req.integration_id, app_deleted=req.delete_app, removed=removed
        )
        return OffboardResult(removed_key_ids=removed, app_deleted=req.delete_app, attempt=_attempt())

    @activity.defn(name=names.CUTOVER_EVIDENCE)
    @graph_activity
    async def cutover_evidence(self, req: CutoverInput) -> CutoverEvidence:
        """Which of the two keys the app's sign-ins used since `since` (beta sign-in logs)."""
        try:
            sign_ins = await self._graph(req.tenant_id).list_service_principal_sign_ins(req.client_id, since=req.since)
        except (PermissionDenied, InvalidRequest) as exc:
            # No AuditLog.Read.All, no Entra P1 licence, or a national cloud without the beta endpoint.
            return CutoverEvidence(readable=False, reason=exc.code or str(exc.status), attempt=_attempt())
        own = set(req.own_sign_in_ids)
        ok = [
            s
            for s in sign_ins
            if s.status.error_code == 0 and s.created_date_time >= req.since and s.correlation_id not in own
        ]
        new = [s.created_date_time for s in ok if s.service_principal_credential_key_id == req.new_key_id]
        old = [s.created_date_time for s in ok if s.service_principal_credential_key_id == req.old_key_id]
        return CutoverEvidence(
            readable=True,
            new_key_sign_ins=len(new),
            old_key_sign_ins=len(old),
            last_new_use=max(new, default=None),
            last_old_use=max(old, default=None),
            attempt=_attempt(),
        )

    # ----------------------------------------------------- lifecycle check

    @activity.defn(name=names.CHECK_CREDENTIAL)
    @graph_activity
    async def check_credential(self, req: CheckCredentialInput) -> CredentialCheck:
        """The tracked secret still exists; with ``expected``, also the app's drift from what the
        integration requires, the safe part repaired (a removed permission, role assignment or redirect
        URI) and the rest reported (a secret added by hand, the app disabled)."""
        graph = self._graph(req.tenant_id)
        try:
            app = await graph.get_application(req.application_object_id)
        except NotFound:
            return CredentialCheck(present=False, application_missing=True, attempt=_attempt())
        passwords = app.password_credentials
        mine = next((p for p in passwords if p.key_id == req.key_id), None)
        drift = []
        if req.expected is not None:
            expected = req.expected
            state = await read_app(graph, req.tenant_id, app)
            found = review(
                state,
                redirect_uris=expected.redirect_uris,
                permissions=expected.permissions,
                known_key_ids=expected.known_key_ids,
            )
            if any(f.repairable for f in found.findings):
                found = await repair(
                    graph, state, found, redirect_uris=expected.redirect_uris, permissions=expected.permissions
                )
                log.warning(
                    "app drift repaired", client_id=app.app_id, repaired=[f.code for f in found.findings if f.repaired]
                )
            drift = found.findings
        return CredentialCheck(
            present=mine is not None,
            expires_at=mine.end_date_time if mine else None,
            other_key_ids=[p.key_id for p in passwords if p.key_id != req.key_id],
            drift=drift,
            attempt=_attempt(),
        )

    @activity.defn(name=names.ADOPT_APPLICATION)
    @graph_activity
    async def adopt_application(self, req: AdoptInput) -> AdoptResult:
        """Take over an app registration configured by hand: review it against the guide, repair what
        Graph can (if the operator agreed), and pick the secret whose expiry to watch."""
        graph = self._graph(req.tenant_id)
        try:
            app = await graph.get_application_by_app_id(req.client_id)
        except NotFound:
            raise blocking(
                "AppNotFound",
                f"No app registration with client ID {req.client_id} in tenant {req.tenant_id}.",
                "Check the Application (client) ID in the PBX portal (Integrations > Microsoft 365) and the tenant, "
                "then adopt again.",
            ) from None
        state = await read_app(graph, req.tenant_id, app)
        found = review(state)
        if req.repair and any(f.repairable for f in found.findings):
            found = await repair(graph, state, found)
        hand_made = [s for s in found.secrets if not s.ours and s.expires_at is not None]
        if not hand_made:
            raise blocking(
                "NoClientSecret",
                f"The app {req.client_id} has no client secret the PBX could be using.",
                f"Onboard the PBX instead (python starter.py onboard {req.integration_id}), which creates one.",
            )
        now = datetime.now(UTC)
        live = [s for s in hand_made if s.expires_at is not None and s.expires_at > now]
        # The PBX holds one of them and nobody can say which: watching the first to expire never misses one.
        watched = min(live or hand_made, key=lambda s: s.expires_at or now)
        assert watched.expires_at is not None
        log.info("application adopted", client_id=app.app_id, findings=[f.code for f in found.findings])
        return AdoptResult(
            review=found,
            app=AppIds(
                tenant_id=req.tenant_id,
                application_object_id=app.id,
                client_id=app.app_id,
                service_principal_id=found.service_principal_id,
            ),
            secret=SecretRef(
                key_id=watched.key_id,
                hint=watched.hint,
                display_name=watched.display_name,
                expires_at=watched.expires_at,
            ),
            attempt=_attempt(),
        )


async def graph_roles_held(graph: GraphClient, service_principal_id: str) -> list[str]:
    """Names of the Microsoft Graph application permissions granted (admin-consented) to a principal."""
    graph_sp = await graph.get_graph_service_principal()
    names = {role_id: name for name, role_id in graph_sp.app_role_ids().items()}
    return sorted(
        names.get(a.app_role_id, a.app_role_id)
        for a in await graph.list_app_role_assignments(service_principal_id)
        if a.resource_id == graph_sp.id
    )


def _secret_ref(credential: PasswordCredential, requested_expiry: datetime) -> SecretRef:
    return SecretRef(
        key_id=credential.key_id,
        hint=credential.hint or "",
        display_name=credential.display_name or "",
        expires_at=credential.end_date_time or requested_expiry,
    )
