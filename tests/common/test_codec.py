"""The AES-256-GCM payload codec: round trip, fresh nonce, key rotation, tamper detection; and the data
converter built by common.temporal (codec applied to payloads and failure attributes)."""

from __future__ import annotations

import base64

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from common.codec import ENCODING, EncryptionCodec, UnreadablePayload
from common.settings import Settings
from common.temporal import data_converter

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
PLAINTEXT = "integration acme-hq redirect https://pbx.example.com/sso"


def plain_payloads(*values: object) -> list[Payload]:
    return DataConverter.default.payload_converter.to_payloads(list(values))


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec({"old": OLD_KEY})


async def test_round_trip(codec: EncryptionCodec) -> None:
    originals = plain_payloads(PLAINTEXT, {"phase": "Connected", "days": [30, 14]}, None, b"\x00\xff")

    encoded = await codec.encode(originals)

    assert len(encoded) == len(originals)
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata["encryption-key-id"] == b"old"
    assert await codec.decode(encoded) == originals


async def test_ciphertext_is_fresh_and_hides_the_plaintext(codec: EncryptionCodec) -> None:
    (original,) = plain_payloads(PLAINTEXT)

    first, second = await codec.encode([original, original])

    assert first.data != second.data  # random nonce per payload
    assert first.data[:12] != second.data[:12]
    for payload in (first, second):
        wire = payload.SerializeToString()
        assert PLAINTEXT.encode() not in wire
        assert b"acme-hq" not in wire
        assert b"json/plain" not in wire  # the inner encoding is encrypted too


async def test_empty_sequence(codec: EncryptionCodec) -> None:
    assert await codec.encode([]) == []
    assert await codec.decode([]) == []


def test_at_least_one_key_is_required() -> None:
    with pytest.raises(ValueError, match="at least one encryption key"):
        EncryptionCodec({})


async def test_key_rotation(codec: EncryptionCodec) -> None:
    originals = plain_payloads(PLAINTEXT)
    under_old = await codec.encode(originals)
    rotated = EncryptionCodec({"new": NEW_KEY, "old": OLD_KEY})

    assert await rotated.decode(under_old) == originals  # history written before the rotation

    under_new = await rotated.encode(originals)
    assert under_new[0].metadata["encryption-key-id"] == b"new"
    assert await rotated.decode(under_new) == originals
    assert await EncryptionCodec({"new": NEW_KEY}).decode(under_new) == originals


async def test_unknown_key_id_is_a_clear_error(codec: EncryptionCodec) -> None:
    encoded = await codec.encode(plain_payloads(PLAINTEXT))

    with pytest.raises(UnreadablePayload, match="key ID 'old', which is not in YEC_ENCRYPTION_KEYS here") as caught:
        await EncryptionCodec({"new": NEW_KEY}).decode(encoded)
    assert caught.value.key_id == "old"


async def test_a_different_key_under_the_same_id_is_named(codec: EncryptionCodec) -> None:
    encoded = await codec.encode(plain_payloads(PLAINTEXT))

    with pytest.raises(UnreadablePayload, match="key ID 'old' is in YEC_ENCRYPTION_KEYS here, but it does not"):
        await EncryptionCodec({"old": NEW_KEY}).decode(encoded)


@pytest.mark.parametrize("position", [0, 11, 12, -1], ids=["nonce-start", "nonce-end", "ciphertext", "tag"])
async def test_tampered_data_is_rejected(codec: EncryptionCodec, position: int) -> None:
    (encoded,) = await codec.encode(plain_payloads(PLAINTEXT))
    data = bytearray(encoded.data)
    data[position] ^= 0x01
    tampered = Payload(metadata=dict(encoded.metadata), data=bytes(data))

    with pytest.raises(UnreadablePayload):
        await codec.decode([tampered])


async def test_truncated_data_is_rejected(codec: EncryptionCodec) -> None:
    (encoded,) = await codec.encode(plain_payloads(PLAINTEXT))

    with pytest.raises(UnreadablePayload):
        await codec.decode([Payload(metadata=dict(encoded.metadata), data=encoded.data[:-1])])


async def test_key_id_is_bound_to_the_ciphertext() -> None:
    # Same key bytes under two IDs: only the associated data (the key ID) differs.
    codec = EncryptionCodec({"a": OLD_KEY, "b": OLD_KEY})
    (encoded,) = await codec.encode(plain_payloads(PLAINTEXT))
    relabelled = Payload(metadata={**encoded.metadata, "encryption-key-id": b"b"}, data=encoded.data)

    with pytest.raises(UnreadablePayload):
        await codec.decode([relabelled])


async def test_foreign_payloads_pass_through(codec: EncryptionCodec) -> None:
    plain = plain_payloads(PLAINTEXT, 42)
    raw = Payload(metadata={"encoding": b"binary/plain"}, data=b"raw bytes")
    no_metadata = Payload(data=b"nothing")
    encrypted = await codec.encode(plain_payloads("secret-ish"))

    decoded = await codec.decode([plain[0], *encrypted, raw, no_metadata, plain[1]])

    assert decoded == [plain[0], *plain_payloads("secret-ish"), raw, no_metadata, plain[1]]


# --- the data converter every process builds (common/temporal.py) ------------------------------


class Reference(BaseModel):
    integration_id: str
    key_id: str
    hint: str


@pytest.fixture
def converter() -> DataConverter:
    return data_converter(Settings(encryption_keys=f"live:{base64.b64encode(NEW_KEY).decode()}"))


async def test_data_converter_encrypts_pydantic_values(converter: DataConverter) -> None:
    value = Reference(integration_id="acme-hq", key_id="6f1c0a8e", hint="Xy8")

    payloads = await converter.encode([value, "acme-hq"])

    assert all(p.metadata["encoding"] == ENCODING and p.metadata["encryption-key-id"] == b"live" for p in payloads)
    assert not any(b"acme-hq" in p.SerializeToString() for p in payloads)
    assert await converter.decode(payloads, [Reference, str]) == [value, "acme-hq"]


async def test_data_converter_encrypts_failure_messages(converter: DataConverter) -> None:
    failure = Failure()
    try:
        raise ApplicationError("redirect URI https://pbx.example.com/acme-hq rejected", type="InvalidRedirect")
    except ApplicationError as exc:
        await converter.encode_failure(exc, failure)

    assert b"acme-hq" not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING

    decoded = await converter.decode_failure(failure)

    assert isinstance(decoded, ApplicationError)
    assert decoded.message == "redirect URI https://pbx.example.com/acme-hq rejected"
    assert decoded.type == "InvalidRedirect"
