"""The versioning policy (docs/ARCHITECTURE.md, "Versioning"), enforced.

- Every recorded history replays against today's workflow code: a change that would break running
  workflows (non-determinism) fails here, so it has to be made with `workflow.patched` or a new
  workflow type instead.
- Recorded histories are append-only: each is listed with its hash in MANIFEST.sha256, none is
  changed or removed, and git shows each file added once and never modified.
- No recorded history cancels a timer (workflows/alarms.py says why).

Record with YEC_RECORD_HISTORIES=1 pytest (new files are added, never overwritten).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from common.settings import Settings
from common.temporal import data_converter
from tests.conftest import HISTORIES_DIR, HISTORIES_MANIFEST, TEST_ENCRYPTION_KEYS
from worker import WORKFLOWS

RECORDED = sorted(HISTORIES_DIR.glob("*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_recorded_histories_cover_every_workflow_type() -> None:
    recorded = {
        _history(path).events[0].workflow_execution_started_event_attributes.workflow_type.name for path in RECORDED
    }
    assert recorded >= {"IntegrationWorkflow", "SecretRotationWorkflow"}, recorded


def _manifest() -> tuple[str, dict[str, str]]:
    """The date the policy holds from (its first line) and the hash of each recording."""
    header, *lines = HISTORIES_MANIFEST.read_text().splitlines()
    since = header.removeprefix("# append-only since ")
    return since, {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def test_recorded_histories_are_append_only() -> None:
    _, listed = _manifest()
    assert sorted(listed) == [path.name for path in RECORDED], "every recording is in the manifest, and only those"
    for path in RECORDED:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], f"{path.name} was changed"


def test_git_shows_each_history_added_once() -> None:
    """A recording that was re-recorded in place shows more than one commit."""
    since, _ = _manifest()
    try:
        log = subprocess.run(
            ["git", "log", f"--since={since}", "--format=%H", "--name-only", "--", str(HISTORIES_DIR)],
            cwd=HISTORIES_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = [line.rsplit("/", 1)[-1] for line in log.splitlines() if line.endswith(".json")]
    current = {path.name for path in RECORDED}
    touched_twice = sorted({name for name in names if name in current and names.count(name) > 1})
    assert not touched_twice, f"recorded histories changed after they were committed: {touched_twice}"


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_replay(path: Path) -> None:
    settings = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(settings))
    await replayer.replay_workflow(_history(path))


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_no_timer_is_ever_cancelled(path: Path) -> None:
    cancelled = [e.event_id for e in _history(path).events if e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED]
    assert not cancelled, f"TimerCanceled at events {cancelled}"
