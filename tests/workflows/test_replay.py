"""Replays recorded histories against today's workflow code: a change that would break running
workflows (non-determinism) fails here. Record new ones with YEC_RECORD_HISTORIES=1 pytest."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from common.settings import Settings
from common.temporal import data_converter
from tests.conftest import HISTORIES_DIR, TEST_ENCRYPTION_KEYS
from workflows.integration import IntegrationWorkflow
from workflows.rotation import SecretRotationWorkflow

RECORDED = sorted(HISTORIES_DIR.glob("*.json"))


def test_recorded_histories_exist() -> None:
    assert len(RECORDED) >= 3, f"expected recorded histories in {HISTORIES_DIR}"


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_replay(path: Path) -> None:
    settings = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)
    replayer = Replayer(
        workflows=[IntegrationWorkflow, SecretRotationWorkflow], data_converter=data_converter(settings)
    )
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)
