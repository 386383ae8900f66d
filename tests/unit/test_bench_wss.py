"""The working-set reference side of ``bench/wss.py`` and ``bench/many_targets.py`` (``bench/_common.py``):
parsing ``smaps``/``smaps_rollup``, the recorder of the monitor's figures with and without the
``working_set_bytes`` interface of issue #16, and one real ``clear_refs`` reference of ``bench/wss_target.py``."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_common.py"
_spec = importlib.util.spec_from_file_location("damon_bpf_bench_common", _PATH)
assert _spec is not None and _spec.loader is not None
C = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = C
_spec.loader.exec_module(C)

MiB = 1 << 20

_ROLLUP = """\
55ad6c64c000-7ffd61837000 ---p 00000000 00:00 0                          [rollup]
Rss:               99944 kB
Pss:               98000 kB
Referenced:        20600 kB
Anonymous:         90000 kB
Swap:                  0 kB
"""

_SMAPS = """\
55ad6c64c000-55ad6c64e000 r--p 00000000 fd:00 1234                       /usr/bin/python3.11
Size:                  8 kB
Rss:                   8 kB
Referenced:            8 kB
VmFlags: rd mr mw me sd
7f0000000000-7f0010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:              262144 kB
Referenced:        16384 kB
Anonymous:        262144 kB
VmFlags: rd wr mr mw me ac sd
7f0010000000-7f0010021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Referenced:          100 kB
"""


def test_parse_referenced_of_smaps_rollup_and_of_smaps() -> None:
    assert C.parse_referenced(_ROLLUP) == 20600 * 1024
    # a whole smaps: the sum of its mappings
    assert C.parse_referenced(_SMAPS) == (8 + 16384 + 100) * 1024
    with pytest.raises(ValueError):
        C.parse_referenced("Rss: 4 kB\n")


def test_parse_smaps_referenced_per_mapping() -> None:
    maps = C.parse_smaps_referenced(_SMAPS)
    assert maps == [
        (0x55AD6C64C000, 0x55AD6C64E000, 8 * 1024, "/usr/bin/python3.11"),
        (0x7F0000000000, 0x7F0010000000, 16384 * 1024, ""),
        (0x7F0010000000, 0x7F0010021000, 100 * 1024, "[heap]"),
    ]
    # VmFlags lines ("VmFlags: rd ...") are not headers
    assert len(maps) == 3


def test_referenced_in_counts_overlapping_mappings_whole() -> None:
    maps = C.parse_smaps_referenced(_SMAPS)
    # a range inside the anonymous mapping: that mapping counts whole (mapping-granular)
    assert C.referenced_in(maps, [(0x7F0000100000, 0x7F0000200000)]) == 16 * MiB
    # touching but not overlapping ([start, end) ranges)
    assert C.referenced_in(maps, [(0x7F0010021000, 0x7F0010030000)]) == 0
    assert C.referenced_in(maps, [(0x7F0000000000, 0x7F0010021000)]) == 16 * MiB + 100 * 1024
    assert C.referenced_in(maps, []) == 0


def test_rel_error_and_ref_summary() -> None:
    assert C.rel_error(125, 100) == pytest.approx(0.25)
    assert C.rel_error(None, 100) is None and C.rel_error(5, 0) is None and C.rel_error(5, None) is None
    s = [C.RefSample(1, 0.0, 1.01, b, b // 2) for b in (10, 30, 20)]
    summ = C.ref_summary(s)
    assert (summ["n"], summ["median"], summ["min"], summ["max"], summ["in_ranges_median"]) == (3, 20, 10, 30, 10)
    assert C.ref_summary([])["median"] is None


def _tsnap(pid: int, regions: list[tuple[int, int, int]], ws: int | None = None) -> object:
    from damon_bpf.engine.kdamond import TargetSnapshot

    a = np.array(regions, dtype=np.int64).reshape(-1, 3)
    z = np.zeros(len(regions), dtype=np.int64)
    t = TargetSnapshot(pid, a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy(), z, z, z)
    if ws is None:
        return t
    # the interface of issue #16: TargetSnapshot.working_set_bytes (a stand-in until main has it)
    return SimpleNamespace(pid=t.pid, start=t.start, end=t.end, nr_accesses=t.nr_accesses, working_set_bytes=ws)


def _snap(t_s: float, targets: list[object], window_us: int | None = None) -> object:
    ns = SimpleNamespace(time_ns=int(t_s * 1e9), start_time_ns=0, aggr_interval_us=100_000,
                         sample_interval_us=5_000, targets=tuple(targets))
    if window_us is not None:
        ns.working_set_window_us = window_us
    return ns


def test_recorder_fallbacks_without_the_attribute() -> None:
    rec = C.WorkingSetRecorder(window_s=0.3)
    # snapshots every 100 ms; regions [0,100) [100,200) [200,300); accessed ones move
    rec(_snap(0.1, [_tsnap(7, [(0, 100, 1), (100, 200, 0), (200, 300, 0)])]))
    rec(_snap(0.2, [_tsnap(7, [(0, 100, 0), (100, 200, 2), (200, 300, 0)])]))
    rec(_snap(0.3, [_tsnap(7, [(0, 100, 0), (100, 200, 0), (200, 300, 0)])]))
    rec(_snap(0.4, [_tsnap(7, [(0, 100, 0), (100, 200, 0), (200, 300, 3)])]))
    assert not rec.has_attribute
    ser = rec.series()
    assert [r["t"] for r in ser] == [0.1, 0.2, 0.3, 0.4]
    aggr = [r["targets"][0]["aggr"] for r in ser]
    window = [r["targets"][0]["window"] for r in ser]
    assert aggr == [100, 100, 0, 100]
    # the union over the aggregation windows inside the last 0.3 s: at 0.4 s the snapshots of 0.2, 0.3, 0.4
    assert window == [100, 200, 200, 200]
    fig, kind = C.monitor_figure(ser[-1]["targets"][0])
    assert (fig, kind) == (200, "fallback")
    assert rec.cpu_s >= 0.0


def test_recorder_uses_working_set_bytes_where_the_library_has_it() -> None:
    rec = C.WorkingSetRecorder(window_s=1.0)
    rec(_snap(1.0, [_tsnap(7, [(0, 4096, 1)], ws=12345), _tsnap(8, [(0, 4096, 0)], ws=0)], window_us=1_000_000))
    assert rec.has_attribute
    row = rec.series()[0]
    assert row["window_us"] == 1_000_000
    assert [C.monitor_figure(t) for t in row["targets"]] == [(12345, "working_set_bytes"), (0, "working_set_bytes")]
    assert [t["aggr"] for t in row["targets"]] == [4096, 0]


def test_recorder_keeps_source_stats_at_most_once_a_period() -> None:
    calls = []

    class _Mon:
        def source_stats(self) -> dict[str, int]:
            calls.append(1)
            return {"walks": len(calls)}

    rec = C.WorkingSetRecorder(stats_period_s=1.0)
    rec.monitor = _Mon()
    for i in range(1, 26):  # 2.5 s of 100 ms snapshots
        rec(_snap(i / 10, [_tsnap(7, [(0, 4096, 0)])]))
    assert len(calls) == 3 and rec.stats == {"walks": 3}


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="clear_refs not writable here")
def test_reference_wss_of_a_sweeping_target() -> None:
    # 32 MiB mapped, 8 MiB written every 50 ms: the mapping's referenced bytes are the 8 MiB
    with C.TargetProc(["--size-mib", "32", "--hot-mib", "8", "--sweep-ms", "50"]) as t:
        time.sleep(0.3)
        s = C.reference_wss(t.pid, 0.5, t.ranges)
    assert s.pid == t.pid and s.window_s >= 0.5
    # mapping-granular: the kernel may have merged a neighbouring anonymous mapping into it
    assert s.in_ranges_bytes is not None and 8 * MiB <= s.in_ranges_bytes < 9 * MiB
    assert s.anon_bytes is not None and s.anon_bytes >= s.in_ranges_bytes
    # the whole process: the 8 MiB plus what its interpreter touched, far less than its 32 MiB mapping
    assert 8 * MiB <= s.referenced_bytes < 24 * MiB


def _load(name: str) -> object:
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"damon_bpf_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _series(ws: list[int | None], window: list[int], dt: float = 0.5) -> list[dict[str, object]]:
    return [{"t": round((i + 1) * dt, 3), "window_us": 1_000_000 if w is not None else None, "aggr_us": 100_000,
             "sample_us": 5_000,
             "targets": [{"pid": 7, "ws": w, "aggr": 1, "window": win, "nr_regions": 10 + i}]}
            for i, (w, win) in enumerate(zip(ws, window))]


def test_wss_summary_takes_the_attribute_after_the_first_seconds() -> None:
    wss = _load("wss")
    # 0.5 s apart: the first 9 snapshots are before 5 s
    ser = _series([999] * 9 + [10, 30, 20], [5] * 12)
    m = wss.summarize_monitor(ser, 5.0)  # type: ignore[attr-defined]
    assert (m["figure"], m["median"], m["settled"], m["window_us"]) == ("working_set_bytes", 20, 3, 1_000_000)
    assert m["max_snapshot_gap_s"] == pytest.approx(0.5)
    # without the attribute: the window fallback
    m = wss.summarize_monitor(_series([None] * 12, list(range(12))), 5.0)  # type: ignore[attr-defined]
    assert (m["figure"], m["median"], m["window_us"]) == ("fallback", 10, None)


def test_many_targets_figure_is_the_median_of_the_last_two_seconds() -> None:
    mt = _load("many_targets")
    ser = _series([1, 1, 1, 1, 1, 1, 50, 60, 70, 80], [0] * 10)  # t = 0.5 .. 5.0
    pt = mt.per_target(ser, 0)  # type: ignore[attr-defined]
    # the snapshots of the last 2 s, t = 3.0 .. 5.0: 1, 50, 60, 70, 80
    assert pt["kind"] == "working_set_bytes"
    assert pt["figure"] == 60
    assert mt.per_target([], 0)["figure"] is None  # type: ignore[attr-defined]
