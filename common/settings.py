"""All configuration, from environment variables (prefix ``YEC_``) and an optional ``.env`` file.

Nested groups use ``__``: ``YEC_ENTRA__TENANT_ID``, ``YEC_TEMPORAL__ADDRESS``. Secret-bearing fields
are ``SecretStr`` so they never print. A bad value fails at start-up with one message naming every
bad field (:func:`load_settings`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from clients.retry import RetryConfig
from models.integration import MAX_SECRET_LIFETIME_DAYS, Guid, LifecycleOptions
from notifications.config import ChannelList


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("must be an https:// URL")
    return value.rstrip("/")


def _existing_file(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


def _not_empty(value: SecretStr) -> SecretStr:
    # An empty file or `X=` in .env must not become a valid empty password (an empty operator token
    # would let anyone into the console).
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty (unset it instead)")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Secret = Annotated[SecretStr, AfterValidator(_not_empty)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]


class TemporalSettings(BaseModel):
    """Where the Temporal service is. The default is the embedded dev server on this machine."""

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "yeastar-entra"
    tls_cert: ExistingFile | None = None
    tls_key: ExistingFile | None = None
    tls_ca: ExistingFile | None = None
    api_key: Secret | None = None
    # Bound on cached workflow runs per worker, so memory does not grow with the fleet: each cached
    # run costs ~0.4 MB (bench/idle_fleet.py); 250 keeps an idle worker near 230 MB at any fleet size.
    max_cached_workflows: int = Field(default=250, ge=0)
    # What this worker process runs: both (the default), or only one side, to scale them apart.
    worker_role: Literal["all", "workflows", "activities"] = "all"

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TemporalSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together (mTLS client certificate)")
        return self

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_cert or self.tls_ca or self.api_key)


class EntraSettings(BaseModel):
    """How to reach Microsoft Entra ID and Graph, and the provisioning identity that calls Graph.

    National clouds: e.g. ``authority_host=https://login.microsoftonline.us`` and
    ``graph_base_url=https://graph.microsoft.us``.
    """

    authority_host: HttpsUrl = "https://login.microsoftonline.com"
    graph_base_url: HttpsUrl = "https://graph.microsoft.com"
    # CA bundle for both hosts (the simulators' local CA); None means the system trust store.
    ca_bundle: ExistingFile | None = None
    # False only for non-Microsoft hosts such as the simulators (MSAL instance discovery).
    instance_discovery: bool = True
    tenant_id: Guid | None = None
    client_id: Guid | None = None
    client_secret: Secret | None = None
    # PEM file holding the private key and the certificate uploaded to the provisioning app.
    certificate_path: ExistingFile | None = None
    # Calls one Graph step makes for a request that keeps failing (5xx, dropped connection) before
    # the step fails and Temporal retries the whole step (for up to 30 minutes).
    transient_attempts: int = Field(default=6, ge=1, le=20)

    @property
    def retry(self) -> RetryConfig:
        return RetryConfig(max_attempts=self.transient_attempts)

    @model_validator(mode="after")
    def _one_credential(self) -> EntraSettings:
        if self.client_secret is not None and self.certificate_path is not None:
            raise ValueError("set either client_secret or certificate_path for the provisioning app, not both")
        return self

    def require_provisioning_identity(self) -> None:
        """Raise :class:`SettingsError` unless tenant, client ID and one credential are set."""
        missing = [f"YEC_ENTRA__{name.upper()}" for name in ("tenant_id", "client_id") if getattr(self, name) is None]
        if self.client_secret is None and self.certificate_path is None:
            missing.append("YEC_ENTRA__CLIENT_SECRET or YEC_ENTRA__CERTIFICATE_PATH")
        if missing:
            raise SettingsError(["provisioning identity incomplete, missing: " + ", ".join(missing)])


class YeastarSettings(BaseModel):
    """Optional Yeastar P-Series OpenAPI credentials (PBX portal > Integrations > API)."""

    base_url: HttpsUrl | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    ca_bundle: ExistingFile | None = None

    @model_validator(mode="after")
    def _all_or_nothing(self) -> YeastarSettings:
        given = [self.base_url, self.client_id, self.client_secret]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError("base_url, client_id and client_secret must be set together")
        return self

    @property
    def configured(self) -> bool:
        return self.base_url is not None


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    loopback = (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError("must be an https:// URL (http:// only for localhost)")
    return value.rstrip("/")


class WebSettings(BaseModel):
    """The web app (`python web.py`): administrator pages reached by signed links, the operator console
    and the Temporal UI's codec endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # The address people use to reach it: the links in cards and reminders start with this.
    base_url: Annotated[str, AfterValidator(_web_url)] = "http://127.0.0.1:8080"
    # Serve HTTPS with this certificate and key (PEM); plain HTTP otherwise (behind a TLS proxy).
    tls_cert: ExistingFile | None = None
    tls_key: ExistingFile | None = None
    # Signs the administrators' links and the console's sessions; derived from the first encryption
    # key when unset (one-way: the links' key never opens the payloads).
    link_secret: Secret | None = None
    link_lifetime: timedelta = timedelta(days=7)
    # Console sign-in: a static token (the demo's default), and/or Microsoft Entra ID (OpenID Connect,
    # authorization code with PKCE) for members of one group of the operators' tenant.
    operator_token: Secret | None = None
    oidc_tenant_id: str | None = None
    oidc_client_id: Guid | None = None
    oidc_client_secret: Secret | None = None
    oidc_allowed_group: Guid | None = None
    # The Temporal UI that may call the codec endpoint from the browser (CORS).
    temporal_ui_origin: str = "http://localhost:8233"
    # Secret reveals per client address and integration, per 10 minutes.
    reveals_per_10_minutes: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        oidc = (self.oidc_tenant_id, self.oidc_client_id, self.oidc_client_secret, self.oidc_allowed_group)
        if any(v is not None for v in oidc) and not all(v is not None for v in oidc):
            raise ValueError("oidc_tenant_id, oidc_client_id, oidc_client_secret and oidc_allowed_group go together")
        return self

    @property
    def oidc_configured(self) -> bool:
        return self.oidc_client_id is not None


