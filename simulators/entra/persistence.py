"""Load the tenant state from its JSON file and write it back, coalescing bursts of changes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from common.files import write_private
from simulators.entra.state import EntraState, Snapshot


def load_state(path: Path) -> EntraState | None:
    if not path.is_file():
        return None
    return EntraState.from_snapshot(Snapshot.model_validate_json(path.read_bytes()))


class StatePersister:
    """Saves ``state`` to ``path`` at most once per ``debounce`` seconds while it keeps changing."""

    def __init__(self, state: EntraState, path: Path | None, debounce: float) -> None:
        self._state = state
        self._path = path
        self._debounce = debounce
        self._saved_revision = -1
        self._task: asyncio.Task[None] | None = None
        # Set by close() to cut the debounce wait short (never cancel a write in progress).
        self._wake = asyncio.Event()
        state.on_change = self._changed

    def _changed(self) -> None:
        if self._path is not None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._debounce)
        await self.flush()

    async def flush(self) -> None:
        # Loop: a change made while the file was being written needs one more write.
        while self._path is not None and self._saved_revision != self._state.revision:
            revision = self._state.revision
            data = self._state.to_snapshot().model_dump_json()
            await asyncio.to_thread(write_private, self._path, data.encode())
            self._saved_revision = revision

    async def close(self) -> None:
        self._state.on_change = None
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
