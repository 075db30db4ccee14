"""Load the tenants' state from their JSON file and write it back, coalescing bursts of changes. The home
tenant's snapshot carries the other tenants' (``other_tenants``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from common.files import write_private
from simulators.entra.state import EntraState, Snapshot


def load_state(path: Path) -> list[EntraState] | None:
    """The home tenant, then the others; None if there is no state file yet."""
    if not path.is_file():
        return None
    home = Snapshot.model_validate_json(path.read_bytes())
    return [EntraState.from_snapshot(snapshot) for snapshot in [home, *home.other_tenants]]


class StatePersister:
    """Saves the tenants (home first) to ``path`` at most once per ``debounce`` seconds while they keep
    changing."""

    def __init__(self, tenants: list[EntraState], path: Path | None, debounce: float) -> None:
        self._tenants = tenants
        self._path = path
        self._debounce = debounce
        self._saved_revision = -1
        self._task: asyncio.Task[None] | None = None
        # Set by close() to cut the debounce wait short (never cancel a write in progress).
        self._wake = asyncio.Event()
        for state in tenants:
            state.on_change = self._changed

    @property
    def _revision(self) -> int:
        return sum(state.revision for state in self._tenants)

    def _snapshot(self) -> Snapshot:
        home, *others = self._tenants
        snapshot = home.to_snapshot()
        snapshot.other_tenants = [state.to_snapshot() for state in others]
        return snapshot

    def _changed(self) -> None:
        if self._path is not None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._debounce)
        await self.flush()

    async def flush(self) -> None:
        # Loop: a change made while the file was being written needs one more write.
        while self._path is not None and self._saved_revision != self._revision:
            revision = self._revision
            data = self._snapshot().model_dump_json()
            await asyncio.to_thread(write_private, self._path, data.encode())
            self._saved_revision = revision

    async def close(self) -> None:
        for state in self._tenants:
            state.on_change = None
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
