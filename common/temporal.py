"""The one way worker, CLI, tests and benchmarks build their Temporal client, so they can't disagree
on the data converter (pydantic + encryption codec + encoded failure attributes) or connection."""

from __future__ import annotations

import compileall
import dataclasses
import inspect
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from common import search_attributes
from common.codec import EncryptionCodec
from common.settings import Settings


def data_converter(settings: Settings) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(settings.keys),
        # Failure messages and stack traces go through the codec too (they could name IDs).
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def compile_workflow_code(workflow_classes: Iterable[type]) -> list[Path]:
    """Write bytecode for the modules defining ``workflow_classes``; returns those that could not be.

    The workflow sandbox re-imports a workflow's module for every workflow run it starts. With no
    up-to-date .pyc (PYTHONDONTWRITEBYTECODE, as in most container images) each of those imports
    compiles the source again: a quarter of the worker's CPU in bench/onboard_fleet.py. compileall
    writes despite that setting and skips files whose bytecode is current.
    """
    failed: list[Path] = []
    for source in sorted({Path(inspect.getfile(cls)) for cls in workflow_classes}):
        if not compileall.compile_file(source, quiet=2):
            failed.append(source)
    return failed


def _tls_config(settings: Settings) -> TLSConfig | bool:
    temporal = settings.temporal
    if not (temporal.tls_cert or temporal.tls_ca):
        return bool(temporal.api_key)  # Temporal Cloud API keys need TLS with the system roots
    return TLSConfig(
        server_root_ca_cert=temporal.tls_ca.read_bytes() if temporal.tls_ca else None,
        client_cert=temporal.tls_cert.read_bytes() if temporal.tls_cert else None,
        client_private_key=temporal.tls_key.read_bytes() if temporal.tls_key else None,
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """``runtime``: the worker's, which exports the SDK's metrics (monitoring.sdk_runtime)."""
    temporal = settings.temporal
    return await Client.connect(
        temporal.address,
        namespace=temporal.namespace,
        data_converter=data_converter(settings),
        tls=_tls_config(settings),
        api_key=temporal.api_key.get_secret_value() if temporal.api_key else None,
        runtime=runtime,
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the custom search attributes missing on this namespace; returns what was added.

    Works on the dev server and self-hosted clusters; Temporal Cloud manages them in its console.
    """
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search_attributes.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def exit_process(code: int = 0) -> NoReturn:
    """End a process that used a Temporal client, skipping interpreter teardown.

    The SDK's Rust runtime threads can outlive the event loop, and CPython's finalizer then aborts
    with "PyGILState_Release: thread state … must be current" (temporalio/sdk-python#300), turning a
    successful command into SIGABRT. All work is done by now, so flush and leave.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
