"""What keeps the web app safe: CSRF on every form, security headers, the console's signed session
cookie, a limit on secret reveals, and an access log that never writes a link's token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

CSRF_COOKIE = "yec_csrf"
SESSION_COOKIE = "yec_session"
SESSION_LIFETIME_SECONDS = 8 * 3600
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_KEY = web.RequestKey("yec_csrf", str)
_LINK_TOKEN = re.compile(r"/a/[^/?\s]+")
# Only this app's own scripts, styles and forms; never framed.
CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; form-action 'self' https:"
# POSTs that come from elsewhere by design: the Temporal UI's codec calls (bearer token or session,
# CORS) and Microsoft's sign-in answering with form_post (checked by the flow's state and PKCE).
CROSS_SITE_POSTS = ("/codec/", "/console/signin/callback")


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token (a cookie set by the middleware), to put into every form."""
    return request[CSRF_KEY]


def security_middleware(base_url: str) -> Middleware:
    """Headers on every answer; for every POST a matching CSRF token and, when the browser says where
    it comes from, our own origin."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    secure = base_url.startswith("https://")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        known = request.cookies.get(CSRF_COOKIE)
        request[CSRF_KEY] = known or secrets.token_urlsafe(24)
        if request.method == "POST" and not request.path.startswith(CROSS_SITE_POSTS):
            form = await request.post()
            sent_from = request.headers.get("Origin")
            if not known or not hmac.compare_digest(str(form.get("csrf", "")), known):
                raise web.HTTPForbidden(text="This form has expired or did not come from this site: reload the page.")
            if sent_from not in (None, "null", origin):
                raise web.HTTPForbidden(text="This form was sent from another site.")
        response = await handler(request)
        if not known:
            response.set_cookie(CSRF_COOKIE, request[CSRF_KEY], httponly=True, samesite="Strict", secure=secure)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # A link's token must not travel on in a Referer header to wherever the page links.
        headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return middleware


class Sessions:
    """The console's sessions: a signed cookie naming the operator, valid for eight hours."""

    def __init__(self, key: bytes, *, secure: bool) -> None:
        self._key, self._secure = key, secure

    def start(self, response: web.StreamResponse, operator: str) -> None:
        body = base64.urlsafe_b64encode(
            json.dumps({"who": operator, "until": int(time.time()) + SESSION_LIFETIME_SECONDS}).encode()
        ).decode()
        response.set_cookie(
            SESSION_COOKIE, f"{body}.{self._sign(body)}", httponly=True, samesite="Lax", secure=self._secure
        )

    def operator(self, request: web.Request) -> str | None:
        """Who is signed in, or None."""
        body, _, signature = request.cookies.get(SESSION_COOKIE, "").partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        claims = json.loads(base64.urlsafe_b64decode(body))
        return str(claims["who"]) if claims["until"] > time.time() else None

    @staticmethod
    def end(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


class RevealLimiter:
    """At most ``limit`` secret reveals per client address and integration in ten minutes."""

    WINDOW_SECONDS = 600.0

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._recent: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)

    def allow(self, address: str, integration_id: str) -> bool:
        now = time.monotonic()
        recent = self._recent[(address, integration_id)]
        while recent and now - recent[0] > self.WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= self._limit:
            return False
        recent.append(now)
        return True


class AccessLogger(AbstractAccessLogger):
    """The access log line, with a signed link's token replaced: it is a key to the page."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = _LINK_TOKEN.sub("/a/…", request.path)
        self.logger.info("%s %s %s %s %.0fms", request.remote, request.method, path, response.status, time * 1000)
