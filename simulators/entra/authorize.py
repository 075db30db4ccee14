"""The browser leg of the OpenID Connect authorization code flow with PKCE (Microsoft identity platform
v2.0): ``GET /{tenant}/oauth2/v2.0/authorize`` shows a plain sign-in page; posting it checks the user and
``EntraSimConfig.user_password``, logs an interactive sign-in and sends the browser back to the redirect
URI with a single-use code, which the token endpoint redeems (``authorization_code`` grant, oauth.py).

As in Entra, a wrong tenant, client or redirect URI gets an error page (a browser is never sent to an
unverified address); every later problem goes back to the redirect URI as ``error`` and
``error_description``. Not simulated: single sign-on sessions (every request shows the page, and
``prompt=none`` answers login_required), consent prompts, the implicit and hybrid flows, and SPA or
public-client redirect URIs.
"""

from __future__ import annotations

import hmac
import html
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from simulators.entra.context import (
    AUTHORIZATION_CODE_LIFETIME,
    CORRELATION_ID_KEY,
    NOW_KEY,
    AuthorizationCode,
    SimContext,
    new_id,
    sim_of,
)
from simulators.entra.directory import record_sign_in
from simulators.entra.errors import OAuthError
from simulators.entra.oauth import check_tenant, client_app, missing_parameter
from simulators.entra.state import Application
from simulators.entra.tokens import client_info
from simulators.entra.validation import LOOPBACK_HOSTS

# The authorization request's parameters; the sign-in form carries them as hidden fields.
_PARAMETERS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "login_hint",
    "client_info",
)
_RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
_CHALLENGE_METHODS = frozenset({"S256", "plain"})
# RFC 7636: a verifier is 43 to 128 characters, so is a plain challenge; an S256 one is 43.
_CHALLENGE_LENGTHS = range(43, 129)
# An expired code is kept this long, so that a late redemption hears "expired" rather than "unknown".
_KEEP_EXPIRED_CODES = timedelta(days=1)
_PAGE_TITLE = "Sign in to your account"


@dataclass(frozen=True)
class _SignInFailure:
    aadsts: int
    failure_reason: str  # in the sign-in log
    message: str  # on the page


_UNKNOWN_USER = _SignInFailure(
    50034,
    "The user account does not exist in the directory.",
    "This username may be incorrect. Make sure you typed it correctly. Otherwise, contact your admin.",
)
_WRONG_PASSWORD = _SignInFailure(
    50126, "Error validating credentials due to invalid username or password.", "Your account or password is incorrect."
)


@dataclass(frozen=True)
class _Authorization:
    """A validated authorization request."""

    app: Application
    redirect_uri: str
    response_mode: str
    scopes: list[str]
    fields: dict[str, str]  # the request's parameters as sent

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


