"""An app registration compared with what the vendor's guide requires: for adopting an integration set
up by hand, finding apps that look like one, and the daily drift check."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

FindingCode = Literal[
    "permission-not-requested",  # missing from requiredResourceAccess
    "permission-not-consented",  # no app role assignment (admin consent) for it
    "service-principal-missing",
    "service-principal-disabled",
    "redirect-uri-missing",
    "sign-in-audience",
    "foreign-secret",  # a client secret nobody here created
    "no-secret",
]


class Finding(BaseModel):
    code: FindingCode
    detail: str
    # Graph can put it right without risk to a working PBX (a permission, an assignment, a URI).
    repairable: bool
    repaired: bool = False


class SecretInfo(BaseModel):
    key_id: str
    display_name: str = ""
    hint: str = ""
    expires_at: datetime | None = None
    # Added by this service (its operation tag in the display name).
    ours: bool = False


class PlannedChange(BaseModel):
    """One Graph write, as `--plan` prints it."""

    method: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.method:6} {self.path}  {self.what}"


class AppReview(BaseModel):
    tenant_id: str
    application_object_id: str
    client_id: str
    display_name: str = ""
    service_principal_id: str | None = None
    sign_in_audience: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    granted: list[str] = Field(default_factory=list)
    secrets: list[SecretInfo] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    changes: list[PlannedChange] = Field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]


class AdoptSpec(BaseModel):
    """Take over an app registration configured by hand (OnboardInput.adopt)."""

    client_id: str
    # The operator confirmed the repairs the review listed (or asked for none).
    repair: bool = True


class ExpectedApp(BaseModel):
    """What the daily check compares the integration's app with."""

    redirect_uris: list[str]
    permissions: list[str]
    # Key IDs the integration tracks (its secret, a rotation's new one): never "foreign".
    known_key_ids: list[str] = Field(default_factory=list)
