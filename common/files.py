"""Private files: secrets, keys and simulator state are written atomically, readable only by the user."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable); missing parent
    folders are created 0700 (mkdir's own mode only applies to the last level).

    ``durable``: the file's data and its directory entry are on disk before this returns (fsync both),
    so a power cut right after can't lose it: for data that exists nowhere else, like a client secret.
    """
    for folder in reversed([path.parent, *path.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)  # exist_ok: another writer may create it meanwhile
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_directory(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
