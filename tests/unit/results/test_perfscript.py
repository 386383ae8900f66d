"""perf recordings with data addresses: parsing ``perf evlist -v``/``perf script`` text (canned output of real
runs of perf 6.1 on the development machine), perf's error messages, the replay ops' estimators on a fake clock,
and the three-regions rule on sampled addresses. Needs neither root, bcc nor perf (a fake ``perf`` script stands
in where a subprocess is run).

The damo round trip of ``records.write_perf_script`` is tested only when ``damon_bpf.results.records`` exists (it is
written separately); otherwise that test skips with the reason.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.engine import Attrs
from damon_bpf.errors import InvalidParamsError, MissingDependencyError, NotSupportedError
from damon_bpf.ops.bpf import density_nr_accesses
from damon_bpf.ops.replay import ReplayOps, sample_ranges
from damon_bpf.session.replay import FakeClock, replay
from damon_bpf.results.perfscript import (
    PerfDataError,
    PerfEvent,
    PerfSamples,
    parse_evlist,
    parse_script,
    parse_symbols,
    read_perf_data,
    script_fields,
)

# -- canned perf output (perf 6.1.192, Linux 6.18, software page faults) -----------------------------------

# perf record -e page-faults -d -p PID (default frequency mode: each sample carries its period)
EVLIST_FREQ = (
    "page-faults: type: 1, size: 128, config: 0x2, { sample_period, sample_freq }: 4000, sample_type: "
    "IP|TID|TIME|ADDR|PERIOD|DATA_SRC, read_format: ID|LOST, disabled: 1, inherit: 1, mmap: 1, comm: 1, freq: 1, "
    "task: 1, mmap_data: 1, sample_id_all: 1, exclude_guest: 1, mmap2: 1, comm_exec: 1, ksymbol: 1, bpf_event: 1\n")
SCRIPT_FREQ = """\
          python 26364/26364  2604.834035801:          1 page-faults:     7ff7dd7ea000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7ff7e2d9b48d
          python 26364/26364  2604.834044469:          1 page-faults:     7ff7dd4a2000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7ff7e2d9b48d
          python 26364/26364  2604.834048815:          1 page-faults:     7ff7ddb6e000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7ff7e2d9b48d
          python 26364/26364  2605.254520870:        170 page-faults:     7ff7dd5f7000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7ff7e2d9c88f
          python 26364/26364  2605.254698381:        191 page-faults:     7ff7dd95c000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7ff7e2d9c88f
"""

# perf record -e page-faults,minor-faults -c 1 -d -a (fixed period 1: no PERIOD; CPU; perf's dummy:HG event)
EVLIST_SYSWIDE = """\
page-faults: type: 1, size: 128, config: 0x2, { sample_period, sample_freq }: 1, sample_type: IP|TID|TIME|ADDR|ID|CPU|DATA_SRC, read_format: ID|LOST, disabled: 1, inherit: 1, sample_id_all: 1, exclude_guest: 1
minor-faults: type: 1, size: 128, config: 0x5, { sample_period, sample_freq }: 1, sample_type: IP|TID|TIME|ADDR|ID|CPU|DATA_SRC, read_format: ID|LOST, disabled: 1, inherit: 1, sample_id_all: 1, exclude_guest: 1
dummy:HG: type: 1, size: 128, config: 0x9, { sample_period, sample_freq }: 1, sample_type: IP|TID|TIME|ADDR|ID|CPU|DATA_SRC, read_format: ID|LOST, inherit: 1, mmap: 1, comm: 1, task: 1, mmap_data: 1, sample_id_all: 1, mmap2: 1, comm_exec: 1, ksymbol: 1, bpf_event: 1
"""
SCRIPT_SYSWIDE = """\
          python 26752/26752 [000]  2716.018514474:  page-faults:     7f1ed2fe8000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7f1ed394becf
          python 26752/26752 [000]  2716.018522189: minor-faults:     7f1ed2fe8000      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7f1ed394becf
          python 27237/27237 [001]  2716.024046517:  page-faults:         23d4d270      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7f4a07b28ebd
     Web Content 27240/27241 [001]  2716.024056294: minor-faults:         23d4d270      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A     7f4a07b28ebd
