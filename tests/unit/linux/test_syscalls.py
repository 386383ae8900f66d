"""damon_bpf.linux.syscalls: process_madvise chunking and its vector contract, errno mapping, the syscall table."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import subprocess
import sys
from typing import Any, Iterator

import numpy as np
import pytest

from damon_bpf.errors import NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import IOV_MAX, MADV_COLD, ProcessGoneError, errno_error, process_madvise

PAGE = mmap.PAGESIZE


class FakeLibc:
    """A libc whose syscall() is process_madvise(): ranges starting at an address in *fail* fail with that errno,
    as vector_madvise() does (whole iovecs in order, the completed bytes, or the error when none completed)."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.fail = fail or {}
        self.sizes: list[int] = []

    def syscall(self, nr: Any, pidfd: Any, iov: Any, n: Any, advice: Any, flags: Any) -> int:
        assert nr.value == syscalls.syscall_nr("process_madvise") and flags.value == 0
        k = int(n.value)
        assert 0 < k <= IOV_MAX
        self.sizes.append(k)
        arr = np.ctypeslib.as_array((ctypes.c_uint64 * (2 * k)).from_address(iov.value)).reshape(k, 2)
        done = 0
        for start, length in arr.tolist():
            if start in self.fail:
                if done:
                    return done
                ctypes.set_errno(self.fail[start])
                return -1
            done += length
        return done


@pytest.fixture
def fake_libc(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLibc]:
    fake = FakeLibc()
    monkeypatch.setattr(syscalls, "_libc", fake)
    yield fake


def _pages(n: int) -> np.ndarray:
    starts = np.arange(n, dtype=np.uint64) * np.uint64(PAGE) + np.uint64(1 << 40)
    return np.column_stack((starts, np.full(n, PAGE, dtype=np.uint64)))


def test_chunks_at_iov_max(fake_libc: FakeLibc) -> None:
    assert process_madvise(3, _pages(2500), MADV_COLD) == 2500 * PAGE
    assert fake_libc.sizes == [1024, 1024, 452]
    fake_libc.sizes.clear()
    assert process_madvise(3, _pages(1024), MADV_COLD) == 1024 * PAGE and fake_libc.sizes == [1024]


def test_empty_makes_no_call(fake_libc: FakeLibc) -> None:
    assert process_madvise(3, [], MADV_COLD) == 0
    assert process_madvise(3, np.zeros((0, 2), dtype=np.int64), MADV_COLD) == 0
    assert fake_libc.sizes == []


def test_accepts_pairs_and_any_integer_array(fake_libc: FakeLibc) -> None:
    pairs = [(int(s), int(n)) for s, n in _pages(3).tolist()]
    assert process_madvise(3, pairs, MADV_COLD) == 3 * PAGE
    assert process_madvise(3, _pages(3).astype(np.int64), MADV_COLD) == 3 * PAGE
    assert process_madvise(3, np.asfortranarray(_pages(3)), MADV_COLD) == 3 * PAGE


def test_stops_at_the_first_refused_range_across_chunks(fake_libc: FakeLibc) -> None:
    iov = _pages(3000)
    fake_libc.fail = {int(iov[1500, 0]): errno.ENOMEM}
    # chunk 1 complete, chunk 2 partial (476 ranges): no third call
    assert process_madvise(3, iov, MADV_COLD) == 1500 * PAGE
    assert fake_libc.sizes == [1024, 1024]
    fake_libc.sizes.clear()
    fake_libc.fail = {int(iov[2048, 0]): errno.EINVAL}  # the first range of chunk 3 fails: chunks 1-2 count
    assert process_madvise(3, iov, MADV_COLD) == 2048 * PAGE
    assert fake_libc.sizes == [1024, 1024, 952]


def test_first_range_refused_raises_with_errno(fake_libc: FakeLibc) -> None:
    iov = _pages(5)
    fake_libc.fail = {int(iov[0, 0]): errno.EINVAL}
    with pytest.raises(OSError) as info:
        process_madvise(3, iov, MADV_COLD)
    assert info.value.errno == errno.EINVAL and type(info.value) is OSError
    fake_libc.fail = {int(iov[0, 0]): errno.ESRCH}
    with pytest.raises(TargetGoneError) as gone:
        process_madvise(3, iov, MADV_COLD)
    assert isinstance(gone.value, ProcessLookupError) and gone.value.errno == errno.ESRCH
    fake_libc.fail = {int(iov[0, 0]): errno.EPERM}
    with pytest.raises(PermissionDeniedError, match="process_madvise.*denied") as denied:
        process_madvise(3, iov, MADV_COLD)
    assert denied.value.errno == errno.EPERM


