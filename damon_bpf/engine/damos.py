"""DAMOS: data access monitoring-based operation schemes.

Mirrors the DAMOS half of ``mm/damon/core.c`` (the release: :data:`damon_bpf.engine.KERNEL_RELEASE`): access
patterns, apply intervals, quotas with the effective size quota (time quota converted through the measured
throughput, goal-driven feedback with the ``consist`` and ``temporal`` tuners, fail-charge ratio),
prioritisation through the score histogram, resumption where the previous quota window stopped, split-to-fit,
core-layer filters with the kernel's allow/reject defaults, watermarks, and the statistics and tried regions.

Units, as the kernel's: sizes in bytes, ``nr_accesses`` in sampling intervals per aggregation window
(``0..aggr/sample``), ages in aggregation intervals. damo's human forms (``%``, times) are parsed by
:mod:`damon_bpf.config.schemes`; a pattern keeps them beside the kernel's fields and
:meth:`AccessPattern.rebase` converts them again (damo's rules) whenever the monitoring attributes change, which
the kernel does not do (see :class:`AccessPattern`).

The engine does no I/O: metrics for quota goals and watermarks come from ``Ctx.damos_metric`` (the ops layer
provides it), actions are applied by ``ops.apply_scheme``, and time from ``Ctx.clock_ns``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import (
    ULONG_MAX,
    align_down,
    feed_loop_next_input,
    mult_frac,
    region_sz_limit,
    split_region_at,
    target_nr_accesses_mvsum,
)
from damon_bpf.engine.model import Attrs, Ctx, Region, Target
from damon_bpf.errors import InvalidParamsError

__all__ = (
    "UINT_MAX",
    "age_us_to_aggr_intervals",
    "access_pct_to_nr_accesses",
    "format_pct",
    "Action",
    "FilterType",
    "CORE_FILTER_TYPES",
    "QuotaGoalMetric",
    "WmarkMetric",
    "AccessPattern",
    "QuotaGoal",
    "Quota",
    "Watermarks",
    "Filter",
    "SchemeStats",
    "TriedRegion",
    "Scheme",
    "apply_schemes",
    "adjust_quota",
    "set_effective_quota",
    "quota_score",
    "charge_quota",
    "quota_is_set",
    "quota_is_full",
    "wmark_wait_us",
    "wait_activation_us",
    "set_filters_default_reject",
    "core_filter_out",
)

UINT_MAX = 2**32 - 1
PAGE_SIZE = 4096


class Action(enum.Enum):
    """``enum damos_action``, in the kernel's order; values are the sysfs/damo names."""

    WILLNEED = "willneed"
    COLD = "cold"
    PAGEOUT = "pageout"
    HUGEPAGE = "hugepage"
    NOHUGEPAGE = "nohugepage"
    COLLAPSE = "collapse"
    LRU_PRIO = "lru_prio"
    LRU_DEPRIO = "lru_deprio"
    MIGRATE_HOT = "migrate_hot"
    MIGRATE_COLD = "migrate_cold"
    STAT = "stat"


class FilterType(enum.Enum):
    """``enum damos_filter_type``."""

    ANON = "anon"
    ACTIVE = "active"
    MEMCG = "memcg"
    YOUNG = "young"
    HUGEPAGE_SIZE = "hugepage_size"
    UNMAPPED = "unmapped"
    ADDR = "addr"
    TARGET = "target"
    #: 7.2: the region's probe hits, weighted by the probes' weights (all ones when none is weighted), in range
    PROBE_HITS_WSUM = "probe_hits_wsum"


#: Filter types the core handles (``damos_filter_for_ops()`` is false for them); the others go to the ops.
CORE_FILTER_TYPES = frozenset({FilterType.ADDR, FilterType.TARGET, FilterType.PROBE_HITS_WSUM})


class QuotaGoalMetric(enum.Enum):
    """``enum damos_quota_goal_metric`` plus ``task_mem_stall_us``, a damon-bpf metric the kernel lacks: the
    targets' own memory stall time from per-task delay accounting."""

    USER_INPUT = "user_input"
    SOME_MEM_PSI_US = "some_mem_psi_us"
    NODE_MEM_USED_BP = "node_mem_used_bp"
    NODE_MEM_FREE_BP = "node_mem_free_bp"
    NODE_MEMCG_USED_BP = "node_memcg_used_bp"
    NODE_MEMCG_FREE_BP = "node_memcg_free_bp"
    ACTIVE_MEM_BP = "active_mem_bp"
    INACTIVE_MEM_BP = "inactive_mem_bp"
    NODE_ELIGIBLE_MEM_BP = "node_eligible_mem_bp"
    TASK_MEM_STALL_US = "task_mem_stall_us"


