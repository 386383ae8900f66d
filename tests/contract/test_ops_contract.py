"""The operations-set contract, checked on every registered ops id (psutil's ``test_contracts.py``): the
protocol is satisfied, hooks return the right types, unsupported DAMOS actions return 0, scores stay in
0..99, and a process target that exits becomes invalid.

Every backend is driven the same way: one target, a ``sleep`` child process, given user regions (its three
regions) so that fixed-range backends (fvaddr) work too. Backends this machine cannot run (no root, no bcc,
no PMU) skip with their own reason.
"""

from __future__ import annotations

import random
import subprocess
import time
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

import damon_bpf.ops
from damon_bpf.engine import Attrs, Ctx, Target
from damon_bpf.engine.model import Region
from damon_bpf.engine.ops import Applied, Operations, registered_ops, select_ops
from damon_bpf.errors import NotSupportedError, PermissionDeniedError
from damon_bpf.linux.procmaps import read_maps, real_vmas
from damon_bpf.ops.vaddr import three_regions

OPS_IDS = sorted(set(registered_ops()) | set(damon_bpf.ops.BUILTIN_OPS))
UNSUPPORTED = (NotSupportedError, PermissionDeniedError)


def _spawn() -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until exec has finished and the mappings settled
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                sleeping = f.read().rpartition(")")[2].split()[0] == "S"
            if sleeping and three_regions(real_vmas(read_maps(p.pid)), 4096) is not None:
                break
        except Exception:
            pass
        time.sleep(0.002)
    return p


@pytest.fixture(scope="module")
def child() -> Iterator[subprocess.Popen[bytes]]:
    p = _spawn()
    yield p
    p.kill()
    p.wait()


def _replay_samples(pid: int) -> SimpleNamespace:
    # a tiny "recording" of the target: exact events at addresses inside its first mapping, 1 ms apart
    first = real_vmas(read_maps(pid))[0]
    n = 64
    return SimpleNamespace(
        time_ns=np.arange(n, dtype=np.int64) * 1_000_000 + time.monotonic_ns(), pid=np.full(n, pid),
        addr=np.full(n, first.start, dtype=np.uint64) + np.arange(n, dtype=np.uint64) % 4 * 4096,
        ip=np.full(n, 0x401000, dtype=np.uint64), period=np.ones(n, dtype=np.int64),
        is_write=np.zeros(n, dtype=bool), sampled=np.zeros(n, dtype=bool))


def _build(ops_id: str, pid: int) -> tuple[Operations, Ctx]:
    ops = select_ops(ops_id, samples=_replay_samples(pid)) if ops_id == "replay" else select_ops(ops_id)
    try:
        ops.check_supported()
    except UNSUPPORTED as err:
        pytest.skip(f"{ops_id}: {err}")
    vmas = real_vmas(read_maps(pid))
    ranges = three_regions(vmas, 4096)
    assert ranges is not None, [(hex(v.start), hex(v.end), v.pathname) for v in vmas]
    t = Target(pid=pid, regions=[Region(r.start, r.end) for r in ranges])
    ctx = Ctx(attrs=Attrs(), ops=ops, rng=random.Random(0))
    ctx.targets.append(t)
    try:
        ops.init(ctx)
    except UNSUPPORTED as err:
        ops.cleanup(ctx)
        pytest.skip(f"{ops_id}: {err}")
    return ops, ctx


@pytest.fixture(scope="module", params=OPS_IDS)
def ops_ctx(request: pytest.FixtureRequest, child: subprocess.Popen[bytes]) -> Iterator[tuple[str, Operations, Ctx]]:
    # one build per backend for the whole module: BPF backends compile their program on init (~2 s)
    assert child.poll() is None, "the target child process died"
    ops, ctx = _build(request.param, child.pid)
    yield request.param, ops, ctx
    ops.cleanup(ctx)


def test_builtins_are_registered() -> None:
    for ops_id in damon_bpf.ops.BUILTIN_OPS:
        assert ops_id in registered_ops()
    damon_bpf.ops.register_builtin_ops()  # idempotent
    assert damon_bpf.ops.available_ops() == registered_ops()
    assert set(damon_bpf.ops.available_ops(check_supported=True)) >= {"synthetic"}


