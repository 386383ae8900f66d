"""Pure helpers shared by the operations sets: the user-space ``mm/damon/ops-common.c``.

- :func:`bin_samples` turns sampled addresses into per-region counts (what a BPF map drain or a perf sample
  batch needs before ``update_regions_access_rate``).
- :func:`hot_score` / :func:`cold_score` mirror ``damon_hot_score()`` / ``damon_cold_score()``, the DAMOS quota
  prioritisation scores; :func:`region_hot_score` / :func:`region_cold_score` feed them from a context, a
  region and a scheme as the kernel's callers do.
- :func:`hot_scores` / :func:`cold_scores` are the same integer arithmetic over numpy arrays, and
  :func:`target_hot_scores` / :func:`target_cold_scores` score every region of a target at once (what the
  engine's score histogram, ``damos_adjust_quota()``, wants); they equal the scalar forms element by element.

Nothing here does I/O or keeps state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import mult_frac, region_nr_accesses_mvsum, target_nr_accesses_mvsum
from damon_bpf.engine.model import Attrs, Ctx, Region, Target
from damon_bpf.engine.ops import DAMOS_MAX_SCORE

__all__ = (
    "DAMON_MAX_SUBSCORE",
    "DAMON_MAX_AGE_IN_LOG",
    "bin_samples",
    "hot_score",
    "cold_score",
    "region_hot_score",
    "region_cold_score",
    "hot_scores",
    "cold_scores",
    "target_hot_scores",
    "target_cold_scores",
    "scheme_action",
    "quota_weights",
)

#: ``DAMON_MAX_SUBSCORE`` (``mm/damon/ops-common.c``).
DAMON_MAX_SUBSCORE = 100
#: ``DAMON_MAX_AGE_IN_LOG`` (``mm/damon/ops-common.c``).
DAMON_MAX_AGE_IN_LOG = 32


def bin_samples(starts: npt.ArrayLike, ends: npt.ArrayLike, addrs: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Count the sampled addresses that fall in each region.

    :param starts: region starts, sorted ascending (``u64``)
    :param ends: region ends (exclusive); regions must not overlap (gaps are allowed)
    :param addrs: sampled addresses, any order (``u64``); those in no region are ignored
    :return: one count per region
    """
    s = np.asarray(starts, dtype=np.uint64).ravel()
    e = np.asarray(ends, dtype=np.uint64).ravel()
    a = np.asarray(addrs, dtype=np.uint64).ravel()
    if s.size != e.size:
        raise ValueError("starts and ends must have the same length")
    if s.size == 0 or a.size == 0:
        return np.zeros(s.size, dtype=np.int64)
    idx = np.searchsorted(s, a, side="right").astype(np.int64) - 1
    ok = idx >= 0
    ok[ok] = a[ok] < e[idx[ok]]
    return np.bincount(idx[ok], minlength=s.size).astype(np.int64)


def hot_score(nr_accesses: int, age: int, attrs: Attrs, weight_nr_accesses: int, weight_age: int) -> int:
    """``damon_hot_score()`` (``mm/damon/ops-common.c``): how hot a region is, in ``[0, DAMOS_MAX_SCORE]``.

    Integer arithmetic exactly as the kernel's: a frequency subscore ``nr_accesses * 100 / max_nr_accesses``
    and an age subscore from ``ilog2`` of the age in seconds (negated for unaccessed regions, so old and idle
    means colder), weighted by the quota's ``weight_nr_accesses`` and ``weight_age`` (``weight_sz`` is used by no
    mainline score). With both weights 0 the score is 0.

    The frequency subscore is capped at 100, as SJ's fix "mm/damon/ops-common: prevent >DAMON_MAX_SUBSCORE
    freq_subscore" (2026-06, lore 20260622141027.29145-3-sj@kernel.org) does; it only matters when
    ``nr_accesses`` exceeds ``max_nr_accesses`` after an interval change.

    :param nr_accesses: the region's access frequency in sampling intervals (7.3 passes the moving sum)
    :param age: the region's age in aggregation intervals
    :param attrs: supplies ``aggr_interval_us`` and ``max_nr_accesses``
    """
    freq_subscore = nr_accesses * DAMON_MAX_SUBSCORE // attrs.max_nr_accesses
    freq_subscore = min(freq_subscore, DAMON_MAX_SUBSCORE)
    age_in_sec = age * attrs.aggr_interval_us // 1_000_000
    # ilog2(age_in_sec) + 1, i.e. the bit length, capped (Linux 7.2's form of the old shift loop)
    age_in_log = min(age_in_sec.bit_length(), DAMON_MAX_AGE_IN_LOG)
    # If frequency is 0, higher age means it's colder
    if freq_subscore == 0:
        age_in_log = -age_in_log
    # age_in_log is in [-32, 32]; scale it to [0, 100]
    age_in_log += DAMON_MAX_AGE_IN_LOG
    age_subscore = age_in_log * DAMON_MAX_SUBSCORE // DAMON_MAX_AGE_IN_LOG // 2
    hotness = weight_nr_accesses * freq_subscore + weight_age * age_subscore
    if weight_nr_accesses + weight_age:
        hotness //= weight_nr_accesses + weight_age
    # Transform it to fit in [0, DAMOS_MAX_SCORE]
    return hotness * DAMOS_MAX_SCORE // DAMON_MAX_SUBSCORE


