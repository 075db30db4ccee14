"""App-only tokens for Microsoft Graph through MSAL (client secret or certificate).

MSAL is synchronous and fetches OIDC discovery inside its constructor, so the
``ConfidentialClientApplication`` is built lazily and every MSAL call runs in a worker thread.
MSAL's token cache reuses a token until 5 minutes before it expires; MSAL also replays a failed
token POST for a while (400: 60 s, 429/5xx: Retry-After or 5 s) without contacting the server,
which is why a brand-new secret is proven with a fresh application per attempt
(:meth:`MsalTokenProvider.prove_secret_works`).
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from msal.exceptions import MsalServiceError
from pydantic import SecretStr

from clients.errors import ApiError, AuthenticationFailed, NotYetReplicated, Throttled, Transient
from clients.retry import DEFAULT_RETRY, Clock, RetryConfig, Sleep, call_with_retries

if TYPE_CHECKING:
    from common.settings import EntraSettings

_AADSTS_RE = re.compile(r"\bAADSTS\d+")
_TRACE_RE = re.compile(r"\s*Trace ID:")
# Codes a brand-new credential or app gives until it has replicated (DOMAIN.md §2: ~4-18 s):
# invalid client secret, application not found in the directory, a new certificate's key not found.
_NOT_YET_REPLICATED_AADSTS = frozenset({"AADSTS7000215", "AADSTS700016", "AADSTS700027"})
# What MSAL assumes when a 429/5xx carries no Retry-After (msal.throttled_http_client).
_MSAL_DEFAULT_RETRY_AFTER = 5.0
# A token is reused until this long before it expires (MSAL's own cache would refresh no later).
_REUSE_MARGIN_SECONDS = 300.0
# How many token requests' client-request-ids a provider remembers (MsalTokenProvider.sign_in_ids).
SIGN_IN_IDS_KEPT = 50


@dataclass(frozen=True)
class CertificateCredential:
    """A private key plus the SHA-1 thumbprint (hex) of the certificate registered on the app."""

    thumbprint: str
    private_key_pem: SecretStr = field(repr=False)

    @classmethod
    def from_pem_file(cls, path: Path) -> CertificateCredential:
        """Load a PEM file holding the (unencrypted) private key and its certificate."""
        data = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
            certificate = x509.load_pem_x509_certificates(data)[0]
        except ValueError as exc:
            # cryptography's messages describe the format problem, never the key material.
            raise ValueError(f"{path}: need an unencrypted private key and a certificate ({exc})") from None
        if _public_der(key.public_key()) != _public_der(certificate.public_key()):
            raise ValueError(f"{path}: the certificate does not belong to the private key")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Entra identifies the certificate by the SHA-1 thumbprint MSAL puts in the JWT's x5t header.
        thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()
        return cls(thumbprint=thumbprint, private_key_pem=SecretStr(key_pem.decode("ascii")))


Credential = SecretStr | CertificateCredential


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


# OIDC discovery answers reused across applications for as long as MSAL's own http_cache keeps them.
_DISCOVERY_TTL_SECONDS = 24 * 3600.0
_discovery_lock = threading.Lock()
_discovery: dict[str, tuple[float, requests.Response]] = {}


@functools.cache
def _login_session(ca_bundle: Path | None) -> requests.Session:
    """One pooled session per CA bundle for the whole process: every app's token requests reuse its
    TLS connections to the login host instead of a handshake per new application."""
    session = requests.Session()
    session.trust_env = False  # no proxy or CA bundle from the environment: loopback / explicit only
    session.verify = str(ca_bundle) if ca_bundle else True
    return session


class _MsalHttp:
    """MSAL's ``http_client`` for one provider: the shared session with a timeout (MSAL passes none
    to a client it is given), remembering this thread's last status and Retry-After and the
    ``client-request-id`` of each token request, and answering repeated OIDC discovery from memory
    (each new application would fetch it again)."""

    def __init__(self, ca_bundle: Path | None, timeout: float, correlation_id: str | None) -> None:
        self._session = _login_session(ca_bundle)
        self._timeout = timeout
        self._correlation_id = correlation_id
        self._last = threading.local()
        self._token_request_ids: deque[str] = deque(maxlen=SIGN_IN_IDS_KEPT)
        self._ids_lock = threading.Lock()  # appended from worker threads, read from the event loop

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        if not url.endswith("/.well-known/openid-configuration") or kwargs.get("params"):
            return self._send("GET", url, kwargs)
        with _discovery_lock:
            expires, cached = _discovery.get(url, (0.0, None))
        if cached is not None and time.monotonic() < expires:
            return cached
        response = self._send("GET", url, kwargs)
        if response.status_code == 200:
            with _discovery_lock:
                _discovery[url] = (time.monotonic() + _DISCOVERY_TTL_SECONDS, response)
        return response

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        # A confidential client's only POST is the token request; MSAL gives each a fresh
        # client-request-id (unless the caller chose one), which Entra records as the sign-in's correlationId.
        if self._correlation_id is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "client-request-id": self._correlation_id}
        request_id = (kwargs.get("headers") or {}).get("client-request-id")
        if request_id:
            with self._ids_lock:
                self._token_request_ids.append(str(request_id))
        return self._send("POST", url, kwargs)

    def token_request_ids(self) -> list[str]:
        with self._ids_lock:
            return list(self._token_request_ids)

    def close(self) -> None:
        """MSAL may close its client; the pooled session outlives every application."""

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        response = self._session.request(method, url, **kwargs)
        self._last.value = (response.status_code, response.headers.get("Retry-After"))
        return response

    def forget_last(self) -> None:
        self._last.value = None

    def last_seen(self) -> tuple[int | None, str | None]:
        """Status and Retry-After of this thread's last HTTP response (None: MSAL answered from cache)."""
        seen: tuple[int, str | None] | None = getattr(self._last, "value", None)
        return seen or (None, None)


