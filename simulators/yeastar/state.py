"""In-memory state of the Yeastar simulator, with optional persistence to a JSON file.

Tokens are kept only as SHA-256 hashes, so neither this object nor the state file holds a usable
token. The Microsoft 365 client secret saved on the portal page lives in memory; in the state file
it is sealed with AES-GCM under a key kept in a 0600 file beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.files import write_private

# Documented lifetimes and limits (Yeastar P-Series Cloud Edition developer guide).
ACCESS_TOKEN_SECONDS = 1800
REFRESH_TOKEN_SECONDS = 86400
MAX_ACCESS_TOKENS = 8
MAX_FAILED_LOGINS = 5

# errcode / errmsg pairs from the developer guide's "Error Code and Error Message" table.
SUCCESS = (0, "SUCCESS")
FAILURE = (-1, "FAILURE")
INTERNAL_ERROR = (-2, "INTERNAL SERVER ERROR")
INTERFACE_NOT_EXISTED = (10001, "INTERFACE NOT EXISTED")
TOKEN_EXPIRED = (10004, "TOKEN EXPIRED")
ACCESS_DENIED = (10005, "ACCESS DENIED")
PARAMETER_ERROR = (40002, "PARAMETER ERROR")
MAX_LIMITATION = (60002, "MAX LIMITATION EXCEEDED")
IP_BLOCKED = (70004, "ACCOUNT IP BLOCKED")

PortalStatus = Literal["Disconnected", "Saved", "Connected", "Error"]

_SEED_NAMES = ["Front Desk", "Sales Team", "Support Line", "Warehouse", "Reception", "Billing", "Lobby"]


class OpenApiFault(Exception):
    """An OpenAPI failure: rendered as HTTP 200 with ``errcode``/``errmsg`` like the real PBX."""

    def __init__(self, code: tuple[int, str], **extra: Any) -> None:
        super().__init__(code[1])
        self.errcode, self.errmsg = code
        self.extra = extra


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class SimExtension:
    id: int
    number: str
    caller_id_name: str
    email_addr: str
    mobile_number: str = ""
    role_name: str = "Employee"
    presence_status: str = "available"
    online: bool = False
    # "local" for seeded extensions, "microsoft365" for those the portal sync created or updated.
    source: str = "local"

    def to_api(self) -> dict[str, Any]:
        """The ``Ext_Basicinfo`` shape of ``extension/list``."""
        status = 1 if self.online else 0
        return {
            "id": self.id,
            "online_status": {
                "sip_phone": {"number": 0, "status_list": [{"status": status, "ext_dev_type": "sip"}]},
                "linkus_desktop": {"status": 0, "ext_dev_type": "linkusdesktop"},
                "linkus_mobile": {"status": status, "ext_dev_type": "linkusmobile"},
                "linkus_web": {"status": 0, "ext_dev_type": "linkusweb"},
            },
            "presence_status": self.presence_status,
            "number": self.number,
            "caller_id_name": self.caller_id_name,
            "role_name": self.role_name,
            "email_addr": self.email_addr,
            "mobile_number": self.mobile_number,
        }


@dataclass
class IssuedToken:
    access_hash: str
    refresh_hash: str
    client_id: str
    access_expires: datetime
    refresh_expires: datetime


@dataclass
class PortalState:
    """Integrations > Collaboration > Microsoft 365, as the PBX admin sees it."""

    client_id: str | None = None
    tenant_id: str | None = None
    status: PortalStatus = "Disconnected"
    signed_in_as: str | None = None
    consent_for_organization: bool = False
    last_sync: datetime | None = None
    sync_ok_count: int = 0
    sync_failure_count: int = 0
    last_error: str | None = None
    secret: str | None = field(default=None, repr=False)


@dataclass
class TokenCounters:
    issued: int = 0
    refreshed: int = 0
    deleted: int = 0
    limit_rejections: int = 0
    auth_failures: int = 0


@dataclass
class YeastarState:
    api_client_id: str
    api_client_secret: str = field(repr=False)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    failed_logins: dict[str, int] = field(default_factory=dict)
    blocked_ips: set[str] = field(default_factory=set)
    extensions: list[SimExtension] = field(default_factory=list)
    portal: PortalState = field(default_factory=PortalState)
    counters: TokenCounters = field(default_factory=TokenCounters)
    # Fault injection: answer this many next OpenAPI requests with HTTP 503.
    fail_next: int = 0

    # --- tokens -------------------------------------------------------------------------------

    def _purge(self, now: datetime) -> None:
        for key in [k for k, t in self.tokens.items() if t.refresh_expires <= now]:
            del self.tokens[key]

    def valid_access_tokens(self, now: datetime) -> int:
        """How many unexpired access tokens the API client holds (the 8-token limit counts these)."""
        self._purge(now)
        return sum(1 for t in self.tokens.values() if t.access_expires > now)

    def _check_ip(self, ip: str) -> None:
        if ip in self.blocked_ips:
            raise OpenApiFault(IP_BLOCKED)

    def _issue(self, client_id: str, now: datetime) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.tokens[token_hash(access)] = IssuedToken(
            access_hash=token_hash(access),
            refresh_hash=token_hash(refresh),
            client_id=client_id,
            access_expires=now + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            refresh_expires=now + timedelta(seconds=REFRESH_TOKEN_SECONDS),
        )
        return {
            "access_token_expire_time": ACCESS_TOKEN_SECONDS,
            "access_token": access,
            "refresh_token_expire_time": REFRESH_TOKEN_SECONDS,
            "refresh_token": refresh,
        }

    def get_token(self, username: str, password: str, ip: str, now: datetime) -> dict[str, Any]:
        self._check_ip(ip)
        valid = username == self.api_client_id and secrets.compare_digest(
            password.encode(), self.api_client_secret.encode()
        )
        if not valid:
            self.counters.auth_failures += 1
            self.failed_logins[ip] = self.failed_logins.get(ip, 0) + 1
            if self.failed_logins[ip] >= MAX_FAILED_LOGINS:
                self.blocked_ips.add(ip)
            # The guide's example answer to a wrong client ID/secret.
            wrong = [{"field": "username or password", "value": "error"}]
            raise OpenApiFault(FAILURE, invalid_param_list=wrong)
        self.failed_logins.pop(ip, None)
        if self.valid_access_tokens(now) >= MAX_ACCESS_TOKENS:
            self.counters.limit_rejections += 1
            raise OpenApiFault(MAX_LIMITATION)
        self.counters.issued += 1
        return self._issue(username, now)

    def refresh_token(self, refresh: str, ip: str, now: datetime) -> dict[str, Any]:
        """Swap a refresh token for a new pair; the old pair stops working (so refreshing never
        adds to the 8-token count)."""
        self._check_ip(ip)
        self._purge(now)
        wanted = token_hash(refresh)
        for key, issued in self.tokens.items():
            if issued.refresh_hash == wanted:
                del self.tokens[key]
                self.counters.refreshed += 1
                return self._issue(issued.client_id, now)
        raise OpenApiFault(TOKEN_EXPIRED)

    def check_access(self, access: str, now: datetime) -> None:
        # A blocked IP may not authenticate; tokens it already holds keep working.
        issued = self.tokens.get(token_hash(access))
        if issued is None or issued.access_expires <= now:
            raise OpenApiFault(TOKEN_EXPIRED)

    def del_token(self, access: str, now: datetime) -> None:
        self.check_access(access, now)
        del self.tokens[token_hash(access)]
        self.counters.deleted += 1

    # --- extensions ---------------------------------------------------------------------------

    def seed_extensions(self, count: int) -> None:
        for i in range(count):
            name = _SEED_NAMES[i % len(_SEED_NAMES)] + ("" if i < len(_SEED_NAMES) else f" {i}")
            self.add_extension(name, f"ext{1000 + i}@pbx.example", online=i % 2 == 0)

    def add_extension(
        self, name: str, email: str, mobile: str = "", *, online: bool = False, source: str = "local"
    ) -> SimExtension:
        used = {int(e.number) for e in self.extensions if e.number.isdigit()}
        number = next(n for n in range(1000, 100000) if n not in used)
        ext = SimExtension(
            id=max((e.id for e in self.extensions), default=0) + 1,
            number=str(number),
            caller_id_name=name,
            email_addr=email,
            mobile_number=mobile,
            online=online,
            source=source,
        )
        self.extensions.append(ext)
        return ext

    # --- persistence --------------------------------------------------------------------------

    def to_json(self, cipher: AESGCM | None) -> dict[str, Any]:
        portal = asdict(self.portal)
        secret = portal.pop("secret")
        portal["last_sync"] = self.portal.last_sync.isoformat() if self.portal.last_sync else None
        if secret is not None and cipher is not None:
            nonce = os.urandom(12)
            portal["sealed_secret"] = (nonce + cipher.encrypt(nonce, secret.encode(), b"portal")).hex()
        return {
            "tokens": [
                {
                    **asdict(t),
                    "access_expires": t.access_expires.isoformat(),
                    "refresh_expires": t.refresh_expires.isoformat(),
                }
                for t in self.tokens.values()
            ],
            "failed_logins": self.failed_logins,
            "blocked_ips": sorted(self.blocked_ips),
            "extensions": [asdict(e) for e in self.extensions],
            "portal": portal,
            "counters": asdict(self.counters),
        }

    def load_json(self, data: dict[str, Any], cipher: AESGCM | None) -> None:
        self.tokens = {}
        for raw in data.get("tokens", []):
            issued = IssuedToken(
                access_hash=raw["access_hash"],
                refresh_hash=raw["refresh_hash"],
                client_id=raw["client_id"],
                access_expires=datetime.fromisoformat(raw["access_expires"]),
                refresh_expires=datetime.fromisoformat(raw["refresh_expires"]),
            )
            self.tokens[issued.access_hash] = issued
        self.failed_logins = dict(data.get("failed_logins", {}))
        self.blocked_ips = set(data.get("blocked_ips", []))
        self.extensions = [SimExtension(**raw) for raw in data.get("extensions", [])]
        self.counters = TokenCounters(**data.get("counters", {}))
        portal = dict(data.get("portal", {}))
        sealed = portal.pop("sealed_secret", None)
        last_sync = portal.pop("last_sync", None)
        self.portal = PortalState(**portal)
        self.portal.last_sync = datetime.fromisoformat(last_sync) if last_sync else None
        if sealed and cipher is not None:
            blob = bytes.fromhex(sealed)
            try:
                self.portal.secret = cipher.decrypt(blob[:12], blob[12:], b"portal").decode()
            except InvalidTag:
                self.portal.secret = None


def load_cipher(key_file: Path) -> AESGCM:
    """The AES-256-GCM key beside the state file, created (0600) on first use."""
    if not key_file.is_file():
        write_private(key_file, AESGCM.generate_key(bit_length=256))
    return AESGCM(key_file.read_bytes())


def save_state(state: YeastarState, path: Path, cipher: AESGCM) -> None:
    write_private(path, json.dumps(state.to_json(cipher), indent=1).encode())
