"""An app registration compared with what the vendor's guide requires, and the Graph writes that would
put it right. Used by adoption (`starter.py adopt`), discovery (`adopt --discover`), the plans
(`--plan`) and the daily drift check; reading is separate from writing, so a plan never writes.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from urllib.parse import urlsplit

from clients.errors import Conflict, NotFound
from clients.graph import GraphClient
from clients.graph_models import Application, AppRoleAssignment, ServicePrincipal
from clients.msal_auth import MsalTokenProvider
from common.settings import Settings
from models.integration import REQUIRED_GRAPH_PERMISSIONS
from models.review import AppReview, Finding, PlannedChange, SecretInfo

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
SINGLE_TENANT = "AzureADMyOrg"
# Every credential the service adds carries this in its display name (activities/provisioning.py).
SERVICE_TAG = "[op:"
# Hosts of Yeastar P-Series Cloud Edition PBXs. The redirect URI's format is not documented, so a
# match on these is one reason among others, always shown.
PBX_HOST_SUFFIXES = (".yeastarcloud.com", ".yeastar.com", ".ras.yeastar.com")
_YEASTAR_NAME = re.compile(r"yeastar|linkus|p-series|\bpbx\b", re.IGNORECASE)


def graph_for(settings: Settings, tenant_id: str) -> GraphClient:
    """A Graph client as the provisioning identity, in ``tenant_id`` (a multi-tenant provisioning app
    consented there, for another tenant than the configured one)."""
    entra = settings.entra.model_copy(update={"tenant_id": tenant_id})
    return GraphClient(entra.graph_base_url, MsalTokenProvider.from_settings(entra), entra.ca_bundle, retry=entra.retry)


@dataclass
class AppState:
    """What Graph says about one app registration right now."""

    tenant_id: str
    app: Application
    service_principal: ServicePrincipal | None
    graph: ServicePrincipal  # Microsoft Graph's own service principal (permission names and IDs)
    assignments: list[AppRoleAssignment]  # the app's app role assignments on Microsoft Graph

    @cached_property
    def role_ids(self) -> dict[str, str]:
        return self.graph.app_role_ids()

    @cached_property
    def _role_names(self) -> dict[str, str]:
        return {role_id: name for name, role_id in self.role_ids.items()}

    @cached_property
    def granted(self) -> list[str]:
        return sorted(self._role_names.get(a.app_role_id, a.app_role_id) for a in self.assignments)

    @cached_property
    def requested(self) -> set[str]:
        return {
            self._role_names.get(access.id, access.id)
            for resource in self.app.required_resource_access
            if resource.resource_app_id == GRAPH_APP_ID
            for access in resource.resource_access
            if access.type == "Role"
        }


async def read_app(
    graph: GraphClient, tenant_id: str, app: Application, graph_sp: ServicePrincipal | None = None
) -> AppState:
    """``graph_sp``: Microsoft Graph's service principal when the caller already has it (one read for
    a whole tenant's apps)."""
    graph_sp = graph_sp or await graph.get_graph_service_principal()
    service_principal = None
    assignments: list[AppRoleAssignment] = []
    with contextlib.suppress(NotFound):
        service_principal = await graph.get_service_principal_by_app_id(app.app_id)
        assignments = [
            a for a in await graph.list_app_role_assignments(service_principal.id) if a.resource_id == graph_sp.id
        ]
    return AppState(tenant_id, app, service_principal, graph_sp, assignments)


def review(
    state: AppState,
    *,
    redirect_uris: list[str] | None = None,
    permissions: tuple[str, ...] | list[str] = REQUIRED_GRAPH_PERMISSIONS,
    known_key_ids: list[str] | None = None,
) -> AppReview:
    """The differences from the guide (and from ``redirect_uris`` when the integration knows them), and
    the Graph writes that would repair the repairable ones. Secrets not tagged by the service and not in
    ``known_key_ids`` are "foreign" (None: any secret may be the PBX's, as when adopting)."""
    app, sp = state.app, state.service_principal
    findings: list[Finding] = []
    changes: list[PlannedChange] = []
    app_path = f"/applications/{app.id}"

    not_requested = [p for p in permissions if p not in state.requested]
    if not_requested:
        findings.append(
            Finding(
                code="permission-not-requested",
                detail=f"API permissions lack {', '.join(not_requested)} (Microsoft Graph, Application)",
                repairable=True,
            )
        )
        changes.append(
            PlannedChange(method="PATCH", path=app_path, what=f"requiredResourceAccess + {', '.join(not_requested)}")
        )
    if sp is None:
        findings.append(
            Finding(code="service-principal-missing", detail="the app has no service principal", repairable=True)
        )
        changes.append(PlannedChange(method="POST", path="/servicePrincipals", what=f"appId {app.app_id}"))
    elif not sp.account_enabled:
        findings.append(
            Finding(
                code="service-principal-disabled",
                detail="the enterprise application is disabled: nobody can sign in with it, the PBX included",
                repairable=False,
            )
        )
    not_consented = [p for p in permissions if p not in state.granted]
    if not_consented:
        findings.append(
            Finding(
                code="permission-not-consented",
                detail=f"no admin consent (app role assignment) for {', '.join(not_consented)}",
                repairable=True,
            )
        )
        changes += [
            PlannedChange(method="POST", path=f"/servicePrincipals/{state.graph.id}/appRoleAssignedTo", what=name)
            for name in not_consented
        ]
    present = app.web.redirect_uris
    missing_uris = [uri for uri in redirect_uris or [] if uri not in present]
    if missing_uris:
        findings.append(
            Finding(
                code="redirect-uri-missing",
                detail=f"Web redirect URI(s) missing: {', '.join(missing_uris)}",
                repairable=True,
            )
        )
        changes.append(
            PlannedChange(method="PATCH", path=app_path, what=f"web.redirectUris + {', '.join(missing_uris)}")
        )
    if app.sign_in_audience not in (None, SINGLE_TENANT):
        findings.append(
            Finding(
                code="sign-in-audience",
                detail=f"sign-in audience is {app.sign_in_audience}; the guide registers a single-tenant app "
                f"({SINGLE_TENANT}). Change it in the portal if other organisations must not sign in",
                repairable=False,
            )
        )
    secrets = [
        SecretInfo(
            key_id=p.key_id,
            display_name=p.display_name or "",
            hint=p.hint or "",
            expires_at=p.end_date_time,
            ours=SERVICE_TAG in (p.display_name or ""),
        )
        for p in app.password_credentials
    ]
    if not secrets:
        findings.append(Finding(code="no-secret", detail="the app has no client secret", repairable=False))
    if known_key_ids is not None:
        for secret in secrets:
            if not secret.ours and secret.key_id not in known_key_ids:
                expiry = f", expires {secret.expires_at:%Y-%m-%d}" if secret.expires_at else ""
                findings.append(
                    Finding(
                        code="foreign-secret",
                        detail=f"client secret {secret.hint}… (key {secret.key_id}{expiry}) was added outside this "
                        "service; remove it in the portal unless someone needs it",
                        repairable=False,
                    )
                )
    return AppReview(
        tenant_id=state.tenant_id,
        application_object_id=app.id,
        client_id=app.app_id,
        display_name=app.display_name or "",
        service_principal_id=sp.id if sp else None,
        sign_in_audience=app.sign_in_audience,
        redirect_uris=present,
        granted=state.granted,
        secrets=secrets,
        findings=findings,
        changes=changes,
    )


