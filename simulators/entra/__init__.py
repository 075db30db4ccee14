"""Microsoft Entra ID + Microsoft Graph simulator (HTTPS, aiohttp)."""

from simulators.entra.catalog import (
    CUSTOMER_DOMAIN,
    CUSTOMER_TENANT_ID,
    GRAPH_APP_ID,
    OPERATORS_GROUP_ID,
    PROVISIONING_APP_ID,
    SIM_TENANT_ID,
)
from simulators.entra.config import EntraSimConfig, ExtraTenant
from simulators.entra.server import EntraSimulator, start_entra_simulator

__all__ = [
    "CUSTOMER_DOMAIN",
    "CUSTOMER_TENANT_ID",
    "GRAPH_APP_ID",
    "OPERATORS_GROUP_ID",
    "PROVISIONING_APP_ID",
    "SIM_TENANT_ID",
    "EntraSimConfig",
    "EntraSimulator",
    "ExtraTenant",
    "start_entra_simulator",
]
