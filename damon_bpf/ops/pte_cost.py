"""The pte source's cost model: what a window costs the monitor, and the intervals that keep it within budget.

**What is measured.** The thread CPU time of the monitor (``time.thread_time_ns()`` of the kdamond's thread),
split per window into the part spent in the sampling loop (``per_sample_ns``, per sampling interval: the
wake-ups and the reads) and the part paid once per window (``fixed_ns``: clearing, the engine's aggregation work,
the snapshot consumers, DAMOS, ops updates), as means of the last windows without their most expensive one.

**The intervals** (``Attrs.source_intervals``, the default of ``pte``): a window of ``n`` sampling intervals
costs ``fixed + n * per_sample``, so the aggregation interval that spends ``budget`` of a core is
``(fixed + n * per_sample) / (0.9 * budget)`` (a margin for what the model misses), kept within ``[min_aggr, max_aggr]`` (100 ms .. 1 s by default: a
snapshot at least every second). With ``n = 20`` samples per aggregation (the kernel's 5 ms / 100 ms ratio).
When even ``max_aggr`` costs more than the budget, ``n`` shrinks (fewer, longer sampling intervals: a coarser
``nr_accesses`` scale, as ``max_nr_accesses`` shrinks) down to :data:`MIN_SAMPLES`; past that the budget is
exceeded and the source says so.

**Probes** take at most a share of the budget: ``probes * reads * walk_ns <= PROBE_SHARE * budget * aggr``.

See docs/pte.md, section "Bounded cost".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

__all__ = ("CostModel", "choose_intervals", "probe_budget", "SAMPLES_PER_AGGR", "MIN_SAMPLES", "PROBE_SHARE")

#: Sampling intervals per aggregation interval (the kernel's defaults: 5 ms / 100 ms).
SAMPLES_PER_AGGR = 20
#: The fewest sampling intervals per aggregation the budget may shrink it to.
MIN_SAMPLES = 5
#: The share of the budget probe reads may take.
PROBE_SHARE = 0.3
_EWMA = 0.3
#: Windows the costs are averaged over.
RECENT = 9
#: The share of the budget the intervals are chosen for.
BUDGET_MARGIN = 0.9
#: The longest aggregation interval while the budget can be kept at it (probes give way first): a change of
#: phase shows in the window after the one it happened in, so within a second.
SOFT_MAX_AGGR_US = 500_000
#: What one read of the sampling loop costs besides its probes (the wake-up and the system call, cold), measured on
#: the development VM: the part of the loop's cost that fewer probes do not save.
READ_OVERHEAD_NS = 60_000.0


@dataclass
class CostModel:
    """The measured costs (ns): means of the last :data:`RECENT` windows without the most expensive one, so that
    a rare expensive window (a ``clear_refs`` every 10 s) does not swing the intervals, while what comes every
    few windows (an ops update every second) still counts. Starting values are priors measured on a 2-core
    VM."""

    fixed_ns: float = 600_000.0
    per_sample_ns: float = 60_000.0
    walk_ns_per_probe: float = 200.0
    windows: int = 0
    _fixed: list[float] = field(default_factory=list, repr=False)
    _per: list[float] = field(default_factory=list, repr=False)

    def add_window(self, fixed_ns: float, sample_loop_ns: float, nr_samples: int) -> None:
        """One window's measurement: CPU outside and inside the sampling loop of *nr_samples* intervals."""
        self._fixed = (self._fixed + [float(fixed_ns)])[-RECENT:]
        self._per = (self._per + [sample_loop_ns / max(nr_samples, 1)])[-RECENT:]
        self.fixed_ns = _trimmed_mean(self._fixed)
        self.per_sample_ns = _trimmed_mean(self._per)
        self.windows += 1

    def add_loop(self, loop_ns: float, nr_reads: int, nr_probes: int) -> None:
        """A sampling loop of *nr_reads* reads of *nr_probes* probes that took *loop_ns*: what a probe read
        costs there (cold, in each target's page tables), which is what bounds the probes."""
        if nr_probes >= 256 and nr_reads:
            per = max(loop_ns - nr_reads * READ_OVERHEAD_NS, 0.0) / (nr_reads * nr_probes)
            self.walk_ns_per_probe += _EWMA * (max(per, 20.0) - self.walk_ns_per_probe)

    def window_ns(self, nr_samples: int) -> float:
        return self.fixed_ns + nr_samples * self.per_sample_ns

    def share(self, nr_samples: int, aggr_us: int) -> float:
        """The share of one core a window of *nr_samples* intervals over *aggr_us* costs."""
        return self.window_ns(nr_samples) / max(aggr_us * 1000, 1)


