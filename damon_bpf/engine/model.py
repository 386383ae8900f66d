"""DAMON's data model: regions, targets, monitoring attributes and the context.

Mirrors ``struct damon_region``, ``struct damon_target``, ``struct damon_attrs``, ``struct
damon_intervals_goal`` and the parts of ``struct damon_ctx`` the monitoring core needs
(``include/linux/damon.h``). Every time field carries its unit in its name; counts are ``nr_*``; ``*_bp`` is in
basis points. Objects round-trip through plain dicts (``to_dict``/``from_dict``) with damo-compatible keys.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from damon_bpf.engine.regions import NR_PROBE_SLOTS, RegionArray
from damon_bpf.errors import InvalidParamsError

if TYPE_CHECKING:
    from damon_bpf.engine.damos import Scheme
    from damon_bpf.engine.ops import Operations
    from damon_bpf.engine.access_reports import AccessReports
    from damon_bpf.engine.probes import Probe

__all__ = (
    "DAMON_MIN_REGION_SZ",
    "AddrRange",
    "Region",
    "Target",
    "IntervalsGoal",
    "SourceIntervals",
    "Attrs",
    "Ctx",
)

#: ``DAMON_MIN_REGION_SZ`` (``include/linux/damon.h``): PAGE_SIZE. Contexts carry their own ``min_region_sz``.
DAMON_MIN_REGION_SZ = 4096


@dataclass(slots=True)
class AddrRange:
    """``struct damon_addr_range``: ``[start, end)``."""

    start: int
    end: int

    @property
    def sz(self) -> int:
        return self.end - self.start


@dataclass(slots=True, eq=False)
class Region:
    """``struct damon_region``.

    :ivar nr_accesses: sampling intervals of the current aggregation window in which an access was seen
    :ivar nr_accesses_bp: the pseudo moving sum of ``nr_accesses`` x 10000, updated every sample (kernel <= 7.2)
    :ivar age: aggregation intervals the access pattern has stayed similar
    :ivar last_nr_accesses: ``nr_accesses`` of the previous aggregation window
    """

    start: int
    end: int
    nr_accesses: int = 0
    nr_accesses_bp: int = 0
    age: int = 0
    last_nr_accesses: int = 0
    sampling_addr: int = 0
    #: 7.2's ``probe_hits[DAMON_MAX_PROBES]`` and 7.3's ``last_probe_hits[]`` (see damon_bpf.engine.probes)
    probe_hits: list[int] = field(default_factory=list)
    last_probe_hits: list[int] = field(default_factory=list)

    @property
    def sz(self) -> int:
        """``damon_sz_region()``."""
        return self.end - self.start

    def to_dict(self) -> dict[str, int]:
        return {
            "start": self.start,
            "end": self.end,
            "nr_accesses": self.nr_accesses,
            "nr_accesses_bp": self.nr_accesses_bp,
            "age": self.age,
            "last_nr_accesses": self.last_nr_accesses,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Region:
        return cls(
            start=int(d["start"]),
            end=int(d["end"]),
            nr_accesses=int(d.get("nr_accesses", 0)),
            nr_accesses_bp=int(d.get("nr_accesses_bp", 0)),
            age=int(d.get("age", 0)),
            last_nr_accesses=int(d.get("last_nr_accesses", 0)),
        )


class Target:
    """``struct damon_target``: a process (``pid``) or any address space, with its sorted, non-overlapping
    regions. Adjacent regions may have gaps between them; merges only happen between touching regions.

    The regions live in :attr:`ra` (a :class:`~damon_bpf.engine.regions.RegionArray`, one numpy column per
    field), which the core updates in place. :attr:`regions` returns *copies* as :class:`Region` values for
    reading; assigning a list of :class:`Region` to it replaces the regions. ``ops_data`` is private state of
    the operations set (the kernel keeps it in ops-specific structs).
    """

    __slots__ = ("pid", "ra", "obsolete", "ops_data")

    def __init__(self, pid: int | None = None, regions: Iterable[Region] | None = None,
                 obsolete: bool = False, ops_data: Any = None) -> None:
        self.pid = pid
        self.obsolete = obsolete
        self.ops_data = ops_data
        self.ra = RegionArray()
        if regions is not None:
            self.regions = list(regions)

    @property
    def regions(self) -> tuple[Region, ...]:
        """Copies of the regions (a tuple, so that appending to it fails loudly: use the engine functions
        or assign a new list)."""
        ph, lph = self.ra.probe_hits.tolist(), self.ra.last_probe_hits.tolist()
        return tuple(Region(*row, probe_hits=h, last_probe_hits=lh)
                     for row, h, lh in zip(self.ra.rows(), ph, lph))

    @regions.setter
    def regions(self, regions: Sequence[Region]) -> None:
        ra = RegionArray.from_rows([(r.start, r.end, r.nr_accesses, r.nr_accesses_bp, r.age,
                                     r.last_nr_accesses) for r in regions])
        for i, r in enumerate(regions):  # probe counters survive (damon_set_regions keeps the region)
            if r.probe_hits:
                ra.probe_hits[i, :len(r.probe_hits)] = r.probe_hits[:NR_PROBE_SLOTS]
            if r.last_probe_hits:
                ra.last_probe_hits[i, :len(r.last_probe_hits)] = r.last_probe_hits[:NR_PROBE_SLOTS]
        self.ra = ra

    @property
    def nr_regions(self) -> int:
        return len(self.ra)

    @property
    def sz_total(self) -> int:
        return self.ra.sz_total()

    def __repr__(self) -> str:
        return f"Target(pid={self.pid}, nr_regions={self.nr_regions})"

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "regions": [r.to_dict() for r in self.regions]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        pid = d.get("pid")
        return cls(pid=None if pid is None else int(pid),
                   regions=[Region.from_dict(r) for r in d.get("regions", [])])


@dataclass
class IntervalsGoal:
    """``struct damon_intervals_goal``: adaptive intervals tuning; disabled while ``aggrs == 0``."""

    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntervalsGoal:
        return cls(**{f.name: int(d.get(f.name, 0)) for f in fields(cls)})


@dataclass
class SourceIntervals:
    """Intervals chosen by the access source for its cost (damon-bpf's, not the kernel's): at aggregation
    boundaries the kdamond asks the operations set (``requested_intervals()``) and applies what it asks, the
    aggregation interval kept within ``[min_aggr_us, max_aggr_us]``. Exclusive with :class:`IntervalsGoal`."""

    min_aggr_us: int = 100_000
    max_aggr_us: int = 1_000_000

    def validate(self) -> None:
        if not 0 < self.min_aggr_us <= self.max_aggr_us:
            raise InvalidParamsError("source intervals: need 0 < min_aggr_us <= max_aggr_us")

    def clamp_aggr_us(self, aggr_us: int) -> int:
        return min(max(aggr_us, self.min_aggr_us), self.max_aggr_us)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Attrs:
    """``struct damon_attrs``. Defaults are ``damon_new_ctx()``'s (``mm/damon/core.c``)."""

    sample_interval_us: int = 5_000
    aggr_interval_us: int = 100_000
    ops_update_interval_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1000
    intervals_goal: IntervalsGoal = field(default_factory=IntervalsGoal)
    #: damon-bpf's: the access source chooses the intervals for its cost (None: the intervals are the user's)
    source_intervals: SourceIntervals | None = None
    # private: aggr_interval / sample_interval, kept across internal (tuner) updates
    aggr_samples: int = field(default=0, repr=False)

    def validate(self) -> None:
        """The checks of ``damon_set_attrs()``; raises :class:`InvalidParamsError`."""
        g = self.intervals_goal
        if g.aggrs:
            if not (g.min_sample_us <= self.sample_interval_us <= g.max_sample_us):
                raise InvalidParamsError(
                    "intervals goal: sample interval must lie within [min_sample_us, max_sample_us]")
            if g.min_sample_us > g.max_sample_us:
                raise InvalidParamsError("intervals goal: min_sample_us > max_sample_us")
        if self.source_intervals is not None:
            self.source_intervals.validate()
            if g.aggrs:
                raise InvalidParamsError("source-chosen intervals and an intervals tuning goal exclude each other")
        if self.min_nr_regions < 3:
            raise InvalidParamsError(f"min_nr_regions must be at least 3 (got {self.min_nr_regions})")
        if self.min_nr_regions > self.max_nr_regions:
            raise InvalidParamsError(
                f"min_nr_regions ({self.min_nr_regions}) > max_nr_regions ({self.max_nr_regions})")
        if self.sample_interval_us > self.aggr_interval_us:
            raise InvalidParamsError(
                f"sample interval ({self.sample_interval_us} us) > aggregation interval "
                f"({self.aggr_interval_us} us)")
        if self.sample_interval_us < 0 or self.aggr_interval_us < 0 or self.ops_update_interval_us < 0:
            raise InvalidParamsError("intervals must not be negative")

    @property
    def sample_us_nonzero(self) -> int:
        """``sample_interval_us`` with 0 read as 1 µs: what every count of sampling intervals divides by (0 is a
        valid interval, and negative ones are refused by :meth:`validate`)."""
        return max(self.sample_interval_us, 1)

    @property
    def sample_interval_ns(self) -> int:
        """One sampling interval in ns (:attr:`sample_us_nonzero` µs): the length of a sampling window."""
        return self.sample_us_nonzero * 1000

    @property
    def max_nr_accesses(self) -> int:
        """``damon_max_nr_accesses()`` / 7.3's ``damon_nr_samples_per_aggr()``: aggr/sample, at least 1."""
        return max(self.aggr_interval_us // self.sample_us_nonzero, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_us": self.sample_interval_us,
            "aggr_us": self.aggr_interval_us,
            "ops_update_us": self.ops_update_interval_us,
            "min_nr_regions": self.min_nr_regions,
            "max_nr_regions": self.max_nr_regions,
            "intervals_goal": self.intervals_goal.to_dict(),
            **({"source_intervals": self.source_intervals.to_dict()} if self.source_intervals else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attrs:
        return cls(
            sample_interval_us=int(d.get("sample_us", 5_000)),
            aggr_interval_us=int(d.get("aggr_us", 100_000)),
            ops_update_interval_us=int(d.get("ops_update_us", 60_000_000)),
            min_nr_regions=int(d.get("min_nr_regions", 10)),
            max_nr_regions=int(d.get("max_nr_regions", 1000)),
            intervals_goal=IntervalsGoal.from_dict(d.get("intervals_goal", {})),
            source_intervals=SourceIntervals(**{k: int(v) for k, v in d["source_intervals"].items()
                                                if k in ("min_aggr_us", "max_aggr_us")})
            if isinstance(d.get("source_intervals"), dict) else None,
        )


@dataclass(eq=False)
class Ctx:
    """The parts of ``struct damon_ctx`` the monitoring core needs.

    Unlike the kernel, there is no hidden static state: the split history (``last_nr_regions``) and the
    split rotation live here, and so does the random number generator (``rng``, seedable for tests).
    """

    attrs: Attrs = field(default_factory=Attrs)
    targets: list[Target] = field(default_factory=list)
    ops: Operations | None = None
    min_region_sz: int = DAMON_MIN_REGION_SZ
    rng: random.Random = field(default_factory=random.Random)
    pause: bool = False
    passed_sample_intervals: int = 0
    next_aggregation_sis: int = 0
    next_ops_update_sis: int = 0
    next_intervals_tune_sis: int = 0
    #: DAMOS schemes (``damon_bpf.engine.damos``); the monitoring core only calls :attr:`damos_hook`.
    schemes: list[Scheme] = field(default_factory=list)
    #: Called at each kdamond iteration where DAMOS runs in the kernel (``kdamond_apply_schemes``).
    damos_hook: Callable[[Ctx], None] | None = field(default=None, repr=False)
    #: Called after every aggregation with the merged, not yet reset regions (``after_aggregation``).
    after_aggregation: list[Callable[[Any], None]] = field(default_factory=list, repr=False)
    #: The push-style access report queue (``damon_report_access()``); created on first use.
    reports: AccessReports | None = field(default=None, repr=False)
    #: The clock DAMOS uses for quota windows and action timing (the kdamond installs its own).
    clock_ns: Callable[[], int] = field(default=time.monotonic_ns, repr=False)
    #: Measures a DAMOS quota goal's current value or a watermark metric: ``damos_metric(goal_or_wmarks,
    #: scheme) -> int`` (provided by the ops layer; the engine does no I/O).
    damos_metric: Callable[[Any, Any], int] | None = field(default=None, repr=False)
    #: CLOCK_MONOTONIC ns at which the sampling intervals being checked started; set by the kdamond before
    #: ``check_accesses`` so push sources can assign timestamped evidence to sampling intervals.
    window_start_ns: int = 0
    #: the window of the working-set estimate in snapshots (``TargetSnapshot.working_set_bytes``), µs
    working_set_window_us: int = 1_000_000
    #: 7.2's data attribute probes (at most ``DAMON_MAX_PROBES``), evaluated by ``ops.apply_probes``
    probes: list[Probe] = field(default_factory=list)
    # private
    np_rng: Any = field(default=None, repr=False)  # numpy Generator derived from rng on first use
    last_nr_regions: int = field(default=0, repr=False)
    split_rotation: int = field(default=0, repr=False)

    def validate(self) -> None:
        self.attrs.validate()
        if self.probes:
            from damon_bpf.engine.probes import validate_probes

            validate_probes(self.probes)
        if self.min_region_sz <= 0 or self.min_region_sz & (self.min_region_sz - 1):
            raise InvalidParamsError(f"min_region_sz must be a power of two (got {self.min_region_sz})")

    @property
    def nr_regions(self) -> int:
        return sum(len(t.ra) for t in self.targets)
