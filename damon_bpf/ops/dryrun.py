"""``--dry-run``: an operations set that wraps another and decides as it does, but applies nothing.

Monitoring, scores, scheme checks and statistics are the wrapped set's. ``apply_scheme`` answers what the
vaddr family would apply, without calling the kernel:

- ``stat`` changes nothing, so the wrapped ``apply_scheme`` runs (with its ops-filter accounting);
- an action the source does not support, or a target without a process, applies nothing;
- any other action: the bytes of the page-aligned region that lie in the target's VMAs (holes skipped, as the
  vaddr family skips them; ``/proc/<pid>/maps`` is read once per apply pass); with ops-layer filters
  (``anon``, ``memcg``, ``hugepage_size``, ``unmapped``), the bytes that pass them, as both the bytes applied
  and the bytes passed.

Approximations: ``hugepage_size`` filters see every page as a base page (no ``PAGEMAP_SCAN`` in a dry run), and
when the ops filters cannot be evaluated they are not subtracted. Migrations count every byte, also pages
already on the destination node.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import align_down, align_up
from damon_bpf.engine.model import Ctx, Region, Target
from damon_bpf.engine.damos import Action, Scheme
from damon_bpf.engine.ops import Applied, Operations
from damon_bpf.errors import DamonBpfError
from damon_bpf.ops import damos_filters
from damon_bpf.ops.common import scheme_action
from damon_bpf.linux.cgroups import read_memcg_path
from damon_bpf.linux.procmaps import Vma, mappings_in, read_maps

__all__ = ("DryRunOps",)

log = logging.getLogger(__name__)


class DryRunOps:
    """*inner* with ``apply_scheme`` answered from the target's mappings instead of applied."""


    def __init__(self, inner: Operations) -> None:
        self.inner = inner
        self._page_sz = os.sysconf("SC_PAGE_SIZE")
        self._maps: dict[int, tuple[int, list[Vma]]] = {}

    # -- what the wrapped set is ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def batched(self) -> bool:
        return self.inner.batched

    @property
    def supported_actions(self) -> frozenset[str]:
        return self.inner.supported_actions

    @property
    def has_scheme_score(self) -> bool:
        return self.inner.has_scheme_score

    @property
    def can_add_targets(self) -> bool:
        return self.inner.can_add_targets

    @property
    def attach_point(self) -> str:
        return self.inner.attach_point

    @property
    def notes(self) -> Sequence[str]:
        return self.inner.notes

    @property
    def observes_samples(self) -> bool:
        return self.inner.observes_samples

    @property
    def last_ips(self) -> list[list[tuple[int, int, int, int]]] | None:
        return self.inner.last_ips

    # -- every hook but apply_scheme: the wrapped set's -----------------------------------------------------

    def check_supported(self) -> None:
        self.inner.check_supported()

    def init(self, ctx: Ctx) -> None:
        self.inner.init(ctx)

    def update(self, ctx: Ctx) -> None:
        self.inner.update(ctx)

    def prepare_access_checks(self, ctx: Ctx) -> None:
        self.inner.prepare_access_checks(ctx)

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        return self.inner.check_accesses(ctx, nr_samples)

    def observe(self, ctx: Ctx, nr_passed: int) -> None:
        self.inner.observe(ctx, nr_passed)

    def apply_probes(self, ctx: Ctx, nr_samples: int = 1) -> None:
        self.inner.apply_probes(ctx, nr_samples)

    def sample_points(self, ctx: Ctx, nr_samples: int) -> Sequence[int]:
        return self.inner.sample_points(ctx, nr_samples)

    def requested_intervals(self, ctx: Ctx) -> tuple[int, int] | None:
        return self.inner.requested_intervals(ctx)

    def min_sample_us(self, ctx: Ctx) -> int:
        return self.inner.min_sample_us(ctx)

    def working_set_bytes(self, ctx: Ctx, window_us: int) -> tuple[list[int], int]:
        return self.inner.working_set_bytes(ctx, window_us)

    def target_valid(self, target: Target) -> bool:
        return self.inner.target_valid(target)

    def cleanup(self, ctx: Ctx) -> None:
        self.inner.cleanup(ctx)

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        return self.inner.add_target(ctx, pid)

    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> int:
        return self.inner.get_scheme_score(ctx, target, region, scheme)

    def get_scheme_scores(self, ctx: Ctx, target: Target, scheme: Scheme) -> npt.NDArray[np.int64]:
        return self.inner.get_scheme_scores(ctx, target, scheme)

    def check_scheme(self, scheme: Scheme, ctx: Ctx | None = None) -> None:
        self.inner.check_scheme(scheme, ctx)

    def action_unsupported_reason(self, action: Action | str | None) -> str:
        return self.inner.action_unsupported_reason(action)

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def raw_counts(self, target_idx: int, starts: npt.ArrayLike, ends: npt.ArrayLike) -> Any:
        return self.inner.raw_counts(target_idx, starts, ends)

    # -- the dry run -------------------------------------------------------------------------------------------

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> Applied:
        action = scheme_action(scheme)
        if action == "stat":
            return self.inner.apply_scheme(ctx, target, region, scheme)
        if action is None or action not in self.supported_actions or target.pid is None:
            return Applied(0)
        start, end = align_down(region.start, self._page_sz), align_up(region.end, self._page_sz)
        vmas = self._vmas_of(ctx, target.pid)
        in_vmas = sum(min(end, v.end) - max(start, v.start) for v in mappings_in(vmas, start, end))
        if not damos_filters.ops_filters_of(scheme):
            return Applied(in_vmas)
        passed = self._ops_filter_passed(scheme, target.pid, start, end, vmas)
        if passed is None:
            return Applied(in_vmas)
        return Applied(passed, passed)

    def _vmas_of(self, ctx: Ctx, pid: int) -> list[Vma]:
        hit = self._maps.get(pid)
        if hit is not None and hit[0] == ctx.passed_sample_intervals:
            return hit[1]
        try:
            vmas = read_maps(pid)
        except DamonBpfError:
            vmas = []
        self._maps[pid] = (ctx.passed_sample_intervals, vmas)
        return vmas

    @staticmethod
    def _ops_filter_passed(scheme: Scheme, pid: int, start: int, end: int, vmas: list[Vma]) -> int | None:
        # bytes of [start, end) that pass the scheme's ops-layer filters; None when they cannot be evaluated
        try:
            pieces = damos_filters.split_at_vmas(start, end, vmas)
            memcg = None
            if any(f.type.value == "memcg" for f in damos_filters.ops_filters_of(scheme)):
                memcg = read_memcg_path(pid)
            return sum(p.sz for p, ok in damos_filters.evaluate(scheme, pieces, memcg) if ok)
        except DamonBpfError as err:
            log.debug("dry run: ops filters not evaluated: %s", err)
            return None
