"""The workload runner in-process: mappings, addresses, counting, file backing and cleanup."""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.workload.config import PAGE_SIZE, builtin_pattern, config_from_dict
from damon_bpf.workload.runner import Workload
from damon_bpf.workload.truth import load_truth


def _maps(pid: int | str = "self") -> list[tuple[int, int, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            out.append((lo, hi, fields[5].strip() if len(fields) > 5 else ""))
    return out


def _cfg(**phase_over: object) -> object:
    return config_from_dict({
        "name": "unit",
        "regions": [
            {"name": "hot", "size": "16MiB"},
            {"name": "cold", "size": "8MiB"},
            {"name": "seq", "size": "1MiB"},
        ],
        "phases": [
            {"name": "mix", "duration": 0.25, "regions": [
                {"region": "hot", "pattern": "random", "weight": 3, "access": "rw"},
                {"region": "seq", "pattern": "sequential", "stride": 64, "access": "write"},
            ]},
            {"name": "idle", "duration": 0.1},
            {"name": "seq", "duration": 0.15, "regions": [{"region": "seq", "pattern": "sequential"}]},
        ],
    })


def test_setup_addresses_match_maps(tmp_path: Path) -> None:
    with Workload(_cfg(), truth_path=tmp_path / "t.jsonl", seed=1) as wl:  # type: ignore[arg-type]
        assert wl.regions == []
        wl.setup()
        maps = _maps()
        for r, m in zip(wl.regions, wl._maps):
            assert r.size_bytes == len(m.mm) and r.file_backed is False and r.path is None
            assert r.start == m.arr.ctypes.data
            # Private anonymous VMAs may be merged with neighbours, so the region lies inside one line.
            assert any(lo <= r.start and r.end <= hi and not name for lo, hi, name in maps), r
            # Every page was written once at setup.
            assert np.all(m.arr[::PAGE_SIZE] == 1)
        rec = wl.start_record()
        assert rec["pid"] == os.getpid() and rec["seed"] == 1 and rec["pattern"] == "unit"
    t = load_truth(tmp_path / "t.jsonl")
    assert t.phases == [] and t.end_time is not None and t.start.time <= t.end_time


def test_run_counts_and_records(tmp_path: Path) -> None:
    truth = tmp_path / "t.jsonl"
    with Workload(_cfg(), threads=2, truth_path=truth, seed=3) as wl:  # type: ignore[arg-type]
        wl.setup()
        assert sum(t.name.startswith("damon-bpf-workload-") for t in threading.enumerate()) == 2
        t0 = time.monotonic()
        wl.run(1.0)
        assert 0.95 < time.monotonic() - t0 < 1.5
    assert not any(t.name.startswith("damon-bpf-workload-") for t in threading.enumerate())
    t = load_truth(truth)
    names = [p.name for p in t.phases]
    assert names[:4] == ["mix", "idle", "seq", "mix"]
    prev_end = t.start.time
    for p in t.phases:
        assert prev_end <= p.start < p.end
        prev_end = p.end
        by = {r.name: r for r in p.regions}
        assert list(by) == ["hot", "cold", "seq"]
        assert by["cold"].nr_touches == 0 and by["cold"].hot is False and by["cold"].pattern is None
        if p.name == "mix":
            assert by["hot"].hot and by["hot"].access == "rw" and by["seq"].access == "write"
            # Weight 3:1 decides how batches are spread (loose bounds, it is random).
            assert 1.5 < by["hot"].nr_touches / by["seq"].nr_touches < 6
        elif p.name == "idle":
            assert all(r.nr_touches == 0 and not r.hot for r in p.regions)
        else:
            assert by["seq"].pattern == "sequential" and by["seq"].nr_touches > 0 and by["hot"].nr_touches == 0
    assert t.end_time is not None and t.end_time >= prev_end
    assert sum(p.end - p.start for p in t.phases) == pytest.approx(1.0, abs=0.1)


def test_hot_random_is_fast(tmp_path: Path) -> None:
    # A sanity floor, not a benchmark: vectorised touches of a 16 MiB region go far beyond this.
    with Workload(builtin_pattern("hotcold"), truth_path=tmp_path / "t.jsonl", seed=5) as wl:
        wl.setup()
        wl.run(0.3)
    (phase,) = load_truth(tmp_path / "t.jsonl").phases
    hot, cold = phase.regions
    assert hot.end - hot.start == 16 << 20 and hot.pattern == "random"
    assert hot.touches_per_sec > 10000 and cold.nr_touches == 0


def test_stop_event(tmp_path: Path) -> None:
    stop = threading.Event()
    with Workload(_cfg(), truth_path=tmp_path / "t.jsonl") as wl:  # type: ignore[arg-type]
        wl.setup()
        threading.Timer(0.1, stop.set).start()
        t0 = time.monotonic()
        wl.run(None, stop)
        assert time.monotonic() - t0 < 0.3
    t = load_truth(tmp_path / "t.jsonl")
    assert [p.name for p in t.phases] == ["mix"] and t.end_time is not None


def test_file_backed(tmp_path: Path) -> None:
    d = tmp_path / "files"
    d.mkdir()
    cfg = builtin_pattern("hotcold", scale=1 / 64)
    with Workload(cfg, file_dir=d) as wl:
        wl.setup()
        paths = sorted(r.path for r in wl.regions if r.path)
        assert len(paths) == 2 and all(os.path.dirname(p) == str(d) for p in paths)
        assert sorted(str(p) for p in d.iterdir()) == paths
        for r in wl.regions:
            assert os.path.getsize(r.path or "") == r.size_bytes
        maps = _maps()
        for r in wl.regions:
            assert (r.start, r.end, r.path) in maps
        wl.run(0.1)
    assert list(d.iterdir()) == []


def test_config_file_backed_region_uses_tempdir() -> None:
    cfg = config_from_dict({"regions": [{"name": "f", "size": "64KiB", "file_backed": True},
                                        {"name": "a", "size": "64KiB"}],
                            "phases": [{"name": "p", "duration": 1, "regions": [{"region": "f"}]}]})
    with Workload(cfg) as wl:
        wl.setup()
        f, a = wl.regions
        assert f.file_backed and f.path and os.path.exists(f.path)
        assert not a.file_backed and a.path is None
        path = f.path
    assert not os.path.exists(path)


def test_bad_params(tmp_path: Path) -> None:
    cfg = builtin_pattern("hotcold", scale=0.01)
    for kw in ({"threads": 0}, {"threads": 10**6}, {"batch_touches": 0}, {"seed": -1},
               {"file_dir": tmp_path / "missing"}):
        with pytest.raises(InvalidParamsError):
            Workload(cfg, **kw)  # type: ignore[arg-type]
    wl = Workload(cfg)
    with pytest.raises(DamonBpfError, match="setup"):
        wl.run(0.1)
    wl.setup()
    with pytest.raises(InvalidParamsError, match="duration"):
        wl.run(-1)
    wl.close()
    wl.close()
    with pytest.raises(DamonBpfError):
        wl.setup()


def test_too_big_for_memory() -> None:
    with pytest.raises(InvalidParamsError, match="scale"):
        Workload(builtin_pattern("hotcold", scale=1e6)).setup()


def test_truth_file_error(tmp_path: Path) -> None:
    wl = Workload(builtin_pattern("hotcold", scale=0.01), truth_path=tmp_path / "no" / "t.jsonl")
    with pytest.raises(DamonBpfError, match="cannot create truth file"):
        wl.setup()
    assert wl.regions == []


def test_verify_mode_catches_a_changed_byte_and_keeps_writes_consistent() -> None:
    # the integrity mode: setup writes the pattern, the workers' writes keep it, and one changed byte (here
    # changed behind the workload's back, as a destructive madvise would) is found with its place
    from damon_bpf.workload import builtin_pattern
    from damon_bpf.workload.runner import DataIntegrityError, Workload

    wl = Workload(builtin_pattern("hotcold", 0.05), threads=2, verify=True, seed=3)
    try:
        wl.setup()
        wl.run(0.6)  # phases with writes ran and were checked at their ends
        wl.check_integrity()
        assert wl.nr_verified_pages > 0
        m = wl._maps[1]
        at = 5 * 4096 + 123
        m.arr[at] ^= 0xFF
        with pytest.raises(DataIntegrityError, match=f"offset {at:#x}"):
            wl.check_integrity("test")
        m.arr[at] ^= 0xFF
        m.arr[8192:12288] = 0  # a page read back as zeroes (e.g. dropped anonymous memory)
        with pytest.raises(DataIntegrityError):
            wl.check_integrity()
    finally:
        wl.close()


def test_perthread_each_worker_touches_its_own_region(tmp_path: Path) -> None:
    # PhaseAccess.thread: worker 0 writes only t0, worker 1 only t1, nobody the gap; the truth names the workers
    seen: set[tuple[int, str]] = set()
    truth = tmp_path / "t.jsonl"
    with Workload(builtin_pattern("perthread", 0.25), threads=2, truth_path=truth, seed=7) as wl:
        inner = wl._batch

        def spy(tid: int, plan: Any, rng: Any, cursors: Any) -> tuple[int, int]:
            ri, n = inner(tid, plan, rng, cursors)
            seen.add((tid, wl.regions[ri].name))
            return ri, n

        wl._batch = spy  # type: ignore[method-assign]
        wl.setup()
        rec = wl.start_record()
        wl.run(1.2)
    assert seen == {(0, "t0"), (1, "t1")}
    assert len(rec["thread_ids"]) == 2 and all(isinstance(x, int) for x in rec["thread_ids"])
    by = {r.name: r for r in load_truth(truth).phases[0].regions}
    assert by["t0"].nr_touches > 0 and by["t1"].nr_touches > 0 and by["gap"].nr_touches == 0


def test_perthread_with_one_thread_touches_both(tmp_path: Path) -> None:
    with Workload(builtin_pattern("perthread", 0.25), threads=1, truth_path=tmp_path / "t.jsonl", seed=7) as wl:
        wl.setup()
        wl.run(1.2)
    by = {r.name: r for r in load_truth(tmp_path / "t.jsonl").phases[0].regions}
    assert by["t0"].nr_touches > 0 and by["t1"].nr_touches > 0
