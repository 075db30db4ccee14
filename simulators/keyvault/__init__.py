"""Azure Key Vault (secrets data plane) simulator (HTTPS, aiohttp); its tokens come from the Entra simulator."""

from simulators.keyvault.config import API_VERSIONS, KeyVaultSimConfig
from simulators.keyvault.context import TokenIssuer
from simulators.keyvault.server import KeyVaultSimulator, start_keyvault_simulator

__all__ = ["API_VERSIONS", "KeyVaultSimConfig", "KeyVaultSimulator", "TokenIssuer", "start_keyvault_simulator"]