class WmarkMetric(enum.Enum):
    """``enum damos_wmark_metric``."""

    NONE = "none"
    FREE_MEM_RATE = "free_mem_rate"


def age_us_to_aggr_intervals(age_us: int, attrs: Attrs) -> int:
    """An age given as a time in aggregation intervals of *attrs*, as damo converts it (``DamonAge``:
    ``int(usec / aggr_us)``, here in exact integers); ``2**64-1`` µs (damo's ``max``) and anything beyond
    ``UINT_MAX`` intervals is ``UINT_MAX``."""
    if age_us >= ULONG_MAX:
        return UINT_MAX
    return min(age_us // max(attrs.aggr_interval_us, 1), UINT_MAX)


def access_pct_to_nr_accesses(pct: Fraction, attrs: Attrs) -> int:
    """An access rate in percent of *attrs*' ``max_nr_accesses`` in sampling intervals, as damo converts it
    (``DamonNrAccesses``: ``int(percent * max / 100)``, here exact), capped at ``UINT_MAX``."""
    return min(int(pct * attrs.max_nr_accesses / 100), UINT_MAX)


def format_pct(p: Fraction) -> str:
    """A percentage as text that parses back to exactly *p*: ``"5 %"``, ``"12.5 %"``; a terminating decimal for
    every percentage read from text or a float, ``"N/D %"`` otherwise."""
    if p.denominator == 1:
        return f"{p.numerator} %"
    d, twos, fives = p.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return f"{p.numerator}/{p.denominator} %"
    digits = max(twos, fives)
    scaled = p.numerator * 10**digits // p.denominator
    whole, frac = divmod(scaled, 10**digits)
    return f"{whole}.{frac:0{digits}d} %"


@dataclass
class AccessPattern:
    """``struct damos_access_pattern``; every bound is inclusive.

    The six kernel fields are what DAMOS matches. A bound the user gave in damo's human units also keeps that
    unit in its ``*_us`` / ``*_pct`` twin (None: given in the kernel's unit, or ``min``/``max``, which mean the
    same at any intervals): an age as a time, an access rate as a percentage of ``max_nr_accesses``.
    :meth:`rebase` re-derives the kernel fields from them whenever the monitoring attributes change
    (``set_attrs()``, ``init_ctx()``), so ``5 s`` stays five seconds while the intervals tune; bounds given in
    ``aggr_intervals`` or ``samples`` stay as they are. The kernel has no such twin: its patterns are in
    aggregation intervals and samples only, and ``damon_set_attrs()`` leaves them alone.
    """

    min_sz_bytes: int = 0
    max_sz_bytes: int = ULONG_MAX
    min_nr_accesses: int = 0
    max_nr_accesses: int = UINT_MAX
    min_age_region: int = 0
    max_age_region: int = UINT_MAX
    #: the access-rate bounds in percent of ``max_nr_accesses``, when given so
    min_nr_accesses_pct: Fraction | None = None
    max_nr_accesses_pct: Fraction | None = None
    #: the age bounds in µs, when given as a time
    min_age_us: int | None = None
    max_age_us: int | None = None

    def rebase(self, attrs: Attrs) -> None:
        """Re-derive the kernel fields of the bounds given as a percentage or a time for *attrs* (damo's
        conversions: :func:`access_pct_to_nr_accesses`, :func:`age_us_to_aggr_intervals`); the others stay."""
        if self.min_nr_accesses_pct is not None:
            self.min_nr_accesses = access_pct_to_nr_accesses(self.min_nr_accesses_pct, attrs)
        if self.max_nr_accesses_pct is not None:
            self.max_nr_accesses = access_pct_to_nr_accesses(self.max_nr_accesses_pct, attrs)
        if self.min_age_us is not None:
            self.min_age_region = age_us_to_aggr_intervals(self.min_age_us, attrs)
        if self.max_age_us is not None:
            self.max_age_region = age_us_to_aggr_intervals(self.max_age_us, attrs)

    def validate(self) -> None:
        if self.min_sz_bytes > self.max_sz_bytes or self.min_nr_accesses > self.max_nr_accesses \
                or self.min_age_region > self.max_age_region:
            raise InvalidParamsError("access pattern: a minimum is larger than its maximum")

    def matches_arrays(self, sz: npt.NDArray[np.int64], nr: npt.NDArray[np.int64],
                       age: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """``__damos_valid_target()``'s pattern check of every region at once (bounds inclusive)."""
        return ((sz >= self.min_sz_bytes) & (sz <= min(self.max_sz_bytes, 2**63 - 1))
                & (nr >= self.min_nr_accesses) & (nr <= self.max_nr_accesses)
                & (age >= self.min_age_region) & (age <= self.max_age_region))

    def matches(self, sz: int, nr_accesses: int, age: int) -> bool:
        """:meth:`matches_arrays` of one region."""
        one = np.array([sz, nr_accesses, age], dtype=np.int64)
        return bool(self.matches_arrays(one[0:1], one[1:2], one[2:3])[0])

    def to_dict(self) -> dict[str, Any]:
        """damo's JSON shape, each bound in the unit it was given in: ``"N samples"`` / ``"N aggr_intervals"``,
        or ``"P %"`` / ``"T us"``."""
        def nr(n: int, pct: Fraction | None) -> str:
            return f"{n} samples" if pct is None else format_pct(pct)

        def age(n: int, us: int | None) -> str:
            return f"{n} aggr_intervals" if us is None else f"{us} us"

        return {"sz_bytes": {"min": self.min_sz_bytes, "max": self.max_sz_bytes},
                "nr_accesses": {"min": nr(self.min_nr_accesses, self.min_nr_accesses_pct),
                                "max": nr(self.max_nr_accesses, self.max_nr_accesses_pct)},
                "age": {"min": age(self.min_age_region, self.min_age_us),
                        "max": age(self.max_age_region, self.max_age_us)}}


@dataclass
class QuotaGoal:
    """``struct damos_quota_goal``. ``memcg_path`` names the cgroup for the memcg metrics (damo's form)."""

    metric: QuotaGoalMetric
    target_value: int
    current_value: int = 0
    nid: int = 0
    memcg_path: str | None = None
    # private: the PSI total at the last evaluation (some_mem_psi_us), or the targets' delay total
    last_psi_total: int = field(default=0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.value, "target_value": self.target_value,
                "current_value": self.current_value, "nid": self.nid, "memcg_path": self.memcg_path}


@dataclass
class Quota:
    """``struct damos_quota``: user fields, then the private state the kernel keeps."""

    reset_interval_ms: int = 0
    ms: int = 0
    sz: int = 0
    goals: list[QuotaGoal] = field(default_factory=list)
    goal_tuner: str = "consist"
    fail_charge_num: int = 0
    fail_charge_denom: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    # output and private state
    esz: int = 0
    esz_bp: int = field(default=0, repr=False)
    total_charged_sz: int = field(default=0, repr=False)
    total_charged_ns: int = field(default=0, repr=False)
    charged_sz: int = field(default=0, repr=False)
    charged_from_ms: int | None = field(default=None, repr=False)
    charge_target_from: int | None = field(default=None, repr=False)
    charge_addr_from: int = field(default=0, repr=False)
    min_score: int = field(default=0, repr=False)

    def validate(self) -> None:
        if self.goal_tuner not in ("consist", "temporal"):
            raise InvalidParamsError(f"unknown quota goal tuner {self.goal_tuner!r} (consist, temporal)")
        if min(self.reset_interval_ms, self.ms, self.sz, self.weight_sz, self.weight_nr_accesses,
               self.weight_age, self.fail_charge_num, self.fail_charge_denom) < 0:
            raise InvalidParamsError("quota values must not be negative")
        for g in self.goals:
            if g.target_value <= 0:
                raise InvalidParamsError(f"quota goal {g.metric.value}: the target value must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"time_ms": self.ms, "sz_bytes": self.sz, "reset_interval_ms": self.reset_interval_ms,
                "goals": [g.to_dict() for g in self.goals], "goal_tuner": self.goal_tuner,
                "effective_sz_bytes": self.esz,
                "weights": {"sz_permil": self.weight_sz, "nr_accesses_permil": self.weight_nr_accesses,
                            "age_permil": self.weight_age},
                "fail_charge_num": self.fail_charge_num, "fail_charge_denom": self.fail_charge_denom}


@dataclass
class Watermarks:
    """``struct damos_watermarks`` (metric values in permil of total memory)."""

    metric: WmarkMetric = WmarkMetric.NONE
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0
    activated: bool = field(default=True, repr=False)

    def validate(self) -> None:
        if self.metric is not WmarkMetric.NONE and not (self.low <= self.mid <= self.high):
            raise InvalidParamsError("watermarks must satisfy low <= mid <= high")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.value, "interval_us": self.interval_us, "high_permil": self.high,
                "mid_permil": self.mid, "low_permil": self.low}


@dataclass
class Filter:
    """``struct damos_filter``: ``matching`` selects memory of the type (or, False, memory not of it); ``allow``
    includes (True) or excludes (False) what it selects."""

    type: FilterType
    matching: bool = True
    allow: bool = False
    memcg_path: str | None = None
    addr_start: int = 0
    addr_end: int = 0
    target_idx: int = 0
    sz_min: int = 0
    sz_max: int = 0
    wsum_min: int = 0
    wsum_max: int = 0

    @property
    def core(self) -> bool:
        return self.type in CORE_FILTER_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {"filter_type": self.type.value, "matching": self.matching, "allow": self.allow,
                "memcg_path": self.memcg_path,
                "address_range": ({"start": self.addr_start, "end": self.addr_end}
                                  if self.type is FilterType.ADDR else None),
                "damon_target_idx": self.target_idx if self.type is FilterType.TARGET else None,
                "hugepage_size": ({"min": self.sz_min, "max": self.sz_max}
                                  if self.type is FilterType.HUGEPAGE_SIZE else None),
                **({"probe_hits_wsum_range": [self.wsum_min, self.wsum_max]}
                   if self.type is FilterType.PROBE_HITS_WSUM else {})}


@dataclass
class SchemeStats:
    """``struct damos_stat``."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    qt_exceeds: int = 0
    nr_snapshots: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TriedRegion:
    """A region passed to ``ops.apply_scheme`` in the last apply interval (sysfs ``tried_regions``)."""

    target_idx: int
    start: int
    end: int
    nr_accesses: int
    age: int
    sz_filter_passed: int


@dataclass(eq=False)
class Scheme:
    """``struct damos``."""

    pattern: AccessPattern = field(default_factory=AccessPattern)
    action: Action = Action.STAT
    apply_interval_us: int = 0
    quota: Quota = field(default_factory=Quota)
    wmarks: Watermarks = field(default_factory=Watermarks)
    filters: list[Filter] = field(default_factory=list)
    target_nid: int = 0
    max_nr_snapshots: int = 0
    stat: SchemeStats = field(default_factory=SchemeStats)
    # private
    next_apply_sis: int = field(default=0, repr=False)
    core_filters_default_reject: bool = field(default=False, repr=False)
    ops_filters_default_reject: bool = field(default=False, repr=False)
    #: the core filters allowed the region being applied: the ops layer then passes all of it
    core_filters_allowed: bool = field(default=False, repr=False)
    tried_regions: list[TriedRegion] = field(default_factory=list, repr=False)
    _tried_next: list[TriedRegion] = field(default_factory=list, repr=False)

    @property
    def core_filters(self) -> list[Filter]:
        return [f for f in self.filters if f.core]

    @property
    def ops_filters(self) -> list[Filter]:
        return [f for f in self.filters if not f.core]

    def validate(self) -> None:
        self.pattern.validate()
        self.quota.validate()
        self.wmarks.validate()
        if self.apply_interval_us < 0:
            raise InvalidParamsError("the apply interval must not be negative")

    def set_next_apply_sis(self, ctx: Ctx) -> None:
        """``damos_set_next_apply_sis()``."""
        si = ctx.attrs.sample_us_nonzero
        self.next_apply_sis = ctx.passed_sample_intervals + (self.apply_interval_us or
                                                             ctx.attrs.aggr_interval_us) // si

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "access_pattern": self.pattern.to_dict(),
                "apply_interval_us": self.apply_interval_us, "quotas": self.quota.to_dict(),
                "watermarks": self.wmarks.to_dict(), "filters": [f.to_dict() for f in self.filters],
                "target_nid": self.target_nid, "max_nr_snapshots": self.max_nr_snapshots,
                "stats": self.stat.to_dict()}


# -- filters -------------------------------------------------------------------------------------------------

def set_filters_default_reject(s: Scheme) -> None:
    """``damos_set_filters_default_reject()``: with no filter nothing is rejected by default; otherwise the
    default is the opposite of the last filter's behaviour in each layer, and the core layer allows by
    default whenever ops-layer filters exist (they decide then)."""
    core, ops = s.core_filters, s.ops_filters
    s.core_filters_default_reject = bool(core) and core[-1].allow and not ops
    s.ops_filters_default_reject = bool(ops) and ops[-1].allow


def _core_filter_match(ctx: Ctx, ti: int, t: Target, i: int, f: Filter) -> bool:
    # damos_filter_match() for the core types; an addr filter splits a region straddling its boundary
    ra = t.ra
    if f.type is FilterType.TARGET:
        matched = ti == f.target_idx
    elif f.type is FilterType.PROBE_HITS_WSUM:
        matched = f.wsum_min <= region_probe_hits_wsum(ctx, t, i) <= f.wsum_max
    else:
        mrs = ctx.min_region_sz
        start = align_down(f.addr_start, mrs)
        end = align_down(f.addr_end, mrs)
        rs, re_ = int(ra.start[i]), int(ra.end[i])
        if start <= rs and re_ <= end:
            matched = True
        elif re_ <= start or end <= rs:
            matched = False
        elif rs < start:  # starts before the range: the left piece is outside
            split_region_at(t, i, start - rs)
            matched = False
        else:  # starts inside: the left piece is inside
            split_region_at(t, i, end - rs)
            matched = True
    return matched == f.matching


def region_probe_hits_wsum(ctx: Ctx, t: Target, i: int) -> int:
    """The ``probe_hits_wsum`` filter's value of region *i*: the moving sums of its probe hits
    (``damon_probe_hits_mvsum()``) weighted by the probes' weights, or summed when no probe has a weight."""
    from damon_bpf.engine.probes import probe_hits_mvsum, probe_hits_wsum

    ra = t.ra
    mv = probe_hits_mvsum(ctx, ra.probe_hits[i:i + 1], ra.last_probe_hits[i:i + 1])
    ws = [p.weight for p in ctx.probes]
    if not any(ws):
        ws = [1] * len(ctx.probes)
    return int(probe_hits_wsum(mv, ctx.probes, ws)[0])


def core_filter_out(ctx: Ctx, ti: int, t: Target, i: int, s: Scheme) -> bool:
    """``damos_core_filter_out()``: True when the core filters reject region *i*; the first matching filter
    decides, and an allowing core filter lets the ops layer pass everything."""
    s.core_filters_allowed = False
    for f in s.core_filters:
        if _core_filter_match(ctx, ti, t, i, f):
            s.core_filters_allowed = f.allow
            return not f.allow
    return s.core_filters_default_reject


# -- quotas ----------------------------------------------------------------------------------------------------

def quota_is_set(q: Quota) -> bool:
    """``damos_quota_is_set()`` (7.1)."""
    return bool(q.esz or q.sz or q.ms or q.goals)


def quota_is_full(q: Quota, min_region_sz: int) -> bool:
    """``damos_quota_is_full()`` (7.2)."""
    if not quota_is_set(q):
        return False
    return q.charged_sz >= q.esz or q.esz - q.charged_sz < min_region_sz


def charge_quota(q: Quota, sz_region: int, sz_applied: int) -> None:
    """``damos_charge_quota()`` (7.2): a failed part is charged at the fail-charge ratio."""
    if q.fail_charge_denom == 0 or sz_applied > sz_region:
        q.charged_sz += sz_region
    else:
        q.charged_sz += sz_applied + (sz_region - sz_applied) * q.fail_charge_num // q.fail_charge_denom


def quota_score(ctx: Ctx, s: Scheme) -> int:
    """``damos_quota_score()``: the highest achievement of the goals, in bp (the least aggressive goal wins).
    Current values are measured first (``damos_set_quota_goal_current_value()``)."""
    highest = 0
    for g in s.quota.goals:
        if g.metric is not QuotaGoalMetric.USER_INPUT and ctx.damos_metric is not None:
            g.current_value = int(ctx.damos_metric(g, s))
        highest = max(highest, mult_frac(g.current_value, 10000, g.target_value))
    return highest


def set_effective_quota(ctx: Ctx, s: Scheme) -> None:
    """``damos_set_effective_quota()``."""
    q = s.quota
    if not q.ms and not q.goals:
        q.esz = q.sz
        return
    esz = ULONG_MAX
    if q.goals:
        score = quota_score(ctx, s)
        if q.goal_tuner == "temporal":
            q.esz_bp = 0 if score >= 10000 else (q.sz * 10000 if q.sz else ULONG_MAX)
        else:
            q.esz_bp = feed_loop_next_input(max(q.esz_bp, 10000), score)
        esz = q.esz_bp // 10000
    if q.ms:
        if q.total_charged_ns:
            throughput = q.total_charged_sz * 1_000_000 // q.total_charged_ns
        else:
            throughput = PAGE_SIZE * 1024
        esz = min(throughput * q.ms, esz)
        # at least one region's worth: a measured throughput this low must not stop the scheme for good
        esz = max(ctx.min_region_sz, esz)
    if q.sz and q.sz < esz:
        esz = q.sz
    q.esz = esz


def _scores(ctx: Ctx, t: Target, s: Scheme) -> npt.NDArray[np.int64]:
    assert ctx.ops is not None
    return np.asarray(ctx.ops.get_scheme_scores(ctx, t, s), dtype=np.int64)


def adjust_quota(ctx: Ctx, s: Scheme, now_ms: int) -> None:
    """``damos_adjust_quota()``: charge-window reset and effective quota, then the score histogram that sets
    ``min_score`` so the highest-scored regions fit in the quota."""
    q = s.quota
    if not (q.ms or q.sz or q.goals):
        return
    if q.total_charged_sz == 0 and q.charged_from_ms is None:
        q.charged_from_ms = now_ms
        set_effective_quota(ctx, s)
    assert q.charged_from_ms is not None
    if not (q.charged_from_ms <= now_ms < q.charged_from_ms + q.reset_interval_ms):
        if quota_is_full(q, ctx.min_region_sz):
            s.stat.qt_exceeds += 1
        q.total_charged_sz += q.charged_sz
        q.charged_from_ms = now_ms
        q.charged_sz = 0
        set_effective_quota(ctx, s)
    if ctx.ops is None or not ctx.ops.has_scheme_score:
        return
    hist = np.zeros(100, dtype=np.int64)
    mx = 0
    for ti, t in enumerate(ctx.targets):
        if not len(t.ra):
            continue
        sz = t.ra.end - t.ra.start
        na = target_nr_accesses_mvsum(ctx, t)
        ok = s.pattern.matches_arrays(sz, na, t.ra.age)
        if not ok.any():
            continue
        scores = np.clip(_scores(ctx, t, s), 0, 99)
        if s.core_filters:
            # regions the core filters reject are not counted (7.1); an addr filter may split a region, and
            # the walk visits the tail next, as the kernel's non-safe region walk does
            i = offset = 0
            while i < len(t.ra):
                orig = i - offset
                ra = t.ra
                if s.pattern.matches(int(ra.end[i] - ra.start[i]), int(na[orig]), int(ra.age[i])):
                    n_before = len(ra)
                    rejected = core_filter_out(ctx, ti, t, i, s)
                    offset += len(t.ra) - n_before
                    if not rejected:
                        sc = int(scores[orig])
                        hist[sc] += int(t.ra.end[i] - t.ra.start[i])
                        mx = max(mx, sc)
                i += 1
            continue
        sc_ok = scores[ok]
        np.add.at(hist, sc_ok, sz[ok])
        mx = max(mx, int(sc_ok.max()))
    cum = 0
    score = mx
    while True:
        cum += int(hist[score])
        if cum >= q.esz or score == 0:
            break
        score -= 1
    q.min_score = score


# -- watermarks ------------------------------------------------------------------------------------------------

def wmark_wait_us(ctx: Ctx, s: Scheme) -> int:
    """``damos_wmark_wait_us()``: 0 when the scheme is active, else how long to wait before checking again."""
    w = s.wmarks
    if w.metric is WmarkMetric.NONE:
        w.activated = True
        return 0
    metric = int(ctx.damos_metric(w, s)) if ctx.damos_metric is not None else 0
    if metric > w.high or metric < w.low:
        w.activated = False
        return w.interval_us
    if not w.activated and w.mid <= metric <= w.high:
        return w.interval_us
    w.activated = True
    return 0


def wait_activation_us(ctx: Ctx) -> int:
    """``kdamond_wait_activation()``'s decision: the shortest wait over the schemes (0: monitor now). A context
    without schemes is always active."""
    if not ctx.schemes:
        return 0
    return min(wmark_wait_us(ctx, s) for s in ctx.schemes)


# -- applying --------------------------------------------------------------------------------------------------

def _skip_charged_region(ctx: Ctx, ti: int, t: Target, i: int, s: Scheme) -> bool:
    # damos_skip_charged_region() (7.1+: a split tail is visited next)
    q = s.quota
    if q.charge_target_from is None:
        return False
    if ti != q.charge_target_from:
        return True
    if i == len(t.ra) - 1:
        q.charge_target_from = None
        q.charge_addr_from = 0
        return True
    rs, re_ = int(t.ra.start[i]), int(t.ra.end[i])
    if q.charge_addr_from and re_ <= q.charge_addr_from:
        return True
    if q.charge_addr_from and rs < q.charge_addr_from:
        k = align_down(q.charge_addr_from - rs, ctx.min_region_sz)
        if k == 0:
            if re_ - rs <= ctx.min_region_sz:
                return True
            k = ctx.min_region_sz
        split_region_at(t, i, k)
        return True
    q.charge_target_from = None
    q.charge_addr_from = 0
    return False


def _valid_target(ctx: Ctx, ti: int, t: Target, i: int, s: Scheme, na: int) -> bool:
    # damos_valid_target(): the pattern, then the priority score against the quota's min_score
    ra = t.ra
    if not s.pattern.matches(int(ra.end[i] - ra.start[i]), na, int(ra.age[i])):
        return False
    if not quota_is_set(s.quota) or ctx.ops is None:
        return True
    if not ctx.ops.has_scheme_score:
        return True
    score = ctx.ops.get_scheme_score(ctx, t, _region(t, i), s)
    return score >= s.quota.min_score


def _region(t: Target, i: int) -> Region:
    ra = t.ra
    return Region(int(ra.start[i]), int(ra.end[i]), int(ra.nr_accesses[i]), int(ra.nr_accesses_bp[i]),
                  int(ra.age[i]), int(ra.last_nr_accesses[i]))


def _apply_one(ctx: Ctx, ti: int, t: Target, i: int, s: Scheme, na: int) -> None:
    # damos_apply_scheme()
    q = s.quota
    ra = t.ra
    sz = int(ra.end[i] - ra.start[i])
    ops = ctx.ops
    assert ops is not None
    if quota_is_set(q) and q.charged_sz + sz > q.esz:
        sz = align_down(q.esz - q.charged_sz, ctx.min_region_sz)
        if sz == 0:
            _update_stat(s, sz, 0, 0)
            return
        split_region_at(t, i, sz)
    if core_filter_out(ctx, ti, t, i, s):
        return
    # an addr filter may have split the region: the ops get the piece, but the quota charge and sz_tried
    # use the size from before that split, as damos_apply_scheme() does
    region = _region(t, i)
    t0 = ctx.clock_ns()
    applied = ops.apply_scheme(ctx, t, region, s)
    sz_applied, sz_passed = int(applied.sz_applied), int(applied.sz_ops_filter_passed)
    q.total_charged_ns += max(ctx.clock_ns() - t0, 0)
    s._tried_next.append(TriedRegion(ti, region.start, region.end, na, region.age, sz_passed))
    charge_quota(q, sz, sz_applied)
    if quota_is_full(q, ctx.min_region_sz):
        q.charge_target_from = ti
        q.charge_addr_from = region.end
    if s.action is not Action.STAT:
        t.ra.age[i] = 0
    _update_stat(s, sz, sz_applied, sz_passed)


def _update_stat(s: Scheme, sz_tried: int, sz_applied: int, sz_passed: int) -> None:
    st = s.stat
    st.nr_tried += 1
    st.sz_tried += sz_tried
    if sz_applied:
        st.nr_applied += 1
        st.sz_applied += sz_applied
    st.sz_ops_filter_passed += sz_passed


def apply_schemes(ctx: Ctx) -> None:
    """``kdamond_apply_schemes()``: run every scheme whose apply interval has come over every region of
    every valid target, in address order, then set the schemes' next apply deadlines."""
    passed = ctx.passed_sample_intervals
    due = [s for s in ctx.schemes if passed >= s.next_apply_sis and s.wmarks.activated]
    if not due:
        return
    now_ms = ctx.clock_ns() // 1_000_000
    for s in due:
        adjust_quota(ctx, s, now_ms)
        set_filters_default_reject(s)
    max_region_sz = region_sz_limit(ctx)
    ops = ctx.ops
    for ti, t in enumerate(ctx.targets):
        if ops is not None and not ops.target_valid(t):
            continue
        # patterns are matched against the moving sum, computed once per target (splits copy the counters)
        na_all = target_nr_accesses_mvsum(ctx, t)
        na_list = na_all.tolist()
        # regions no due scheme can want are skipped without Python work (a quota resume still needs a
        # visit, so those schemes force the walk)
        ra = t.ra
        want = np.zeros(len(ra), dtype=bool)
        for s in due:
            if s.quota.charge_target_from is not None or s.core_filters:
                want[:] = True
                break
            want |= s.pattern.matches_arrays(ra.end - ra.start, na_all, ra.age) | (
                np.arange(len(ra)) == len(ra) - 1)
        i = 0
        offset = 0  # regions inserted by splits before the original index i - offset
        visit = want.tolist()
        while i < len(t.ra):
            orig = i - offset
            na = na_list[orig] if 0 <= orig < len(na_list) else na_list[-1]
            if orig >= len(visit) or visit[orig] or orig < 0:
                n_before = len(t.ra)
                _do_apply_schemes(ctx, ti, t, i, na)
                offset += len(t.ra) - n_before
            i += 1
        _merge_back(t, max_region_sz)
    for s in ctx.schemes:
        if passed >= s.next_apply_sis:
            s.set_next_apply_sis(ctx)
            s.tried_regions, s._tried_next = s._tried_next, []


def _do_apply_schemes(ctx: Ctx, ti: int, t: Target, i: int, na: int) -> None:
    # damon_do_apply_schemes()
    passed = ctx.passed_sample_intervals
    for s in ctx.schemes:
        if passed < s.next_apply_sis or not s.wmarks.activated:
            continue
        if quota_is_full(s.quota, ctx.min_region_sz):
            continue
        if _skip_charged_region(ctx, ti, t, i, s):
            continue
        if s.max_nr_snapshots and s.stat.nr_snapshots >= s.max_nr_snapshots:
            continue
        if _valid_target(ctx, ti, t, i, s, na):
            _apply_one(ctx, ti, t, i, s, na)
        if i == len(t.ra) - 1:
            s.stat.nr_snapshots += 1


def _merge_back(t: Target, max_region_sz: int) -> None:
    # 7.2: after applying, touching regions with identical counters and age merge back (undoing the splits
    # of split-to-fit and filters), within the region size limit
    ra = t.ra
    n = len(ra)
    if n < 2:
        return
    same = ((ra.end[:-1] == ra.start[1:]) & (ra.age[:-1] == ra.age[1:])
            & (ra.last_nr_accesses[:-1] == ra.last_nr_accesses[1:]) & (ra.nr_accesses[:-1] == ra.nr_accesses[1:]))
    if not same.any():
        return
    keep = [0]
    end = ra.end.tolist()
    start = ra.start.tolist()
    s_ok = same.tolist()
    new_end = list(end)
    for i in range(1, n):
        p = keep[-1]
        if s_ok[i - 1] and new_end[p] == start[i] and end[i] - start[p] <= max_region_sz:
            new_end[p] = end[i]
        else:
            keep.append(i)
    k = np.array(keep, dtype=np.int64)
    new = ra.take(k)
    new.end = np.array(new_end, dtype=np.int64)[k]
    new.nr_accesses_bp = new.nr_accesses * 10000
    ra.assign(new)
