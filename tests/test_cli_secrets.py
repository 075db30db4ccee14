"""starter.py's key and secret-store commands, as an operator runs them (no Temporal needed)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from common.secret_store import LocalSecretStore
from tests.operator import ROOT

PAYLOAD_KEY = base64.b64encode(b"p" * 32).decode()
STORE_KEY = base64.b64encode(b"s" * 32).decode()
VALUE = "Qq8Q~secret-value-for-the-cli-test-0123"


def starter(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("YEC_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generate_key_gives_two_different_keys_or_the_one_asked_for() -> None:
    both = starter("generate-key").stdout.splitlines()
    store_only = starter("generate-key", "--for", "store").stdout.splitlines()

    assert [line.split("=")[0] for line in both] == ["YEC_ENCRYPTION_KEYS", "YEC_SECRET_STORE__KEYS"]
    assert both[0].split(":", 1)[1] != both[1].split(":", 1)[1]
    assert len(base64.b64decode(both[1].split(":", 1)[1])) == 32
    assert [line.split("=")[0] for line in store_only] == ["YEC_SECRET_STORE__KEYS"]


async def test_re_encrypt_moves_files_sealed_by_the_payload_key_to_the_store_key(tmp_path: Path) -> None:
    """The upgrade path: before this release the store used YEC_ENCRYPTION_KEYS."""
    data = tmp_path / "data"
    old = LocalSecretStore(data / "secrets", {"payload": base64.b64decode(PAYLOAD_KEY)})
    await old.put("acme-hq", "k1", SecretStr(VALUE), expires_at=datetime(2027, 1, 1, tzinfo=UTC))
    env = {"YEC_DATA_DIR": str(data), "YEC_SECRET_STORE__KEYS": f"store:{STORE_KEY}"}

    before = starter("secrets", "check", **env)
    migrated = starter("secrets", "re-encrypt", **env, YEC_ENCRYPTION_KEYS=f"payload:{PAYLOAD_KEY}")
    again = starter("secrets", "re-encrypt", **env, YEC_ENCRYPTION_KEYS=f"payload:{PAYLOAD_KEY}")

    assert before.returncode == 0 and "local secret store at" in before.stdout
    assert migrated.returncode == 0, migrated.stderr
    assert "1 secret(s) re-encrypted with the store's newest key, 0 already were" in migrated.stdout
    assert "0 secret(s) re-encrypted with the store's newest key, 1 already were" in again.stdout
    store = LocalSecretStore(data / "secrets", {"store": base64.b64decode(STORE_KEY)})
    assert (await store.get("acme-hq", "k1")).get_secret_value() == VALUE
    assert VALUE not in migrated.stdout + migrated.stderr


def test_secret_store_commands_fail_in_one_line() -> None:
    missing = starter("secrets", "re-encrypt")
    vault = starter(
        "secrets",
        "re-encrypt",
        YEC_SECRET_STORE__BACKEND="azure-key-vault",
        YEC_SECRET_STORE__VAULT_URL="https://example.vault.azure.net",
    )

    assert missing.returncode == 2 and "YEC_SECRET_STORE__KEYS is not set" in missing.stderr
    assert vault.returncode == 2 and "re-encrypt is for the local store" in vault.stderr
    assert all("Traceback" not in r.stderr for r in (missing, vault))
    assert len(vault.stderr.splitlines()) == 1
