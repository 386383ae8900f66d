"""damon_bpf.linux.meminfo: the readers of ``/proc/meminfo`` and the per-node meminfo (the parser's vectors are
tests/unit/ops/test_damos_ops.py's, beside the formulas that use them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from damon_bpf.errors import NotSupportedError
from damon_bpf.linux import meminfo


def test_readers(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="meminfo"):
        meminfo.read_meminfo(str(tmp_path))
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemFree: 40 kB\n")
    assert meminfo.read_meminfo(str(tmp_path)) == {"MemTotal": 100, "MemFree": 40}
    with pytest.raises(NotSupportedError, match="CONFIG_NUMA"):
        meminfo.read_node_meminfo(0, str(tmp_path))
    node = Path(meminfo.node_root(str(tmp_path)))
    (node / "node0").mkdir(parents=True)
    (node / "node0" / "meminfo").write_text("Node 0 MemTotal: 10 kB\n")
    assert meminfo.read_node_meminfo(0, str(tmp_path)) == {"MemTotal": 10}
    assert meminfo.read_node_meminfo(1, str(tmp_path)) is None  # no such node
    assert meminfo.read_node_meminfo(-1, str(tmp_path)) is None
