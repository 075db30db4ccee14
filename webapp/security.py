"""What keeps the web app safe: CSRF on every form, security headers, the console's signed session
cookie, a limit on secret reveals, and an access log that never writes a link's token."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from common.links import Sealer

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
    """The console's sessions: a sealed cookie naming the operator, valid for eight hours."""

    def __init__(self, key: bytes, *, secure: bool) -> None:
        self._sealer, self._secure = Sealer(key), secure

    def start(self, response: web.StreamResponse, operator: str) -> None:
        cookie = self._sealer.seal({"who": operator, "until": int(time.time()) + SESSION_LIFETIME_SECONDS})
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="Lax", secure=self._secure)

    def operator(self, request: web.Request) -> str | None:
        """Who is signed in, or None."""
        claims = self._sealer.unseal(request.cookies.get(SESSION_COOKIE, ""))
        return str(claims["who"]) if claims is not None and claims["until"] > time.time() else None

    @staticmethod
    def end(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE)


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
