"""KeyVaultSecretStore with the real azure-keyvault-secrets and azure-identity SDKs against the Key Vault
simulator over HTTPS: names, tags and expiry, soft delete and recovery, purge, and every way the vault
can refuse becoming SecretStoreUnavailable with the reason, never SecretNotFound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from common.key_vault_store import KeyVaultSecretStore, secret_name
from common.secret_store import SecretNotFound, SecretStoreUnavailable
from common.settings import SecretStoreSettings, Settings
from simulators.harness import RunningSimulators, running_simulators
from simulators.keyvault import KeyVaultSimConfig
from tests.conftest import settings_for

VALUE = "Kv8Q~client-secret-value.0123456789"
EXPIRES = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    async with running_simulators(tmp_path / "sim", keyvault=KeyVaultSimConfig(delete_delay_seconds=0.05)) as running:
        yield running


def vault_settings(sims: RunningSimulators, tmp_path: Path, **store: Any) -> Settings:
    """Settings as a deployment gets them (YEC_* variables), pointed at the simulated vault."""
    settings = settings_for(sims, tmp_path / "data")
    vault = SecretStoreSettings(
        backend="azure-key-vault", vault_url=sims.keyvault.url, ca_bundle=sims.ca.ca_file, **store
    )
    return settings.model_copy(update={"secret_store": vault})


def open_store(sims: RunningSimulators, tmp_path: Path, **store: Any) -> KeyVaultSecretStore:
    return KeyVaultSecretStore.from_settings(vault_settings(sims, tmp_path, **store))


@pytest.fixture
async def store(sims: RunningSimulators, tmp_path: Path) -> AsyncIterator[KeyVaultSecretStore]:
    opened = open_store(sims, tmp_path)
    yield opened
    await opened.close()


async def test_one_tagged_secret_per_integration_and_key(store: KeyVaultSecretStore, sims: RunningSimulators) -> None:
    await store.put("acme-hq", "6f1c0a8e-1", SecretStr(VALUE), expires_at=EXPIRES)
    await store.put("acme-hq", "6f1c0a8e-2", SecretStr("second-value-0123"), expires_at=EXPIRES)
    await store.put("other.pbx_1", "6f1c0a8e-1", SecretStr("third-value-0123"), expires_at=EXPIRES)

    assert (await store.get("acme-hq", "6f1c0a8e-1")).get_secret_value() == VALUE
    assert await store.key_ids("acme-hq") == ["6f1c0a8e-1", "6f1c0a8e-2"]
    assert await store.key_ids("other.pbx_1") == ["6f1c0a8e-1"]
    stored = sims.keyvault.state.secret(secret_name("acme-hq", "6f1c0a8e-1"))
    assert stored is not None
    latest = stored.latest
    assert latest.tags == {
        "integration-id": "acme-hq",
        "key-id": "6f1c0a8e-1",
        "expires-at": EXPIRES.isoformat(),
        "managed-by": "yeastar-entra-connector",
    }
    assert latest.expires == int(EXPIRES.timestamp())


async def test_missing_and_deleted_secrets_are_not_found(store: KeyVaultSecretStore, sims: RunningSimulators) -> None:
    with pytest.raises(SecretNotFound, match="no stored secret for integration acme-hq key nope in Key Vault"):
        await store.get("acme-hq", "nope")

    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    await store.delete("acme-hq", "k1")
    await store.delete("acme-hq", "k1")  # already gone counts as done

    with pytest.raises(SecretNotFound):
        await store.get("acme-hq", "k1")
    assert await store.key_ids("acme-hq") == []
    assert [d.secret.name for d in sims.keyvault.state.deleted_secrets()] == [secret_name("acme-hq", "k1")]


async def test_a_soft_deleted_name_is_recovered_then_set(store: KeyVaultSecretStore, sims: RunningSimulators) -> None:
    """A retried step stores a key its earlier attempt already deleted: Key Vault answers 409 until the
    name is recovered (or purged)."""
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    await store.delete("acme-hq", "k1")

    await store.put("acme-hq", "k1", SecretStr("the-new-value-0123"), expires_at=EXPIRES)

    assert (await store.get("acme-hq", "k1")).get_secret_value() == "the-new-value-0123"
    assert sims.keyvault.state.deleted_secrets() == []


async def test_purge_on_delete(sims: RunningSimulators, tmp_path: Path) -> None:
    store = open_store(sims, tmp_path, purge_on_delete=True)
    try:
        await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
        await store.delete("acme-hq", "k1")
        assert sims.keyvault.state.deleted_secrets() == []

        sims.keyvault.config.purge_protection = True
        await store.put("acme-hq", "k2", SecretStr(VALUE), expires_at=EXPIRES)
        with pytest.raises(SecretStoreUnavailable, match="answered 403 to delete"):
            await store.delete("acme-hq", "k2")
    finally:
        await store.close()


async def test_an_identity_the_vault_refuses(store: KeyVaultSecretStore, sims: RunningSimulators) -> None:
    sims.keyvault.config.allowed_app_ids = frozenset({"00000000-0000-4000-8000-000000000000"})

    for attempt in (store.get("acme-hq", "k1"), store.check()):
        with pytest.raises(SecretStoreUnavailable) as refused:
            await attempt
        assert "answered 403" in str(refused.value) and "Key Vault Secrets Officer" in str(refused.value)


async def test_throttling_is_waited_out(store: KeyVaultSecretStore, sims: RunningSimulators) -> None:
    sims.keyvault.config.retry_after_seconds = 0.1
    sims.keyvault.state.throttle_next = 2

    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)

    assert (await store.get("acme-hq", "k1")).get_secret_value() == VALUE
    assert sims.keyvault.state.throttle_next == 0


async def test_a_wrong_provisioning_secret_is_a_sign_in_problem(sims: RunningSimulators, tmp_path: Path) -> None:
    settings = vault_settings(sims, tmp_path)
    wrong = settings.entra.model_copy(update={"client_secret": SecretStr("not-the-secret-0123456789")})
    store = KeyVaultSecretStore.from_settings(settings.model_copy(update={"entra": wrong}))
    try:
        with pytest.raises(SecretStoreUnavailable, match="refused the service's sign-in") as refused:
            await store.check()
    finally:
        await store.close()
    assert "not-the-secret" not in str(refused.value)
