"""damon_bpf.linux.memory: the readers of ``/proc/meminfo`` and the per-node meminfo (the meminfo parser's vectors
are tests/unit/ops/test_damos_ops.py's, beside the formulas that use them), and the PSI format and its readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux import memory


def test_meminfo_readers(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="meminfo"):
        memory.read_meminfo(str(tmp_path))
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemFree: 40 kB\n")
    assert memory.read_meminfo(str(tmp_path)) == {"MemTotal": 100, "MemFree": 40}
    with pytest.raises(NotSupportedError, match="CONFIG_NUMA"):
        memory.read_node_meminfo(0, str(tmp_path))
    node = Path(memory.node_root(str(tmp_path)))
    (node / "node0").mkdir(parents=True)
    (node / "node0" / "meminfo").write_text("Node 0 MemTotal: 10 kB\n")
    assert memory.read_node_meminfo(0, str(tmp_path)) == {"MemTotal": 10}
    assert memory.read_node_meminfo(1, str(tmp_path)) is None  # no such node
    assert memory.read_node_meminfo(-1, str(tmp_path)) is None


def test_parse_psi() -> None:
    text = ("some avg10=0.12 avg60=0.00 avg300=0.00 total=6258\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=3725\n")
    assert memory.parse_psi(text) == {"some": 6258, "full": 3725}
    with pytest.raises(InvalidParamsError):
        memory.parse_psi("garbage\n")


def test_psi_readers(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="CONFIG_PSI"):
        memory.read_memory_pressure(str(tmp_path))
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "memory").write_text("some avg10=0 avg60=0 avg300=0 total=7\n")
    assert memory.read_memory_pressure(str(tmp_path)) == {"some": 7}
    (tmp_path / "cg" / "app").mkdir(parents=True)
    (tmp_path / "cg" / "app" / "memory.pressure").write_text("some avg10=0 avg60=0 avg300=0 total=5\n")
    assert memory.read_cgroup_memory_pressure(str(tmp_path / "cg"), "/app/") == {"some": 5}
    assert memory.read_cgroup_memory_pressure(str(tmp_path / "cg"), "/gone") is None


def test_parse_swaps() -> None:
    from damon_bpf.linux.memory import parse_swaps

    assert parse_swaps("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n") == []
    text = ("Filename\tType\tSize\tUsed\tPriority\n/dev/vda2 partition 4194300 0 -2\n"
            "/var/swapfile file 1048572 512 -3\n")
    assert parse_swaps(text) == [("/dev/vda2", "partition", 4194300), ("/var/swapfile", "file", 1048572)]