def test_errno_mapping() -> None:
    gone = errno_error(errno.ESRCH, "move_pages(pid 7)", 7)
    assert isinstance(gone, TargetGoneError) and isinstance(gone, ProcessLookupError)
    assert gone.pid == 7 and gone.errno == errno.ESRCH and "process 7" in str(gone)
    assert errno_error(errno.ESRCH, "x").pid == -1  # type: ignore[attr-defined]
    for e in (errno.EPERM, errno.EACCES):
        err = errno_error(e, "bpf(cmd 0)")
        assert isinstance(err, PermissionDeniedError) and isinstance(err, PermissionError)
        assert err.errno == e and str(err).startswith("bpf(cmd 0) denied")
    other = errno_error(errno.ENOMEM, "process_madvise")
    assert type(other) is OSError and other.errno == errno.ENOMEM and other.strerror
    assert syscalls.errname(errno.EOPNOTSUPP) == "EOPNOTSUPP" and syscalls.errname(errno.ENOENT) == "ENOENT"


def test_unknown_architecture_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syscalls, "_MACHINE", "vax")
    with pytest.raises(NotSupportedError, match="move_pages.*vax"):
        syscalls.syscall_nr("move_pages")
    with pytest.raises(NotSupportedError, match="vax"):
        syscalls.move_pages(os.getpid(), [0], None)


def test_every_architecture_has_every_syscall() -> None:
    names = set(syscalls.SYSCALLS["x86_64"])
    assert all(set(t) == names for t in syscalls.SYSCALLS.values())


def test_perf_event_attr_layout() -> None:
    attr = syscalls.PerfEventAttr()
    assert attr.size == ctypes.sizeof(attr) == 120  # PERF_ATTR_SIZE_VER6


# -- the real syscalls, on this process (no privileges needed for one's own mm) ---------------------------------


@pytest.fixture
def own_pidfd() -> Iterator[int]:
    try:
        fd = syscalls.pidfd_open(os.getpid())
    except OSError as err:
        pytest.skip(f"no pidfd_open: {err}")
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def touched() -> Iterator[int]:
    n = 2500
    mem = mmap.mmap(-1, n * PAGE, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = (ctypes.c_char * (n * PAGE)).from_buffer(mem)
    for off in range(0, n * PAGE, PAGE):
        mem[off] = 1
    try:
        yield ctypes.addressof(view)
    finally:
        del view
        mem.close()


def _real(pidfd: int, iov: np.ndarray) -> int:
    try:
        return process_madvise(pidfd, iov, MADV_COLD)
    except OSError as err:
        if err.errno == errno.ENOSYS:
            pytest.skip("no process_madvise (Linux < 5.10)")
        raise


def test_real_process_madvise_in_three_calls(own_pidfd: int, touched: int) -> None:
    starts = touched + np.arange(2500, dtype=np.uint64) * np.uint64(PAGE)
    assert _real(own_pidfd, np.column_stack((starts, np.full(2500, PAGE, dtype=np.uint64)))) == 2500 * PAGE


def test_real_hole_ends_the_vector(own_pidfd: int, touched: int) -> None:
    starts = touched + np.arange(2500, dtype=np.uint64) * np.uint64(PAGE)
    starts[1500] = PAGE  # page 1 of the address space is never mapped: ENOMEM
    iov = np.column_stack((starts, np.full(2500, PAGE, dtype=np.uint64)))
    assert _real(own_pidfd, iov) == 1500 * PAGE
    with pytest.raises(OSError) as info:
        _real(own_pidfd, iov[1500:])
    assert info.value.errno == errno.ENOMEM


def test_real_exited_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        fd = syscalls.pidfd_open(child.pid)
    except OSError as err:
        child.wait()
        pytest.skip(f"no pidfd_open: {err}")
    try:
        child.wait()
        with pytest.raises(TargetGoneError):
            _real(fd, np.array([[1 << 30, PAGE]], dtype=np.uint64))
    finally:
        os.close(fd)
    with pytest.raises(ProcessGoneError) as info:
        syscalls.pidfd_open(child.pid)
    assert info.value.pid == child.pid


def test_real_move_pages_reports_nodes(touched: int) -> None:
    try:
        status = syscalls.move_pages(os.getpid(), [touched, touched + PAGE, PAGE], None)
    except OSError as err:
        if err.errno == errno.ENOSYS:
            pytest.skip("kernel without CONFIG_NUMA_MIGRATION")
        raise
    assert status.dtype == np.int32 and status.shape == (3,)
    assert status[0] >= 0 and status[1] >= 0 and status[2] == -errno.EFAULT