class MsalTokenProvider:
    """Tokens for ``{graph_base_url}/.default`` as one app (the provisioning app, or a new app)."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        credential: Credential,
        *,
        authority_host: str = "https://login.microsoftonline.com",
        graph_base_url: str = "https://graph.microsoft.com",
        ca_bundle: Path | None = None,
        instance_discovery: bool = True,
        timeout: float = 30.0,
        retry: RetryConfig = DEFAULT_RETRY,
        correlation_id: str | None = None,
    ) -> None:
        """``correlation_id``: sent as every token request's client-request-id instead of MSAL's
        fresh one, so whoever chose it can later recognise these sign-ins in the sign-in logs."""
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._credential = credential
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._scope = f"{graph_base_url.rstrip('/')}/.default"
        self._instance_discovery = instance_discovery
        self._retry = retry
        self._http = _MsalHttp(ca_bundle, timeout, correlation_id)
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()
        # The last token and the time.monotonic() until which it is reused without asking MSAL:
        # a cache lookup costs a worker thread and a lock, on every Graph call.
        self._fresh: tuple[str, float] | None = None
        # MSAL replays a 429/5xx until then (time.monotonic()): waiting is cheaper than asking.
        self._replay_until = 0.0

    @classmethod
    def from_settings(cls, entra: EntraSettings) -> MsalTokenProvider:
        """The provisioning identity (raises SettingsError if it is not configured)."""
        entra.require_provisioning_identity()
        assert entra.tenant_id is not None and entra.client_id is not None  # checked just above
        credential: Credential
        if entra.certificate_path is not None:
            credential = CertificateCredential.from_pem_file(entra.certificate_path)
        else:
            assert entra.client_secret is not None
            credential = entra.client_secret
        return cls.for_app(entra, entra.tenant_id, entra.client_id, credential)

    @classmethod
    def for_app(
        cls,
        entra: EntraSettings,
        tenant_id: str,
        client_id: str,
        credential: Credential,
        *,
        correlation_id: str | None = None,
    ) -> MsalTokenProvider:
        """Any app's credential, on the endpoints and CA bundle in ``entra``."""
        return cls(
            tenant_id,
            client_id,
            credential,
            authority_host=entra.authority_host,
            graph_base_url=entra.graph_base_url,
            ca_bundle=entra.ca_bundle,
            instance_discovery=entra.instance_discovery,
            retry=entra.retry,
            correlation_id=correlation_id,
        )

    def __repr__(self) -> str:
        return f"MsalTokenProvider(tenant_id={self.tenant_id!r}, client_id={self.client_id!r})"

    @property
    def sign_in_ids(self) -> list[str]:
        """The ``client-request-id`` of each token request this provider sent (including
        :meth:`prove_secret_works` attempts), oldest first, at most the last ``SIGN_IN_IDS_KEPT``.
        Entra records it as the sign-in's ``correlationId``: the way to tell this service's own
        sign-ins as the app from anyone else's (e.g. the PBX's)."""
        return self._http.token_request_ids()

    async def token(self) -> str:
        """An access token: the last one until 5 minutes before it expires, then MSAL's answer."""
        fresh = self._fresh
        if fresh is not None and time.monotonic() < fresh[1]:
            return fresh[0]
        async with self._lock:
            if self._app is None:
                self._app = await asyncio.to_thread(self._build_app)
            return await asyncio.to_thread(self._acquire, self._app)

    async def invalidate(self, token: str) -> None:
        """Drop ``token`` from MSAL's cache (Graph rejected it), so the next :meth:`token` is new."""
        async with self._lock:
            if self._app is None:
                return
            if self._fresh is not None and self._fresh[0] == token:
                self._fresh = None
            cache = self._app.token_cache
            for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if entry.get("secret") == token:
                    cache.remove_at(entry)

    async def prove_secret_works(
        self,
        *,
        timeout: float,  # noqa: ASYNC109 - a replication budget spread over many attempts
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> float:
        """Get a token with this provider's (new) credential, waiting up to ``timeout`` seconds for
        Entra to accept it. Returns the seconds it took; raises AuthenticationFailed if it never works.

        Each attempt uses a fresh ConfidentialClientApplication: a reused one would replay the
        identical failed POST from MSAL's HTTP cache for 60 s instead of asking again.
        """
        started = clock()

        async def attempt() -> None:
            app = await asyncio.to_thread(self._build_app)
            try:
                await asyncio.to_thread(self._acquire, app)
            except AuthenticationFailed as exc:
                if exc.aadsts in _NOT_YET_REPLICATED_AADSTS:
                    raise NotYetReplicated(
                        exc.message, status=exc.status, code=exc.aadsts or "", request_id=exc.request_id
                    ) from exc
                raise
            async with self._lock:
                self._app = app  # proven: later token() calls reuse its cached token

        try:
            await call_with_retries(
                attempt,
                replace(self._retry, replication_timeout=timeout),
                idempotent=True,
                describe=f"sign in as {self.client_id}",
                sleep=sleep,
                clock=clock,
            )
        except NotYetReplicated as exc:
            # Out of time: report what Entra said, not our interpretation of it.
            assert isinstance(exc.__cause__, AuthenticationFailed)
            raise exc.__cause__ from None
        return clock() - started

    # --- worker-thread side -------------------------------------------------------------------

    def _build_app(self) -> msal.ConfidentialClientApplication:
        self._http.forget_last()
        credential: str | dict[str, str] = (
            self._credential.get_secret_value()
            if isinstance(self._credential, SecretStr)
            else {
                "private_key": self._credential.private_key_pem.get_secret_value(),
                "thumbprint": self._credential.thumbprint,
            }
        )
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=credential,
                authority=self._authority,
                instance_discovery=self._instance_discovery,
                http_client=self._http,
            )
        except requests.RequestException as exc:
            raise _transport_error(exc, "OIDC discovery") from None
        except MsalServiceError:  # discovery answered 5xx
            raise Transient("OIDC discovery failed", status=self._http.last_seen()[0]) from None
        except ValueError:
            # MSAL's ValueError here means OIDC discovery answered 4xx: wrong authority or tenant.
            raise AuthenticationFailed(
                f"OIDC discovery failed for authority {self._authority}", code="authority_discovery_failed"
            ) from None

    def _acquire(self, app: msal.ConfidentialClientApplication) -> str:
        wait = self._replay_until - time.monotonic()
        if wait > 0:
            raise Throttled("token endpoint asked to wait (MSAL would replay its answer)", retry_after=wait)
        self._http.forget_last()
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
        except requests.RequestException as exc:
            raise _transport_error(exc, "token request") from None
        except (MsalServiceError, ValueError):
            result = {}  # a 5xx (MSAL raises on those) or a body that is not JSON
        if "access_token" in result:
            token = str(result["access_token"])
            lifetime = float(result.get("expires_in", 0))
            self._fresh = (token, time.monotonic() + lifetime - _REUSE_MARGIN_SECONDS)
            return token
        status, retry_after = self._http.last_seen()
        self._note_replay(status, retry_after)
        raise _result_error(result, status, retry_after)

    def _note_replay(self, status: int | None, retry_after: str | None) -> None:
        if status is not None and (status == 429 or status >= 500):
            self._replay_until = time.monotonic() + _seconds(retry_after)


