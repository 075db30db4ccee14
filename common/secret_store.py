"""Where client-secret values live. Workflows only ever hold a reference (integration + key ID).

Two backends behind one interface, chosen by ``YEC_SECRET_STORE__BACKEND``:

- ``local`` (the embedded default): one AES-256-GCM-encrypted file per secret under the data dir (0600
  files in 0700 directories, fsynced), with keys of its own (``YEC_SECRET_STORE__KEYS``), never the
  payload codec's. Every process of a deployment must see the same directory.
- ``azure-key-vault`` (common/key_vault_store.py): one Key Vault secret per integration and key ID, for
  workers on several hosts.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
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
_SUFFIX = ".secret"


class SecretNotFound(LookupError):
    """The store has no value for this reference (never created here, or already deleted)."""


class SecretStoreUnavailable(RuntimeError):
    """The store could not be asked (unreachable, refused access): nothing can be concluded about the
    secret, so callers retry rather than treat it as missing."""


class SecretStore(Protocol):
    # "local" or "azure-key-vault", and where it is (a directory, a vault URL): for messages.
    backend: str
    location: str

    async def put(self, integration_id: str, key_id: str, value: SecretStr, *, expires_at: datetime) -> None: ...
    async def get(self, integration_id: str, key_id: str) -> SecretStr: ...
    async def delete(self, integration_id: str, key_id: str) -> None: ...
    async def key_ids(self, integration_id: str) -> list[str]: ...
    async def check(self) -> None:
        """Raise :class:`SecretStoreUnavailable` unless the store can be read and written now."""
        ...

    async def close(self) -> None: ...


def open_secret_store(settings: Settings) -> SecretStore:
    """The store the worker writes, as every process of this deployment opens it."""
    if settings.secret_store.backend == "azure-key-vault":
        from common.key_vault_store import KeyVaultSecretStore

        return KeyVaultSecretStore.from_settings(settings)
    return open_local_store(settings)


def open_local_store(settings: Settings) -> LocalSecretStore:
    return LocalSecretStore(settings.data_dir / "secrets", settings.secret_store.local_keys())


@dataclass
class ReEncrypted:
    """What `secrets re-encrypt` did: files rewritten with the active key, files already on it, and
    files no configured key opens (left untouched)."""

    rewritten: int = 0
    current: int = 0
    unreadable: list[Path] = field(default_factory=list)


class LocalSecretStore:
    backend = "local"

    def __init__(self, directory: Path, keys: dict[str, bytes]) -> None:
        self.directory = directory
        self.location = str(directory.resolve())
        self._active_key_id = next(iter(keys))
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    def _path(self, integration_id: str, key_id: str) -> Path:
        for name in (integration_id, key_id):
            if not _SAFE_NAME.match(name):
                raise ValueError(f"unsafe name for the secret store: {name!r}")
        return self.directory / integration_id / f"{key_id}{_SUFFIX}"

    async def put(self, integration_id: str, key_id: str, value: SecretStr, *, expires_at: datetime) -> None:
        # The file needs no expiry: the workflow deletes it with the credential.
        path = self._path(integration_id, key_id)
        plain = value.get_secret_value()
        register_secret(plain)
        await asyncio.to_thread(write_private, path, self._seal(integration_id, key_id, plain), durable=True)

    def _seal(self, integration_id: str, key_id: str, plain: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        aad = f"{integration_id}/{key_id}".encode()
        sealed = nonce + self._ciphers[self._active_key_id].encrypt(nonce, plain.encode(), aad)
        return self._active_key_id.encode() + b"\n" + sealed

    async def get(self, integration_id: str, key_id: str) -> SecretStr:
        path = self._path(integration_id, key_id)
        try:
            blob = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise SecretNotFound(f"no stored secret for integration {integration_id} key {key_id}") from None
        plain = self._open(integration_id, key_id, blob, self._ciphers)
        register_secret(plain)
        return SecretStr(plain)

    @staticmethod
    def _open(integration_id: str, key_id: str, blob: bytes, ciphers: dict[str, AESGCM]) -> str:
        store_key_id, _, sealed = blob.partition(b"\n")
        cipher = ciphers.get(store_key_id.decode())
        if cipher is None:
            raise SecretNotFound(
                f"secret for key {key_id} is encrypted with store key {store_key_id.decode()!r}, which is not in "
                "YEC_SECRET_STORE__KEYS (put that key back; a file from before the store had keys of its own opens "
                "once with `python starter.py secrets re-encrypt`)"
            )
        aad = f"{integration_id}/{key_id}".encode()
        try:
            return cipher.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad).decode()
        except InvalidTag:
            raise SecretNotFound(f"stored secret for key {key_id} failed its integrity check") from None

    async def delete(self, integration_id: str, key_id: str) -> None:
        self._path(integration_id, key_id).unlink(missing_ok=True)

    async def key_ids(self, integration_id: str) -> list[str]:
        folder = self._path(integration_id, "probe").parent
        return sorted(p.name.removesuffix(_SUFFIX) for p in folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []

    async def check(self) -> None:
        def writable() -> None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise PermissionError(f"{self.location} is not writable by this user")

        try:
            await asyncio.to_thread(writable)
        except OSError as exc:
            raise SecretStoreUnavailable(f"local secret store at {self.location}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own file."""

    def re_encrypt(self, previous_keys: dict[str, bytes]) -> ReEncrypted:
        """Rewrite every file not sealed with the active key, with it. Files open with any of this store's
        keys or ``previous_keys`` (keys being retired, or the payload keys that sealed the store before it
        had its own); each rewrite is atomic and durable, so an interrupted run can just be repeated."""
        ciphers = {key_id: AESGCM(key) for key_id, key in previous_keys.items()} | self._ciphers
        done = ReEncrypted()
        for path in sorted(self.directory.glob(f"*/*{_SUFFIX}")):
            integration_id, key_id = path.parent.name, path.name.removesuffix(_SUFFIX)
            blob = path.read_bytes()
            if blob.partition(b"\n")[0].decode() == self._active_key_id:
                done.current += 1
                continue
            try:
                plain = self._open(integration_id, key_id, blob, ciphers)
            except SecretNotFound:
                done.unreadable.append(path)
                continue
            register_secret(plain)
            write_private(path, self._seal(integration_id, key_id, plain), durable=True)
            done.rewritten += 1
        return done
