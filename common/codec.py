"""Payload encryption for everything the workflows put into Temporal's event history.

Secrets never enter history in the first place (only references do); this codec is the second
line of defence for everything else (IDs, redirect URIs, error texts). AES-256-GCM, the key ID in
the payload metadata, several keys accepted for decryption so the active key can be rotated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
_NONCE_BYTES = 12


class UnreadablePayload(ValueError):
    """A payload this process can't decrypt: its key is not among this process's YEC_ENCRYPTION_KEYS."""

    def __init__(self, key_id: str, *, known: bool) -> None:
        self.key_id = key_id
        reason = (
            f"its key ID {key_id!r} is in YEC_ENCRYPTION_KEYS here, but it does not decrypt with that key (a "
            "different key under the same ID, or damaged data)"
            if known
            else f"it was encrypted with key ID {key_id!r}, which is not in YEC_ENCRYPTION_KEYS here"
        )
        super().__init__(
            f"can't decrypt the workflow's data: {reason} (this process and the worker must share the key; "
            "a new key goes first in the list, the old ones stay after it)"
        )


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._active_key_id = next(iter(keys))
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._active_key_id]
        key_id = self._active_key_id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            # The key ID is bound as associated data, so a payload can't be replayed under another key.
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), key_id)
            encoded.append(Payload(metadata={"encoding": ENCODING, "encryption-key-id": key_id}, data=data))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata["encryption-key-id"]
            cipher = self._ciphers.get(key_id.decode())
            if cipher is None:
                raise UnreadablePayload(key_id.decode(), known=False)
            nonce, ciphertext = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
            try:
                decoded.append(Payload.FromString(cipher.decrypt(nonce, ciphertext, key_id)))
            except InvalidTag:
                raise UnreadablePayload(key_id.decode(), known=True) from None
        return decoded
