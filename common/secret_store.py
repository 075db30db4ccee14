"""Where client-secret values live. Workflows only ever hold a reference (integration + key ID).

The default store keeps one AES-256-GCM-encrypted file per secret under the data dir (0600 files in
0700 directories). ``SecretStore`` is the interface a vault-backed store would implement.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from common.files import write_private
from common.logging import register_secret

if TYPE_CHECKING:
    from common.settings import Settings

# Starts with a letter or digit, so "." and ".." (and hidden files) can never be a name.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NONCE_BYTES = 12


class SecretNotFound(LookupError):
    """The store has no value for this reference (never created here, or already deleted)."""


class SecretStore(Protocol):
    async def put(self, integration_id: str, key_id: str, value: SecretStr) -> None: ...
    async def get(self, integration_id: str, key_id: str) -> SecretStr: ...
    async def delete(self, integration_id: str, key_id: str) -> None: ...
    async def key_ids(self, integration_id: str) -> list[str]: ...


def open_secret_store(settings: Settings) -> LocalSecretStore:
    """The store the worker writes, as every process of this deployment opens it."""
    return LocalSecretStore(settings.data_dir / "secrets", settings.keys)


class LocalSecretStore:
    def __init__(self, directory: Path, keys: dict[str, bytes]) -> None:
        self.directory = directory
        self._active_key_id = next(iter(keys))
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    def _path(self, integration_id: str, key_id: str) -> Path:
        for name in (integration_id, key_id):
            if not _SAFE_NAME.match(name):
                raise ValueError(f"unsafe name for the secret store: {name!r}")
        return self.directory / integration_id / f"{key_id}.secret"

    async def put(self, integration_id: str, key_id: str, value: SecretStr) -> None:
        path = self._path(integration_id, key_id)
        plain = value.get_secret_value()
        register_secret(plain)
        nonce = os.urandom(_NONCE_BYTES)
        aad = f"{integration_id}/{key_id}".encode()
        sealed = nonce + self._ciphers[self._active_key_id].encrypt(nonce, plain.encode(), aad)
        blob = self._active_key_id.encode() + b"\n" + sealed
        await asyncio.to_thread(write_private, path, blob)

    async def get(self, integration_id: str, key_id: str) -> SecretStr:
        path = self._path(integration_id, key_id)
        try:
            blob = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise SecretNotFound(f"no stored secret for integration {integration_id} key {key_id}") from None
        store_key_id, _, sealed = blob.partition(b"\n")
        cipher = self._ciphers.get(store_key_id.decode())
        if cipher is None:
            raise SecretNotFound(
                f"secret for key {key_id} is encrypted with encryption key {store_key_id.decode()!r}, "
                "which is no longer configured in YEC_ENCRYPTION_KEYS"
            )
        aad = f"{integration_id}/{key_id}".encode()
        try:
            plain = cipher.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad).decode()
        except InvalidTag:
            raise SecretNotFound(f"stored secret for key {key_id} failed its integrity check") from None
        register_secret(plain)
        return SecretStr(plain)

    async def delete(self, integration_id: str, key_id: str) -> None:
        self._path(integration_id, key_id).unlink(missing_ok=True)

    async def key_ids(self, integration_id: str) -> list[str]:
        folder = self._path(integration_id, "probe").parent
        return sorted(p.stem for p in folder.glob("*.secret")) if folder.is_dir() else []