def _trimmed_mean(values: list[float]) -> float:
    if len(values) < 3:
        return float(statistics.fmean(values))
    return float((sum(values) - max(values)) / (len(values) - 1))


def choose_intervals(cost: CostModel, budget: float, min_aggr_us: int, max_aggr_us: int,
                     samples: int = SAMPLES_PER_AGGR, align_us: int = 0,
                     soft_max_us: int | None = None) -> tuple[int, int, bool]:
    """The ``(sample_us, aggr_us)`` that keep *cost* within *budget* (a share of one core; 0: no bound, the
    shortest intervals), and whether the budget is met.

    :param soft_max_us: the aggregation interval not to exceed while the budget allows it at all (a change of
        phase is seen within two windows: :data:`SOFT_MAX_AGGR_US` keeps that within a second); None: no such
    :param align_us: a span (the working-set window) that whole aggregation intervals should fill: an
        aggregation interval shorter than it becomes the next longer ``align_us / k`` (to 0.1%, with whole-µs
        sampling intervals: for 1 s, 500, 333.34, 250, 200, 166.66... ms), so the working set covers that span
    """
    if budget <= 0:
        return _whole(min_aggr_us, samples, min_aggr_us, max_aggr_us)[0], min_aggr_us, True
    # aim a little below the budget: what the model misses (other threads, the first window) stays within it
    budget *= BUDGET_MARGIN
    need_us = int(math.ceil(cost.window_ns(samples) / budget / 1000))
    if soft_max_us is not None:
        need_us = min(need_us, max(soft_max_us, min_aggr_us))
    aggr = min(max(need_us, min_aggr_us), max_aggr_us)
    if 0 < aggr < align_us:
        # k windows of n whole-µs sampling intervals that fill align_us to 0.1%
        fits = []
        for k in range(1, align_us // max(min_aggr_us, 1) + 1):
            sample = round(align_us / (k * samples))
            if abs(sample * samples * k - align_us) * 1000 <= align_us and \
                    min_aggr_us <= sample * samples <= max_aggr_us:
                fits.append((sample * samples, sample))
        longer = [f for f in fits if f[0] >= aggr]
        if longer:
            aggr, sample = min(longer)
            return sample, aggr, cost.share(samples, aggr) <= budget * 1.05
    n = samples
    if need_us > max_aggr_us:
        # fewer sampling intervals per aggregation: max_nr_accesses shrinks instead of the time resolution
        fit = int((budget * max_aggr_us * 1000 - cost.fixed_ns) / max(cost.per_sample_ns, 1.0))
        n = min(samples, max(MIN_SAMPLES, fit))
    sample, aggr = _whole(aggr, n, min_aggr_us, max_aggr_us)
    met = cost.share(n, aggr) <= budget * 1.05
    return sample, aggr, met


def _whole(aggr_us: int, n: int, lo: int, hi: int) -> tuple[int, int]:
    # a sampling interval of whole 100 µs, and the aggregation interval n of them, within [lo, hi]
    sample = -(-aggr_us // (n * 100)) * 100
    if sample * n > hi:
        sample = max(100, hi // (n * 100) * 100)
    while sample * n < lo:
        sample += 100
    return sample, sample * n


def probe_budget(cost: CostModel, budget: float, aggr_us: int, nr_reads: int) -> int:
    """How many probes the budget pays for, read *nr_reads* times a window; 0 budget: no bound (-1)."""
    if budget <= 0:
        return -1
    per_probe = max(cost.walk_ns_per_probe, 1.0) * max(nr_reads, 1)
    return int(PROBE_SHARE * budget * aggr_us * 1000 / per_probe)
