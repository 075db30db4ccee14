"""The ``azure-key-vault`` secret store: every worker, the web app and the CLI read the same vault.

One Key Vault secret per integration and key ID. Key Vault names allow only letters, digits and
hyphens, so the name is built from digests (``yec-<integration>-<key>``) and the readable IDs and the
expiry go into tags; ``expires_on`` is the credential's own expiry, so the vault shows what is stale.
Deletion is soft (the vault's retention applies) unless ``purge_on_delete``; a secret set again under
a soft-deleted name is recovered (or purged) first.

The SDK runs on aiohttp (azure-core's async transport), with the CA bundles from settings, and signs
in with azure-identity: the provisioning app's own secret or certificate, or a managed identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient
from pydantic import SecretStr

from common.logging import register_secret
from common.metrics import SECRET_STORE_ERRORS
from common.secret_store import SecretNotFound, SecretStoreUnavailable

if TYPE_CHECKING:
    from common.settings import Settings

T = TypeVar("T")

TAG_INTEGRATION = "integration-id"
TAG_KEY = "key-id"
TAG_EXPIRES = "expires-at"
TAG_MANAGED_BY = "managed-by"
MANAGED_BY = "yeastar-entra-connector"
_CONTENT_TYPE = "text/plain; Entra client secret"


def secret_name(integration_id: str, key_id: str) -> str:
    """A valid Key Vault secret name (``[0-9a-zA-Z-]{1,127}``) unique to the pair."""

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    return f"yec-{digest(integration_id)}-{digest(key_id)}"


def _ssl_context(*ca_bundles: Path | None) -> ssl.SSLContext:
    """Trust the system store plus any local CA (the simulators')."""
    context = ssl.create_default_context()
    for bundle in {b for b in ca_bundles if b is not None}:
        context.load_verify_locations(cafile=str(bundle))
    return context


class KeyVaultSecretStore:
    backend = "azure-key-vault"

    def __init__(
        self,
        vault_url: str,
        make_credential: Callable[[AioHttpTransport], AsyncTokenCredential],
        *,
        ssl_context: ssl.SSLContext,
        purge_on_delete: bool = False,
    ) -> None:
        self.location = vault_url
        self._make_credential = make_credential
        self._ssl_context = ssl_context
        self._purge_on_delete = purge_on_delete
        self._session: aiohttp.ClientSession | None = None
        self._credential: AsyncTokenCredential | None = None
        self._client: SecretClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyVaultSecretStore:
        store, entra = settings.secret_store, settings.entra
        assert store.vault_url is not None, "checked by SecretStoreSettings"

        def credential(transport: AioHttpTransport) -> AsyncTokenCredential:
            if store.credential == "managed-identity":
                return ManagedIdentityCredential(client_id=store.managed_identity_client_id, transport=transport)
            entra.require_provisioning_identity()
            assert entra.tenant_id is not None and entra.client_id is not None
            common = {
                "authority": entra.authority_host,
                "disable_instance_discovery": not entra.instance_discovery,
                "transport": transport,
            }
            if entra.certificate_path is not None:
                return CertificateCredential(
                    entra.tenant_id, entra.client_id, certificate_path=str(entra.certificate_path), **common
                )
            assert entra.client_secret is not None, "checked by require_provisioning_identity"
            return ClientSecretCredential(
                entra.tenant_id, entra.client_id, entra.client_secret.get_secret_value(), **common
            )

        return cls(
            store.vault_url,
            credential,
            ssl_context=_ssl_context(store.ca_bundle, entra.ca_bundle),
            purge_on_delete=store.purge_on_delete,
        )

    def _secrets(self) -> SecretClient:
        # Created on first use, inside the running event loop that aiohttp binds its session to.
        if self._client is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl_context))

            def transport() -> AioHttpTransport:
                return AioHttpTransport(session=self._session, session_owner=False)

            self._credential = self._make_credential(transport())
            self._client = SecretClient(
                self.location,
                self._credential,
                transport=transport(),
                # A vault outside *.vault.azure.net (a simulator, a private endpoint name) still gets its
                # token for the resource the challenge names.
                verify_challenge_resource=False,
            )
        return self._client

    async def _call(self, operation: str, call: Callable[[SecretClient], Awaitable[T]]) -> T:
        """Run one SDK call; anything but an answer about the secret itself becomes
        SecretStoreUnavailable, so no caller mistakes "can't ask" for "not there"."""
        try:
            return await call(self._secrets())
        except ResourceNotFoundError:
            raise
        except ClientAuthenticationError as exc:
            SECRET_STORE_ERRORS.labels(self.backend, operation).inc()
            raise SecretStoreUnavailable(
                f"Key Vault {self.location} refused the service's sign-in ({_reason(exc)}); check "
                "YEC_SECRET_STORE__CREDENTIAL and that the identity may use the vault"
            ) from None
        except HttpResponseError as exc:
            SECRET_STORE_ERRORS.labels(self.backend, operation).inc()
            advice = (
                "; give the service's identity the 'Key Vault Secrets Officer' role on the vault "
                "(or get/set/list/delete in its access policy)"
                if exc.status_code == 403
                else ""
            )
            raise SecretStoreUnavailable(
                f"Key Vault {self.location} answered {exc.status_code} to {operation} ({_reason(exc)}){advice}"
            ) from None
        except AzureError as exc:
            SECRET_STORE_ERRORS.labels(self.backend, operation).inc()
            raise SecretStoreUnavailable(f"Key Vault {self.location} unreachable ({type(exc).__name__})") from None

    async def put(self, integration_id: str, key_id: str, value: SecretStr, *, expires_at: datetime) -> None:
        name = secret_name(integration_id, key_id)
        plain = value.get_secret_value()
        register_secret(plain)
        tags = {
            TAG_INTEGRATION: integration_id,
            TAG_KEY: key_id,
            TAG_EXPIRES: expires_at.isoformat(),
            TAG_MANAGED_BY: MANAGED_BY,
        }

        async def set_secret(client: SecretClient) -> None:
            try:
                await client.set_secret(name, plain, tags=tags, expires_on=expires_at, content_type=_CONTENT_TYPE)
            except ResourceExistsError:
                # The name is soft-deleted (a retry after a delete): bring it back or clear it first.
                if self._purge_on_delete:
                    await client.purge_deleted_secret(name)
                else:
                    await client.recover_deleted_secret(name)
                await client.set_secret(name, plain, tags=tags, expires_on=expires_at, content_type=_CONTENT_TYPE)

        await self._call("put", set_secret)

    async def get(self, integration_id: str, key_id: str) -> SecretStr:
        name = secret_name(integration_id, key_id)
        try:
            secret = await self._call("get", lambda client: client.get_secret(name))
        except ResourceNotFoundError:
            raise SecretNotFound(
                f"no stored secret for integration {integration_id} key {key_id} in Key Vault {self.location}"
            ) from None
        if secret.value is None:
            raise SecretNotFound(
                f"Key Vault {self.location} holds no value for integration {integration_id} key {key_id}"
            )
        register_secret(secret.value)
        return SecretStr(secret.value)

    async def delete(self, integration_id: str, key_id: str) -> None:
        name = secret_name(integration_id, key_id)

        async def delete_secret(client: SecretClient) -> None:
            await client.delete_secret(name)  # waits until the vault finished the soft delete
            if self._purge_on_delete:
                await client.purge_deleted_secret(name)

        with contextlib.suppress(ResourceNotFoundError):  # already gone counts as done
            await self._call("delete", delete_secret)

    async def key_ids(self, integration_id: str) -> list[str]:
        async def tagged(client: SecretClient) -> list[str]:
            return sorted(
                [
                    tags[TAG_KEY]
                    async for properties in client.list_properties_of_secrets()
                    if (tags := properties.tags or {}).get(TAG_INTEGRATION) == integration_id and TAG_KEY in tags
                ]
            )

        return await self._call("list", tagged)

    async def check(self) -> None:
        """One page of the listing: proves the vault answers and the identity may list secrets."""

        async def first_page(client: SecretClient) -> None:
            async for _ in client.list_properties_of_secrets(max_page_size=1):
                break

        try:
            await self._call("check", first_page)
        except ResourceNotFoundError as exc:  # not a vault at that URL
            raise SecretStoreUnavailable(f"{self.location} is not a Key Vault ({_reason(exc)})") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._credential is not None:
            await self._credential.close()
        if self._session is not None:
            await self._session.close()
        self._client = self._credential = self._session = None


def _reason(exc: AzureError) -> str:
    """Key Vault's error code and message, without the SDK's multi-line dump of the response."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or str(exc.message or "").splitlines()[0]
    return f"{code}: {message}" if code else message
