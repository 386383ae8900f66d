"""``damon-bpf features`` and the sources decide the same way (issue #18): the ``pmu/*`` rows against
``hardware_sampling_status()`` (``--source auto``, ``--source perf``), and the ``probe/pte_accessed_bit`` row against
``PteOps.check_supported()``, on this machine (root + bcc) and on fake trees (``nokernel``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import damon_bpf.ops  # noqa: F401  (registers the built-in operations sets)
from damon_bpf.engine.ops import select_ops
from damon_bpf.errors import DamonBpfError, NotSupportedError, PermissionDeniedError
from damon_bpf.linux import syscalls
from damon_bpf.probes import features
from damon_bpf.probes.perf_events import hardware_sampling_status

_LOADS, _STORES, _IBS = "pmu/intel_pebs_mem_loads", "pmu/intel_pebs_mem_stores", "pmu/amd_ibs_op"
_PMU_ROWS = (_LOADS, _STORES, _IBS, "pmu/arm_spe")
_DEVICES = Path("/sys/bus/event_source/devices")


def _rows(names: tuple[str, ...]) -> dict[str, features.Feature]:
    return {f.name: f for f in features.check_all(names)}


# --------------------------------------------------------------------------------------------------------------
# This machine (root + bcc): no PMU here, pte supported
# --------------------------------------------------------------------------------------------------------------


def test_pmu_rows_agree_with_auto_here() -> None:
    rows = _rows(_PMU_ROWS)
    hardware, reason = hardware_sampling_status()
    used = (_LOADS, _STORES) if rows[_LOADS].supported or "mem-loads" not in rows[_LOADS].reason else (_IBS,)
    assert hardware == all(rows[name].supported for name in used), (reason, rows)
    if not (_DEVICES / "cpu").exists():
        assert not hardware and not any(f.supported for f in rows.values())
        assert reason.startswith("no hardware PMU:") and rows[_IBS].reason.startswith(reason.split(";")[0])


def test_pte_row_agrees_with_check_supported_here() -> None:
    feat = features.check("probe/pte_accessed_bit")
    select_ops("pte").check_supported()  # raises when not supported
    assert feat.supported, feat.reason


# --------------------------------------------------------------------------------------------------------------
# Fake sysfs trees and a fake perf_event_open (no root, no bcc)
# --------------------------------------------------------------------------------------------------------------

_BASE = {"software/type": "1", "tracepoint/type": "2", "breakpoint/type": "5"}
_INTEL = {
    "cpu/type": "4",
    "cpu/events/mem-loads": "event=0xcd,umask=0x1,ldlat=3",
    "cpu/events/mem-stores": "event=0xd0,umask=0x82",
    "cpu/format/event": "config:0-7",
    "cpu/format/umask": "config:8-15",
    "cpu/format/ldlat": "config1:0-15",
    "cpu/caps/max_precise": "3",
}
_AMD = {"cpu/type": "4", "cpu/caps/max_precise": "0", "ibs_op/type": "11", "ibs_op/format/swfilt": "config2:0"}
_STORES_CONFIG = 0x82D0


def _opens_all(attr: syscalls.PerfEventAttr) -> int:
    return 0


def _denies(attr: syscalls.PerfEventAttr) -> int:
    return errno.EACCES


def _refuses(attr: syscalls.PerfEventAttr) -> int:
    return errno.ENOENT


def _refuses_stores(attr: syscalls.PerfEventAttr) -> int:
    return errno.ENOENT if attr.config == _STORES_CONFIG else 0


_SCENARIOS: dict[str, tuple[dict[str, str], Callable[[syscalls.PerfEventAttr], int], tuple[str, ...], bool]] = {
    # name: (sysfs files, errno of perf_event_open per attr, rows of the events auto would use, hardware?)
    "intel": (_INTEL, _opens_all, (_LOADS, _STORES), True),
    "intel_not_root": (_INTEL, _denies, (_LOADS, _STORES), False),
    "intel_refused": (_INTEL, _refuses, (_LOADS, _STORES), False),
    "intel_stores_refused": (_INTEL, _refuses_stores, (_LOADS, _STORES), False),
    "intel_no_pebs": ({**_INTEL, "cpu/caps/max_precise": "0"}, _opens_all, (_LOADS, _STORES), False),
    "amd": (_AMD, _opens_all, (_IBS,), True),
    "amd_refused": (_AMD, _refuses, (_IBS,), False),
    "vm": ({}, _opens_all, (_LOADS, _STORES, _IBS), False),
}


@pytest.mark.nokernel
@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_pmu_rows_agree_with_auto(scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, result, used, expected = _SCENARIOS[scenario]
    sys_root = tmp_path / "sys"
    for rel, text in {**_BASE, **files}.items():
        path = sys_root / "bus/event_source/devices" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    def fake_open(attr: syscalls.PerfEventAttr, pid: int = -1, cpu: int = 0, *args: int) -> int:
        err = result(attr)
        if err:
            raise OSError(err, os.strerror(err))
        return os.open(os.devnull, os.O_RDONLY)

    monkeypatch.setattr(syscalls, "perf_event_open", fake_open)
    monkeypatch.setattr(features, "SYS_ROOT", str(sys_root))
    rows = _rows(_PMU_ROWS)
    hardware, reason = hardware_sampling_status(sys_root)
    assert hardware == expected == all(rows[name].supported for name in used), (reason, rows)
    if hardware:
        return
    first_no = next(rows[name] for name in used if not rows[name].supported)
    if scenario == "vm":  # the same missing PMU, each saying what it would have needed
        assert reason.split(";")[0] == rows[_IBS].reason.split(";")[0] == (
            f"no hardware PMU: {sys_root}/bus/event_source/devices has no cpu or ibs_op PMU (virtual machine "
            "without vPMU?)"
        )
        assert all(rows[name].reason.startswith("no hardware PMU:") for name in used)
    else:  # the very reason of the check both made
        assert reason.startswith(first_no.reason + ": falling back to software page faults"), (reason, first_no)
    error = PermissionDeniedError if result is _denies else NotSupportedError
    with pytest.raises(error):
        features.require(first_no.name)


@pytest.mark.nokernel
def test_pte_row_agrees_with_check_supported_on_hidden_kallsyms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kernel.kptr_restrict hides kernel addresses: the pte source and its row refuse alike, with one reason.
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("flags\t\t: fpu pse lm\n")
    (proc / "kallsyms").write_text("0000000000000000 T _text\n")
    monkeypatch.setattr(features, "PROC_ROOT", str(proc))
    feat = features.check("probe/pte_accessed_bit")
    ops = select_ops("pte")
    ops.proc_root = str(proc)  # type: ignore[attr-defined]
    with pytest.raises(DamonBpfError) as info:
        ops.check_supported()
    assert not feat.supported
    assert feat.reason == str(info.value)
    assert feat._error is type(info.value)
