"""The two error shapes the simulator speaks: Graph's ``{"error": {...}}`` and the token endpoint's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from simulators.entra.state import iso


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def body(self, request_id: str, client_request_id: str, now: datetime) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "innerError": {
                "date": iso(now.replace(microsecond=0)),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str, *, code: str = "Request_BadRequest", target: str | None = None) -> GraphError:
    details = [{"code": "InvalidValue", "message": message, "target": target}] if target else None
    return GraphError(400, code, message, details=details)


def invalid_value(prop: str, resource: str, reason: str) -> GraphError:
    """Graph's generic validation failure; ``details`` says what exactly was wrong."""
    return bad_request(f"Invalid value specified for property '{prop}' of resource '{resource}'.", target=reason)


def forbidden() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def unauthenticated(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message)


class OAuthError(Exception):
    """A token-endpoint failure: ``error`` per RFC 6749 plus Entra's AADSTS number."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{status} {error}: AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self, trace_id: str, correlation_id: str, now: datetime, base_url: str) -> dict[str, Any]:
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{base_url}/error?code={self.aadsts}",
        }


class AdminError(Exception):
    """A /_sim request the simulator cannot carry out; answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DropConnection(Exception):
    """Raised by fault injection: close the connection without answering."""
