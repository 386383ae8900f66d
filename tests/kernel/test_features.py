"""damon_bpf.probes.features: real probes on this kernel (root + bcc), plus parsing tests on fake /proc and /sys trees.

The parsing tests are marked ``nokernel``: they live here, next to the checks they cover, but need neither root
nor bcc.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from damon_bpf.probes import features
from damon_bpf.probes import perf_events
from damon_bpf.probes.features import bpf_checks, common
from damon_bpf.linux import syscalls
from damon_bpf.errors import MissingDependencyError, NotSupportedError, PermissionDeniedError


@pytest.fixture(scope="module")
def all_features() -> dict[str, features.Feature]:
    # One pass for the whole module: the feature probe program is compiled once (~2 s).
    feats = features.check_all()
    return {f.name: f for f in feats}


# --------------------------------------------------------------------------------------------------------------
# Kernel tests (root + bcc)
# --------------------------------------------------------------------------------------------------------------


def test_check_all_names_unique_and_complete(all_features: dict[str, features.Feature]) -> None:
    feats = features.check_all(["bpf/syscall", "numa/nodes"])
    assert [f.name for f in feats] == ["bpf/syscall", "numa/nodes"]
    assert list(all_features) == list(features.names())
    assert len(set(features.names())) == len(features.names())
    for f in all_features.values():
        assert "/" in f.name
        assert isinstance(f.supported, bool)
        if not f.supported:
            assert f.reason, f"{f.name} has no reason"


@pytest.mark.parametrize(
    "name",
    [
        "bpf/syscall",
        "bcc/import",
        "bcc/compile",
        "probe/tracepoint_page_fault_user",
        "probe/perf_sw_page_faults_addr",
        "probe/pte_accessed_bit",
        "mm/process_madvise",
    ],
)
def test_supported_here(all_features: dict[str, features.Feature], name: str) -> None:
    feat = all_features[name]
    assert feat.supported, feat.reason
    assert feat.detail


def test_perf_sw_page_faults_sees_touched_pages(all_features: dict[str, features.Feature]) -> None:
    detail = all_features["probe/perf_sw_page_faults_addr"].detail
    match = re.search(r"(\d+)/(\d+) touched pages", detail)
    assert match, detail
    assert int(match[1]) == int(match[2]) > 0


def test_pte_walk_matches_pagemap(all_features: dict[str, features.Feature]) -> None:
    detail = all_features["probe/pte_accessed_bit"].detail
    match = re.search(r"(\d+)/(\d+) PFNs = pagemap", detail)
    assert match, detail
    assert int(match[1]) == int(match[2]) == 512
    cleared, set_again = re.search(r"cleared (\d+)/512, set again (\d+)/512", detail).groups()  # type: ignore[union-attr]
    # clear_refs does not flush the TLB (as the kernel's own mkold), so a touch through a cached translation may
    # leave a bit clear; the system's paddr kdamond also clears random bits
    assert int(cleared) >= 460 and int(set_again) >= 460


@pytest.mark.skipif(
    Path("/sys/bus/event_source/devices/cpu").exists(), reason="this machine has a cpu PMU: pmu/* may be supported"
)
@pytest.mark.parametrize(
    "name", ["pmu/intel_pebs_mem_loads", "pmu/intel_pebs_mem_stores", "pmu/amd_ibs_op", "pmu/arm_spe"]
)
def test_no_pmu_here(all_features: dict[str, features.Feature], name: str) -> None:
    feat = all_features[name]
    assert not feat.supported
    assert "PMU" in feat.reason


def test_require() -> None:
    assert features.require("bpf/syscall").supported
    if not Path("/sys/bus/event_source/devices/cpu").exists():
        with pytest.raises(NotSupportedError, match="PMU"):
            features.require("pmu/intel_pebs_mem_loads")


# --------------------------------------------------------------------------------------------------------------
# Parsing tests on fake trees (no root, no bcc)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proc" / "sys" / "kernel").mkdir(parents=True)
    (tmp_path / "sys").mkdir()
    monkeypatch.setattr(features, "PROC_ROOT", str(tmp_path / "proc"))
    monkeypatch.setattr(features, "SYS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setattr(features, "MODULES_ROOT", str(tmp_path / "modules"))
    return tmp_path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


_SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


@pytest.mark.nokernel
def test_swap_none(fake_root: Path) -> None:
    _write(fake_root / "proc" / "swaps", _SWAPS_HEADER)
    feat = features.check("mm/swap")
    assert not feat.supported
    assert feat.reason == "no swap: MADV_PAGEOUT of anonymous memory cannot work without swap"


@pytest.mark.nokernel
def test_swap_areas(fake_root: Path) -> None:
    _write(
        fake_root / "proc" / "swaps",
        _SWAPS_HEADER
        + "/dev/zram0                              partition\t4194300\t\t0\t\t100\n"
        + "/swapfile                               file\t\t1048572\t\t512\t\t-2\n",
    )
    feat = features.check("mm/swap")
    assert feat.supported
    assert feat.detail.startswith("2 area(s), 5120 MiB")
    assert "/dev/zram0 (partition)" in feat.detail


@pytest.mark.nokernel
@pytest.mark.parametrize("value, word", [("0", "off"), ("1", "on"), ("2", "memory tiering only")])
def test_numa_balancing(fake_root: Path, value: str, word: str) -> None:
    _write(fake_root / "proc" / "sys" / "kernel" / "numa_balancing", value + "\n")
    feat = features.check("numa/balancing")
    assert feat.supported
    assert feat.detail == f"kernel.numa_balancing={value} ({word})"


@pytest.mark.nokernel
def test_numa_balancing_missing(fake_root: Path) -> None:
    feat = features.check("numa/balancing")
    assert not feat.supported
    assert "CONFIG_NUMA_BALANCING" in feat.reason


@pytest.mark.nokernel
def test_numa_nodes(fake_root: Path) -> None:
    node = fake_root / "sys" / "devices" / "system" / "node"
    for name in ("node0", "node1", "node10", "possible", "online"):
        (node / name).mkdir(parents=True)
    feat = features.check("numa/nodes")
    assert feat.supported
    assert feat.detail == "3 nodes (node0, node1, node10)"
    assert not features.check("numa/nodes").reason


@pytest.mark.nokernel
def test_numa_nodes_no_numa(fake_root: Path) -> None:
    feat = features.check("numa/nodes")
    assert not feat.supported
    assert "CONFIG_NUMA" in feat.reason


@pytest.mark.nokernel
def test_no_pmu_reason(fake_root: Path) -> None:
    for pmu in ("software", "tracepoint", "breakpoint"):
        (fake_root / "sys" / "bus" / "event_source" / "devices" / pmu).mkdir(parents=True)
    for name in ("pmu/intel_pebs_mem_loads", "pmu/amd_ibs_op", "pmu/arm_spe"):
        feat = features.check(name)
        assert not feat.supported
        assert "PMU" in feat.reason
    assert "no hardware PMU" in features.check("pmu/intel_pebs_mem_stores").reason


@pytest.mark.nokernel
def test_pebs_attr_from_sysfs(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Skylake-like cpu PMU: the attr must be built from events/ and format/ as perf does.
    cpu = fake_root / "sys" / "bus" / "event_source" / "devices" / "cpu"
    _write(cpu / "type", "4\n")
    _write(cpu / "events" / "mem-loads", "event=0xcd,umask=0x1,ldlat=3\n")
    _write(cpu / "format" / "event", "config:0-7\n")
    _write(cpu / "format" / "umask", "config:8-15\n")
    _write(cpu / "format" / "ldlat", "config1:0-15\n")
    _write(cpu / "caps" / "max_precise", "3\n")
    opened: list[tuple[int, int, int, int, int, int]] = []

    def fake_open(attr: syscalls.PerfEventAttr, pid: int = -1, cpu: int = 0, *args: int) -> int:
        opened.append((attr.type, attr.config, attr.config1, attr.precise_ip, attr.sample_type, cpu))
        return os.open(os.devnull, os.O_RDONLY)

    monkeypatch.setattr(syscalls, "perf_event_open", fake_open)
    feat = features.check("pmu/intel_pebs_mem_loads")
    assert feat.supported, feat.reason
    # The attr of --source perf (one check for both): perf mem's ldlat=30 after the alias's ldlat=3, precise_ip
    # from caps/max_precise down (modifier P), the source's sample_type.
    assert opened == [(4, 0x1CD, 30, 3, perf_events.SAMPLE_TYPE, 0)]
    assert feat.detail == "cpu/mem-loads,ldlat=30/P, precise_ip=3"
    stores = features.check("pmu/intel_pebs_mem_stores")
    assert not stores.supported
    assert "no mem-stores event" in stores.reason


@pytest.mark.nokernel
@pytest.mark.parametrize(
    "err, error_class, words",
    [
        (errno.ENOENT, NotSupportedError, "ENOENT"),
        (errno.EOPNOTSUPP, NotSupportedError, "EOPNOTSUPP"),
        (errno.EACCES, PermissionDeniedError, "CAP_PERFMON"),
    ],
)
def test_ibs_open_errors(
    fake_root: Path, monkeypatch: pytest.MonkeyPatch, err: int, error_class: type, words: str
) -> None:
    _write(fake_root / "sys" / "bus" / "event_source" / "devices" / "ibs_op" / "type", "11\n")
    (fake_root / "sys" / "bus" / "event_source" / "devices" / "cpu").mkdir()

    def fake_open(*args: object, **kwargs: object) -> int:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(syscalls, "perf_event_open", fake_open)
    feat = features.check("pmu/amd_ibs_op")
    assert not feat.supported
    assert words in feat.reason
    with pytest.raises(error_class):
        features.require("pmu/amd_ibs_op")


@pytest.mark.nokernel
def test_damon_kernel_read_only(fake_root: Path) -> None:
    ctx = fake_root / "sys" / "kernel" / "mm" / "damon" / "admin" / "kdamonds" / "0" / "contexts" / "0"
    _write(ctx / "avail_operations", "paddr\n")
    _write(ctx.parent.parent / "state", "on\n")
    feat = features.check("damon/kernel")
    assert feat.supported
    assert feat.detail == "1 kdamond (on); ops: paddr; vaddr not available"


@pytest.mark.nokernel
def test_failing_check_becomes_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(run: object) -> str:
        raise RuntimeError("kaboom")

    def missing(run: object) -> str:
        raise MissingDependencyError("frobnicator is not installed")

    monkeypatch.setitem(common.CHECKS, "test/boom", boom)
    monkeypatch.setitem(common.CHECKS, "test/missing", missing)
    feat = features.check("test/boom")
    assert feat == features.Feature("test/boom", False, reason="RuntimeError: kaboom")
    with pytest.raises(NotSupportedError, match="kaboom"):
        features.require("test/boom")
    with pytest.raises(MissingDependencyError, match="frobnicator"):
        features.require("test/missing")


@pytest.mark.nokernel
def test_unknown_feature() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        features.check("no/such")


@pytest.mark.nokernel
def test_tracepoint_field_offset() -> None:
    fmt = (
        "name: page_fault_user\nID: 190\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        "\tfield:unsigned long address;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long error_code;\toffset:24;\tsize:8;\tsigned:0;\n"
    )
    assert bpf_checks._tracepoint_field_offset(fmt, "address") == 8
    assert bpf_checks._tracepoint_field_offset(fmt, "error_code") == 24
    assert bpf_checks._tracepoint_field_offset(fmt, "ip") is None


@pytest.mark.nokernel
def test_perf_event_attr_layout() -> None:
    import ctypes

    attr = syscalls.PerfEventAttr()
    assert attr.size == ctypes.sizeof(attr) == 120  # PERF_ATTR_SIZE_VER6
    assert syscalls.PerfEventAttr.config1.offset == 56
    attr.precise_ip = 2
    attr.disabled = 1
    flags = int.from_bytes(bytes(attr)[40:48], "little")
    assert flags == (2 << 15) | 1


@pytest.mark.nokernel
def test_kernel_headers_exact_or_linked(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    release = os.uname().release
    modules = fake_root / "modules" / release
    modules.mkdir(parents=True)
    other = fake_root / "src" / "linux-headers-6.1.0-56-amd64"
    _write(other / "include" / "linux" / "kconfig.h", "")
    (modules / "build").symlink_to(other)
    feat = features.check("bcc/headers")
    assert feat.supported
    assert feat.detail == f"linked fallback: build -> linux-headers-6.1.0-56-amd64 (not {release})"

    exact = fake_root / "src" / f"linux-headers-{release}"
    _write(exact / "include" / "linux" / "kconfig.h", "")
    (modules / "build").unlink()
    (modules / "build").symlink_to(exact)
    feat = features.check("bcc/headers")
    assert feat.supported
    assert feat.detail.startswith("exact: ")

    (modules / "build").unlink()
    feat = features.check("bcc/headers")
    assert not feat.supported
    assert "no kernel headers" in feat.reason