@pytest.mark.parametrize("ops_id", OPS_IDS)
def test_instantiable_without_arguments(ops_id: str) -> None:
    ops = select_ops(ops_id)
    assert isinstance(ops, Operations)
    assert isinstance(ops.name, str) and ops.name
    assert isinstance(ops.batched, bool)
    assert isinstance(ops.supported_actions, frozenset)
    assert all(isinstance(a, str) for a in ops.supported_actions)


def test_hooks_return_types(ops_ctx: tuple[str, Operations, Ctx]) -> None:
    ops_id, ops, ctx = ops_ctx
    t = ctx.targets[0]
    assert ops.target_valid(t) is True
    ops.prepare_access_checks(ctx)
    ctx.window_start_ns = time.monotonic_ns()
    mx = ops.check_accesses(ctx, 1)
    assert isinstance(mx, int) and mx >= 0
    if ops.batched:
        ctx.window_start_ns += ctx.attrs.sample_interval_us * 1000
        ops.prepare_access_checks(ctx)
        mx = ops.check_accesses(ctx, 4)
        assert isinstance(mx, int) and 0 <= mx <= 5
    ops.update(ctx)
    assert t.nr_regions > 0
    assert all(a.end <= b.start for a, b in zip(t.regions, t.regions[1:]))


def test_unsupported_action_applies_nothing(ops_ctx: tuple[str, Operations, Ctx]) -> None:
    ops_id, ops, ctx = ops_ctx
    t = ctx.targets[0]
    r = t.regions[0]
    for action in ("hugepage", "no-such-action"):
        applied = ops.apply_scheme(ctx, t, r, SimpleNamespace(action=action))
        assert applied == Applied(0, 0) and isinstance(applied, Applied)
    assert "no-such-action" not in ops.supported_actions


def test_scheme_scores_order_regions_by_hotness(ops_ctx: tuple[str, Operations, Ctx]) -> None:
    # damon_hot_score()/damon_cold_score() on regions with known counters: a region accessed in every sample
    # is hotter than one half-accessed, which is hotter than an old idle one; cold = 99 - hot; actions without
    # a priority get DAMOS_MAX_SCORE
    ops_id, ops, ctx = ops_ctx
    mx = ctx.attrs.max_nr_accesses
    ctx.passed_sample_intervals = ctx.next_aggregation_sis  # at a boundary: the moving sum is nr_accesses
    aged = 10_000_000 // ctx.attrs.aggr_interval_us  # 10 s old
    regions = [Region(0, 4096, nr_accesses=mx, age=aged), Region(4096, 8192, nr_accesses=mx // 2, age=aged),
               Region(8192, 12288, nr_accesses=0, age=aged)]
    t = ctx.targets[0]
    quota = SimpleNamespace(weight_sz=0, weight_nr_accesses=1, weight_age=1)

    def scores(action: str) -> list[int]:
        out = [ops.get_scheme_score(ctx, t, r, SimpleNamespace(action=action, quota=quota)) for r in regions]
        assert all(isinstance(x, int) and 0 <= x <= 99 for x in out)
        return out

    hot = scores("migrate_hot")
    assert hot[0] > hot[1] > hot[2]
    # frequency 100 and 50 with a 10 s age (subscore (4 + 32) * 100 / 64 = 56); idle: (-4 + 32) * 100 / 64 = 43
    assert hot == [(100 + 56) // 2 * 99 // 100, (50 + 56) // 2 * 99 // 100, (0 + 43) // 2 * 99 // 100]
    for action in ("pageout", "migrate_cold"):
        assert scores(action) == [99 - h for h in hot], action
    for action in ("willneed", "hugepage", "lru_prio", "stat"):
        assert scores(action) == [99, 99, 99], action


@pytest.mark.parametrize("ops_id", [o for o in OPS_IDS if o != "replay"])  # replays outlive their processes
def test_exited_target_is_invalid(ops_id: str) -> None:
    p = _spawn()
    try:
        ops, ctx = _build(ops_id, p.pid)
        try:
            assert ops.target_valid(ctx.targets[0])
            p.kill()
            p.wait()
            assert not ops.target_valid(ctx.targets[0])
            ops.update(ctx)  # must not raise for a dead target
            ctx.window_start_ns = time.monotonic_ns()
            assert isinstance(ops.check_accesses(ctx, 1), int)
        finally:
            ops.cleanup(ctx)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
