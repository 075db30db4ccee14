"""Settings come from YEC_* environment variables (nested with ``__``) and ``.env``; a bad configuration
fails with one SettingsError naming every bad field and never repeating a rejected secret."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from common.codec import EncryptionCodec
from common.settings import SettingsError, load_settings, settings_from_env
from notifications.config import (
    EmailChannelConfig,
    SlackChannelConfig,
    TeamsWorkflowsChannelConfig,
    WebhookChannelConfig,
)

TENANT_ID = "11111111-1111-4111-8111-111111111111"
CLIENT_ID = "22222222-2222-4222-8222-222222222222"
NEW_KEY = bytes(range(32))
OLD_KEY = bytes(range(32, 64))
# Secret-looking values that must never be echoed by an error message.
TEAMS_URL = (
    "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=TeamsSig0123456789"
)
TEAMS_SIG = "TeamsSig0123456789"
SIGNING_SECRET = "webhook-signing-secret-0123456789"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No YEC_* variable from the developer's shell and no stray .env: only what the test sets."""
    for name in list(os.environ):
        if name.upper().startswith("YEC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def load_error(**overrides: object) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    return info.value


# --- reading the environment -------------------------------------------------------------------


def test_defaults_without_any_variable() -> None:
    settings = load_settings()

    assert settings.temporal.address == "localhost:7233"
    assert settings.temporal.namespace == "default"
    assert settings.temporal.task_queue == "yeastar-entra"
    assert settings.temporal.uses_tls is False
    assert settings.entra.authority_host == "https://login.microsoftonline.com"
    assert settings.entra.graph_base_url == "https://graph.microsoft.com"
    assert settings.yeastar.configured is False
    assert settings.secret_lifetime == timedelta(days=180)
    assert settings.reminder_offsets_days == [30, 14, 7, 3, 1, 0]
    assert settings.notification_channels == [] and settings.escalation_channels == []
    assert settings.data_dir == Path(".data")


def test_prefixed_and_nested_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_env(
        monkeypatch,
        YEC_TEMPORAL__ADDRESS="temporal.internal:7233",
        YEC_TEMPORAL__NAMESPACE="pbx-prod",
        YEC_TEMPORAL__API_KEY="temporal-cloud-api-key-value",
        YEC_TEMPORAL__MAX_CACHED_WORKFLOWS="50",
        YEC_ENTRA__AUTHORITY_HOST="https://login.microsoftonline.us/",
        YEC_ENTRA__GRAPH_BASE_URL="https://graph.microsoft.us",
        YEC_ENTRA__TENANT_ID=TENANT_ID.upper(),
        YEC_ENTRA__CLIENT_ID=CLIENT_ID,
        YEC_ENTRA__CLIENT_SECRET="provisioning-client-secret-value",
        YEC_YEASTAR__BASE_URL="https://pbx.example.com",
        YEC_YEASTAR__CLIENT_ID="pbx-api-client",
        YEC_YEASTAR__CLIENT_SECRET="pbx-api-secret-value",
        YEC_SECRET_LIFETIME_DAYS="90",
        YEC_REMINDER_OFFSETS_DAYS="[10, 2, 0]",
        YEC_DATA_DIR=str(tmp_path / "state"),
        YEC_LOG_FORMAT="json",
    )
    # A variable without the prefix is not ours.
    monkeypatch.setenv("TEMPORAL__ADDRESS", "elsewhere:1")

    settings = load_settings()

    assert settings.temporal.address == "temporal.internal:7233"
    assert settings.temporal.namespace == "pbx-prod"
    assert settings.temporal.max_cached_workflows == 50
    assert settings.temporal.uses_tls is True
    assert settings.entra.authority_host == "https://login.microsoftonline.us"  # trailing slash dropped
    assert settings.entra.graph_base_url == "https://graph.microsoft.us"
    assert settings.entra.tenant_id == TENANT_ID  # normalised to lower case
    assert settings.entra.client_id == CLIENT_ID
    assert isinstance(settings.entra.client_secret, SecretStr)
    assert settings.entra.client_secret.get_secret_value() == "provisioning-client-secret-value"
    assert settings.yeastar.configured is True
    assert settings.secret_lifetime == timedelta(days=90)
    assert settings.reminder_offsets_days == [10, 2, 0]
    assert settings.data_dir == tmp_path / "state"
    assert settings.log_format == "json"
    # Secret-bearing fields never print.
    shown = repr(settings) + str(settings)
    for secret in ("temporal-cloud-api-key-value", "provisioning-client-secret-value", "pbx-api-secret-value"):
        assert secret not in shown


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEC_SECRET_LIFETIME_DAYS", "90")

    assert load_settings(secret_lifetime_days=30).secret_lifetime_days == 30


def test_dotenv_file_in_working_directory(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    (isolated_env / ".env").write_text(
        f"YEC_TEMPORAL__NAMESPACE=from-dotenv\n"
        f"YEC_ENTRA__TENANT_ID={TENANT_ID}\n"
        f"YEC_ENCRYPTION_KEYS=dot:{b64(NEW_KEY)}\n"
        "YEC_ESCALATE_AFTER_REMINDERS=5\n"
    )
    monkeypatch.setenv("YEC_ESCALATE_AFTER_REMINDERS", "7")  # the environment beats .env

    settings = load_settings()

    assert settings.temporal.namespace == "from-dotenv"
    assert settings.entra.tenant_id == TENANT_ID
    assert settings.keys == {"dot": NEW_KEY}
    assert settings.escalate_after_reminders == 7


def test_bad_value_in_dotenv_is_a_settings_error(isolated_env: Path) -> None:
    (isolated_env / ".env").write_text("YEC_ENTRA__GRAPH_BASE_URL=http://graph.example.com\n")

    error = load_error()

    assert "YEC_ENTRA__GRAPH_BASE_URL" in str(error)


# --- one message naming every bad field ----------------------------------------------------------


def test_every_bad_field_is_named_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        YEC_ENTRA__AUTHORITY_HOST="http://login.microsoftonline.com",
        YEC_ENTRA__TENANT_ID="not-a-guid",
        YEC_YEASTAR__BASE_URL="https://pbx.example.com",  # without client id / secret
        YEC_SECRET_LIFETIME_DAYS="0",
    )

    error = load_error()

    message = str(error)
    assert message.startswith("invalid configuration:")
    assert len(error.problems) == 4
    assert "YEC_ENTRA__AUTHORITY_HOST" in message and "https://" in message
    assert "YEC_ENTRA__TENANT_ID" in message and "GUID" in message
    assert "YEC_YEASTAR" in message and "client_id and client_secret must be set together" in message
    assert "YEC_SECRET_LIFETIME_DAYS" in message
    # One line per problem.
    assert message.count("\n  - ") == len(error.problems)


def test_bad_encryption_key_is_named_together_with_other_bad_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        YEC_ENTRA__AUTHORITY_HOST="http://login.microsoftonline.com",
        YEC_ENTRA__TENANT_ID="not-a-guid",
        YEC_ENCRYPTION_KEYS=f"short:{b64(b'x' * 16)}",
        YEC_YEASTAR__BASE_URL="https://pbx.example.com",
    )

    message = str(load_error())

    for field in ("YEC_ENTRA__AUTHORITY_HOST", "YEC_ENTRA__TENANT_ID", "YEC_YEASTAR", "YEC_ENCRYPTION_KEYS"):
        assert field in message


