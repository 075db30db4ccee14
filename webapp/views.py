"""HTML for the web app: one small layout, everything escaped, nothing loaded from elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from aiohttp import web

from models.integration import InstructionCard

e = escape


def page(title: str, body: str, *, status: int = 200, no_store: bool = False) -> web.Response:
    """A whole page. ``no_store`` for pages showing a secret (and every page of a signed link)."""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title><link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script>
</head><body><header><span class="brand">Yeastar PBX &harr; Microsoft Entra ID</span></header>
<main><h1>{e(title)}</h1>{body}</main></body></html>"""
    response = web.Response(text=html, content_type="text/html", status=status)
    if no_store:
        response.headers["Cache-Control"] = "no-store"
    return response


def steps(items: Iterable[str]) -> str:
    return "<ol class=steps>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ol>"


def copyable(label: str, value: str, field_id: str) -> str:
    return (
        f'<div class=value><label for="{e(field_id)}">{e(label)}</label>'
        f'<input id="{e(field_id)}" value="{e(value)}" readonly>'
        f'<button type=button class=copy data-copy="{e(field_id)}">Copy</button></div>'
    )


def form(action: str, csrf: str, inner: str, *, button: str, button_id: str, confirm: str | None = None) -> str:
    asks = f' data-confirm="{e(confirm)}"' if confirm else ""
    return (
        f'<form method=post action="{e(action)}"{asks}><input type=hidden name=csrf value="{e(csrf)}">'
        f'{inner}<button type=submit id="{e(button_id)}">{e(button)}</button></form>'
    )


def card_steps(card: InstructionCard | None) -> str:
    return steps(card.steps) if card else ""


def notice(text: str, kind: str = "info") -> str:
    return f'<p class="notice {e(kind)}" role=status>{e(text)}</p>'


def progress(url: str) -> str:
    """A box the page's script keeps up to date from ``url`` (JSON), every two seconds."""
    return f'<section id=progress data-progress="{e(url)}" aria-live=polite><p>Loading the progress…</p></section>'
