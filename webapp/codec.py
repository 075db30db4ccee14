"""The codec endpoint the Temporal UI calls to show decoded payloads (POST /codec/encode|decode with
{"payloads": [...]}, as samples-python's encryption/codec_server.py). Operators only: the console's
session cookie (the UI sends credentials when TEMPORAL_CODEC_INCLUDE_CREDENTIALS is true) or the
operator token as a bearer token; CORS for the UI's origin."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from common.codec import EncryptionCodec, UnreadablePayload
from webapp.context import web_context


def _cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    origin = web_context(request).settings.web.temporal_ui_origin
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, X-Namespace, Authorization",
            "Vary": "Origin",
        }
    )
    return response


def _is_operator(request: web.Request) -> bool:
    context = web_context(request)
    if context.sessions.operator(request) is not None:
        return True
    token = context.settings.web.operator_token
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return (
        token is not None and bool(bearer) and hmac.compare_digest(bearer.encode(), token.get_secret_value().encode())
    )


def _handler(
    convert: Callable[[EncryptionCodec, Sequence[Payload]], Awaitable[list[Payload]]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return _cors(request, web.Response())
        if not _is_operator(request):
            return _cors(request, web.json_response({"error": "operators only: sign in to the console"}, status=401))
        payloads = json_format.Parse(await request.text(), Payloads())
        try:
            converted = await convert(EncryptionCodec(web_context(request).settings.keys), payloads.payloads)
        except UnreadablePayload as exc:
            return _cors(request, web.json_response({"error": str(exc)}, status=400))
        body = json_format.MessageToJson(Payloads(payloads=converted))
        return _cors(request, web.Response(text=body, content_type="application/json"))

    return handle


def add_codec_routes(app: web.Application) -> None:
    encode = _handler(lambda codec, payloads: codec.encode(payloads))
    decode = _handler(lambda codec, payloads: codec.decode(payloads))
    for path, handler in (("/codec/encode", encode), ("/codec/decode", decode)):
        app.router.add_route("POST", path, handler)
        app.router.add_route("OPTIONS", path, handler)