def html_page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A self-contained page (nothing loaded from elsewhere); ``body`` is HTML with its values escaped."""
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html", status=status)


def _hidden_inputs(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )


def _fields(params: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(params[name]) for name in _PARAMETERS if params.get(name)}


def _comparable(uri: str) -> str:
    """Entra ignores the port of an http loopback redirect URI when matching (RFC 8252 §7.3)."""
    parts = urlsplit(uri)
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return parts._replace(netloc=parts.hostname or "").geturl()
    return uri


def _client_and_redirect_uri(ctx: SimContext, fields: dict[str, str]) -> tuple[Application, str]:
    """The client and its redirect URI, checked before anything may be sent to that URI."""
    app = client_app(ctx, fields.get("client_id", ""))
    redirect_uri = fields.get("redirect_uri")
    if redirect_uri is None:
        raise OAuthError(400, "invalid_request", 900971, "No reply address provided.")
    registered = [str(u) for u in app.props.get("web", {}).get("redirectUris", [])]
    if not registered:
        raise OAuthError(400, "invalid_request", 500113, "No reply address is registered for the application.")
    if _comparable(redirect_uri) not in map(_comparable, registered):
        raise OAuthError(
            400,
            "invalid_request",
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
            f"configured for the application '{app.app_id}'. Make sure the redirect URI sent in the request "
            "matches one added to your application in the Azure portal. Navigate to "
            "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
        )
    return app, redirect_uri


def _authorization(app: Application, redirect_uri: str, fields: dict[str, str]) -> _Authorization:
    """Check the rest of the request; its errors can go back to the (verified) redirect URI."""
    response_mode = fields.get("response_mode", "query")
    if response_mode not in _RESPONSE_MODES:
        raise OAuthError(
            400,
            "invalid_request",
            70007,
            f"The provided value for the input parameter 'response_mode' is not valid: '{response_mode}'.",
        )
    response_type = fields.get("response_type")
    if response_type is None:
        raise missing_parameter("response_type")
    if response_type != "code":  # as for an app without the implicit grant enabled
        raise OAuthError(
            400,
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application.",
        )
    scopes = fields.get("scope", "").split()
    if not scopes:
        raise missing_parameter("scope")
    challenge, method = fields.get("code_challenge"), fields.get("code_challenge_method")
    # Without a method the challenge is plain (v2-oauth2-auth-code-flow: Entra supports plain and S256).
    if method is not None and method not in _CHALLENGE_METHODS:
        raise OAuthError(400, "invalid_request", 50149, "Invalid Code_Challenge_method parameter.")
    if method is not None and challenge is None:
        raise OAuthError(400, "invalid_request", 50147, "The size of the code challenge parameter is not valid.")
    if challenge is not None and len(challenge) not in _CHALLENGE_LENGTHS:
        raise OAuthError(400, "invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
    if fields.get("prompt") == "none":  # no session to sign in silently with
        raise OAuthError(400, "login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
    return _Authorization(app, redirect_uri, response_mode, scopes, fields)


def _reply(redirect_uri: str, response_mode: str, fields: dict[str, str]) -> web.Response:
    """Send the response parameters to the app the way ``response_mode`` asks."""
    if response_mode == "form_post":
        body = (
            f'<form method="post" action="{html.escape(redirect_uri)}">{_hidden_inputs(fields)}'
            '<noscript><button type="submit">Continue</button></noscript></form>'
            "<script>document.forms[0].submit()</script>"
        )
        return html_page("Working...", body)
    if response_mode == "fragment":
        location = f"{redirect_uri}#{urlencode(fields)}"
    else:
        location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(fields)
    return web.Response(status=302, headers={"Location": location})


def _described(request: web.Request, exc: OAuthError) -> str:
    ctx = sim_of(request)
    body = exc.body(new_id(), request[CORRELATION_ID_KEY], request[NOW_KEY], ctx.base_url)
    return str(body["error_description"])


def _error_page(request: web.Request, exc: OAuthError) -> web.Response:
    body = (
        "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
        f'<p id="error" role="alert">{html.escape(_described(request, exc))}</p>'
    )
    return html_page(_PAGE_TITLE, body, status=exc.status)


def _sign_in_page(request: web.Request, auth: _Authorization, username: str, error: str | None) -> web.Response:
    alert = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        f"<h1>Sign in</h1><p>to continue to {html.escape(auth.app.display_name)}</p>{alert}"
        f'<form method="post" action="{html.escape(request.rel_url.path)}">{_hidden_inputs(auth.fields)}'
        '<p><label for="username">Username</label><br><input id="username" name="username" type="text" '
        f'autocomplete="username" value="{html.escape(username)}" required autofocus></p>'
        '<p><label for="password">Password</label><br><input id="password" name="password" type="password" '
        'autocomplete="current-password" required></p>'
        '<p><button id="signin" type="submit">Sign in</button></p></form>'
    )
    return html_page(_PAGE_TITLE, body)


def _issue_code(ctx: SimContext, auth: _Authorization, user_id: str, now: datetime) -> str:
    for value, stale in list(ctx.authorization_codes.items()):
        if now > stale.expires + _KEEP_EXPIRED_CODES:
            del ctx.authorization_codes[value]
    value = secrets.token_urlsafe(48)
    ctx.authorization_codes[value] = AuthorizationCode(
        client_id=auth.app.app_id,
        redirect_uri=auth.redirect_uri,
        scopes=auth.scopes,
        user_id=user_id,
        nonce=auth.get("nonce"),
        code_challenge=auth.get("code_challenge"),
        code_challenge_method=auth.get("code_challenge_method") or "plain",
        expires=now + AUTHORIZATION_CODE_LIFETIME,
    )
    return value


def _sign_in(request: web.Request, auth: _Authorization, username: str, password: str) -> web.Response:
    ctx, now = sim_of(request), request[NOW_KEY]
    sp = ctx.state.service_principal_by_app_id(auth.app.app_id)
    log: dict[str, Any] = {
        "app_id": auth.app.app_id,
        "app_display_name": auth.app.display_name,
        "event_type": "interactiveUser",
        "ip_address": request.remote,
        "correlation_id": request[CORRELATION_ID_KEY],
        "service_principal_id": sp.id if sp else None,
    }
    user = ctx.state.user(username) if username else None
    if user is None:
        log["user_principal_name"] = username
    else:
        log.update(user_id=user.id, user_principal_name=user.user_principal_name, user_display_name=user.display_name)
    password_ok = hmac.compare_digest(password.encode(), ctx.config.user_password.encode())
    if user is None or not password_ok:
        failure = _UNKNOWN_USER if user is None else _WRONG_PASSWORD
        record_sign_in(ctx, now, error_code=failure.aadsts, failure_reason=failure.failure_reason, **log)
        return _sign_in_page(request, auth, username, failure.message)
    record_sign_in(ctx, now, **log)
    fields = {"code": _issue_code(ctx, auth, user.id, now)}
    if auth.get("client_info") == "1":  # MSAL asks for it to route its token request
        fields["client_info"] = client_info(ctx, user)
    state = auth.get("state")
    if state is not None:
        fields["state"] = state
    fields["session_state"] = new_id()
    return _reply(auth.redirect_uri, auth.response_mode, fields)


def _authorize(request: web.Request, fields: dict[str, str], credentials: tuple[str, str] | None) -> web.Response:
    ctx = sim_of(request)
    try:
        check_tenant(request)
        app, redirect_uri = _client_and_redirect_uri(ctx, fields)
    except OAuthError as exc:
        return _error_page(request, exc)
    try:
        auth = _authorization(app, redirect_uri, fields)
    except OAuthError as exc:
        mode = fields.get("response_mode", "query")
        error = {"error": exc.error, "error_description": _described(request, exc)}
        if "state" in fields:
            error["state"] = fields["state"]
        return _reply(redirect_uri, mode if mode in _RESPONSE_MODES else "query", error)
    if credentials is None:
        return _sign_in_page(request, auth, fields.get("login_hint", ""), None)
    return _sign_in(request, auth, *credentials)


async def authorize(request: web.Request) -> web.Response:
    """GET: the authorization request (v2.0 query parameters) → the sign-in page."""
    return _authorize(request, _fields(request.query), None)


async def authorize_sign_in(request: web.Request) -> web.Response:
    """POST: the sign-in form (the request's parameters plus ``username`` and ``password``)."""
    form = await request.post()
    credentials = (str(form.get("username", "")).strip(), str(form.get("password", "")))
    return _authorize(request, _fields(form), credentials)


def add_authorize_routes(app: web.Application) -> None:
    app.router.add_get("/{tenant}/oauth2/v2.0/authorize", authorize)
    app.router.add_post("/{tenant}/oauth2/v2.0/authorize", authorize_sign_in)