def cold_score(nr_accesses: int, age: int, attrs: Attrs, weight_nr_accesses: int, weight_age: int) -> int:
    """``damon_cold_score()`` (``mm/damon/ops-common.c``): ``DAMOS_MAX_SCORE - hot_score(...)``."""
    return DAMOS_MAX_SCORE - hot_score(nr_accesses, age, attrs, weight_nr_accesses, weight_age)


def scheme_action(scheme: Any) -> str | None:
    """The action name of a DAMOS scheme: ``scheme.action`` as a string (an ``Action`` enum's ``.value``)."""
    action = getattr(scheme, "action", None)
    value = getattr(action, "value", action)
    return value if isinstance(value, str) else None


def quota_weights(scheme: Any) -> tuple[int, int]:
    """``(weight_nr_accesses, weight_age)`` of ``scheme.quota``; 0 when absent, as sysfs initialises them."""
    quota = getattr(scheme, "quota", None)
    return int(getattr(quota, "weight_nr_accesses", 0) or 0), int(getattr(quota, "weight_age", 0) or 0)


def region_hot_score(ctx: Ctx, region: Region, scheme: Any) -> int:
    """``damon_hot_score(c, r, s)`` for a region of *ctx*: feeds 7.3's moving sum
    (``damon_nr_accesses_mvsum()``) and the scheme's quota weights to :func:`hot_score`."""
    w_freq, w_age = quota_weights(scheme)
    return hot_score(region_nr_accesses_mvsum(ctx, region), region.age, ctx.attrs, w_freq, w_age)


def region_cold_score(ctx: Ctx, region: Region, scheme: Any) -> int:
    """``damon_cold_score(c, r, s)`` for a region of *ctx* (see :func:`region_hot_score`)."""
    return DAMOS_MAX_SCORE - region_hot_score(ctx, region, scheme)


# -- vectorised forms ----------------------------------------------------------------------------------------

#: ``2**0 .. 2**(DAMON_MAX_AGE_IN_LOG - 1)``: the number of these that are <= x is ``min(bit_length(x), 32)``.
_POW2 = np.array([1 << i for i in range(DAMON_MAX_AGE_IN_LOG)], dtype=np.int64)


def hot_scores(nr_accesses: npt.ArrayLike, age: npt.ArrayLike, attrs: Attrs, weight_nr_accesses: int,
               weight_age: int) -> npt.NDArray[np.int64]:
    """:func:`hot_score` of many regions at once, with exactly its integer arithmetic.

    ``age * aggr_interval_us // 1_000_000`` is computed as ``mult_frac()`` does (quotient and remainder apart)
    so it cannot overflow ``int64`` for any realistic interval, and ``ilog2(x) + 1`` is the count of powers of
    two ``<= x`` (exact, no floating point).

    :param nr_accesses: per-region access frequencies (``int64``, non-negative)
    :param age: per-region ages in aggregation intervals (``int64``, non-negative)
    :return: ``int64`` scores in ``[0, DAMOS_MAX_SCORE]``
    """
    nr = np.asarray(nr_accesses, dtype=np.int64)
    ag = np.asarray(age, dtype=np.int64)
    freq = np.minimum(nr * DAMON_MAX_SUBSCORE // attrs.max_nr_accesses, DAMON_MAX_SUBSCORE)
    aggr = attrs.aggr_interval_us
    age_in_sec = mult_frac(ag, aggr, 1_000_000)
    age_in_log = np.searchsorted(_POW2, age_in_sec, side="right").astype(np.int64)
    age_in_log = np.where(freq == 0, -age_in_log, age_in_log) + DAMON_MAX_AGE_IN_LOG
    age_sub = age_in_log * DAMON_MAX_SUBSCORE // DAMON_MAX_AGE_IN_LOG // 2
    hotness = weight_nr_accesses * freq + weight_age * age_sub
    if weight_nr_accesses + weight_age:
        hotness //= weight_nr_accesses + weight_age
    return hotness * DAMOS_MAX_SCORE // DAMON_MAX_SUBSCORE


def cold_scores(nr_accesses: npt.ArrayLike, age: npt.ArrayLike, attrs: Attrs, weight_nr_accesses: int,
                weight_age: int) -> npt.NDArray[np.int64]:
    """:func:`cold_score` of many regions at once (``DAMOS_MAX_SCORE - hot_scores(...)``)."""
    return DAMOS_MAX_SCORE - hot_scores(nr_accesses, age, attrs, weight_nr_accesses, weight_age)


def target_hot_scores(ctx: Ctx, target: Target, scheme: Any) -> npt.NDArray[np.int64]:
    """:func:`region_hot_score` of every region of *target* (in ``target.ra`` order), at once."""
    w_freq, w_age = quota_weights(scheme)
    return hot_scores(target_nr_accesses_mvsum(ctx, target), target.ra.age, ctx.attrs, w_freq, w_age)


def target_cold_scores(ctx: Ctx, target: Target, scheme: Any) -> npt.NDArray[np.int64]:
    """:func:`region_cold_score` of every region of *target*, at once."""
    return DAMOS_MAX_SCORE - target_hot_scores(ctx, target, scheme)
