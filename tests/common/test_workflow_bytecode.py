"""compile_workflow_code: the sandbox's per-run imports find bytecode even under PYTHONDONTWRITEBYTECODE."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from common.temporal import compile_workflow_code


def _workflow_class_in(directory: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    source = directory / "some_workflow.py"
    source.write_text("class SomeWorkflow:\n    pass\n")
    spec = importlib.util.spec_from_file_location("some_workflow", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "some_workflow", module)
    spec.loader.exec_module(module)
    cls: type = module.SomeWorkflow
    return cls


def test_bytecode_is_written_despite_dont_write_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    workflow_class = _workflow_class_in(tmp_path, monkeypatch)
    cached = Path(importlib.util.cache_from_source(str(tmp_path / "some_workflow.py")))
    assert not cached.exists()

    assert compile_workflow_code([workflow_class, workflow_class]) == []
    assert cached.exists()

    # Current bytecode is left alone, not rewritten at every worker start.
    written = cached.stat().st_mtime_ns
    assert compile_workflow_code([workflow_class]) == []
    assert cached.stat().st_mtime_ns == written


def test_unwritable_bytecode_cache_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workflow_class = _workflow_class_in(tmp_path, monkeypatch)
    (tmp_path / "__pycache__").write_text("a file where the cache folder should be")  # fails even as root

    assert compile_workflow_code([workflow_class]) == [tmp_path / "some_workflow.py"]
