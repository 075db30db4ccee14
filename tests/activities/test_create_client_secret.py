"""create_client_secret reconciles by the operation tag on the credential, never by what a store lacks:
run against the Entra simulator with the real activity, its Graph client and a real store."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.provisioning import OPERATION_TAG, ProvisioningActivities
from common.key_vault_store import KeyVaultSecretStore
from common.secret_store import SecretStore, SecretStoreUnavailable, open_local_store
from common.settings import Settings
from models.activities import CreateSecretInput, RegisterInput
from models.integration import AppIds
from simulators.harness import RunningSimulators, running_simulators
from tests.conftest import settings_for

INTEGRATION = "acme-hq"
EXPIRES = datetime(2027, 6, 1, tzinfo=UTC)


@dataclass
class Setup:
    sims: RunningSimulators
    settings: Settings
    app: AppIds

    def passwords(self) -> list[tuple[str, str]]:
        app = self.sims.entra.state.application(self.app.application_object_id)
        assert app is not None
        return [(p.key_id, p.display_name or "") for p in app.password_credentials]

    def request(self, operation_id: str) -> CreateSecretInput:
        return CreateSecretInput(
            integration_id=INTEGRATION,
            tenant_id=self.app.tenant_id,
            application_object_id=self.app.application_object_id,
            operation_id=operation_id,
            description="Yeastar PBX acme-hq",
            expires_at=EXPIRES,
        )


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_simulators(tmp_path / "sims") as sims:
        settings = settings_for(sims, tmp_path / "data")
        activities = ProvisioningActivities(settings, open_local_store(settings))
        assert settings.entra.tenant_id is not None
        registered = await ActivityEnvironment().run(
            activities.register_application,
            RegisterInput(
                tenant_id=settings.entra.tenant_id,
                unique_name="yeastar-acme-hq",
                display_name="Yeastar P-Series PBX (acme-hq)",
                redirect_uri="https://acme.ras.yeastar.com/api/v1.0/openid/connect/entra",
            ),
        )
        await activities.close()
        yield Setup(sims, settings, registered.app)


async def create(setup: Setup, store: SecretStore, operation_id: str) -> str:
    activities = ProvisioningActivities(setup.settings, store)
    try:
        ref = await ActivityEnvironment().run(activities.create_client_secret, setup.request(operation_id))
    finally:
        await activities.close()
    return ref.key_id


async def test_a_retry_reuses_the_secret_its_earlier_attempt_stored(setup: Setup) -> None:
    store = open_local_store(setup.settings)
    first = await create(setup, store, "op-1")

    again = await create(setup, store, "op-1")

    assert again == first
    assert [key for key, _ in setup.passwords()] == [first]


async def test_a_tagged_secret_whose_value_was_never_stored_is_replaced(setup: Setup, tmp_path: Path) -> None:
    store = open_local_store(setup.settings)
    lost = await create(setup, store, "op-1")
    await store.delete(INTEGRATION, lost)  # as if the attempt died between Graph's answer and the store

    replacement = await create(setup, store, "op-1")

    assert replacement != lost
    assert setup.passwords() == [(replacement, f"Yeastar PBX acme-hq {OPERATION_TAG.format('op-1')}")]


async def test_credentials_of_other_operations_are_never_touched(setup: Setup) -> None:
    """A secret another operation (or a person) added stays, though this store has no value for it."""
    store = open_local_store(setup.settings)
    rotation = await create(setup, store, "rotation-1")
    await store.delete(INTEGRATION, rotation)

    onboarding = await create(setup, store, "onboarding-1")

    assert sorted(key for key, _ in setup.passwords()) == sorted([rotation, onboarding])


async def test_an_unreachable_store_fails_the_attempt_and_removes_nothing(setup: Setup) -> None:
    store = open_local_store(setup.settings)
    first = await create(setup, store, "op-1")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = KeyVaultSecretStore.from_settings(
        setup.settings.model_copy(
            update={
                "secret_store": setup.settings.secret_store.model_copy(
                    update={"backend": "azure-key-vault", "vault_url": f"https://127.0.0.1:{closed}"}
                )
            }
        )
    )

    with pytest.raises(SecretStoreUnavailable, match=r"unreachable|refused"):
        await create(setup, unreachable, "op-1")
    await unreachable.close()

    assert [key for key, _ in setup.passwords()] == [first]
    assert (await store.get(INTEGRATION, first)).get_secret_value()
