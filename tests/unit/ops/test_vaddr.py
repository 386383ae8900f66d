"""VaddrOps / FvaddrOps on real child processes and on fake /proc contents."""

from __future__ import annotations

import mmap
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from damon_bpf.engine import Attrs, Ctx, Kdamond, StopReason, Target
from damon_bpf.engine.model import Region
from damon_bpf.engine.ops import Applied
from damon_bpf.errors import InvalidParamsError, NotSupportedError, TargetGoneError
from damon_bpf.linux.procmaps import PF_KTHREAD, read_maps, read_stat, real_vmas
from damon_bpf.ops.vaddr import FvaddrOps, VaddrOps, VaddrTargetData

from .helpers import FakeClock, dead_pid, fake_stat, spawn_sleeper, write_fake_proc

FAST = dict(sample_interval_us=1_000, aggr_interval_us=10_000, ops_update_interval_us=20_000)


@pytest.fixture
def sleeper() -> Iterator[int]:
    p = spawn_sleeper()
    yield p.pid
    p.kill()
    p.wait()


def _ctx(ops: VaddrOps, *targets: Target, **attrs: int) -> Ctx:
    ctx = Ctx(attrs=Attrs(**attrs), ops=ops, rng=random.Random(1))
    ctx.targets.extend(targets)
    return ctx


def test_init_builds_three_regions_inside_the_maps(sleeper: int) -> None:
    ops = VaddrOps()
    t = Target(pid=sleeper)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    try:
        regions = t.regions
        assert len(regions) == 3
        assert all(a.end <= b.start for a, b in zip(regions, regions[1:]))
        assert isinstance(t.ops_data, VaddrTargetData)
        vmas = real_vmas(t.ops_data.vmas)  # the maps init read
        assert vmas == real_vmas(read_maps(sleeper))
        assert regions[0].start == vmas[0].start and regions[-1].end == vmas[-1].end
        for v in vmas:  # every mapping is covered, and the regions lie within the mapped span
            assert any(r.start <= v.start and v.end <= r.end for r in regions), v
        assert isinstance(t.ops_data, VaddrTargetData) and t.ops_data.pidfd is not None
        assert t.ops_data.vmas and t.ops_data.vmas[-1].pathname == "[vsyscall]"
        assert ops.target_valid(t)
    finally:
        ops.cleanup(ctx)
    assert t.ops_data.pidfd is None


def test_target_valid_turns_false_when_the_process_exits() -> None:
    p = spawn_sleeper()
    ops = VaddrOps()
    t = Target(pid=p.pid)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    assert ops.target_valid(t)
    p.kill()
    p.wait()
    assert not ops.target_valid(t)
    assert not ops.target_valid(t)  # sticky
    ops.update(ctx)  # skipped, not fatal
    assert ops.check_accesses(ctx, 3) == 0
    ops.cleanup(ctx)


def test_zombie_is_not_valid() -> None:
    p = spawn_sleeper()
    ops = VaddrOps()
    t = Target(pid=p.pid)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    p.kill()
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert read_stat(p.pid).state == "Z"
    assert not ops.target_valid(t)
    ops.cleanup(ctx)
    p.wait()


def test_kdamond_stops_with_targets_gone() -> None:
    p = spawn_sleeper()

    def on_sleep(clk: FakeClock) -> None:
        if clk.nr_sleeps == 5:
            p.kill()
            p.wait()

    ops = VaddrOps()
    t = Target(pid=p.pid)
    ctx = _ctx(ops, t, **FAST)
    clk = FakeClock(on_sleep=on_sleep)
    k = Kdamond(ctx, clock_ns=clk.clock_ns, sleep=clk.sleep)
    assert k.run(max_aggregations=1000) is StopReason.TARGETS_GONE
    assert k.nr_aggregations >= 4  # updates ran on the live process, then on the dead one
    assert t.ops_data.pidfd is None  # cleanup ran


def test_several_pids_are_several_targets() -> None:
    procs = [spawn_sleeper(), spawn_sleeper()]
    ops = VaddrOps()
    ctx = _ctx(ops, *(Target(pid=p.pid) for p in procs))
    ops.init(ctx)
    try:
        assert [t.nr_regions for t in ctx.targets] == [3, 3]
        procs[0].kill()
        procs[0].wait()
        assert [ops.target_valid(t) for t in ctx.targets] == [False, True]
        ops.update(ctx)
        assert ctx.targets[1].nr_regions >= 3
    finally:
        ops.cleanup(ctx)
        for p in procs:
            p.kill()
            p.wait()


def test_missing_pid_raises_target_gone() -> None:
    pid = dead_pid()
    ops = VaddrOps()
    ctx = _ctx(ops, Target(pid=pid))
    with pytest.raises(TargetGoneError) as ei:
        ops.init(ctx)
    assert ei.value.pid == pid


