"""/proc/<pid>/maps and /proc/<pid>/stat parsing, error translation, classify and lookups (fake contents)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux import procmaps
from damon_bpf.linux.procmaps import (
    PF_KTHREAD,
    Vma,
    classify,
    mapping_at,
    mappings_in,
    parse_maps,
    parse_stat,
    read_maps,
    read_stat,
    real_vmas,
)

from ..ops.helpers import fake_stat, write_fake_proc

MAPS = """\
00400000-00452000 r-xp 00000000 08:02 173521                             /usr/bin/dbus-daemon
00651000-00652000 r--p 00051000 08:02 173521                             /usr/bin/dbus-daemon
00e03000-00e24000 rw-p 00000000 00:00 0                                  [heap]
7f2b8000-7f2b9000 rw-s 00000000 00:05 1234                               /dev/shm/my file  with spaces (deleted)
7f2c0000-7f2c1000 rw-p 00000000 00:00 0                                  [anon:jemalloc arena]
7f2c1000-7f2c2000 rw-p 00000000 00:00 0 
7f2c2000-7f2c3000 rw-s 00000000 00:01 99                                 /memfd:wayland-shm (deleted)
7f2c3000-7f2c4000 rw-p 00000000 00:0e 10                                 anon_inode:[perf_event]
7f2c4000-7f2c5000 rw-s 00000000 00:01 7                                  [anon_shmem:shared buf]
7f2c5000-7f2c6000 r--p 00000000 08:02 11                                 /tmp/trailing 
7ffe1000-7ffe2000 rw-p 00000000 00:00 0                                  [stack]
7ffe3000-7ffe5000 r--p 00000000 00:00 0                                  [vvar]
7ffe5000-7ffe7000 r-xp 00000000 00:00 0                                  [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def test_parse_maps_fields() -> None:
    vmas = parse_maps(MAPS)
    assert len(vmas) == 14
    v = vmas[0]
    assert v == Vma(0x400000, 0x452000, "r-xp", 0, "08:02", 173521, "/usr/bin/dbus-daemon")
    assert vmas[1].offset == 0x51000
    assert vmas[2].pathname == "[heap]" and vmas[2].inode == 0
    assert vmas[3].pathname == "/dev/shm/my file  with spaces (deleted)"
    assert vmas[3].deleted and vmas[3].path == "/dev/shm/my file  with spaces" and vmas[3].shared
    assert vmas[5].pathname == ""  # anonymous, trailing blank after the inode column
    assert vmas[9].pathname == "/tmp/trailing "  # trailing spaces of a name are kept
    assert vmas[-1].start == 0xFFFFFFFFFF600000 and vmas[-1].is_gate
    assert all(a.end <= b.start for a, b in zip(vmas, vmas[1:]))


def test_parse_maps_empty_and_bad() -> None:
    assert parse_maps("") == []
    assert parse_maps("\n\n") == []
    with pytest.raises(InvalidParamsError):
        parse_maps("00400000 r-xp 00000000 08:02 1 /bin/x\n")
    with pytest.raises(InvalidParamsError):
        parse_maps("zz-00452000 r-xp 00000000 08:02 1 /bin/x\n")
    with pytest.raises(InvalidParamsError):
        parse_maps("00400000-00452000 r-xp\n")


def test_classify() -> None:
    names = [classify(v) for v in parse_maps(MAPS)]
    assert names == [
        "file:dbus-daemon", "file:dbus-daemon", "heap", "file:my file  with spaces (deleted)",
        "anon:jemalloc arena", "anon", "file:memfd:wayland-shm (deleted)", "anon_inode:[perf_event]",
        "shmem:shared buf", "file:trailing ", "stack", "vvar", "vdso", "vsyscall",
    ]
    assert classify(Vma(0, 4096, pathname="[stack:1234]")) == "stack"
    assert classify(Vma(0, 4096, pathname="[vvar_vclock]")) == "vvar"
    assert classify(Vma(0, 4096, pathname="[uprobes]")) == "uprobes"


def test_real_vmas_drops_gate_area() -> None:
    vmas = real_vmas(parse_maps(MAPS))
    assert len(vmas) == 13 and vmas[-1].pathname == "[vdso]"


def test_mapping_at_and_mappings_in() -> None:
    vmas = parse_maps(MAPS)
    assert mapping_at(vmas, 0x400000) is vmas[0]
    assert mapping_at(vmas, 0x451FFF) is vmas[0]
    assert mapping_at(vmas, 0x452000) is None  # gap
    assert mapping_at(vmas, 0x3FFFFF) is None  # below everything
    assert mapping_at(vmas, 0xE10000) is vmas[2]
    assert mapping_at(vmas, 0xFFFFFFFFFF600FFF) is vmas[-1]
    assert mapping_at(vmas, 0xFFFFFFFFFF601000) is None
    assert mapping_at([], 0) is None
    assert mappings_in(vmas, 0x451000, 0xE04000) == vmas[0:3]
    assert mappings_in(vmas, 0x452000, 0x651000) == []
    assert mappings_in(vmas, 0, 1 << 64) == vmas


def test_parse_stat() -> None:
    st = parse_stat(fake_stat(42, comm="a) (b c", state="S", flags=PF_KTHREAD | 0x40, starttime=777))
    assert (st.pid, st.comm, st.state, st.starttime) == (42, "a) (b c", "S", 777)
    assert st.is_kthread and not st.exited
    assert parse_stat(fake_stat(1, state="Z")).exited
    with pytest.raises(InvalidParamsError):
        parse_stat("42 (x) S 1 2\n")


def test_read_from_fake_proc(tmp_path: Path) -> None:
    write_fake_proc(tmp_path, 123, MAPS, fake_stat(123, starttime=5))
    assert read_maps(123, proc_root=str(tmp_path)) == parse_maps(MAPS)
    assert read_stat(123, proc_root=str(tmp_path)).starttime == 5
    with pytest.raises(TargetGoneError) as ei:
        read_maps(124, proc_root=str(tmp_path))
    assert ei.value.pid == 124


@pytest.mark.parametrize("exc, expected", [
    (FileNotFoundError(errno.ENOENT, "gone"), TargetGoneError),
    (ProcessLookupError(errno.ESRCH, "gone"), TargetGoneError),
    (OSError(errno.ESRCH, "gone"), TargetGoneError),
    (PermissionError(errno.EACCES, "denied"), PermissionDeniedError),
    (PermissionError(errno.EPERM, "denied"), PermissionDeniedError),
])
def test_os_errors_are_translated(monkeypatch: pytest.MonkeyPatch, exc: OSError, expected: type) -> None:
    def fake_open(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(procmaps, "open", fake_open, raising=False)
    with pytest.raises(expected) as ei:
        read_maps(77)
    assert ei.value.__cause__ is exc
    if expected is PermissionDeniedError:
        assert "/proc/77/maps" in str(ei.value) and "CAP_SYS_PTRACE" in str(ei.value)
        assert isinstance(ei.value, PermissionError)


def test_other_os_errors_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_open(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "io")

    monkeypatch.setattr(procmaps, "open", fake_open, raising=False)
    with pytest.raises(OSError) as ei:
        read_maps(77)
    assert ei.value.errno == errno.EIO


def test_read_own_maps() -> None:
    vmas = read_maps(os.getpid())
    assert vmas and all(v.start < v.end for v in vmas)
    assert all(a.end <= b.start for a, b in zip(vmas, vmas[1:]))
    assert "stack" in {classify(v) for v in vmas}
    assert read_stat(os.getpid()).pid == os.getpid()
