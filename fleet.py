"""Fleet operations an MSP needs, shared by the CLI: adopt an integration set up by hand, discover the
app registrations that look like Yeastar integrations, plan (print the Graph writes without making
them) and onboard many PBXs from a CSV file.

Reviews and plans read Microsoft Graph as the provisioning identity from this process (read-only);
every write happens in the workflow's activities, after the operator confirmed it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from activities.app_review import (
    SERVICE_TAG,
    Candidate,
    graph_for,
    looks_like_yeastar,
    read_app,
    review,
)
from clients.errors import NotFound
from control import Control, Started, UserError, onboard_request, start_integration
from models.integration import (
    INTEGRATION_ID_RE,
    REQUIRED_GRAPH_PERMISSIONS,
    OnboardInput,
    OnboardRequest,
)
from models.review import AdoptSpec, AppReview, PlannedChange

# The CSV's columns (a header row names them, in any order; only id and redirect_uri are required).
CSV_COLUMNS = ("id", "tenant", "redirect_uri", "sso_redirect_uri", "display_name")
REQUIRED_COLUMNS = ("id", "redirect_uri")
# Problems are named by column.
_COLUMN_OF = {
    "integration_id": "id",
    "tenant": "tenant",
    "display_name": "display_name",
    "redirect_uris": "redirect_uri",
}


async def review_app(control: Control, tenant_id: str, client_id: str) -> AppReview:
    """The app with this client ID against the guide (reads only)."""
    control.settings.entra.require_provisioning_identity()
    async with graph_for(control.settings, tenant_id) as graph:
        try:
            app = await graph.get_application_by_app_id(client_id)
        except NotFound:
            raise UserError(f"no app registration with client ID {client_id} in tenant {tenant_id}") from None
        return review(await read_app(graph, tenant_id, app))


async def adopt(control: Control, integration_id: str, tenant_id: str, client_id: str, *, repair: bool) -> Started:
    """Start the integration that takes over this app; an integration of that name must not run."""
    await control.require_worker()
    settings = control.settings
    start = OnboardInput(
        integration_id=integration_id,
        tenant_id=tenant_id,
        yeastar_configured=settings.yeastar.configured,
        options=settings.lifecycle_options(),
        adopt=AdoptSpec(client_id=client_id, repair=repair),
    )
    try:
        status = await control.status(integration_id)
    except UserError:  # no such integration: the name is free
        return await start_integration(control, start)
    raise UserError(
        f"{integration_id} already exists ({status.phase.sentence.lower()}); pick another name, or offboard it first"
    )


async def discover(control: Control, tenant_id: str) -> list[Candidate]:
    """The tenant's app registrations that look like Yeastar integrations not run by this service,
    the soonest-expiring secret first."""
    control.settings.entra.require_provisioning_identity()
    found: list[Candidate] = []
    async with graph_for(control.settings, tenant_id) as graph:
        graph_sp = await graph.get_graph_service_principal()
        for app in await graph.list_applications():
            if any(SERVICE_TAG in (p.display_name or "") for p in app.password_credentials):
                continue  # onboarded (or already adopted and rotated) by this service
            state = await read_app(graph, tenant_id, app, graph_sp)
            if reasons := looks_like_yeastar(state):
                found.append(Candidate(review(state), reasons))
    return sorted(found, key=lambda c: (c.soonest_expiry is None, c.soonest_expiry))


def suggested_id(candidate: Candidate) -> str:
    """An integration ID for a discovered app: the PBX domain's first label, else its name."""
    for uri in candidate.review.redirect_uris:
        label = (urlsplit(uri).hostname or "").split(".")[0]
        if INTEGRATION_ID_RE.match(label):
            return label
    slug = re.sub(r"[^a-z0-9]+", "-", candidate.review.display_name.lower()).strip("-")[:63].strip("-")
    return slug if INTEGRATION_ID_RE.match(slug) else f"app-{candidate.review.client_id[:8]}"


async def plan_onboarding(control: Control, start: OnboardInput) -> list[PlannedChange]:
    """The Graph writes onboarding would make for ``start`` (reads only): all of them for a new app;
    the differences for an app already registered under the integration's unique name."""
    control.settings.entra.require_provisioning_identity()
    uris = start.redirect_uris.as_list() if start.redirect_uris else []
    lifetime = control.settings.lifecycle_options().secret_lifetime
    secret = PlannedChange(
        method="POST", path="/applications/{id}/addPassword", what=f"client secret for {lifetime.days} days"
    )
    async with graph_for(control.settings, start.tenant_id) as graph:
        try:
            app = await graph.get_application_by_unique_name(start.unique_name)
        except NotFound:
            app = None
        if app is not None:
            changes = review(await read_app(graph, start.tenant_id, app), redirect_uris=uris).changes
            return [*changes, secret.model_copy(update={"path": f"/applications/{app.id}/addPassword"})]
        graph_sp = await graph.get_graph_service_principal()
    permissions = ", ".join(REQUIRED_GRAPH_PERMISSIONS)
    return [
        PlannedChange(
            method="PATCH",
            path=f"/applications(uniqueName='{start.unique_name}')",
            what=f"create {start.app_display_name!r}, single tenant, Web redirect URIs {', '.join(uris) or '(later)'}",
        ),
        PlannedChange(method="PATCH", path="/applications/{id}", what=f"requiredResourceAccess: {permissions}"),
        PlannedChange(method="POST", path="/servicePrincipals", what="the app's service principal"),
        *(
            PlannedChange(method="POST", path=f"/servicePrincipals/{graph_sp.id}/appRoleAssignedTo", what=name)
            for name in REQUIRED_GRAPH_PERMISSIONS
        ),
        secret,
    ]


@dataclass(frozen=True)
class FleetRow:
    line: int
    request: OnboardRequest


def read_fleet_csv(path: Path, default_tenant: str | None) -> list[FleetRow]:
    """Every row checked before anything starts: one UserError listing each bad row (by line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"--from: cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if unknown or missing:
        raise UserError(
            f"--from {path}: the header must name the columns {', '.join(CSV_COLUMNS)} (id and redirect_uri "
            "required)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    rows: list[FleetRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        cell = {name.strip(): (value or "").strip() for name, value in row.items() if name}
        fields: dict[str, object] = {
            "integration_id": cell.get("id", ""),
            "tenant": cell.get("tenant") or default_tenant,
        }
        if cell.get("display_name"):
            fields["display_name"] = cell["display_name"]
        if cell.get("redirect_uri"):
            fields["redirect_uris"] = {
                "redirect_uri": cell["redirect_uri"],
                "sso_redirect_uri": cell.get("sso_redirect_uri") or None,
            }
        problem = None
        if not fields["tenant"]:
            problem = "tenant: empty (add a tenant column or set YEC_ENTRA__TENANT_ID)"
        elif "redirect_uris" not in fields:
            problem = "redirect_uri: empty"
        else:
            try:
                request = onboard_request(fields, _COLUMN_OF)
            except UserError as exc:
                problem = str(exc)
            else:
                if request.integration_id in seen:
                    problem = f"id {request.integration_id} repeats line {seen[request.integration_id]}"
                else:
                    seen[request.integration_id] = line
                    rows.append(FleetRow(line, request))
        if problem:
            problems.append(f"line {line}: {problem}")
    if problems:
        raise UserError(f"{path}: nothing was started; fix these rows:\n  " + "\n  ".join(problems))
    if not rows:
        raise UserError(f"{path}: no rows after the header")
    return rows