def test_user_regions_are_kept_at_init(sleeper: int) -> None:
    vmas = real_vmas(read_maps(sleeper))
    user = [Region(vmas[0].start, vmas[0].end)]
    ops = VaddrOps()
    t = Target(pid=sleeper, regions=user)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    assert [(r.start, r.end) for r in t.regions] == [(vmas[0].start, vmas[0].end)]
    ops.update(ctx)  # the update overrides user ranges, as the kernel's does
    assert t.nr_regions >= 3
    ops.cleanup(ctx)


def test_fvaddr_never_touches_regions(sleeper: int) -> None:
    vmas = real_vmas(read_maps(sleeper))
    ops = FvaddrOps()
    t = Target(pid=sleeper, regions=[Region(vmas[0].start, vmas[0].end)])
    ctx = _ctx(ops, t)
    ops.init(ctx)
    ops.update(ctx)
    assert [(r.start, r.end) for r in t.regions] == [(vmas[0].start, vmas[0].end)]
    assert ops.target_valid(t)
    ops.cleanup(ctx)
    with pytest.raises(InvalidParamsError):
        ops.init(_ctx(FvaddrOps(), Target(pid=sleeper)))


def test_fixed_targets_need_regions() -> None:
    ops = VaddrOps()
    with pytest.raises(InvalidParamsError):
        ops.init(_ctx(ops, Target()))
    t = Target(regions=[Region(0, 4096)])
    ctx = _ctx(ops, t)
    ops.init(ctx)
    ops.update(ctx)
    assert ops.target_valid(t) and t.nr_regions == 1


def test_real_kernel_thread_is_refused() -> None:
    try:
        st = read_stat(2)
    except TargetGoneError:
        pytest.skip("no pid 2 in this pid namespace")
    if not st.flags & PF_KTHREAD:
        pytest.skip("pid 2 is not a kernel thread here")
    ops = VaddrOps()
    with pytest.raises(NotSupportedError, match="kernel thread"):
        ops.init(_ctx(ops, Target(pid=2)))


# -- fake /proc ---------------------------------------------------------------------------------------------