class SecretStoreSettings(BaseModel):
    """Where client-secret values live (common/secret_store.py). Every worker, the web app and the CLI
    must open the same store: several hosts need ``azure-key-vault`` (or one shared data volume)."""

    backend: Literal["local", "azure-key-vault"] = "local"
    # local: AES-256-GCM keys for the store's files, "keyid:base64key,..." like YEC_ENCRYPTION_KEYS but
    # never the same keys, so one leaked key can't open both the payloads and the secrets.
    keys: Secret | None = None
    # azure-key-vault: the vault, and who the service is to it: the provisioning app (its secret or
    # certificate, YEC_ENTRA__*) or the Azure managed identity of the machine it runs on.
    vault_url: HttpsUrl | None = None
    credential: Literal["provisioning-app", "managed-identity"] = "provisioning-app"
    managed_identity_client_id: str | None = None
    # CA bundle for the vault's host (a simulator's local CA); None means the system trust store.
    ca_bundle: ExistingFile | None = None
    # Purge a deleted secret at once instead of leaving it soft-deleted for the vault's retention
    # (needs the purge permission; impossible when the vault has purge protection).
    purge_on_delete: bool = False

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_encryption_keys(value)
        return value

    @model_validator(mode="after")
    def _backend_complete(self) -> SecretStoreSettings:
        if self.backend == "azure-key-vault" and self.vault_url is None:
            raise ValueError("backend azure-key-vault needs vault_url (https://<name>.vault.azure.net)")
        return self

    def local_keys(self) -> dict[str, bytes]:
        """The local store's keys by key ID, active key first. Raises SettingsError if none are set."""
        if self.keys is None:
            raise SettingsError(
                ["YEC_SECRET_STORE__KEYS is not set (generate one with: python starter.py generate-key --for store)"]
            )
        return parse_encryption_keys(self.keys)