"""

# perf record -e page-faults -c 1 -d -W --phys-data (weight recorded; a fault taken in the kernel: kernel ip)
EVLIST_WEIGHT = (
    "page-faults: type: 1, size: 128, config: 0x2, { sample_period, sample_freq }: 1, sample_type: "
    "IP|TID|TIME|ADDR|DATA_SRC|PHYS_ADDR|WEIGHT_STRUCT, read_format: ID|LOST, disabled: 1, inherit: 1, mmap: 1, "
    "comm: 1, enable_on_exec: 1, task: 1, mmap_data: 1\n")
SCRIPT_WEIGHT = """\
         python3 27508/27508  2752.972099018: page-faults:     561e2b486424      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A               0 ffffffff8175336a
         python3 27508/27508  2752.972125530: page-faults:     7f15d5058110      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A              35 ffffffff8175336a
         python3 27508/27508  2752.972187874: page-faults:     7f15d503eb70      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A               0     7f15d503eb70
"""

# perf record -e page-faults -d -g (call chains: the sampled line has no ip; the first user entry is taken)
EVLIST_CHAIN = (
    "page-faults: type: 1, size: 128, config: 0x2, { sample_period, sample_freq }: 4000, sample_type: "
    "IP|TID|TIME|ADDR|CALLCHAIN|PERIOD|DATA_SRC, read_format: ID|LOST, disabled: 1, inherit: 1, mmap: 1, comm: 1, "
    "freq: 1, enable_on_exec: 1, task: 1, mmap_data: 1, sample_id_all: 1, exclude_guest: 1\n")
SCRIPT_CHAIN = """\
python3 27295/27295  2719.360179987:          1 page-faults:     55f6d9fc8424      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A
\tffffffff8175336a
\tffffffff81753a0a
\tffffffff81000130
\t    7ff8e40f2ad7
\t    7ff8e40f1000

python3 27295/27295  2719.361495861:         12 page-faults:     7f5cd03f4110      1e05080021 |OP N/A|LVL N/A or N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A
\tffffffff8175336a

