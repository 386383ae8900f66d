"""Two pte monitors of one process say so (issue #17 item 6): each clears the Accessed bits the other reads."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from damon_bpf.linux import state
from damon_bpf.ops.pte import PteOps


def test_a_second_monitor_of_a_pid_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(state, "STATE_DIR", tmp_path / "run")
    first, second = PteOps(), PteOps()
    first._claim(4321)
    assert first.notes == []
    second._claim(4321)  # at start-up: a note, printed with the others
    assert second.notes == [f"pte: damon-bpf process {os.getpid()} clears the Accessed bits of pid "
                            "4321 too: both see fewer accesses than there are (monitor a process with one pte "
                            "source at a time)"]
    second._opened = True  # a target added later (--follow-children): a warning
    second._claims.clear()
    with caplog.at_level(logging.WARNING):
        second._claim(4321)
    assert "clears the Accessed bits of pid 4321 too" in caplog.text
    first._claims[4321].release()
    third = PteOps()
    third._claim(4321)  # the first one is gone
    assert third.notes == [] and third._claims[4321].held
    third._claims[4321].release()
