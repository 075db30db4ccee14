"""Looking for secret values where they must never be: event history (raw and decoded), search
attributes, status, logs."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from common.codec import EncryptionCodec


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload anywhere inside a protobuf message (repeated and map fields included), except
    search attributes: those are plaintext by design and scanned on their own."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            children: Iterable[object] = value.values()
        elif isinstance(value, Message):
            children = [value]
        else:  # a repeated field
            children = value
        for child in children:
            if isinstance(child, Payload):
                yield child
            elif isinstance(child, Message):
                yield from payloads_in(child)


async def decoded_payload_bytes(message: Message, codec: EncryptionCodec) -> list[bytes]:
    return [p.data for p in await codec.decode(list(payloads_in(message)))]


def variants(secret: str) -> list[bytes]:
    """The secret as it could appear: plain, JSON-escaped inside a string, base64."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), secret.replace("~", "\\u007e").encode()]


def leaks(secret: str, haystacks: Iterable[bytes]) -> list[int]:
    """Indexes of the haystacks that contain the secret in any form."""
    forms = variants(secret)
    return [i for i, hay in enumerate(haystacks) if any(form in hay for form in forms)]
