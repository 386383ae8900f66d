"""damon_bpf.linux.taskstats: the memory delays of ``struct taskstats`` in every layout version."""

from __future__ import annotations

import struct

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux import taskstats


def _taskstats_raw(version: int, swapin: int, freepages: int, thrashing: int, compact: int) -> bytes:
    raw = bytearray(560)
    struct.pack_into("=H", raw, 0, version)
    col = 1 if version == 15 else 0
    for name, val in (("swapin_delay_total", swapin), ("freepages_delay_total", freepages),
                      ("thrashing_delay_total", thrashing), ("compact_delay_total", compact)):
        struct.pack_into("=Q", raw, taskstats._TS_OFFSETS[name][col], val)
    return bytes(raw)


def test_parse_taskstats_layouts() -> None:
    for version in (14, 15, 16):
        d = taskstats.parse_taskstats(_taskstats_raw(version, 1000, 2000, 3000, 4000))
        assert (d.version, d.swapin_delay_total, d.freepages_delay_total, d.thrashing_delay_total,
                d.compact_delay_total) == (version, 1000, 2000, 3000, 4000)
        assert d.mem_stall_ns == 10000
    # v16 is the original layout: swapin_delay_total right after swapin_count, as in include/uapi
    raw = bytearray(_taskstats_raw(16, 0, 0, 0, 0))
    struct.pack_into("=Q", raw, 56, 77)
    assert taskstats.parse_taskstats(bytes(raw)).swapin_delay_total == 77
    # fields an old version lacks read 0; a short reply is refused
    old = taskstats.parse_taskstats(_taskstats_raw(7, 1, 2, 3, 4))
    assert (old.freepages_delay_total, old.thrashing_delay_total, old.compact_delay_total) == (2, 0, 0)
    with pytest.raises(InvalidParamsError):
        taskstats.parse_taskstats(b"\x10")
