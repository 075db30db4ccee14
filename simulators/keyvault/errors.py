"""Key Vault's error shape, ``{"error": {"code", "message", "innererror": {"code"}}}``, and the errors
the simulator answers with. Messages follow those recorded from the real service where known."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class VaultError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner_code is not None:
            error["innererror"] = {"code": self.inner_code}
        return {"error": error}


def bad_parameter(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def invalid_name(name: str) -> VaultError:
    return bad_parameter(f"The request URI contains an invalid name: {name}")


def secret_not_found(name_or_id: str) -> VaultError:
    """``name_or_id``: the name, or ``name/version`` for a version."""
    return VaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this "
        "secret you may be able to recover it using the correct recovery command. For help resolving this issue, "
        "please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def deleted_secret_not_found(name: str) -> VaultError:
    return VaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")


def secret_disabled() -> VaultError:
    return VaultError(
        403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner_code="SecretDisabled"
    )


def deleted_but_recoverable(name: str) -> VaultError:
    return VaultError(
        409,
        "Conflict",
        f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this "
        "state, the secret can only be recovered or purged.",
        inner_code="ObjectIsDeletedButRecoverable",
    )


def being_deleted(name: str) -> VaultError:
    # Worded as Key Vault words it for keys; the inner code is the one its SDK samples check for.
    return VaultError(
        409,
        "Conflict",
        f"Secret {name} is currently being deleted and cannot be re-created; retry later.",
        inner_code="ObjectIsBeingDeleted",
    )


def purge_protected(vault_name: str, location: str) -> VaultError:
    return VaultError(
        403,
        "Forbidden",
        'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service '
        f"will automatically purge it after the retention period has passed. Vault: {vault_name};location={location}",
    )


def access_denied(caller: str, permission: str, vault_name: str, location: str) -> VaultError:
    """``caller``: ``appid=...;oid=...;iss=...`` as Key Vault names the principal."""
    return VaultError(
        403,
        "Forbidden",
        f"The user, group or application '{caller}' does not have secrets {permission} permission on key vault "
        f"'{vault_name};location={location}'. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125287",
        inner_code="AccessDenied",
    )


def throttled(retry_after_seconds: float) -> VaultError:
    return VaultError(
        429,
        "Throttled",
        "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        headers={"Retry-After": f"{retry_after_seconds:g}"},
    )
