"""The one exception hierarchy every outside-API client maps its failures to.

``retryable`` tells activity code whether Temporal may retry the failure (the others are raised
as non-retryable application errors). Messages come from the remote error body or from our own
text, never from a request, so ``str(error)`` cannot carry a secret.
"""

from __future__ import annotations


class ApiError(Exception):
    """An outside API refused or failed a request."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        head = " ".join(part for part in (str(self.status or ""), self.code) if part)
        text = f"{type(self).__name__}: " + (f"{head}: " if head else "") + self._explained()
        return f"{text} (request-id {self.request_id})" if self.request_id else text

    def _explained(self) -> str:
        """The message as ``str()`` shows it; subclasses add what the caller needs to act on it."""
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"


class Throttled(ApiError):
    """429 (or 503 with Retry-After): wait ``retry_after`` seconds, then try again."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        status: int | None = 429,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.retry_after = retry_after


class Transient(ApiError):
    """5xx, dropped connection or timeout (``status`` is None when no response arrived)."""

    retryable = True


class NotYetReplicated(ApiError):
    """Directory replication has not caught up yet (DOMAIN.md §2): the same call succeeds later."""

    retryable = True

    @classmethod
    def from_error(cls, error: ApiError) -> NotYetReplicated:
        """Re-classify ``error`` that the caller knows is replication lag (raise it ``from error``)."""
        return cls(error.message, status=error.status, code=error.code, request_id=error.request_id)


class Conflict(ApiError):
    """The object already exists, or a concurrent change won (not a replication lag)."""


class PermissionDenied(ApiError):
    """401/403: the caller lacks a permission (or its token is not accepted). ``permission`` names the
    least-privileged Microsoft Graph application permission the refused call needs, when known."""

    def __init__(
        self,
        message: str,
        *,
        permission: str | None = None,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.permission = permission

    def _explained(self) -> str:
        if self.permission is None:
            return self.message
        return f"{self.message} (needs the Microsoft Graph application permission {self.permission})"


class InvalidRequest(ApiError):
    """400 that is none of the above: our request is wrong and retrying will not help."""


class NotFound(ApiError):
    """404: the object does not exist (or, right after a create, not yet — callers decide)."""


class AuthenticationFailed(ApiError):
    """Token acquisition failed: bad or expired secret, unknown app. ``aadsts`` e.g. 'AADSTS7000215'."""

    def __init__(
        self,
        message: str,
        *,
        aadsts: str | None = None,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.aadsts = aadsts


class YeastarError(ApiError):
    """The Yeastar OpenAPI answered ``errcode`` != 0."""

    def __init__(
        self,
        message: str,
        *,
        errcode: int,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code or str(errcode), request_id=request_id)
        self.errcode = errcode


class YeastarAuthFailed(YeastarError):
    """Wrong API credentials. Do not retry: 5 failures block the caller's IP."""


class YeastarTokenLimit(YeastarError):
    """MAX LIMITATION: the API client already holds 8 valid access tokens."""


class YeastarTokenExpired(YeastarError):
    """errcode 10004: the access token expired; refresh or log in again."""