def test_encryption_key_of_wrong_length(monkeypatch: pytest.MonkeyPatch) -> None:
    short_key = b64(b"x" * 16)
    monkeypatch.setenv("YEC_ENCRYPTION_KEYS", f"short:{short_key}")

    message = str(load_error())

    assert "YEC_ENCRYPTION_KEYS" in message and "must be 32 bytes (AES-256), got 16" in message
    assert short_key not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("no-separator", "keyid:base64key"),
        (":" + b64(NEW_KEY), "keyid:base64key"),
        ("k1:not*base64", "not valid base64"),
        (" , ", "empty"),
    ],
)
def test_malformed_encryption_keys(monkeypatch: pytest.MonkeyPatch, raw: str, expected: str) -> None:
    monkeypatch.setenv("YEC_ENCRYPTION_KEYS", raw)

    assert expected in str(load_error())


def test_bad_encryption_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEC_ENCRYPTION_KEYS", f"short:{b64(b'x' * 16)}")

    assert "YEC_ENCRYPTION_KEYS:" in str(load_error())


def test_swapped_encryption_key_parts_do_not_echo_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = b64(NEW_KEY)
    monkeypatch.setenv("YEC_ENCRYPTION_KEYS", f"{key}:k1")

    assert key not in str(load_error())


def test_negative_reminder_offset_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEC_REMINDER_OFFSETS_DAYS", "[7, -1]")

    message = str(load_error())
    assert "YEC_REMINDER_OFFSETS_DAYS" in message and "must not be negative" in message