async def repair(
    graph: GraphClient,
    state: AppState,
    found: AppReview,
    *,
    redirect_uris: list[str] | None = None,
    permissions: tuple[str, ...] | list[str] = REQUIRED_GRAPH_PERMISSIONS,
) -> AppReview:
    """Carry out the review's repairable findings; each write converges, so a retry repeats nothing."""
    app = state.app
    codes = {f.code for f in found.findings if f.repairable}
    if "permission-not-requested" in codes:
        await graph.update_application(app.id, {"requiredResourceAccess": _with_permissions(state, permissions)})
    uris = [*app.web.redirect_uris, *(u for u in redirect_uris or [] if u not in app.web.redirect_uris)]
    if "redirect-uri-missing" in codes:
        await graph.update_application(app.id, {"web": {"redirectUris": uris}})
    sp = state.service_principal
    if sp is None and ("service-principal-missing" in codes or "permission-not-consented" in codes):
        try:
            sp = await graph.create_service_principal(app.app_id)
        except Conflict:
            sp = await graph.get_service_principal_by_app_id(app.app_id)
    if "permission-not-consented" in codes and sp is not None:
        for name in permissions:
            if name in state.granted:
                continue
            with contextlib.suppress(Conflict):  # granted by an earlier attempt whose answer was lost
                await graph.assign_app_role(sp.id, state.graph.id, state.role_ids[name])
    repaired = [f.model_copy(update={"repaired": f.repairable}) for f in found.findings]
    granted = sorted(set(state.granted) | set(permissions)) if sp is not None else state.granted
    return found.model_copy(
        update={
            "findings": repaired,
            "service_principal_id": sp.id if sp else None,
            "granted": granted,
            "redirect_uris": uris,
        }
    )


def _with_permissions(state: AppState, permissions: tuple[str, ...] | list[str]) -> list[dict[str, object]]:
    """requiredResourceAccess with every permission in it, other APIs' entries kept (PATCH replaces
    the whole collection)."""
    others = [r for r in state.app.required_resource_access if r.resource_app_id != GRAPH_APP_ID]
    graph_entry = next((r for r in state.app.required_resource_access if r.resource_app_id == GRAPH_APP_ID), None)
    accesses = {(a.id, a.type) for a in graph_entry.resource_access} if graph_entry else set()
    accesses |= {(state.role_ids[name], "Role") for name in permissions}
    return [
        *(r.model_dump(by_alias=True) for r in others),
        {"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": i, "type": t} for i, t in sorted(accesses)]},
    ]


@dataclass
class Candidate:
    """An app registration that looks like a Yeastar integration, and why."""

    review: AppReview
    reasons: list[str]

    @property
    def soonest_expiry(self) -> datetime | None:
        return min((s.expires_at for s in self.review.secrets if s.expires_at), default=None)


def looks_like_yeastar(state: AppState) -> list[str]:
    """Why this app may be a Yeastar integration; empty if it isn't one. The six permissions the guide
    asks for are required, plus a PBX-like redirect URI or name."""
    wanted = set(REQUIRED_GRAPH_PERMISSIONS)
    has = (state.requested | set(state.granted)) & wanted
    if has != wanted:
        return []
    reasons = [f"asks for the guide's six Graph application permissions ({', '.join(sorted(has))})"]
    for uri in state.app.web.redirect_uris:
        host = urlsplit(uri).hostname or ""
        if host.endswith(PBX_HOST_SUFFIXES):
            reasons.append(f"Web redirect URI on a Yeastar cloud PBX domain: {uri}")
    if _YEASTAR_NAME.search(state.app.display_name or ""):
        reasons.append(f"its name mentions the PBX: {state.app.display_name!r}")
    return reasons if len(reasons) > 1 else []