MAPS1 = """\
00400000-00401000 r-xp 00000000 08:02 1 /bin/app
00600000-00700000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7ffe00000000-7ffe00021000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""
MAPS2 = MAPS1.replace("00600000-00700000", "00600000-00800000").replace("7f0000000000-", "7eff00000000-")


def test_fake_kernel_thread_and_zombie(tmp_path: Path) -> None:
    pid = os.getpid()  # a real pid for pidfd_open; its /proc contents are fake
    write_fake_proc(tmp_path, pid, "", fake_stat(pid, comm="kworker/0:1", flags=PF_KTHREAD | 0x40))
    ops = VaddrOps(proc_root=str(tmp_path))
    with pytest.raises(NotSupportedError, match=f"pid {pid} is a kernel thread: it has no user address space"):
        ops.init(_ctx(ops, Target(pid=pid)))
    write_fake_proc(tmp_path, pid, "", fake_stat(pid, state="Z"))
    with pytest.raises(TargetGoneError):
        ops.init(_ctx(ops, Target(pid=pid)))


def test_update_follows_the_maps_without_pidfd(tmp_path: Path) -> None:
    pid = 4242
    write_fake_proc(tmp_path, pid, MAPS1, fake_stat(pid, starttime=99))
    ops = VaddrOps(proc_root=str(tmp_path), use_pidfd=False)
    t = Target(pid=pid)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    assert [(r.start, r.end) for r in t.regions] == [
        (0x400000, 0x700000), (0x7F0000000000, 0x7F0000100000), (0x7FFE00000000, 0x7FFE00021000)]
    assert ops.target_valid(t)
    write_fake_proc(tmp_path, pid, MAPS2, fake_stat(pid, starttime=99))
    ops.update(ctx)
    assert [(r.start, r.end) for r in t.regions] == [
        (0x400000, 0x800000), (0x7EFF00000000, 0x7F0000100000), (0x7FFE00000000, 0x7FFE00021000)]
    # the pid now names another process (a different start time): not our target any more
    write_fake_proc(tmp_path, pid, MAPS1, fake_stat(pid, starttime=100))
    assert not ops.target_valid(t)
    ops.update(ctx)  # skipped
    assert t.regions[0].end == 0x800000
    ops.cleanup(ctx)


def test_update_skips_a_vanished_process(tmp_path: Path) -> None:
    pid = 4243
    write_fake_proc(tmp_path, pid, MAPS1)
    ops = VaddrOps(proc_root=str(tmp_path), use_pidfd=False)
    t = Target(pid=pid)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    shutil.rmtree(tmp_path / str(pid))
    ops.update(ctx)
    assert not ops.target_valid(t) and t.nr_regions == 3


def test_no_two_gaps_gives_no_regions(tmp_path: Path) -> None:
    pid = 4244
    write_fake_proc(tmp_path, pid, "00400000-00401000 r-xp 00000000 08:02 1 /bin/app\n")
    ops = VaddrOps(proc_root=str(tmp_path), use_pidfd=False)
    t = Target(pid=pid)
    ops.init(_ctx(ops, t))
    assert t.nr_regions == 0  # the kernel's -EINVAL: the target gets no regions


def test_check_supported(tmp_path: Path) -> None:
    VaddrOps().check_supported()
    with pytest.raises(NotSupportedError):
        VaddrOps(proc_root=str(tmp_path / "nope")).check_supported()


# -- DAMOS hooks ----------------------------------------------------------------------------------------------


def test_scheme_score_dispatch() -> None:
    ops = VaddrOps()
    ctx = Ctx(attrs=Attrs(sample_interval_us=5_000, aggr_interval_us=100_000))
    t = Target()
    r = Region(0, 4096, nr_accesses=10)
    quota = SimpleNamespace(weight_nr_accesses=1, weight_age=1)
    assert ops.get_scheme_score(ctx, t, r, SimpleNamespace(action="pageout", quota=quota)) == 50  # cold
    assert ops.get_scheme_score(ctx, t, r, SimpleNamespace(action="migrate_cold", quota=quota)) == 50
    assert ops.get_scheme_score(ctx, t, r, SimpleNamespace(action="migrate_hot", quota=quota)) == 49  # hot
    # cold and lru_deprio deprioritise like pageout, so they use the cold score too (paddr does for lru_deprio)
    assert ops.get_scheme_score(ctx, t, r, SimpleNamespace(action="cold", quota=quota)) == 50
    for action in ("willneed", "hugepage", "lru_prio", "stat"):
        assert ops.get_scheme_score(ctx, t, r, SimpleNamespace(action=action, quota=quota)) == 99


def test_apply_scheme_madvises_own_memory() -> None:
    ops = VaddrOps()
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 16 * page)
    buf.write(b"x" * 16 * page)
    import ctypes

    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    t = Target(pid=os.getpid())
    ctx = _ctx(ops, t)
    ops.init(ctx)
    try:
        r = Region(start, start + 16 * page)
        applied = ops.apply_scheme(ctx, t, r, SimpleNamespace(action="cold"))
        assert applied in (Applied(0), Applied(16 * page))  # 0 where process_madvise is not permitted
        for action in ("hugepage", "nohugepage", "stat", "lru_prio", "bogus"):
            assert ops.apply_scheme(ctx, t, r, SimpleNamespace(action=action)) == Applied(0)
        assert ops.apply_scheme(ctx, Target(), r, SimpleNamespace(action="cold")) == Applied(0)  # no process
    finally:
        ops.cleanup(ctx)
        del start
    assert ops.apply_scheme(ctx, t, Region(0, 4096), SimpleNamespace(action="cold")) == Applied(0)  # pidfd closed


def test_update_with_unchanged_maps_keeps_the_regions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An unchanged maps text is not parsed again, and set_regions() is skipped while the regions still tile
    # the three regions exactly (it would change nothing); a moved edge or a changed text applies it again.
    import damon_bpf.ops.vaddr as vaddr_mod
    from damon_bpf.engine.core import split_region_at

    pid = 4245
    write_fake_proc(tmp_path, pid, MAPS1, fake_stat(pid, starttime=99))
    ops = VaddrOps(proc_root=str(tmp_path), use_pidfd=False)
    t = Target(pid=pid)
    ctx = _ctx(ops, t)
    ops.init(ctx)
    split_region_at(t, 0, 0x100000)
    before = [(r.start, r.end) for r in t.regions]
    calls: list[int] = []
    parsed: list[int] = []
    real_set, real_parse = vaddr_mod.set_regions, vaddr_mod.parse_maps
    monkeypatch.setattr(vaddr_mod, "set_regions", lambda *a, **k: (calls.append(1), real_set(*a, **k))[1])
    monkeypatch.setattr(vaddr_mod, "parse_maps", lambda *a, **k: (parsed.append(1), real_parse(*a, **k))[1])
    ops.update(ctx)
    ops.update(ctx)
    assert [(r.start, r.end) for r in t.regions] == before
    assert calls == [] and len(parsed) == 1
    # the regions no longer tile the ranges (a region edge moved): applied again
    ra = t.ra
    ra.end[-1] -= 4096
    ops.update(ctx)
    assert calls == [1] and len(parsed) == 1
    assert t.regions[-1].end == 0x7FFE00021000
    # a changed text is parsed and applied
    write_fake_proc(tmp_path, pid, MAPS2, fake_stat(pid, starttime=99))
    ops.update(ctx)
    assert len(parsed) == 2 and calls == [1, 1]
    assert [(r.start, r.end) for r in t.regions][0] == (0x400000, 0x500000)
    assert t.regions[1].end == 0x800000
    ops.cleanup(ctx)
