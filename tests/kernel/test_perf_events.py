"""damon_bpf.probes.perf_events on this kernel (root + bcc): defaults and detection against the real sysfs, and
perf events attached to ``bpf/perf_sample.bpf.c`` that count the test's own page faults.

Counting relies on the program's first steps (bpf/access_agg.h ``agg_account()``): an event of a tgid registered in
``agg_targets`` increments ``agg_pcpu.stats[AGG_EVENTS]`` (index 0, one entry per CPU) before anything else, so no
region table is needed.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from damon_bpf.errors import InvalidParamsError, NotSupportedError, ProbeAttachError
from damon_bpf.probes import _bcc
from damon_bpf.probes import perf_events as pe
from damon_bpf.probes.perf_events import opening as pe_opening

_AGG_EVENTS = 0  # enum agg_stat in bpf/access_agg_types.h
_NR_PAGES = 64
_DEVICES = Path("/sys/bus/event_source/devices")


def _cflags() -> list[str]:
    bpf_dir = _bcc.bpf_source_path("perf_sample").parent
    return [
        f"-I{bpf_dir}",
        "-DMAX_TARGETS=4",
        "-DMAX_REGIONS=64",
        "-DSEARCH_STEPS=7",
        "-DBITMAP_WORDS=1",
        f"-DMAX_CPUS={_bcc.nr_possible_cpus()}",
        "-DIP_ENTRIES=0",
        "-DRATE_LIMIT=0",
        "-DRATE_BURST=1",
        "-DTHREAD_ENTRIES=0",
        "-DWRITES_ONLY=0",
    ]


@pytest.fixture(scope="module")
def bpf() -> Iterator[Any]:
    # Compiled once for the module (~2 s); the test's own tgid is the target with index 0.
    prog = _bcc.compile_bpf("perf_sample", _cflags())
    prog[b"agg_targets"][ctypes.c_uint(os.getpid())] = ctypes.c_uint(0)
    # Load both programs now, so that the fd counts below only see perf event fds.
    for fn_name in (pe.FN_READ, pe.FN_WRITE):
        _bcc.load_program(prog, fn_name, _bcc.ProgType.PERF_EVENT)
    try:
        yield prog
    finally:
        _bcc.close_bpf(prog)


def _events(prog: Any) -> int:
    # agg_pcpu holds one struct per CPU (key: the CPU) whose first words are the enum agg_stat counters:
    # sum stats[AGG_EVENTS] over the CPUs.
    return sum(int(v.stats[_AGG_EVENTS]) for v in prog[b"agg_pcpu"].values())


def _touch_fresh_pages(nr_pages: int = _NR_PAGES) -> None:
    # One write per never-touched page of a private anonymous mapping: one page fault each.
    mem = mmap.mmap(-1, nr_pages * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for off in range(0, nr_pages * mmap.PAGESIZE, mmap.PAGESIZE):
            mem[off] = 1
    finally:
        mem.close()


def _nr_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _has_hardware_pmu() -> bool:
    return any((_DEVICES / p).is_dir() for p in ("cpu", "cpu_core", "cpu_atom", "ibs_op"))


def _online() -> int:
    return len(pe_opening._online_cpus())


# --------------------------------------------------------------------------------------------------------------
# Defaults and detection on the real sysfs
# --------------------------------------------------------------------------------------------------------------


def test_default_events_here() -> None:
    hardware, reason = pe.hardware_sampling_status()
    specs = pe.default_events()
    assert reason
    assert hardware == any(s.kind != "software" for s in specs)
    if _has_hardware_pmu():
        return  # either answer is right on a machine with a PMU; the fallback path is checked below
    assert not hardware
    assert "PMU" in reason and "falling back to software page faults" in reason
    [spec] = specs
    assert (spec.type, spec.config, spec.sample_period, spec.kind, spec.sampled) == (1, 2, 1, "software", False)
    pe.detect(spec)


def test_detect_mem_loads_not_supported() -> None:
    if (_DEVICES / "cpu" / "events" / "mem-loads").is_file():
        pytest.skip("this machine has an Intel core PMU with mem-loads")
    with pytest.raises(NotSupportedError, match="mem-loads"):
        pe.parse_event("mem-loads")
    # The same event written out by hand: the kernel refuses it.
    spec = pe.EventSpec("mem-loads", 4, 0x1CD, 30, 3, 10007, False, "pebs", True, True, precise_max=True)
    with pytest.raises(NotSupportedError, match="not supported by this CPU/kernel"):
        pe.detect(spec)


def test_detect_software_events() -> None:
    for spec in pe.parse_event("page-faults,minor-faults,major-faults"):
        pe.detect(spec)


# --------------------------------------------------------------------------------------------------------------
# Attach / detach
# --------------------------------------------------------------------------------------------------------------


def test_attach_page_faults_counts_own_faults(bpf: Any) -> None:
    [spec] = pe.parse_event("page-faults")
    before_fds = _nr_fds()
    attached = pe.attach(bpf, spec)
    try:
        assert attached.fn_name == "on_sample_read" and attached.pid == -1
        assert len(attached.fds) == _online() and attached.cpus == tuple(pe_opening._online_cpus())
        assert _nr_fds() == before_fds + _online()
        before = _events(bpf)
        _touch_fresh_pages()
        seen = _events(bpf) - before
    finally:
        pe.detach(bpf, attached)
    assert seen >= _NR_PAGES, f"{seen} events for {_NR_PAGES} touched pages"
    assert _nr_fds() == before_fds
    assert attached.detached
    pe.detach(bpf, attached)  # a no-op the second time
    # Detached: no more events.
    after = _events(bpf)
    _touch_fresh_pages()
    assert _events(bpf) == after


def test_attach_write_program_and_same_type_config(bpf: Any) -> None:
    # page-faults and faults have the same (type, config), which bcc uses as its key: both stay attached and
    # close independently. The second one runs on_sample_write.
    [a] = pe.parse_event("page-faults")
    b = pe.EventSpec("faults-as-writes", 1, 2, 0, 0, 1, True, "software", False, False)
    before_fds = _nr_fds()
    first = pe.attach(bpf, a)
    second = pe.attach(bpf, b)
    try:
        assert second.fn_name == "on_sample_write"
        assert _nr_fds() == before_fds + 2 * _online()
        before = _events(bpf)
        _touch_fresh_pages()
        assert _events(bpf) - before >= 2 * _NR_PAGES  # each fault counted once per program
        pe.detach(bpf, first)
        assert _nr_fds() == before_fds + _online()
        before = _events(bpf)
        _touch_fresh_pages()
        assert _events(bpf) - before >= _NR_PAGES
    finally:
        pe.detach(bpf, first)
        pe.detach(bpf, second)
    assert _nr_fds() == before_fds


def test_attach_following_own_thread(bpf: Any) -> None:
    [spec] = pe.parse_event("page-faults:u")
    attached = pe.attach(bpf, spec, pid=os.getpid())
    try:
        before = _events(bpf)
        _touch_fresh_pages()
        assert _events(bpf) - before >= _NR_PAGES
    finally:
        pe.detach(bpf, attached)


def test_bad_raw_spec_clear_error(bpf: Any) -> None:
    before_fds = _nr_fds()
    [spec] = pe.parse_event("1:99")  # no software event 99
    with pytest.raises(NotSupportedError, match="not supported by this CPU/kernel.*ENOENT"):
        pe.detect(spec)
    with pytest.raises(ProbeAttachError, match="ENOENT") as info:
        pe.attach(bpf, spec)
    assert getattr(info.value, "errno", None) == 2
    assert "on CPU" in str(info.value) and "type 1, config 0x63" in str(info.value)
    with pytest.raises(NotSupportedError, match="no PMU has type 77"):
        pe.parse_event("77:0")
    with pytest.raises(InvalidParamsError):
        pe.attach(bpf, pe.parse_event("page-faults")[0], pid=0)
    assert _nr_fds() == before_fds


def test_close_bpf_closes_attached_events() -> None:
    before_fds = _nr_fds()
    prog = _bcc.compile_bpf("perf_sample", _cflags())
    try:
        pe.attach(prog, pe.parse_event("page-faults")[0])
        pe.attach(prog, pe.parse_event("minor-faults")[0])
    finally:
        _bcc.close_bpf(prog)  # without detach(): bcc's cleanup closes the events too
    assert _nr_fds() == before_fds


def test_precise_max_steps_down_and_rollback(bpf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # No PEBS here: emulate a PMU that refuses precise_ip > 1 (EOPNOTSUPP, as x86_pmu_hw_config() does) with a
    # software event, which ignores precise_ip.
    real = _bcc.attach_perf_event_raw
    calls: list[tuple[int, int]] = []

    def refuse_precise(prog: Any, fn_name: str, attr: Any, *, pid: int = -1, cpu: int = -1) -> dict[int, int]:
        calls.append((attr.precise_ip, cpu))
        if attr.precise_ip > 1:
            err = ProbeAttachError("perf_event_open failed: Operation not supported")
            err.errno = 95  # type: ignore[attr-defined]
            raise err
        return real(prog, fn_name, attr, pid=pid, cpu=cpu)

    monkeypatch.setattr(_bcc, "attach_perf_event_raw", refuse_precise)
    spec = pe.EventSpec("page-faults:P", 1, 2, 0, 3, 1, False, "software", False, False, precise_max=True)
    before_fds = _nr_fds()
    attached = pe.attach(bpf, spec)
    try:
        assert attached.precise_ip == 1
        cpus = pe_opening._online_cpus()
        assert calls == [(3, cpus[0]), (2, cpus[0])] + [(1, c) for c in cpus]
        before = _events(bpf)
        _touch_fresh_pages()
        assert _events(bpf) - before >= _NR_PAGES
    finally:
        pe.detach(bpf, attached)
    assert _nr_fds() == before_fds

    # A failure on a later CPU closes the events already opened.
    if len(pe_opening._online_cpus()) > 1:
        last = pe_opening._online_cpus()[-1]

        def fail_last(prog: Any, fn_name: str, attr: Any, *, pid: int = -1, cpu: int = -1) -> dict[int, int]:
            if cpu == last:
                err = ProbeAttachError("perf_event_open failed: No such device")
                err.errno = 19  # type: ignore[attr-defined]
                raise err
            return real(prog, fn_name, attr, pid=pid, cpu=cpu)

        monkeypatch.setattr(_bcc, "attach_perf_event_raw", fail_last)
        with pytest.raises(ProbeAttachError, match=f"on CPU {last}.*does not cover this CPU"):
            pe.attach(bpf, pe.parse_event("page-faults")[0])
        assert _nr_fds() == before_fds


def test_bcc_attach_perf_event_of_same_key_survives(bpf: Any) -> None:
    # An attach_perf_event() of (software, page faults) keeps its bcc entry while a raw attach of the same
    # (type, config) comes and goes.
    before_fds = _nr_fds()
    _bcc.attach_perf_event(bpf, pe.FN_READ, ev_type=1, ev_config=2, sample_period=1, cpu=pe_opening._online_cpus()[0])
    try:
        attached = pe.attach(bpf, pe.parse_event("page-faults")[0])
        pe.detach(bpf, attached)
        assert (1, 2) in bpf.open_perf_events
    finally:
        _bcc.detach_perf_event(bpf, ev_type=1, ev_config=2)
    assert _nr_fds() == before_fds
