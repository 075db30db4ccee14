"""A whole onboarding, then a scan: the client secret (and the provisioning and PBX API secrets) must
not appear in raw or decoded event history, search attributes, the status query, or the logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.converter import DataConverter

from common.codec import EncryptionCodec
from common.logging import configure_logging
from common.secret_store import open_local_store
from models.integration import Phase
from tests.conftest import Harness, wait_for_phase
from tests.secret_scan import decoded_payload_bytes, leaks, payloads_in
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris
from workflows.integration import IntegrationWorkflow


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("DEBUG", "json", stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


async def test_no_secret_value_outside_the_secret_store(dev: Harness, captured_logs: io.StringIO) -> None:
    """On the dev server, so search attributes are real too."""
    async with dev.worker():
        handle = await dev.start(dev.onboard_input("hygiene", redirect_uris=await portal_redirect_uris(dev)))
        status = await connect_pbx_as_human(dev, handle)
        assert status.phase == Phase.CONNECTED and status.secret is not None
        history = History(events=(await handle.fetch_history()).events)
        description = await handle.describe()
        status_json = (await handle.query(IntegrationWorkflow.status)).model_dump_json().encode()

    store = open_local_store(dev.settings)
    client_secret = (await store.get("hygiene", status.secret.key_id)).get_secret_value()
    assert dev.settings.entra.client_secret is not None and dev.settings.yeastar.client_secret is not None
    secrets = {
        "client secret": client_secret,
        "provisioning secret": dev.settings.entra.client_secret.get_secret_value(),
        "PBX API secret": dev.settings.yeastar.client_secret.get_secret_value(),
    }

    codec = EncryptionCodec(dev.settings.keys)
    raw_payloads = [p.SerializeToString() for p in payloads_in(history)]
    decoded = await decoded_payload_bytes(history, codec)
    assert len(decoded) >= 15, "the scan must see the workflow's payloads"
    assert any(b"yeastar-pbx-hygiene" in d for d in decoded), "decoding works, so absence below means something"
    assert not any(b"yeastar-pbx-hygiene" in r for r in raw_payloads), "payloads are encrypted at rest"

    logs = captured_logs.getvalue()
    assert "client secret created" in logs and status.secret.key_id in logs, "log capture works"
    search_attrs = repr(description.typed_search_attributes).encode()
    assert b"hygiene" in search_attrs

    for name, value in secrets.items():
        assert not leaks(value, [history.SerializeToString()]), f"{name} in raw history"
        assert not leaks(value, decoded), f"{name} in decoded history payloads"
        assert not leaks(value, [search_attrs]), f"{name} in search attributes"
        assert not leaks(value, [status_json]), f"{name} in the status query"
        assert not leaks(value, [logs.encode()]), f"{name} in the logs"


async def test_history_is_unreadable_without_the_key(ts: Harness) -> None:
    """A client without our codec sees only ciphertext (the UI or CLI of whoever runs the cluster)."""
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("ciphertext"))
        # Idle before the worker stops: the test server never unlocks time skipping for an activity
        # that a stopping worker abandoned, which would stall the next test's env.sleep().
        await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
    plain_client = Client(ts.client.service_client, namespace=ts.client.namespace, data_converter=DataConverter.default)
    fetched = await plain_client.get_workflow_handle(handle.id).fetch_history()
    history = History(events=fetched.events)
    encodings = {p.metadata.get("encoding") for p in payloads_in(history)}
    assert encodings == {b"binary/encrypted"}
