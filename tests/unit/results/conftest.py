"""Fixtures of the results tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from damon_bpf.results.records import journal


@pytest.fixture(autouse=True)
def private_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private registry of live recordings (``journal.RECORDINGS_DIR``) for each test: a :class:`RecordWriter`
    registers itself there and completes the dead recordings registered there, never those of the machine's
    ``/run/damon-bpf``."""
    d = tmp_path / "run"
    monkeypatch.setattr(journal, "RECORDINGS_DIR", d)
    return d
