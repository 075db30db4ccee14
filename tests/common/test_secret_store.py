"""LocalSecretStore: encrypted 0600 files in 0700 directories, bound to their integration and key ID,
readable across an encryption-key rotation, and never anything but a reference in error messages."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from common import logging as common_logging
from common.logging import REDACTED, scrub
from common.secret_store import LocalSecretStore, SecretNotFound, SecretStoreUnavailable

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(200, 232))
VALUE = "Xy8Q~client-secret-value.0123456789abcdef"
EXPIRES = datetime(2027, 6, 1, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Modes are asserted under the usual umask, whatever the test runner's is."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "secrets"


@pytest.fixture
def store(root: Path) -> LocalSecretStore:
    return LocalSecretStore(root, {"old": OLD_KEY})


async def test_put_get_round_trip(store: LocalSecretStore) -> None:
    await store.put("acme-hq", "6f1c0a8e-key", SecretStr(VALUE), expires_at=EXPIRES)

    value = await store.get("acme-hq", "6f1c0a8e-key")

    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == VALUE


async def test_put_overwrites(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    await store.put("acme-hq", "k1", SecretStr("a-second-secret-value"), expires_at=EXPIRES)

    assert (await store.get("acme-hq", "k1")).get_secret_value() == "a-second-secret-value"
    assert [p.name for p in (root / "acme-hq").iterdir()] == ["k1.secret"]  # no temporary file left behind


@pytest.mark.usefixtures("umask_022")
async def test_file_is_private_and_encrypted(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)

    file = root / "acme-hq" / "k1.secret"
    assert mode(file) == 0o600
    assert mode(file.parent) == 0o700
    blob = file.read_bytes()
    assert VALUE.encode() not in blob
    assert b"client-secret" not in blob
    assert blob.startswith(b"old\n")  # the encryption key's ID, nothing else in clear


@pytest.mark.usefixtures("umask_022")
async def test_store_root_is_private_too(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)

    assert mode(root) == 0o700


async def test_put_and_get_register_the_value_for_log_scrubbing(root: Path) -> None:
    writer = LocalSecretStore(root, {"old": OLD_KEY})
    value = "registered-by-put-0123456789"
    await writer.put("acme-hq", "k1", SecretStr(value), expires_at=EXPIRES)
    assert scrub(f"leaked {value}!") == f"leaked {REDACTED}!"

    # A file written by another process: get() registers what it reveals.
    other = "written-elsewhere-0123456789"
    await writer.put("acme-hq", "k2", SecretStr(other), expires_at=EXPIRES)
    common_logging._known_secrets.discard(other)  # as if this process had never seen it
    assert scrub(other) == other
    await LocalSecretStore(root, {"old": OLD_KEY}).get("acme-hq", "k2")
    assert scrub(other) == REDACTED


async def test_missing_secret(store: LocalSecretStore) -> None:
    with pytest.raises(SecretNotFound, match="no stored secret for integration acme-hq key k1"):
        await store.get("acme-hq", "k1")


@pytest.mark.parametrize(("integration_id", "key_id"), [("acme-hq", "k2"), ("other-pbx", "k1")])
async def test_moved_file_fails_its_integrity_check(
    store: LocalSecretStore, root: Path, integration_id: str, key_id: str
) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    target = root / integration_id / f"{key_id}.secret"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(root / "acme-hq" / "k1.secret", target)

    with pytest.raises(SecretNotFound, match="failed its integrity check") as info:
        await store.get(integration_id, key_id)

    assert VALUE not in str(info.value)


async def test_tampered_file_fails_its_integrity_check(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    file = root / "acme-hq" / "k1.secret"
    blob = bytearray(file.read_bytes())
    blob[-1] ^= 0x01
    file.write_bytes(bytes(blob))

    with pytest.raises(SecretNotFound, match="integrity"):
        await store.get("acme-hq", "k1")


async def test_key_rotation(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "before", SecretStr(VALUE), expires_at=EXPIRES)
    rotated = LocalSecretStore(root, {"new": NEW_KEY, "old": OLD_KEY})

    assert (await rotated.get("acme-hq", "before")).get_secret_value() == VALUE

    await rotated.put("acme-hq", "after", SecretStr("written-after-rotation-0123"), expires_at=EXPIRES)
    assert (root / "acme-hq" / "after.secret").read_bytes().startswith(b"new\n")
    new_only = LocalSecretStore(root, {"new": NEW_KEY})
    assert (await new_only.get("acme-hq", "after")).get_secret_value() == "written-after-rotation-0123"

    with pytest.raises(SecretNotFound) as info:
        await new_only.get("acme-hq", "before")
    message = str(info.value)
    assert "store key 'old', which is not in YEC_SECRET_STORE__KEYS" in message
    assert VALUE not in message


async def test_a_different_key_under_the_same_id_fails_integrity(store: LocalSecretStore, root: Path) -> None:
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)

    with pytest.raises(SecretNotFound, match="integrity"):
        await LocalSecretStore(root, {"old": NEW_KEY}).get("acme-hq", "k1")


UNSAFE = [
    ("../x", "k1"),
    ("acme-hq", "../x"),
    ("acme/hq", "k1"),
    ("acme-hq", "k1/../../x"),
    ("", "k1"),
    ("acme-hq", ""),
    ("acme hq", "k1"),
    ("acme-hq", "k" * 129),
    ("/etc", "passwd"),
]


@pytest.mark.parametrize(("integration_id", "key_id"), UNSAFE)
async def test_unsafe_names_are_rejected(
    store: LocalSecretStore, tmp_path: Path, integration_id: str, key_id: str
) -> None:
    with pytest.raises(ValueError, match="unsafe name"):
        await store.put(integration_id, key_id, SecretStr(VALUE), expires_at=EXPIRES)
    with pytest.raises(ValueError, match="unsafe name"):
        await store.get(integration_id, key_id)
    with pytest.raises(ValueError, match="unsafe name"):
        await store.delete(integration_id, key_id)

    assert not list(tmp_path.rglob("*.secret"))


async def test_dot_dot_integration_id_is_rejected(store: LocalSecretStore, root: Path) -> None:
    with pytest.raises(ValueError, match="unsafe name"):
        await store.put("..", "escaped", SecretStr(VALUE), expires_at=EXPIRES)

    assert not (root.parent / "escaped.secret").exists()


async def test_unsafe_integration_id_in_key_ids(store: LocalSecretStore) -> None:
    with pytest.raises(ValueError, match="unsafe name"):
        await store.key_ids("../x")


async def test_key_ids_and_delete(store: LocalSecretStore) -> None:
    assert await store.key_ids("acme-hq") == []
    for key_id in ("k2", "k1", "v1.2"):
        await store.put("acme-hq", key_id, SecretStr(f"{key_id}-secret-value"), expires_at=EXPIRES)
    await store.put("other-pbx", "k9", SecretStr(VALUE), expires_at=EXPIRES)

    assert await store.key_ids("acme-hq") == ["k1", "k2", "v1.2"]
    assert await store.key_ids("other-pbx") == ["k9"]

    await store.delete("acme-hq", "k2")
    await store.delete("acme-hq", "never-existed")  # no error

    assert await store.key_ids("acme-hq") == ["k1", "v1.2"]
    with pytest.raises(SecretNotFound):
        await store.get("acme-hq", "k2")
    assert (await store.get("acme-hq", "v1.2")).get_secret_value() == "v1.2-secret-value"


async def test_re_encrypt_moves_every_file_to_the_active_key(root: Path) -> None:
    """Files sealed by the payload keys (before the store had its own) or by a retired store key are
    rewritten with the newest; a file nothing opens is reported and left alone; a second run is a no-op."""
    await LocalSecretStore(root, {"payload": OLD_KEY}).put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)
    await LocalSecretStore(root, {"retired": NEW_KEY}).put("acme-hq", "k2", SecretStr(VALUE), expires_at=EXPIRES)
    stranger = os.urandom(32)
    await LocalSecretStore(root, {"lost": stranger}).put("other-pbx", "k3", SecretStr(VALUE), expires_at=EXPIRES)
    store = LocalSecretStore(root, {"store": bytes(range(100, 132)), "retired": NEW_KEY})

    done = store.re_encrypt({"payload": OLD_KEY})

    assert (done.rewritten, done.current, done.unreadable) == (2, 0, [root / "other-pbx" / "k3.secret"])
    only_new = LocalSecretStore(root, {"store": bytes(range(100, 132))})
    for key_id in ("k1", "k2"):
        assert (await only_new.get("acme-hq", key_id)).get_secret_value() == VALUE
    assert mode(root / "acme-hq" / "k1.secret") == 0o600
    again = store.re_encrypt({"payload": OLD_KEY})
    assert (again.rewritten, again.current, len(again.unreadable)) == (0, 2, 1)


async def test_writes_are_durable(store: LocalSecretStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file and then its directory are fsynced before put returns: the value exists nowhere else."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    await store.put("acme-hq", "k1", SecretStr(VALUE), expires_at=EXPIRES)

    assert len(synced) == 2
    assert Path(synced[0]).parent == root / "acme-hq" and Path(synced[0]).name.startswith(".k1.secret.")
    assert synced[1] == str(root / "acme-hq")


async def test_check_reports_an_unusable_directory(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")

    with pytest.raises(SecretStoreUnavailable, match=r"local secret store at .*a-file/secrets"):
        await LocalSecretStore(blocked / "secrets", {"k": OLD_KEY}).check()