"""

# perf script -F pid,ip,sym,symoff,dso -G
SCRIPT_SYMS = """\
26364      7ff7e2d9b48d [unknown] (/usr/lib/python3/dist-packages/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so)
26364            500950 PyObject_Free+0x0 (/usr/bin/python3.11)
26364      7ff7e2da0000 operator new(unsigned long)+0x1c (/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30)
"""


def _parse(evlist: str, script: str, callchains: bool = False) -> PerfSamples:
    events = parse_evlist(evlist)
    fields = script_fields(events)
    if callchains:
        fields = [f for f in fields if f != "ip"] + ["ip"]
    return parse_script(script, fields, events, callchains=callchains)


def test_evlist() -> None:
    (ev,) = parse_evlist(EVLIST_FREQ)
    assert ev.name == "page-faults" and ev.type == 1 and ev.config == 2
    assert ev.freq and ev.sample_period is None and ev.sampled
    assert {"IP", "TID", "TIME", "ADDR", "PERIOD", "DATA_SRC"} == set(ev.sample_type)
    evs = parse_evlist(EVLIST_SYSWIDE)
    assert [e.name for e in evs] == ["page-faults", "minor-faults", "dummy:HG"]
    assert [e.sample_period for e in evs] == [1, 1, 1]
    assert not evs[0].sampled and not evs[0].freq and evs[2].is_dummy
    # hardware and raw PMU events are sampled whatever their period; stores are writes
    assert PerfEvent("cpu/mem-stores/P", 4, sample_period=1).sampled
    assert PerfEvent("cpu/mem-stores/P", 4).is_store and not PerfEvent("mem-loads", 4).is_store


def test_script_fields_follow_what_was_recorded() -> None:
    assert script_fields(parse_evlist(EVLIST_FREQ)) == [
        "comm", "pid", "tid", "time", "period", "event", "addr", "data_src", "ip"]
    assert script_fields(parse_evlist(EVLIST_SYSWIDE)) == [
        "comm", "pid", "tid", "cpu", "time", "event", "addr", "data_src", "ip"]
    assert "weight" in script_fields(parse_evlist(EVLIST_WEIGHT))
    # an evlist without sample types (another perf's format): the basic fields, perf checks them
    assert script_fields([PerfEvent("page-faults", 1)]) == ["comm", "pid", "tid", "time", "event", "addr", "ip"]
    no_addr = EVLIST_FREQ.replace("ADDR|", "")
    with pytest.raises(PerfDataError, match="record with -d"):
        script_fields(parse_evlist(no_addr))


def test_parse_frequency_mode() -> None:
    s = _parse(EVLIST_FREQ, SCRIPT_FREQ)
    assert len(s) == 5
    assert s.time_ns[0] == 2604_834035801 and s.time_ns[-1] == 2605_254698381
    assert s.pid.tolist() == [26364] * 5 and s.tid.tolist() == [26364] * 5
    assert s.addr[0] == 0x7FF7DD7EA000 and s.ip[-1] == 0x7FF7E2D9C88F
    assert s.period.tolist() == [1, 1, 1, 170, 191]
    assert s.data_src[0] == 0x1E05080021 and not s.is_write.any()  # mem_op NA
    assert s.cpu.tolist() == [-1] * 5 and s.comms == {26364: "python"}
    assert s.sampled.all()  # frequency mode: each sample stands for its period


def test_parse_fixed_period_cpu_and_spaces_in_comm() -> None:
    s = _parse(EVLIST_SYSWIDE, SCRIPT_SYSWIDE)
    assert len(s) == 4
    assert s.cpu.tolist() == [0, 0, 1, 1]
    assert s.period.tolist() == [1, 1, 1, 1]  # no PERIOD recorded: the event's fixed period
    assert [s.events[i].name for i in s.event] == ["page-faults", "minor-faults", "page-faults", "minor-faults"]
    assert s.comms[27240] == "Web Content" and s.tid[3] == 27241
    assert s.addr[2] == 0x23D4D270
    assert not s.sampled.any()
    assert s.pids() == [26752, 27237, 27240] or set(s.pids()) == {26752, 27237, 27240}
    assert len(s.for_pids([27237])) == 1


def test_parse_weight_and_kernel_ips() -> None:
    s = _parse(EVLIST_WEIGHT, SCRIPT_WEIGHT)
    assert s.weight.tolist() == [0, 35, 0]
    assert s.ip.tolist() == [0xFFFFFFFF8175336A, 0xFFFFFFFF8175336A, 0x7F15D503EB70]


def test_parse_callchains_take_first_user_entry() -> None:
    s = _parse(EVLIST_CHAIN, SCRIPT_CHAIN, callchains=True)
    assert len(s) == 2
    assert s.ip.tolist() == [0x7FF8E40F2AD7, 0xFFFFFFFF8175336A]  # no user entry: the first one
    assert s.period.tolist() == [1, 12]


def test_parse_write_from_data_src_and_event_name() -> None:
    evlist = ("cpu/mem-stores/P: type: 4, size: 128, config: 0x82d0, { sample_period, sample_freq }: 20011, "
              "sample_type: IP|TID|TIME|ADDR|DATA_SRC, read_format: ID\n"
              "cpu/mem-loads,ldlat=30/P: type: 4, size: 128, config: 0x1cd, { sample_period, sample_freq }: 20011, "
              "sample_type: IP|TID|TIME|ADDR|DATA_SRC, read_format: ID\n")
    script = (
        "  a.out 10/10  1.000000001: cpu/mem-stores/P:  7f0000001000  5080144 |OP STORE|LVL L1 hit|SNP N/A|TLB N/A|LCK N/A|BLK  N/A  401000\n"
        "  a.out 10/10  1.000000002: cpu/mem-loads,ldlat=30/P:  7f0000002000  68100142 |OP LOAD|LVL L1 hit|SNP None|TLB L1 or L2 hit|LCK No|BLK  N/A  401004\n"
        "  a.out 10/10  1.000000003: cpu/mem-loads,ldlat=30/P:  7f0000003000  68100144 |OP STORE|LVL L1 hit|SNP None|TLB L1 or L2 hit|LCK No|BLK  N/A  401008\n")
    s = _parse(evlist, script)
    assert s.is_write.tolist() == [True, False, True]
    assert s.period.tolist() == [20011] * 3 and s.sampled.all()


def test_parse_microsecond_timestamps_and_bad_lines() -> None:
    events = parse_evlist(EVLIST_SYSWIDE)
    fields = ["comm", "pid", "tid", "time", "event", "addr", "ip"]
    s = parse_script("  x 5/6  12.345678: page-faults:  1000  2000\n", fields, events)
    assert s.time_ns.tolist() == [12_345_678_000]
    with pytest.raises(PerfDataError, match="line 2"):
        parse_script("  x 5/6  12.345678: page-faults:  1000  2000\ngarbage here\n", fields, events)
    assert len(parse_script("", fields, events)) == 0


def test_parse_symbols() -> None:
    syms = parse_symbols(SCRIPT_SYMS)
    assert syms[(26364, 0x7FF7E2D9B48D)] == "[unknown] [_multiarray_umath.cpython-311-x86_64-linux-gnu.so]"
    assert syms[(26364, 0x500950)] == "PyObject_Free+0x0 [python3.11]"
    assert syms[(26364, 0x7FF7E2DA0000)] == "operator new(unsigned long)+0x1c [libstdc++.so.6.0.30]"


# -- running perf: a fake perf executable ------------------------------------------------------------------


def _fake_perf(tmp_path: Path, evlist: str, script: str, script_rc: int = 0, stderr: str = "") -> str:
    (tmp_path / "evlist.txt").write_text(evlist)
    (tmp_path / "script.txt").write_text(script)
    (tmp_path / "stderr.txt").write_text(stderr)
    exe = tmp_path / "perf"
    exe.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/calls.txt
if [ -s {tmp_path}/stderr.txt ]; then cat {tmp_path}/stderr.txt >&2; exit 255; fi
case "$1" in
  evlist) cat {tmp_path}/evlist.txt ;;
  script) cat {tmp_path}/script.txt; exit {script_rc} ;;
esac
""")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_read_perf_data_runs_perf_script_with_the_recorded_fields(tmp_path: Path) -> None:
    data = tmp_path / "perf.data"
    data.write_bytes(b"PERFILE2")
    perf = _fake_perf(tmp_path, EVLIST_FREQ, SCRIPT_FREQ)
    s = read_perf_data(str(data), perf=perf)
    assert len(s) == 5
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[0].startswith("evlist -v -f -i ")
    assert "--force" in calls[1] and "--ns" in calls[1] and "-G" in calls[1]
    assert "-F comm,pid,tid,time,period,event,addr,data_src,ip" in calls[1]
    assert len(read_perf_data(str(data), perf=perf, pids=[1])) == 0


