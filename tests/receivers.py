"""Real notification receivers on loopback sockets for tests: an aiohttp server that checks what each
receiver would (the signed webhook's HMAC and timestamp, the Teams Workflows envelope + Adaptive Card,
Slack's Block Kit limits) and records every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from notifications.receiver import InvalidWebhook, verify_webhook
from simulators.tls import LocalCA, server_ssl_context

SIGNING_SECRET = "whsec-test-0123456789abcdef"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
NOTIFICATION_FIELDS = {
    "notification_id",
    "integration_id",
    "kind",
    "severity",
    "title",
    "summary",
    "due",
    "next_action",
    "facts",
    "link",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


def webhook_problems(headers: dict[str, str], body: bytes) -> list[str]:
    """Verification with the reference receiver, plus the exact field set of the body."""
    try:
        verify_webhook(SIGNING_SECRET, CIMultiDict(headers), body)
    except InvalidWebhook as exc:
        return [str(exc)]
    document = json.loads(body)
    return [] if set(document) == NOTIFICATION_FIELDS else [f"fields {sorted(document)}"]


def teams_problems(document: dict[str, Any]) -> list[str]:
    attachments = document.get("attachments")
    if document.get("type") != "message" or not isinstance(attachments, list) or len(attachments) != 1:
        return ["not a message with one attachment"]
    attachment = attachments[0]
    card = attachment.get("content", {})
    problems = []
    if attachment.get("contentType") != ADAPTIVE or "contentUrl" not in attachment:
        problems.append(f"attachment {sorted(attachment)} {attachment.get('contentType')}")
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        problems.append("content is not an Adaptive Card 1.4")
    kinds = {block.get("type") for block in card.get("body", [])}
    if not {"TextBlock", "FactSet"} <= kinds:
        problems.append(f"body blocks {kinds}")
    if any(action.get("type") != "Action.OpenUrl" for action in card.get("actions", [])):
        problems.append("unexpected action type")
    return problems


def slack_problems(document: dict[str, Any]) -> list[str]:
    blocks = document.get("blocks")
    if not document.get("text") or not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return ["needs a text fallback and 1-50 blocks"]
    problems = []
    for block in blocks:
        text = block.get("text", {}).get("text", "")
        if block["type"] == "header" and (block["text"]["type"] != "plain_text" or len(text) > 150):
            problems.append("header must be plain_text of at most 150 characters")
        if block["type"] == "section":
            fields = block.get("fields", [])
            if len(text) > 3000 or len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                problems.append("section over Block Kit limits")
        if block["type"] not in {"header", "section", "context"}:
            problems.append(f"unexpected block {block['type']}")
    return problems


@dataclass
class Receiver:
    base_url: str  # https, certificate from the test CA
    http_url: str  # plain http on loopback
    requests: list[Received] = field(default_factory=list)

    def of(self, prefix: str) -> list[Received]:
        return [r for r in self.requests if r.path.startswith(prefix)]


def receiver_app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> Received:
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = Received(request.path_qs, headers, await request.read())
        receiver.requests.append(received)
        return received

    def verdict(problems: list[str], ok: web.Response) -> web.Response:
        return web.Response(status=400, text="; ".join(problems)) if problems else ok

    async def webhook(request: web.Request) -> web.Response:
        received = await record(request)
        problems = webhook_problems(received.headers, received.body)
        if problems and (problems[0] == "bad signature" or problems[0].startswith("stale")):
            return web.Response(status=401, text=problems[0])
        return verdict(problems, web.Response(status=204))

    async def teams(request: web.Request) -> web.Response:
        received = await record(request)
        return verdict(teams_problems(json.loads(received.body)), web.Response(status=202))

    async def slack(request: web.Request) -> web.Response:
        received = await record(request)
        return verdict(slack_problems(json.loads(received.body)), web.Response(text="ok"))

    async def status(request: web.Request) -> web.Response:
        # Echo the request URL and path, as some services do, to prove both are blanked out of errors.
        await record(request)
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code in (429, 503) else {}
        if 300 <= code < 400:
            headers["Location"] = "https://elsewhere.example/"
        return web.Response(status=code, headers=headers, text=f"no route {request.path} in {request.url}")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_post("/teams/{token:.*}", teams)
    app.router.add_post("/slack/{token:.*}", slack)
    app.router.add_post("/status/{code:\\d+}/{token:.*}", status)
    app.router.add_post("/slow/{seconds}", slow)
    return app


@asynccontextmanager
async def running_receiver(ca: LocalCA) -> AsyncIterator[Receiver]:
    """HTTPS (certificate from `ca`) and plain-http listeners on loopback, both recording."""
    receiver = Receiver("", "")
    runner = web.AppRunner(receiver_app(receiver))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(ca)).start()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    https_port, http_port = (address[1] for address in runner.addresses)
    receiver.base_url, receiver.http_url = f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}"
    yield receiver
    await runner.cleanup()
