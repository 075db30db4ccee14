"""The vault's secrets (every version), its soft-deleted secrets, and run-time counters; in memory only.

Key Vault object names are case-insensitive: secrets are indexed by the casefolded name and keep the
spelling they were created with. Times are Key Vault's IntDate (whole seconds since the epoch).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SecretVersion:
    version: str  # 32 lower-case hex digits, as Key Vault mints them
    value: str = field(repr=False)
    content_type: str | None
    tags: dict[str, str] | None  # None: never set, so Key Vault leaves "tags" out
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int


@dataclass
class Secret:
    name: str
    versions: list[SecretVersion]  # oldest first; never empty

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]

    def version(self, version: str) -> SecretVersion | None:
        wanted = version.lower()
        return next((v for v in self.versions if v.version == wanted), None)


@dataclass
class DeletedSecret:
    secret: Secret
    deleted: int
    scheduled_purge: int
    # time.monotonic() at which the deletion completes and the secret shows under /deletedsecrets.
    completes_at: float

    @property
    def complete(self) -> bool:
        return time.monotonic() >= self.completes_at


class VaultState:
    """Mutate through the methods so the indexes stay right."""

    def __init__(self) -> None:
        self._secrets: dict[str, Secret] = {}
        self._deleted: dict[str, DeletedSecret] = {}
        # Run-time counters and faults.
        self.request_counts: Counter[str] = Counter()
        self.throttle_next = 0  # the next N authenticated requests answer 429

    def count_request(self, method: str, route: str) -> None:
        self.request_counts[f"{method} {route}"] += 1

    # --- secrets ------------------------------------------------------------------------------
    def secret(self, name: str) -> Secret | None:
        return self._secrets.get(name.casefold())

    def secrets(self) -> list[Secret]:
        return [self._secrets[key] for key in sorted(self._secrets)]

    def add_version(self, name: str, version: SecretVersion) -> Secret:
        secret = self._secrets.setdefault(name.casefold(), Secret(name, []))
        secret.versions.append(version)
        return secret

    # --- soft delete --------------------------------------------------------------------------
    def deleted(self, name: str) -> DeletedSecret | None:
        """The soft-deleted secret ``name``, whether or not its deletion has completed."""
        return self._deleted.get(name.casefold())

    def deleted_secrets(self) -> list[DeletedSecret]:
        """Every soft-deleted secret, by name, whether or not its deletion has completed."""
        return [self._deleted[key] for key in sorted(self._deleted)]

    def delete(self, secret: Secret, *, deleted: int, scheduled_purge: int, delay_seconds: float) -> DeletedSecret:
        key = secret.name.casefold()
        del self._secrets[key]
        entry = DeletedSecret(secret, deleted, scheduled_purge, time.monotonic() + delay_seconds)
        self._deleted[key] = entry
        return entry

    def recover(self, entry: DeletedSecret) -> Secret:
        key = entry.secret.name.casefold()
        del self._deleted[key]
        self._secrets[key] = entry.secret
        return entry.secret

    def purge(self, entry: DeletedSecret) -> None:
        del self._deleted[entry.secret.name.casefold()]

    def purge_due(self, now: int) -> None:
        """What the service does at each scheduled purge date."""
        for key in [key for key, d in self._deleted.items() if d.scheduled_purge <= now]:
            del self._deleted[key]