@pytest.mark.parametrize("stderr, exc, match", [
    ("incompatible file format (rerun with -v to learn more)\n", PerfDataError, "not a perf.data file"),
    ("zero-sized data (perf.data), nothing to do!\n", PerfDataError, "no samples"),
    ("Samples for 'page-faults' event do not have ADDR attribute set. Cannot print 'addr' field.\n",
     PerfDataError, "record with -d"),
])
def test_perf_errors(tmp_path: Path, stderr: str, exc: type, match: str) -> None:
    data = tmp_path / "perf.data"
    data.write_bytes(b"x")
    perf = _fake_perf(tmp_path, EVLIST_FREQ, "", stderr=stderr)
    with pytest.raises(exc, match=match):
        read_perf_data(str(data), perf=perf)


def test_missing_perf_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match="not found"):
        read_perf_data(str(tmp_path / "perf.data"), perf=str(tmp_path / "no-perf"))
    old = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(tmp_path)
        os.environ.pop("PERF", None)
        with pytest.raises(MissingDependencyError, match="apt install linux-perf"):
            read_perf_data(str(tmp_path / "perf.data"))
    finally:
        os.environ["PATH"] = old
    perf = _fake_perf(tmp_path, EVLIST_FREQ, SCRIPT_FREQ)
    with pytest.raises(InvalidParamsError, match="no such file"):
        read_perf_data(str(tmp_path / "nope.data"), perf=perf)


