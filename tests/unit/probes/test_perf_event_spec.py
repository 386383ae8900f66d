"""damon_bpf.probes.perf_events: event parsing against fake sysfs trees (Intel, AMD, hybrid, ARM, VM), defaults,
and detect()'s errno mapping with a fake perf_event_open. Needs neither root nor bcc.

The sysfs contents copy real machines: arch/x86/events/intel/core.c (mem-loads/mem-stores aliases on SNB+/HSW+,
``PMU_FORMAT_ATTR(ldlat, "config1:0-15")``), arch/x86/events/core.c (``event`` = config:0-7 on Intel,
config:0-7,32-35 on AMD), arch/x86/events/amd/ibs.c (``cnt_ctl`` config:19, ``l3missonly`` config:16, ``swfilt``
config2:0).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from damon_bpf.linux import syscalls
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError
from damon_bpf.probes import perf_events as pe
from damon_bpf.probes.perf_events import EventSpec, parse_event

# --------------------------------------------------------------------------------------------------------------
# Fake sysfs trees
# --------------------------------------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "bus/event_source/devices" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


# Present on every Linux machine, VMs included.
_BASE = {
    "software/type": "1",
    "tracepoint/type": "2",
    "breakpoint/type": "5",
    "uprobe/type": "8",
    "msr/type": "10",
    "msr/events/tsc": "event=0x00",
    "msr/format/event": "config:0-63",
}

_INTEL_CORE = {
    "events/mem-loads": "event=0xcd,umask=0x1,ldlat=3",
    "events/mem-stores": "event=0xd0,umask=0x82",
    "events/cpu-cycles": "event=0x3c",
    "format/event": "config:0-7",
    "format/umask": "config:8-15",
    "format/edge": "config:18",
    "format/pc": "config:19",
    "format/any": "config:21",
    "format/inv": "config:23",
    "format/cmask": "config:24-31",
    "format/in_tx": "config:32",
    "format/in_tx_cp": "config:33",
    "format/ldlat": "config1:0-15",
    "format/offcore_rsp": "config1:0-63",
    "format/frontend": "config1:0-23",
}


@pytest.fixture
def intel(tmp_path: Path) -> Path:
    files = dict(_BASE)
    files["cpu/type"] = "4"
    files.update({f"cpu/{k}": v for k, v in _INTEL_CORE.items()})
    files.update({"cpu/caps/max_precise": "3", "cpu/caps/pmu_name": "skylake", "cpu/caps/branches": "32"})
    return _write(tmp_path, files)


@pytest.fixture
def amd(tmp_path: Path) -> Path:
    files = dict(_BASE)
    files.update(
        {
            "cpu/type": "4",
            "cpu/format/event": "config:0-7,32-35",
            "cpu/format/umask": "config:8-15",
            "cpu/format/edge": "config:18",
            "cpu/format/inv": "config:23",
            "cpu/format/cmask": "config:24-31",
            "cpu/caps/max_precise": "0",
            "ibs_fetch/type": "10",
            "ibs_fetch/format/rand_en": "config:57",
            "ibs_op/type": "11",
            "ibs_op/format/cnt_ctl": "config:19",
            "ibs_op/format/l3missonly": "config:16",
            "ibs_op/format/swfilt": "config2:0",
            "ibs_op/caps/zen4_ibs_extensions": "1",
        }
    )
    return _write(tmp_path, files)


@pytest.fixture
def hybrid(tmp_path: Path) -> Path:
    files = dict(_BASE)
    files.update({"cpu_core/type": "4", "cpu_core/cpus": "0-7", "cpu_core/caps/max_precise": "3"})
    files.update({f"cpu_core/{k}": v for k, v in _INTEL_CORE.items()})
    files.update(
        {
            "cpu_atom/type": "12",
            "cpu_atom/cpus": "8-11",
            "cpu_atom/caps/max_precise": "3",
            "cpu_atom/events/mem-loads": "event=0xd0,umask=0x5,ldlat=3",
            "cpu_atom/events/mem-stores": "event=0xd0,umask=0x6",
            "cpu_atom/format/event": "config:0-7",
            "cpu_atom/format/umask": "config:8-15",
            "cpu_atom/format/ldlat": "config1:0-15",
        }
    )
    return _write(tmp_path, files)


@pytest.fixture
def arm(tmp_path: Path) -> Path:
    files = dict(_BASE)
    files.update(
        {
            "armv8_pmuv3_0/type": "9",
            "arm_spe_0/type": "13",
            "arm_spe_0/format/load_filter": "config:33",
            "arm_spe_0/format/store_filter": "config:34",
            "arm_spe_0/format/min_latency": "config2:0-11",
        }
    )
    return _write(tmp_path, files)


@pytest.fixture
def vm(tmp_path: Path) -> Path:
    # The development VM: no core PMU at all.
    return _write(tmp_path, dict(_BASE))


# --------------------------------------------------------------------------------------------------------------
# Intel PEBS
# --------------------------------------------------------------------------------------------------------------


def test_mem_loads_as_perf_mem(intel: Path) -> None:
    [spec] = parse_event("mem-loads", sysfs_root=intel)
    assert spec.name == "mem-loads"
    assert (spec.type, spec.config, spec.config1, spec.config2) == (4, 0x1CD, 30, 0)
    assert spec.precise_ip == 3 and spec.precise_max  # P: from caps/max_precise
    assert spec.sample_period == pe.DEFAULT_PEBS_PERIOD == 10007
    assert spec.kind == "pebs" and spec.sampled and spec.exclude_kernel and not spec.exclude_user
    assert not spec.is_write and spec.fn_name == "on_sample_read"
    assert spec.pmu == "cpu" and spec.cpus is None
    assert spec.perf_event == "cpu/mem-loads,ldlat=30/P"


def test_mem_stores(intel: Path) -> None:
    [spec] = parse_event("mem-stores", sysfs_root=intel)
    assert (spec.type, spec.config, spec.config1) == (4, 0x82D0, 0)
    assert spec.is_write and spec.fn_name == "on_sample_write"
    assert spec.precise_max and spec.kind == "pebs"
    assert spec.perf_event == "cpu/mem-stores/P"


def test_ldlat_override(intel: Path) -> None:
    [a] = parse_event("mem-loads,ldlat=50", sysfs_root=intel)
    [b] = parse_event("cpu/mem-loads,ldlat=50/P", sysfs_root=intel)
    [c] = parse_event("cpu/mem-loads,ldlat=50/pp", sysfs_root=intel)
    assert a.config == b.config == c.config == 0x1CD
    assert a.config1 == b.config1 == c.config1 == 50
    assert a.name == "mem-loads,ldlat=50" and b.name == "cpu/mem-loads,ldlat=50/P"
    assert b.precise_max and b.precise_ip == 3
    assert not c.precise_max and c.precise_ip == 2


def test_generic_alias_keeps_sysfs_terms(intel: Path) -> None:
    # The generic form uses the alias as the kernel wrote it (ldlat=3), like perf; PEBS memory events default
    # to P because without precise_ip the PMU gives no data address.
    [spec] = parse_event("cpu/mem-loads/", sysfs_root=intel)
    assert (spec.config, spec.config1) == (0x1CD, 3)
    assert spec.precise_max and spec.kind == "pebs"


def test_comma_lists(intel: Path) -> None:
    specs = parse_event("mem-loads,mem-stores", sysfs_root=intel)
    assert [(s.config, s.is_write) for s in specs] == [(0x1CD, False), (0x82D0, True)]
    specs = parse_event("cpu/mem-loads,ldlat=50/P,mem-stores, page-faults", sysfs_root=intel)
    assert [s.name for s in specs] == ["cpu/mem-loads,ldlat=50/P", "mem-stores", "page-faults"]
    assert [s.kind for s in specs] == ["pebs", "pebs", "software"]
    assert specs[0].config1 == 50 and specs[1].config1 == 0


def test_mem_shorthand_intel(intel: Path) -> None:
    specs = parse_event("mem", sysfs_root=intel)
    assert [s.perf_event for s in specs] == ["cpu/mem-loads,ldlat=30/P", "cpu/mem-stores/P"]
    assert [s.is_write for s in specs] == [False, True]
    specs = parse_event("mem,ldlat=100", sysfs_root=intel)
    assert [s.config1 for s in specs] == [100, 0]


def test_format_encoding(intel: Path) -> None:
    [spec] = parse_event("cpu/event=0xd0,umask=0x81,cmask=2,inv/pp", sysfs_root=intel)
    assert spec.config == 0x81D0 | (2 << 24) | (1 << 23)
    assert spec.precise_ip == 2 and spec.kind == "pebs" and not spec.is_write
    [spec] = parse_event("cpu/event=0xd0,umask=0x82/pp", sysfs_root=intel)
    assert spec.is_write  # the mem-stores encoding, written out
    [spec] = parse_event("cpu/in_tx,event=0x3c,frontend=0x11/", sysfs_root=intel)
    assert (spec.config, spec.config1) == ((1 << 32) | 0x3C, 0x11)
    assert spec.kind == "raw" and spec.precise_ip == 0
    # Later terms replace earlier ones (alias first, then the user's umask).
    [spec] = parse_event("cpu/mem-loads,umask=0x2/P", sysfs_root=intel)
    assert spec.config == 0x2CD
    [spec] = parse_event("cpu/config=0x1234,config1=7,period=2003/", sysfs_root=intel)
    assert (spec.config, spec.config1, spec.sample_period) == (0x1234, 7, 2003)


def test_format_value_too_wide(intel: Path) -> None:
    with pytest.raises(InvalidParamsError, match="does not fit in 8 bit"):
        parse_event("cpu/event=0x1ff/", sysfs_root=intel)
    with pytest.raises(InvalidParamsError, match="not a number"):
        parse_event("cpu/mem-loads,ldlat=abc/", sysfs_root=intel)


def test_raw_and_numeric(intel: Path) -> None:
    [spec] = parse_event("r1cd:pp", sysfs_root=intel)
    assert (spec.type, spec.config, spec.precise_ip, spec.kind) == (4, 0x1CD, 2, "raw")
    assert spec.exclude_kernel and spec.sample_period == pe.DEFAULT_RAW_PERIOD
    [spec] = parse_event("r82d0:P", sysfs_root=intel)
    assert spec.is_write and spec.precise_max
    [spec] = parse_event("4:0x20d1:pp", sysfs_root=intel)
    assert (spec.type, spec.config, spec.precise_ip) == (4, 0x20D1, 2)
    [spec] = parse_event("1:2", sysfs_root=intel)
    assert (spec.type, spec.config, spec.kind, spec.sampled) == (1, 2, "software", False)
    [spec] = parse_event("10:0", sysfs_root=intel)
    assert (spec.type, spec.pmu, spec.kind) == (10, "msr", "raw")


def test_modifiers(intel: Path) -> None:
    [spec] = parse_event("page-faults:u", sysfs_root=intel)
    assert spec.exclude_kernel and not spec.exclude_user
    [spec] = parse_event("mem-loads:k", sysfs_root=intel)
    assert spec.exclude_user and not spec.exclude_kernel and spec.precise_max
    [spec] = parse_event("mem-loads:uk", sysfs_root=intel)
    assert not spec.exclude_user and not spec.exclude_kernel
    [spec] = parse_event("cpu/mem-loads/:ppp", sysfs_root=intel)
    assert spec.precise_ip == 3 and not spec.precise_max
    for bad in ("page-faults:pppp", "mem-loads:pP", "page-faults:x", "cpu/mem-loads/G"):
        with pytest.raises(InvalidParamsError):
            parse_event(bad, sysfs_root=intel)


def test_period_override(intel: Path) -> None:
    specs = parse_event("mem-loads,page-faults", period=4001, sysfs_root=intel)
    assert [s.sample_period for s in specs] == [4001, 4001]
    assert specs[1].sampled  # software faults, but one event per 4001 faults
    [spec] = parse_event("cpu/mem-loads,period=503/P", period=4001, sysfs_root=intel)
    assert spec.sample_period == 503  # the term wins
    [spec] = parse_event("page-faults,period=7", sysfs_root=intel)
    assert spec.sample_period == 7 and spec.sampled
    with pytest.raises(InvalidParamsError, match="positive"):
        parse_event("page-faults", period=0, sysfs_root=intel)
    with pytest.raises(InvalidParamsError, match="frequency"):
        parse_event("cpu/mem-loads,freq=4000/P", sysfs_root=intel)


def test_software_events(vm: Path) -> None:
    specs = parse_event("page-faults,minor-faults,major-faults", sysfs_root=vm)
    assert [(s.type, s.config) for s in specs] == [(1, 2), (1, 5), (1, 6)]
    for s in specs:
        assert s.kind == "software" and s.sample_period == 1 and not s.sampled
        assert not s.exclude_kernel and s.precise_ip == 0 and s.fn_name == "on_sample_read"
    [s] = parse_event("faults", sysfs_root=vm)
    assert (s.type, s.config) == (1, 2)


def test_describe(intel: Path) -> None:
    [spec] = parse_event("mem-loads", sysfs_root=intel)
    text = spec.describe()
    assert text.startswith("mem-loads: Intel PEBS loads cpu/mem-loads,ldlat=30/P")
    for part in ("type 4", "config 0x1cd", "config1 0x1e", "precise_ip 3..1", "1 sample per 10007", "user only"):
        assert part in text
    [spec] = parse_event("page-faults", sysfs_root=intel)
    assert "every event (exact)" in spec.describe()


def test_duplicates_refused(intel: Path) -> None:
    for text in ("mem-loads,mem-loads", "page-faults,faults", "mem,mem-stores"):
        with pytest.raises(InvalidParamsError, match="same event"):
            parse_event(text, sysfs_root=intel)
    # Same (type, config) but another ldlat is a different event (bcc's (type, config) key is not used).
    assert len(parse_event("mem-loads,cpu/mem-loads,ldlat=100/P", sysfs_root=intel)) == 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "page-faults,,mem-loads",
        "cpu/mem-loads",
        "cpu/mem-loads,ldlat=30/P/",
        "{cpu/mem-loads/,cpu/mem-stores/}",
        "mem loads",
        "ldlat=30",
        "page-faults,ldlat=30",
        "2:1",
        "5:0",
        "cpu/mem-loads,=3/",
        "%%%",
    ],
)
def test_malformed(intel: Path, text: str) -> None:
    with pytest.raises(InvalidParamsError):
        parse_event(text, sysfs_root=intel)


@pytest.mark.parametrize("text", ["foo", "cpu/no_such_term/", "cpu/no_such_term=1/", "77:0", "nopmu/event=1/"])
def test_unknown(intel: Path, text: str) -> None:
    with pytest.raises(NotSupportedError):
        parse_event(text, sysfs_root=intel)


def test_unsupported_format_spec(intel: Path) -> None:
    _write(intel, {"cpu/format/weird": "config7:0-3"})
    with pytest.raises(NotSupportedError, match="unsupported sysfs format"):
        parse_event("cpu/weird=1/", sysfs_root=intel)


# --------------------------------------------------------------------------------------------------------------
# AMD IBS
# --------------------------------------------------------------------------------------------------------------


def test_ibs_op(amd: Path) -> None:
    for text in ("ibs_op", "ibs_op//"):
        [spec] = parse_event(text, sysfs_root=amd)
        assert (spec.type, spec.config, spec.config2) == (11, 0, 0)
        assert spec.kind == "ibs" and spec.sampled and not spec.is_write
        assert spec.sample_period == pe.DEFAULT_IBS_PERIOD == 100000
        assert spec.sample_period % 16 == 0
        assert not spec.exclude_kernel  # IBS cannot filter without swfilt
    [spec] = parse_event("ibs_op/cnt_ctl=1/", sysfs_root=amd)
    assert spec.config == 1 << 19
    [spec] = parse_event("ibs_op/cnt_ctl,l3missonly/", sysfs_root=amd)
    assert spec.config == (1 << 19) | (1 << 16)


def test_ibs_period_rule(amd: Path) -> None:
    [spec] = parse_event("ibs_op/period=4096/", sysfs_root=amd)
    assert spec.sample_period == 4096
    with pytest.raises(InvalidParamsError, match="multiple of 16.*use 100000"):
        parse_event("ibs_op", period=100003, sysfs_root=amd)
    with pytest.raises(InvalidParamsError, match="at least 16"):
        parse_event("ibs_op/period=8/", sysfs_root=amd)
    with pytest.raises(InvalidParamsError, match="MaxCnt"):
        parse_event("ibs_op/config=0x10/", sysfs_root=amd)


def test_ibs_exclude_needs_swfilt(amd: Path) -> None:
    [spec] = parse_event("ibs_op//u", sysfs_root=amd)
    assert spec.exclude_kernel and spec.config2 == 1
    (amd / "bus/event_source/devices/ibs_op/format/swfilt").unlink()
    with pytest.raises(NotSupportedError, match="swfilt"):
        parse_event("ibs_op//u", sysfs_root=amd)


def test_one_ibs_event_only(amd: Path) -> None:
    with pytest.raises(InvalidParamsError, match="only one IBS op event"):
        parse_event("ibs_op,ibs_op/cnt_ctl=1/", sysfs_root=amd)


def test_amd_mem_and_core_encoding(amd: Path) -> None:
    [spec] = parse_event("mem", sysfs_root=amd)
    assert spec.kind == "ibs" and spec.type == 11
    with pytest.raises(NotSupportedError, match="no mem-loads event.*ibs_op"):
        parse_event("mem-loads", sysfs_root=amd)
    # event = config:0-7,32-35: the high nibble of a 12-bit event goes to bits 32-35.
    [spec] = parse_event("cpu/event=0x1c0,umask=0x3/", sysfs_root=amd)
    assert spec.config == 0xC0 | (0x3 << 8) | (0x1 << 32)
    assert spec.kind == "raw"


# --------------------------------------------------------------------------------------------------------------
# Hybrid, ARM, VM
# --------------------------------------------------------------------------------------------------------------


def test_hybrid_one_event_per_core_pmu(hybrid: Path) -> None:
    specs = parse_event("mem-loads", sysfs_root=hybrid)
    assert [(s.pmu, s.type, s.config, s.config1) for s in specs] == [
        ("cpu_core", 4, 0x1CD, 30),
        ("cpu_atom", 12, 0x5D0, 30),
    ]
    assert specs[0].cpus == tuple(range(8)) and specs[1].cpus == (8, 9, 10, 11)
    assert "CPUs 0-7" in specs[0].describe()
    assert len(parse_event("mem", sysfs_root=hybrid)) == 4
    [spec] = parse_event("cpu_atom/mem-stores/", sysfs_root=hybrid)
    assert spec.is_write and spec.cpus == (8, 9, 10, 11)


def test_arm_spe(arm: Path) -> None:
    for text in ("arm_spe", "arm_spe_0//", "arm_spe_0/load_filter=1,store_filter=1,min_latency=32/"):
        [spec] = parse_event(text, sysfs_root=arm)
        assert spec.kind == "spe" and spec.type == 13
    assert spec.config == (1 << 33) | (1 << 34) and spec.config2 == 32
    with pytest.raises(NotSupportedError, match="AUX buffer"):
        pe.detect(spec)
    hardware, reason = pe.hardware_sampling_status(arm, probe=False)
    assert not hardware and "arm_spe_0" in reason and "AUX" in reason
    assert [s.kind for s in pe.default_events(arm, probe=False)] == ["software"]


def test_vm_without_pmu(vm: Path) -> None:
    with pytest.raises(NotSupportedError) as info:
        parse_event("mem-loads", sysfs_root=vm)
    msg = str(info.value)
    assert "no hardware PMU" in msg and "virtual machine without vPMU" in msg
    assert "PEBS mem-loads needs an Intel CPU with PEBS" in msg
    with pytest.raises(NotSupportedError, match="PEBS mem-loads needs an Intel CPU"):
        parse_event("cpu/mem-loads,ldlat=50/P", sysfs_root=vm)
    with pytest.raises(NotSupportedError, match="no ibs_op PMU"):
        parse_event("ibs_op//", sysfs_root=vm)
    with pytest.raises(NotSupportedError, match="no cpu PMU"):
        parse_event("r1cd", sysfs_root=vm)
    with pytest.raises(NotSupportedError, match="arm_spe"):
        parse_event("arm_spe", sysfs_root=vm)
    assert [s.name for s in parse_event("page-faults", sysfs_root=vm)] == ["page-faults"]


# --------------------------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------------------------


def test_default_events_intel(intel: Path) -> None:
    specs = pe.default_events(intel, probe=False)
    assert [s.perf_event for s in specs] == ["cpu/mem-loads,ldlat=30/P", "cpu/mem-stores/P"]
    hardware, reason = pe.hardware_sampling_status(intel, probe=False)
    assert hardware and reason.startswith("Intel PEBS:") and "10007" in reason


def test_default_events_intel_without_pebs(intel: Path) -> None:
    # A vPMU that exposes the core PMU but no PEBS.
    _write(intel, {"cpu/caps/max_precise": "0"})
    hardware, reason = pe.hardware_sampling_status(intel, probe=False)
    assert not hardware and "max_precise=0" in reason and "falling back to software page faults" in reason
    assert [s.kind for s in pe.default_events(intel, probe=False)] == ["software"]


def test_default_events_amd(amd: Path) -> None:
    [spec] = pe.default_events(amd, probe=False)
    assert spec.kind == "ibs"
    hardware, reason = pe.hardware_sampling_status(amd, probe=False)
    assert hardware and reason.startswith("AMD IBS op:")


def test_default_events_vm(vm: Path) -> None:
    [spec] = pe.default_events(vm, probe=False)
    assert (spec.type, spec.config, spec.sample_period, spec.sampled) == (1, 2, 1, False)
    hardware, reason = pe.hardware_sampling_status(vm, probe=False)
    assert not hardware
    assert reason.startswith("no hardware PMU:") and "cpu or ibs_op PMU" in reason
    assert reason.endswith("falling back to software page faults, which only see first touches and refaults, "
                           "not every access")


# --------------------------------------------------------------------------------------------------------------
# detect() with a fake perf_event_open
# --------------------------------------------------------------------------------------------------------------


class _FakeOpen:
    def __init__(self, results: list[int]) -> None:
        self.results = results  # errno per call, 0 = success
        self.calls: list[tuple[int, int, int, int, int, int]] = []

    def __call__(self, attr: syscalls.PerfEventAttr, pid: int = -1, cpu: int = 0, **_: object) -> int:
        self.calls.append((attr.type, attr.config, attr.config1, attr.precise_ip, pid, cpu))
        assert attr.sample_type & syscalls.PERF_SAMPLE_ADDR and attr.disabled == 1 and attr.freq == 0
        err = self.results.pop(0)
        if err:
            raise OSError(err, os.strerror(err))
        return os.open(os.devnull, os.O_RDONLY)


def test_detect_precise_fallback(intel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [spec] = parse_event("mem-loads", sysfs_root=intel)
    fake = _FakeOpen([errno.EOPNOTSUPP, errno.EINVAL, 0])
    monkeypatch.setattr(syscalls, "perf_event_open", fake)
    pe.detect(spec)
    assert [c[3] for c in fake.calls] == [3, 2, 1]
    assert fake.calls[0][:3] == (4, 0x1CD, 30) and fake.calls[0][4] == -1


def test_detect_errors(intel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [spec] = parse_event("cpu/mem-loads/pp", sysfs_root=intel)
    monkeypatch.setattr(syscalls, "perf_event_open", _FakeOpen([errno.ENOENT]))
    with pytest.raises(NotSupportedError, match="not supported by this CPU/kernel.*ENOENT"):
        pe.detect(spec)
    monkeypatch.setattr(syscalls, "perf_event_open", _FakeOpen([errno.EACCES]))
    with pytest.raises(PermissionDeniedError, match="perf_event_paranoid.*"):
        pe.detect(spec)
    monkeypatch.setattr(syscalls, "perf_event_open", _FakeOpen([errno.ENOSPC]))
    with pytest.raises(NotSupportedError, match="ENOSPC"):
        pe.detect(spec)
    [spec] = parse_event("mem-loads", sysfs_root=intel)
    monkeypatch.setattr(syscalls, "perf_event_open", _FakeOpen([errno.EOPNOTSUPP] * 3))
    with pytest.raises(NotSupportedError, match=r"tried precise_ip 3, 2, 1"):
        pe.detect(spec)


def test_spec_is_frozen() -> None:
    spec = EventSpec("x", 1, 2, 0, 0, 1, False, "software", False, False)
    with pytest.raises(AttributeError):
        spec.config = 3  # type: ignore[misc]