def test_temporal_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    cert = isolated_env / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("YEC_TEMPORAL__TLS_CERT", str(cert))

    assert "tls_cert and tls_key must be set together" in str(load_error())


def test_missing_tls_file_is_named(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    monkeypatch.setenv("YEC_TEMPORAL__TLS_CA", str(isolated_env / "missing-ca.pem"))

    message = str(load_error())

    assert "YEC_TEMPORAL__TLS_CA" in message and "file not found" in message


# --- rejected secrets are never repeated --------------------------------------------------------


def test_rejected_channel_values_are_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = [
        {"type": "teams", "name": "it-teams", "url": TEAMS_URL.replace("https://", "http://")},
        {"type": "webhook", "name": "ops", "url": "https://hooks.example.com/x", "signing_secret": "tooShort-secret"},
        {"type": "slack", "name": "it-slack", "url": f"ftp://hooks.slack.com/services/{SIGNING_SECRET}"},
    ]
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", json.dumps(channels))

    error = load_error()

    message = str(error)
    assert len(error.problems) == 3
    assert "YEC_NOTIFICATION_CHANNELS__TEAMS__URL" in message
    assert "YEC_NOTIFICATION_CHANNELS__WEBHOOK__SIGNING_SECRET" in message
    assert "YEC_NOTIFICATION_CHANNELS__SLACK__URL" in message
    for secret in (TEAMS_SIG, "logic.azure.com", "tooShort-secret", SIGNING_SECRET):
        assert secret not in message


def test_malformed_channel_json_never_repeats_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = json.dumps([{"type": "teams", "name": "t", "url": TEAMS_URL, "signing_secret": SIGNING_SECRET}])[:-1]
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", broken)

    with pytest.raises((SettingsError, ValueError)) as info:
        load_settings()

    chain: list[BaseException] = []
    current: BaseException | None = info.value
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for exc in chain:
        assert TEAMS_SIG not in str(exc) and SIGNING_SECRET not in str(exc)


def test_malformed_channel_json_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unparsable JSON stops pydantic-settings before validation: it is reported alone, by name."""
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", '[{"type": "teams", "name": "t", "url": "' + TEAMS_URL + '"')
    monkeypatch.setenv("YEC_ENTRA__TENANT_ID", "not-a-guid")

    message = str(load_error())

    assert "YEC_NOTIFICATION_CHANNELS: not valid JSON" in message
    assert TEAMS_SIG not in message


def test_secret_pasted_into_the_wrong_field_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    pasted = "Xy8Q~provisioning.secret_value-0123456789"
    monkeypatch.setenv("YEC_ENTRA__CLIENT_ID", pasted)

    message = str(load_error())

    assert "YEC_ENTRA__CLIENT_ID" in message
    assert pasted not in message


# --- provisioning identity ------------------------------------------------------------------------


def test_provisioning_identity_names_every_missing_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings().entra.require_provisioning_identity()

    message = str(info.value)
    assert "YEC_ENTRA__TENANT_ID" in message
    assert "YEC_ENTRA__CLIENT_ID" in message
    assert "YEC_ENTRA__CLIENT_SECRET or YEC_ENTRA__CERTIFICATE_PATH" in message


def test_provisioning_identity_names_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEC_ENTRA__TENANT_ID", TENANT_ID)

    with pytest.raises(SettingsError) as info:
        load_settings().entra.require_provisioning_identity()

    message = str(info.value)
    assert "YEC_ENTRA__TENANT_ID" not in message
    assert "YEC_ENTRA__CLIENT_ID" in message
    assert "YEC_ENTRA__CLIENT_SECRET or YEC_ENTRA__CERTIFICATE_PATH" in message


def test_provisioning_identity_complete_with_secret_or_certificate(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    set_env(monkeypatch, YEC_ENTRA__TENANT_ID=TENANT_ID, YEC_ENTRA__CLIENT_ID=CLIENT_ID)
    monkeypatch.setenv("YEC_ENTRA__CLIENT_SECRET", "provisioning-client-secret-value")
    load_settings().entra.require_provisioning_identity()

    pem = isolated_env / "provisioning.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.delenv("YEC_ENTRA__CLIENT_SECRET")
    monkeypatch.setenv("YEC_ENTRA__CERTIFICATE_PATH", str(pem))
    settings = load_settings()
    settings.entra.require_provisioning_identity()
    assert settings.entra.certificate_path == pem


def test_secret_and_certificate_together_are_rejected(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    pem = isolated_env / "provisioning.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n")
    set_env(
        monkeypatch, YEC_ENTRA__CLIENT_SECRET="provisioning-client-secret-value", YEC_ENTRA__CERTIFICATE_PATH=str(pem)
    )

    message = str(load_error())

    assert "YEC_ENTRA" in message and "not both" in message
    assert "provisioning-client-secret-value" not in message


# --- encryption keys -----------------------------------------------------------------------------


def test_missing_encryption_keys_point_to_generate_key() -> None:
    settings = load_settings()

    with pytest.raises(SettingsError) as info:
        _ = settings.keys

    assert "YEC_ENCRYPTION_KEYS is not set" in str(info.value)
    assert "starter.py generate-key" in str(info.value)


async def test_first_key_encrypts_and_all_keys_decrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEC_ENCRYPTION_KEYS", f"new:{b64(NEW_KEY)} , old:{b64(OLD_KEY)},")

    keys = load_settings().keys

    assert list(keys) == ["new", "old"]
    assert keys == {"new": NEW_KEY, "old": OLD_KEY}
    old_payload = (await EncryptionCodec({"old": OLD_KEY}).encode([Payload(data=b"x")]))[0]
    codec = EncryptionCodec(keys)
    (encoded,) = await codec.encode([Payload(data=b"x")])
    assert encoded.metadata["encryption-key-id"] == b"new"
    assert await codec.decode([old_payload]) == [Payload(data=b"x")]


# --- notification channels -----------------------------------------------------------------------


def test_channel_json_parses_into_typed_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    notification = [
        {
            "type": "webhook",
            "name": "ops-hook",
            "url": "https://hooks.example.com/yeastar",
            "signing_secret": SIGNING_SECRET,
        },
        {"type": "teams", "name": "it-teams", "url": TEAMS_URL},
        {"type": "slack", "name": "it-slack", "url": "https://hooks.slack.com/services/T0/B0/xyz"},
    ]
    escalation = [
        {
            "type": "email",
            "name": "it-mail",
            "host": "smtp.example.com",
            "username": "pbx-bot",
            "password": "smtp-password-value",
            "sender": "PBX connector <pbx-bot@example.com>",
            "recipients": ["it-admins@example.com"],
        },
        {"type": "webhook", "name": "local", "url": "http://127.0.0.1:9000/hook", "signing_secret": SIGNING_SECRET},
    ]
    set_env(
        monkeypatch,
        YEC_NOTIFICATION_CHANNELS=json.dumps(notification),
        YEC_ESCALATION_CHANNELS=json.dumps(escalation),
    )

    settings = load_settings()

    webhook, teams, slack = settings.notification_channels
    assert isinstance(webhook, WebhookChannelConfig)
    assert webhook.url == "https://hooks.example.com/yeastar"
    assert webhook.signing_secret.get_secret_value() == SIGNING_SECRET
    assert isinstance(teams, TeamsWorkflowsChannelConfig)
    assert isinstance(teams.url, SecretStr) and teams.url.get_secret_value() == TEAMS_URL
    assert isinstance(slack, SlackChannelConfig)
    assert slack.name == "it-slack"
    email, local = settings.escalation_channels
    assert isinstance(email, EmailChannelConfig)
    assert (email.host, email.port, email.starttls) == ("smtp.example.com", 587, True)
    assert email.password is not None and email.password.get_secret_value() == "smtp-password-value"
    assert email.recipients == ["it-admins@example.com"]
    assert isinstance(local, WebhookChannelConfig) and local.url == "http://127.0.0.1:9000/hook"
    assert TEAMS_SIG not in repr(settings) and SIGNING_SECRET not in repr(settings)


def test_channel_names_must_be_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    channel = {"type": "slack", "name": "dup", "url": "https://hooks.slack.com/services/T0/B0/xyz"}
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", json.dumps([channel, channel]))

    message = str(load_error())

    assert "YEC_NOTIFICATION_CHANNELS" in message and "repeated: dup" in message


def test_settings_from_env_reads_a_mapping_like_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YEC_ENTRA__TENANT_ID", raising=False)
    settings = settings_from_env(
        {
            "YEC_ENTRA__TENANT_ID": "11111111-1111-4111-8111-111111111111",
            "YEC_TEMPORAL__NAMESPACE": "ops",
            "HOME": "/x",
        },
        secret_lifetime_days=90,
    )
    assert settings.entra.tenant_id == "11111111-1111-4111-8111-111111111111"
    assert settings.temporal.namespace == "ops" and settings.secret_lifetime_days == 90
    assert "YEC_ENTRA__TENANT_ID" not in os.environ


# --- secrets from files, the secret store's settings -------------------------------------------


def test_secrets_come_from_files_named_like_their_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Docker secrets: /run/secrets/<VARIABLE>, here YEC_SECRETS_DIR; the environment still wins."""
    folder = tmp_path / "run-secrets"
    folder.mkdir()
    (folder / "YEC_ENTRA__CLIENT_SECRET").write_text("from-a-file~secret\n")
    (folder / "YEC_SECRET_STORE__KEYS").write_text(f"store:{b64(NEW_KEY)}")
    (folder / "YEC_ENCRYPTION_KEYS").write_text(f"file:{b64(OLD_KEY)}")
    set_env(monkeypatch, YEC_SECRETS_DIR=str(folder), YEC_ENCRYPTION_KEYS=f"env:{b64(NEW_KEY)}")

    settings = load_settings()

    assert settings.entra.client_secret is not None
    assert settings.entra.client_secret.get_secret_value() == "from-a-file~secret"  # the newline stripped
    assert settings.secret_store.local_keys() == {"store": NEW_KEY}
    assert list(settings.keys) == ["env"]


def test_the_local_store_needs_keys_of_its_own() -> None:
    settings = load_settings(encryption_keys=f"payload:{b64(NEW_KEY)}")

    with pytest.raises(SettingsError, match=r"YEC_SECRET_STORE__KEYS is not set.*generate-key --for store"):
        settings.secret_store.local_keys()


def test_key_vault_backend_needs_an_https_vault_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, YEC_SECRET_STORE__BACKEND="azure-key-vault")
    assert "backend azure-key-vault needs vault_url" in str(load_error())

    set_env(monkeypatch, YEC_SECRET_STORE__VAULT_URL="http://vault.example")
    assert "YEC_SECRET_STORE__VAULT_URL: Value error, must be an https:// URL" in str(load_error())


def test_a_malformed_store_key_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_looking = b64(b"s" * 16)
    set_env(monkeypatch, YEC_SECRET_STORE__KEYS=f"short:{secret_looking}")

    message = str(load_error())

    assert "YEC_SECRET_STORE__KEYS" in message and "must be 32 bytes" in message
    assert secret_looking not in message


@pytest.mark.parametrize(
    "variable",
    [
        "YEC_WEB__OPERATOR_TOKEN",
        "YEC_ENTRA__CLIENT_SECRET",
        "YEC_WEB__LINK_SECRET",
        "YEC_SECRET_STORE__KEYS",
        "YEC_TEMPORAL__API_KEY",
    ],
)
def test_an_empty_secret_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """An empty Docker secret file or `X=` in .env: an empty operator token would open the console."""
    set_env(monkeypatch, **{variable: "  "})

    assert f"{variable}: Value error, must not be empty" in str(load_error())
