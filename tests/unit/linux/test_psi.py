"""damon_bpf.linux.psi: the PSI format (``/proc/pressure/memory``, a cgroup's ``memory.pressure``) and its readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux import psi


def test_parse_psi() -> None:
    text = ("some avg10=0.12 avg60=0.00 avg300=0.00 total=6258\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=3725\n")
    assert psi.parse_psi(text) == {"some": 6258, "full": 3725}
    with pytest.raises(InvalidParamsError):
        psi.parse_psi("garbage\n")


def test_readers(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="CONFIG_PSI"):
        psi.read_memory_pressure(str(tmp_path))
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "memory").write_text("some avg10=0 avg60=0 avg300=0 total=7\n")
    assert psi.read_memory_pressure(str(tmp_path)) == {"some": 7}
    (tmp_path / "cg" / "app").mkdir(parents=True)
    (tmp_path / "cg" / "app" / "memory.pressure").write_text("some avg10=0 avg60=0 avg300=0 total=5\n")
    assert psi.read_cgroup_memory_pressure(str(tmp_path / "cg"), "/app/") == {"some": 5}
    assert psi.read_cgroup_memory_pressure(str(tmp_path / "cg"), "/gone") is None
