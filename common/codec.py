"""Payload encryption for everything the workflows put into Temporal's event history.

Secrets never enter history in the first place (only references do); this codec is the second
line of defence for everything else (IDs, redirect URIs, error texts). AES-256-GCM, the key ID in
the payload metadata, several keys accepted for decryption so the active key can be rotated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
_NONCE_BYTES = 12


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
                raise ValueError(f"payload encrypted with unknown key ID {key_id.decode()!r}")
            nonce, ciphertext = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
            decoded.append(Payload.FromString(cipher.decrypt(nonce, ciphertext, key_id)))
        return decoded
