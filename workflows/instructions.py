"""Instruction cards: what the human does next, in the words and order of the PBX portal."""

from __future__ import annotations

from models.integration import AppIds, Blocked, InstructionCard, SecretRef

CLI = "python starter.py"


def redirect_uris_card(integration_id: str) -> InstructionCard:
    return InstructionCard(
        title="Read the two redirect URIs in the PBX portal",
        steps=[
            "Log in to the PBX web portal, go to Integrations > Collaboration.",
            "Click Integrate beside Microsoft 365.",
            "In the App Registration section, copy the Redirect URI and the Client SSO Redirect URI.",
            "Submit them here (the SSO one is optional: it enables Linkus SSO).",
        ],
        commands=[f"{CLI} redirect-uris {integration_id} --redirect-uri 'https://…' --sso-redirect-uri 'https://…'"],
    )


CONNECT_TITLE = "Connect the PBX to Microsoft Entra ID (sign in as Global Administrator)"
PASTE_AFTER_EXPIRY_TITLE = "PBX sync is down: paste the new client secret into the PBX and sign in again"


def connect_pbx_card(
    integration_id: str, app: AppIds, secret: SecretRef, *, title: str = CONNECT_TITLE
) -> InstructionCard:
    return InstructionCard(
        title=title,
        steps=[
            "Log in to the PBX web portal, go to Integrations > Collaboration, click Integrate beside Microsoft 365.",
            "In App Registration, paste the Application (client) ID and the Directory (tenant) ID below.",
            "In Certificates & Secrets, paste the client secret into Client Secret (it is shown once: keep it "
            "off screenshots and tickets).",
            "Click Save. You are redirected to the Microsoft sign-in page.",
            "Sign in with a Global Administrator account, complete any extra security check, review the "
            "permissions and click Accept (on PBX 84.10.0.30 or later you may tick 'Consent on behalf of "
            "your organization').",
            "Back on the PBX page, click OK. The status should read Connected.",
            "Then confirm here that you are done.",
        ],
        values={
            "Application (client) ID": app.client_id,
            "Directory (tenant) ID": app.tenant_id,
            "Client secret": f"{secret.hint}… (key ID {secret.key_id}, expires {secret.expires_at:%Y-%m-%d})",
        },
        commands=[f"{CLI} secret {integration_id} --reveal", f"{CLI} consent {integration_id}"],
    )


def connected_card(integration_id: str) -> InstructionCard:
    return InstructionCard(
        title="Set up the synchronisation rules in the PBX",
        steps=[
            "In the PBX portal, Integrations > Collaboration > Microsoft 365, set up the sync rules: "
            "users to extensions, groups to extension groups, Outlook contacts and Teams presence "
            "(contacts and presence need firmware 84.10.0.30 or later).",
            "Sync runs daily at 00:30 and within about 10 minutes of a change in Entra ID.",
            "Nothing else to do: this service reminds you before the client secret expires.",
        ],
        commands=[f"{CLI} status {integration_id}"],
    )


def blocked_card(integration_id: str, blocked: Blocked) -> InstructionCard:
    return InstructionCard(
        title=f"Blocked at step '{blocked.step}': {blocked.error_type}",
        steps=[blocked.message, f"How to fix: {blocked.fix}", "Then resume with the command below."],
        commands=[f"{CLI} retry {integration_id}"],
    )


def rotation_card(integration_id: str, app: AppIds, new: SecretRef, old: SecretRef) -> InstructionCard:
    return InstructionCard(
        title="Paste the new client secret into the PBX (rotation)",
        steps=[
            "Reveal the new client secret (it is shown once).",
            "PBX web portal > Integrations > Collaboration > Microsoft 365: in Certificates & Secrets, replace "
            "the Client Secret with the new value and click Save.",
            "Sign in with the Global Administrator account again when the PBX redirects you, Accept, then OK.",
            f"Confirm here that the PBX has it. The old secret ({old.hint}…, expires "
            f"{old.expires_at:%Y-%m-%d}) keeps working until the PBX is seen using the new one; only then is it "
            "removed.",
        ],
        values={
            "Application (client) ID": app.client_id,
            "Directory (tenant) ID": app.tenant_id,
            "New client secret": f"{new.hint}… (key ID {new.key_id}, expires {new.expires_at:%Y-%m-%d})",
        },
        commands=[f"{CLI} secret {integration_id} --reveal --pending", f"{CLI} pbx-updated {integration_id}"],
    )


def cutover_stalled_card(integration_id: str, app: AppIds, new: SecretRef, old: SecretRef) -> InstructionCard:
    return InstructionCard(
        title="The PBX still signs in with the old client secret: paste the new one and sign in again",
        steps=[
            "Reveal the new client secret (it is shown once).",
            "PBX web portal > Integrations > Collaboration > Microsoft 365: in Certificates & Secrets, replace the "
            "Client Secret with the new value, click Save, sign in with the Global Administrator account, Accept, OK.",
            "Confirm here again; the check starts over from then.",
            f"The old key ({old.hint}…) stays until the PBX is seen on the new one. It expires "
            f"{old.expires_at:%Y-%m-%d %H:%M} UTC; sync stops then if the PBX still uses it.",
        ],
        values={
            "Application (client) ID": app.client_id,
            "New client secret": f"{new.hint}… (key ID {new.key_id}, expires {new.expires_at:%Y-%m-%d})",
        },
        commands=[f"{CLI} secret {integration_id} --reveal --pending", f"{CLI} pbx-updated {integration_id}"],
    )
