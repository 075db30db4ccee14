"""Custom search attributes and the dev-server command line that registers them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType

from common import search_attributes
from common.dev_server import dev_server_command, temporal_cli

EXPECTED_FLAGS = [
    "--search-attribute",
    "IntegrationId=Keyword",
    "--search-attribute",
    "IntegrationPhase=Keyword",
    "--search-attribute",
    "TenantId=Keyword",
    "--search-attribute",
    "SecretExpiry=Datetime",
]


def test_dev_server_flags_are_exact() -> None:
    assert search_attributes.dev_server_flags() == EXPECTED_FLAGS


def test_attribute_names_and_types() -> None:
    assert [(key.name, key.indexed_value_type) for key in search_attributes.ALL] == [
        ("IntegrationId", SearchAttributeIndexedValueType.KEYWORD),
        ("IntegrationPhase", SearchAttributeIndexedValueType.KEYWORD),
        ("TenantId", SearchAttributeIndexedValueType.KEYWORD),
        ("SecretExpiry", SearchAttributeIndexedValueType.DATETIME),
    ]


def test_dev_server_command_registers_every_attribute(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"

    command = dev_server_command(data_dir, port=7300, ui_port=8300)

    assert command[0] == str(temporal_cli()) and Path(command[0]).exists()
    assert command[1:3] == ["server", "start-dev"]
    assert command[command.index("--db-filename") + 1] == str(data_dir / "temporal.sqlite")
    assert data_dir.is_dir()
    assert command[command.index("--ip") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "7300"
    assert command[command.index("--ui-port") + 1] == "8300"
    flags_at = command.index("--search-attribute")
    assert command[flags_at : flags_at + len(EXPECTED_FLAGS)] == EXPECTED_FLAGS


def test_headless_dev_server_has_no_ui(tmp_path: Path) -> None:
    command = dev_server_command(tmp_path, headless=True)

    assert command[-1] == "--headless"
    assert "--ui-port" not in command


def test_attributes_fit_sql_visibility_limits() -> None:
    """PostgreSQL-backed Temporal (docker-compose) must be able to hold every attribute we set."""
    used = Counter(SearchAttributeIndexedValueType(key.indexed_value_type).name for key in search_attributes.ALL)
    for value_type, count in used.items():
        assert count <= search_attributes.SQL_VISIBILITY_LIMITS[value_type], value_type