def _seconds(retry_after: str | None) -> float:
    """How long MSAL replays a 429/5xx: msal.throttled_http_client.RetryAfterParser's rule exactly."""
    try:
        return float(min(3600, int(retry_after))) if retry_after else _MSAL_DEFAULT_RETRY_AFTER
    except ValueError:
        return _MSAL_DEFAULT_RETRY_AFTER


def _transport_error(exc: requests.RequestException, what: str) -> Transient:
    status = exc.response.status_code if exc.response is not None else None
    return Transient(f"{what} failed: {type(exc).__name__}", status=status)


def _result_error(result: dict[str, Any], status: int | None, retry_after: str | None) -> ApiError:
    """Map MSAL's error dict (the token endpoint's OAuth2 error body; empty if unreadable)."""
    error = str(result.get("error", ""))
    description = str(result.get("error_description", ""))
    # Drop the trailing trace/correlation IDs and timestamp; the correlation ID is kept as request_id.
    message = _TRACE_RE.split(description, maxsplit=1)[0].strip() or error or f"token endpoint HTTP {status}"
    request_id = result.get("correlation_id")
    if status == 429:
        return Throttled(message, retry_after=_seconds(retry_after), code=error, request_id=request_id)
    if not result or (status or 0) >= 500 or error in ("temporarily_unavailable", "server_error"):
        return Transient(message, status=status, code=error, request_id=request_id)
    codes = result.get("error_codes") or []
    match = _AADSTS_RE.search(description)
    aadsts = f"AADSTS{codes[0]}" if codes else (match.group(0) if match else None)
    return AuthenticationFailed(message, aadsts=aadsts, status=status, code=error, request_id=request_id)


def public_client_application(
    client_id: str,
    authority: str,
    *,
    ca_bundle: Path | None = None,
    instance_discovery: bool = True,
    timeout: float = 30.0,
) -> msal.PublicClientApplication:
    """An MSAL public client (a person signs in, e.g. with the device code flow) on the process's pooled
    login session, with a timeout on every request. Synchronous, like all of MSAL (its constructor fetches
    OIDC discovery): call it from a worker thread. Raises ValueError if the authority is unknown."""
    return msal.PublicClientApplication(
        client_id,
        authority=authority,
        instance_discovery=instance_discovery,
        http_client=_MsalHttp(ca_bundle, timeout, None),
    )


def sign_in_application(
    tenant: str,
    client_id: str,
    client_secret: SecretStr,
    *,
    authority_host: str,
    ca_bundle: Path | None = None,
    instance_discovery: bool = True,
) -> msal.ConfidentialClientApplication:
    """An MSAL application for signing people in (authorization code flow with PKCE), sharing the
    process's pooled login session. Synchronous, like all of MSAL: call it from a worker thread."""
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret.get_secret_value(),
        authority=f"{authority_host.rstrip('/')}/{tenant}",
        instance_discovery=instance_discovery,
        http_client=_login_session(ca_bundle),
    )
