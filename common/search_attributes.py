"""Custom search attributes that make the fleet of integrations listable (never a secret in here)."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

INTEGRATION_ID = SearchAttributeKey.for_keyword("IntegrationId")
INTEGRATION_PHASE = SearchAttributeKey.for_keyword("IntegrationPhase")
TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
SECRET_EXPIRY = SearchAttributeKey.for_datetime("SecretExpiry")

ALL = (INTEGRATION_ID, INTEGRATION_PHASE, TENANT_ID, SECRET_EXPIRY)

# SQL visibility (PostgreSQL 12+, MySQL 8.0.17+, SQLite: the fleet deployment and the dev server) has a
# fixed number of columns per type for custom attributes in each namespace (Temporal's platform limits
# sheet); Elasticsearch has no such per-type limit. Every attribute added here must fit these.
SQL_VISIBILITY_LIMITS = {
    "BOOL": 3,
    "DATETIME": 3,
    "DOUBLE": 3,
    "INT": 3,
    "KEYWORD": 10,
    "KEYWORD_LIST": 3,
    "TEXT": 3,
}


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register every attribute up front."""
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_cli_type(key)}"]
    return flags


def _cli_type(key: SearchAttributeKey[Any]) -> str:
    # Enum names are INDEXED_VALUE_TYPE_KEYWORD / _DATETIME; the CLI wants Keyword / Datetime.
    return (
        IndexedValueType.Name(IndexedValueType.ValueType(key.indexed_value_type))
        .removeprefix("INDEXED_VALUE_TYPE_")
        .capitalize()
    )