class MetricsSettings(BaseModel):
    """The worker's HTTP endpoint for Prometheus (``/metrics``) and health checks (``/healthz``)."""

    host: str = "127.0.0.1"
    # 0 turns the endpoint (and the SDK's metrics) off.
    port: int = Field(default=9464, ge=0, le=65535)
    # The Temporal SDK serves its own metrics here (loopback only); /metrics includes them.
    sdk_port: int = Field(default=9465, ge=1, le=65535)
    # How often the fleet gauges (phases, expiries, pending human actions) are read from Temporal.
    fleet_refresh_interval: timedelta = timedelta(minutes=1)

    @property
    def enabled(self) -> bool:
        return self.port != 0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YEC_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        # A rejected value may be a secret: errors name the field, never repeat the input.
        hide_input_in_errors=True,
        # Docker / Kubernetes secrets: a file per setting, named like its variable
        # (/run/secrets/YEC_ENTRA__CLIENT_SECRET); the environment and .env take precedence.
        secrets_dir="/run/secrets",
        secrets_dir_missing="ok",
        secrets_nested_delimiter="__",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, NestedSecretsSettingsSource(file_secret_settings)

    temporal: TemporalSettings = TemporalSettings()
    entra: EntraSettings = EntraSettings()
    yeastar: YeastarSettings = YeastarSettings()
    web: WebSettings = WebSettings()
    secret_store: SecretStoreSettings = SecretStoreSettings()
    metrics: MetricsSettings = MetricsSettings()

    data_dir: Path = Path(".data")
    secret_lifetime_days: int = Field(default=180, ge=1, le=MAX_SECRET_LIFETIME_DAYS)
    # Days before secret expiry at which a reminder goes out; 0 means "at expiry".
    reminder_offsets_days: list[int] = [30, 14, 7, 3, 1, 0]
    # Durations are ISO 8601 ("P1D", "PT30S").
    # While a human step is pending, remind this often.
    human_reminder_interval: timedelta = timedelta(days=1)
    # Rotation: how often (None: half the secret lifetime); how often sign-in logs are read during a
    # cut-over; how long the old key must stay unused; how long to wait when sign-ins are unreadable.
    rotation_interval: timedelta | None = None
    sign_in_poll_interval: timedelta = timedelta(minutes=10)
    sign_in_settle_time: timedelta = timedelta(minutes=15)
    cutover_grace_period: timedelta = timedelta(hours=1)

    # Payload encryption keys (the codec): "keyid:base64key,keyid2:base64key". The first encrypts; all
    # decrypt, so a key can be rotated by putting the new one first. The secret store has its own.
    encryption_keys: Secret | None = None

    # Where reminders go (JSON lists, see notifications/config.py); escalation after
    # `escalate_after_reminders` unanswered reminders about the same pending action.
    notification_channels: ChannelList = []
    escalation_channels: ChannelList = []
    escalate_after_reminders: int = Field(default=3, ge=1)

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @field_validator("encryption_keys")
    @classmethod
    def _valid_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_encryption_keys(value)
        return value

    @field_validator("human_reminder_interval", "rotation_interval", "sign_in_poll_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("reminder_offsets_days")
    @classmethod
    def _offsets_not_negative(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("days before expiry must not be negative")
        return value

    @property
    def secret_lifetime(self) -> timedelta:
        return timedelta(days=self.secret_lifetime_days)

    def lifecycle_options(self, lifetime_days: int | None = None) -> LifecycleOptions:
        """The settings a workflow captures at start, so a running one is unaffected by later edits."""
        return LifecycleOptions(
            secret_lifetime=timedelta(days=lifetime_days or self.secret_lifetime_days),
            reminder_offsets=[timedelta(days=d) for d in self.reminder_offsets_days],
            escalate_after_reminders=self.escalate_after_reminders,
            human_reminder_interval=self.human_reminder_interval,
            rotation_interval=self.rotation_interval,
            sign_in_poll_interval=self.sign_in_poll_interval,
            sign_in_settle_time=self.sign_in_settle_time,
            cutover_grace_period=self.cutover_grace_period,
        )

    @cached_property
    def keys(self) -> dict[str, bytes]:
        """Encryption keys by key ID, active key first. Raises SettingsError if none are set."""
        if self.encryption_keys is None:
            raise SettingsError(["YEC_ENCRYPTION_KEYS is not set (generate one with: python starter.py generate-key)"])
        return parse_encryption_keys(self.encryption_keys)


def parse_encryption_keys(raw: SecretStr) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    # Errors name entries by position, never by content: a swapped "key:id" would echo the key.
    for number, item in enumerate(filter(None, (part.strip() for part in raw.get_secret_value().split(","))), 1):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ValueError(f"entry {number} must look like keyid:base64key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError(f"entry {number}: the key is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"entry {number}: the key must be 32 bytes (AES-256), got {len(key)}")
        keys[key_id] = key
    if not keys:
        raise ValueError("encryption_keys is empty")
    return keys


class SettingsError(Exception):
    """Configuration is unusable; ``problems`` holds one line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's error into one message that names every bad field."""
    if secrets_dir := os.environ.get("YEC_SECRETS_DIR"):  # files per setting elsewhere than /run/secrets
        overrides.setdefault("_secrets_dir", secrets_dir)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticSettingsError as exc:
        # Raised for a value that is not even JSON (e.g. a typo in YEC_NOTIFICATION_CHANNELS). Its text
        # is 'error parsing value for field "x" from source "y"'; the value itself is not repeated.
        match = re.search(r'field "([^"]+)"', str(exc))
        name = "YEC_" + match.group(1).upper() if match else "a setting"
        raise SettingsError([f"{name}: not valid JSON"]) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = "YEC_" + "__".join(str(p).upper() for p in err["loc"] if not isinstance(p, int))
            problems.append(f"{field}: {err['msg']}")
        raise SettingsError(problems) from None


def settings_from_env(env: Mapping[str, str], **overrides: object) -> Settings:
    """Settings from a mapping of YEC_* variables, as if it were the environment, without touching
    os.environ (benchmarks and tools that run several configurations in one process)."""
    nested: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("YEC_"):
            continue
        *groups, field = name.removeprefix("YEC_").lower().split("__")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[field] = value
    return load_settings(**{**nested, **overrides})