# -- replay ---------------------------------------------------------------------------------------------------

MiB = 1 << 20
HOT = 0x7F00_0000_0000
COLD = HOT + 8 * MiB
HEAP = 0x5600_0000_0000
STACK = 0x7FFF_F000_0000


def _samples(times: list[np.ndarray], addrs: list[np.ndarray], period: int = 1, event: PerfEvent | None = None,
             pid: int = 4242) -> PerfSamples:
    t = np.concatenate(times).astype(np.int64)
    a = np.concatenate(addrs).astype(np.uint64)
    order = np.argsort(t, kind="stable")
    t, a = t[order], a[order]
    n = t.size
    ev = event or PerfEvent("page-faults", 1, 2, frozenset({"IP", "TID", "TIME", "ADDR"}), period, False)
    return PerfSamples(t, np.full(n, pid, np.int64), np.full(n, pid, np.int64), a,
                       np.where(a >= np.uint64(COLD), np.uint64(0x402000), np.uint64(0x401000)).astype(np.uint64),
                       np.full(n, period, np.int64), np.zeros(n, np.int64), np.zeros(n, bool),
                       np.zeros(n, np.uint64), np.zeros(n, np.int64), np.full(n, -1, np.int64), (ev,), {pid: "toy"})


def _toy(period: int = 1, rate_hz: float = 2000.0, seconds: float = 2.0, seed: int = 0) -> PerfSamples:
    # a process touching 8 MiB hot (rate_hz samples/s) all along, 56 MiB cold once at the start, plus a few heap
    # and stack addresses (so that three regions have two big gaps to leave out)
    rng = np.random.default_rng(seed)
    t0 = 1_000_000_000_000
    n_hot = int(rate_hz * seconds)
    hot_t = t0 + np.sort(rng.integers(0, int(seconds * 1e9), n_hot))
    hot_a = HOT + rng.integers(0, 8 * MiB // 4096, n_hot) * 4096
    cold_t = t0 + np.sort(rng.integers(0, 50_000_000, 56 * MiB // 4096))
    cold_a = COLD + np.arange(56 * MiB // 4096) * 4096
    other_t = t0 + np.array([0, int(seconds * 1e9) - 1, 1_000, 2_000])
    other_a = np.array([HEAP, HEAP + 4096, STACK, STACK + 8192])
    return _samples([hot_t, cold_t, other_t], [hot_a, cold_a, other_a], period=period)


def _mean_over(snap_target, lo: int, hi: int) -> float:  # size-weighted nr_accesses within [lo, hi)
    s, e = snap_target.start, snap_target.end
    ov = np.maximum(0, np.minimum(e, hi) - np.maximum(s, lo))
    return float((snap_target.nr_accesses * ov).sum() / max(ov.sum(), 1))


def test_sample_ranges_three_regions_and_fallbacks() -> None:
    addrs = [HEAP, HEAP + 100, HOT, HOT + 4096 * 3, STACK]
    r = sample_ranges(addrs)
    assert [(x.start, x.end) for x in r] == [(HEAP, HEAP + 4096), (HOT, HOT + 4 * 4096), (STACK, STACK + 4096)]
    # one run of pages: the run itself; two runs: both
    assert [(x.start, x.end) for x in sample_ranges([HOT, HOT + 4096, HOT + 8191])] == [(HOT, HOT + 2 * 4096)]
    assert len(sample_ranges([HOT, HOT + 1 * MiB])) == 2
    # kernel addresses and 0 are not part of the target
    assert sample_ranges([0, 0xFFFF_FFFF_8100_0000]) == []


def test_replay_exact_events_use_interval_hits() -> None:
    s = _toy(period=1, rate_hz=20_000.0)
    snaps = []
    t_wall = time.monotonic()
    res = replay(s, Attrs(sample_interval_us=5_000, aggr_interval_us=100_000, ops_update_interval_us=1_000_000,
                          max_nr_regions=100), [snaps.append], seed=0)
    assert time.monotonic() - t_wall < 20  # a fake clock: 2 s of samples replay without sleeping
    assert not res.density and res.pids == [4242] and res.nr_samples == [len(s)]
    assert res.nr_snapshots == len(snaps) == 20  # 2 s of samples: twenty whole 100 ms windows
    assert snaps[0].time_ns == res.start_ns + 100_000_000  # perf timestamps are the record's times
    assert all(b.time_ns - a.time_ns == 100_000_000 for a, b in zip(snaps, snaps[1:]))
    late = snaps[-5:]
    hot = np.mean([_mean_over(sn.targets[0], HOT, HOT + 8 * MiB) for sn in late])
    cold = np.mean([_mean_over(sn.targets[0], COLD, COLD + 56 * MiB) for sn in late])
    # 20,000 faults/s over 2048 pages: ~100 per 5 ms interval, so hot regions are hit in (nearly) every interval;
    # the cold part has no samples after its first 50 ms: only a region across its start shows accesses there
    assert hot >= 18 and cold <= 0.25, (hot, cold)
    first = _mean_over(snaps[0].targets[0], COLD, COLD + 56 * MiB)
    assert first >= 1  # the cold part was touched in the first 50 ms


def test_replay_sampled_events_use_the_density_estimate() -> None:
    period = 50
    s = _toy(period=period, rate_hz=2000.0)
    snaps = []
    attrs = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000, ops_update_interval_us=1_000_000,
                  min_nr_regions=3, max_nr_regions=3)
    res = replay(s, attrs, [snaps.append], seed=0)
    assert res.density
    # 2000 samples/s x 50 = 10,000 accesses per 100 ms window, evenly over the 2048 hot pages, none in the cold
    # part after its first 50 ms. With three regions the hot range shares a region with cold memory, so the
    # estimator spreads a region's share of those accesses over all its pages: each region's nr_accesses is
    # density_nr_accesses of its share on its size (rounding and the samples' Poisson noise: +-1 on the mean)
    for sn in snaps[-10:]:
        t = sn.targets[0]
        ov = np.maximum(0, np.minimum(t.end, HOT + 8 * MiB) - np.maximum(t.start, HOT))
        want_r = density_nr_accesses(100_000 * 0.1 * ov / (8 * MiB), 1, t.end - t.start, 20, 0.005)
        want = float((want_r * ov).sum() / ov.sum())
        assert want >= 1 and abs(_mean_over(t, HOT, HOT + 8 * MiB) - want) <= 1, (t.start, t.end, want_r)
        cold_only = (t.start >= HOT + 8 * MiB) & (t.end <= COLD + 56 * MiB)
        assert cold_only.any() and (t.nr_accesses[cold_only] == 0).all(), t.nr_accesses


def test_replay_density_matches_the_live_estimator_on_a_single_region() -> None:
    # one region, samples of period P evenly spread: nr_accesses is exactly density_nr_accesses of the events
    t0 = 10**12
    n = 400
    t = t0 + np.arange(n) * (100_000_000 // n)
    a = HOT + (np.arange(n) % 256) * 4096
    ev = PerfEvent("cpu/mem-loads/P", 4, 0, frozenset({"ADDR"}), 1000, False)
    s = _samples([t, np.array([t0 + 250_000_000])], [a, np.array([HOT])], period=1000, event=ev)
    ops = ReplayOps(s)
    from damon_bpf.engine import Ctx, Target
    ctx = Ctx(attrs=Attrs(min_nr_regions=3), ops=ops)
    ctx.targets = [Target(pid=4242)]
    ops.init(ctx)
    ctx.targets[0].regions = [r for r in ctx.targets[0].regions][:1]
    from damon_bpf.engine.model import Region
    ctx.targets[0].regions = [Region(HOT, HOT + MiB)]
    ctx.window_start_ns = t0
    mx = ops.check_accesses(ctx, 20)
    want = int(density_nr_accesses([n * 1000], 1, [MiB], 20, 0.005)[0])
    assert mx == want == int(ctx.targets[0].ra.nr_accesses[0])
    assert ops.take_ips(0) and ops.take_ips(0) == []


def test_replay_pid_filter_and_errors() -> None:
    s = _toy()
    with pytest.raises(InvalidParamsError, match="no samples with data addresses for pid 1"):
        replay(s, Attrs(), pids=[1])
    with pytest.raises(NotSupportedError, match="replays a perf recording"):
        ReplayOps().check_supported()
    with pytest.raises(InvalidParamsError, match="estimator"):
        ReplayOps(s, estimator="magic")


def test_fake_clock() -> None:
    c = FakeClock(100)
    c.sleep(0.5)
    c.sleep(-1)
    assert c.clock_ns() == 100 + 500_000_000


# -- export: records.write_perf_script read by damo ------------------------------------------------------------

def test_write_perf_script_is_read_by_damo(tmp_path: Path) -> None:
    from damon_bpf.results import records

    snaps = []
    replay(_toy(), Attrs(), [snaps.append], seed=0)
    out = io.StringIO()
    recs = _records_from_snapshots(records, snaps, tmp_path)
    records.write_perf_script(recs, out)
    text = out.getvalue()
    assert text.count("damon:damon_aggregated:") == sum(sn.targets[0].nr_regions for sn in snaps)
    path = tmp_path / "damon.perf_script"
    path.write_text(text)
    damo = Path(sys.executable).with_name("damo")
    assert damo.exists(), "damo is not installed in this environment (a test dependency: pip install -e '.[test]')"
    p = subprocess.run([str(damo), "report", "access", "--input", str(path), "--raw_form"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    # damo lists every snapshot's regions as the replay produced them: start-end, nr_accesses, age
    blocks: list[list[tuple[int, int, int, int]]] = []
    for line in p.stdout.splitlines():
        if line.startswith("monitoring_start:"):
            blocks.append([])
        m = re.fullmatch(r"([0-9a-f]+)-([0-9a-f]+) \(.*\)\s+(\d+)\s+(\d+)", line.strip())
        if m:
            blocks[-1].append((int(m[1], 16), int(m[2], 16), int(m[3]), int(m[4])))
    assert blocks == [list(zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), t.age.tolist()))
                      for t in (sn.targets[0] for sn in snaps)]


def _records_from_snapshots(records: object, snaps: list, tmp_path: Path) -> object:
    # through the module's own writer and reader, whatever their record type is
    path = str(tmp_path / "damon.data")
    writer = records.RecordWriter(path)  # type: ignore[attr-defined]
    consume = writer if callable(writer) else getattr(writer, "consume", None) or writer.write
    for sn in snaps:
        consume(sn)
    writer.close()
    return records.read_records(path)  # type: ignore[attr-defined]


def test_estimator_constants_are_finite() -> None:
    assert math.isfinite(float(density_nr_accesses([1], 1, [4096], 1, 0.005)[0]))
