"""Scoring monitoring results: address interval sets, hot sets, precision/recall against a ground truth,
working-set size, agreement between two sources, and how long a phase change takes to show.

There is no kernel counterpart; this is what ``damo report wss`` and the DAMON accuracy papers compute by hand.
Everything is pure numpy, no I/O.

**Interval sets** are ``int64`` arrays of half-open ``[start, end)`` byte ranges, shape ``(n, 2)``; every
function takes unnormalised input (:func:`normalize`) and counts bytes covered twice only once.

**Hot set and WSS.** A region is *hot* when ``nr_accesses >= max(1, ceil(fraction * max_nr_accesses))``
(:data:`HOT_FRACTION` 0.1); the working set is the regions with ``nr_accesses > 0``, as ``damo report wss``.

**Agreement** of two hot sets by bytes: Jaccard and the overlap coefficient (``None`` where undefined);
:func:`frequency_agreement` for series. **Phase-change delay**: seconds from a ground-truth phase's start to the
first snapshot covering ``min_recall`` of its hot bytes (``None``: missed), and the *stable* delay.

See docs/eval.md, section "Scoring", for the exact definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = (
    "HOT_FRACTION",
    "Intervals",
    "normalize",
    "total_bytes",
    "intersect",
    "intersection_bytes",
    "union_bytes",
    "clip",
    "coverage_at_least",
    "hot_threshold",
    "regions_at_least",
    "hot_set",
    "wss_bytes",
    "wss_error",
    "Score",
    "precision_recall",
    "Agreement",
    "agreement",
    "frequency_agreement",
    "jaccard",
    "overlap_coefficient",
    "PhaseChange",
    "phase_changes",
    "dominant_phase",
    "phase_change_delay",
    "phase_change_stable_delay",
    "phase_change_delays",
    "median",
)

#: The hot-set rule's fraction of ``max_nr_accesses`` (see the module docstring).
HOT_FRACTION = 0.1

#: A normalised interval set: ``int64`` array of shape ``(n, 2)``, rows ``[start, end)``.
Intervals = npt.NDArray[np.int64]

_EMPTY = np.zeros((0, 2), dtype=np.int64)


def _as_array(intervals: Iterable[Sequence[int]] | npt.ArrayLike) -> Intervals:
    if isinstance(intervals, np.ndarray):
        a = intervals.astype(np.int64, copy=False)
    else:
        rows = [(int(s), int(e)) for s, e in intervals]  # type: ignore[union-attr, misc, arg-type, str-unpack]
        a = np.array(rows, dtype=np.int64) if rows else _EMPTY
    if a.size == 0:
        return _EMPTY
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"intervals must be (start, end) pairs, not an array of shape {a.shape}")
    return a


def normalize(intervals: Iterable[Sequence[int]] | npt.ArrayLike) -> Intervals:
    """Sort ``[start, end)`` ranges, drop empty ones and merge overlapping or touching ones.

    :param intervals: ``(start, end)`` pairs, or an ``(n, 2)`` array
    :return: a new normalised ``(m, 2)`` ``int64`` array
    """
    a = _as_array(intervals)
    a = a[a[:, 1] > a[:, 0]]
    if a.shape[0] <= 1:
        return a.copy()
    a = a[np.argsort(a[:, 0], kind="stable")]
    reach = np.maximum.accumulate(a[:, 1])
    # a row opens a new run when it starts after everything before it has ended (touching rows merge)
    new = np.ones(a.shape[0], dtype=bool)
    new[1:] = a[1:, 0] > reach[:-1]
    first = np.flatnonzero(new)
    ends = np.maximum.reduceat(a[:, 1], first)
    return np.stack([a[first, 0], ends], axis=1)


def total_bytes(intervals: Iterable[Sequence[int]] | npt.ArrayLike) -> int:
    """Bytes covered by an interval set (overlaps counted once)."""
    n = normalize(intervals)
    return int((n[:, 1] - n[:, 0]).sum())


def intersect(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike
              ) -> Intervals:
    """The intersection of two interval sets, normalised."""
    x, y = normalize(a), normalize(b)
    if not x.shape[0] or not y.shape[0]:
        return _EMPTY.copy()
    # for each row of x, the rows of y that overlap it: those ending after its start and starting before its
    # end (both sets are sorted and disjoint, so they are a contiguous run j0..j1-1)
    j0 = np.searchsorted(y[:, 1], x[:, 0], side="right")
    j1 = np.searchsorted(y[:, 0], x[:, 1], side="left")
    cnt = np.maximum(j1 - j0, 0)
    if not cnt.sum():
        return _EMPTY.copy()
    xi = np.repeat(np.arange(x.shape[0]), cnt)
    yi = np.concatenate([np.arange(s, s + c) for s, c in zip(j0.tolist(), cnt.tolist()) if c])
    s = np.maximum(x[xi, 0], y[yi, 0])
    e = np.minimum(x[xi, 1], y[yi, 1])
    keep = e > s
    return normalize(np.stack([s[keep], e[keep]], axis=1))


def intersection_bytes(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike
                       ) -> int:
    """Bytes in both interval sets."""
    return total_bytes(intersect(a, b))


def union_bytes(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike) -> int:
    """Bytes in either interval set."""
    return total_bytes(np.concatenate([normalize(a), normalize(b)]))


def clip(intervals: Iterable[Sequence[int]] | npt.ArrayLike,
         scope: Iterable[Sequence[int]] | npt.ArrayLike | None) -> Intervals:
    """The part of *intervals* inside *scope* (``None``: no clipping, just normalised)."""
    return normalize(intervals) if scope is None else intersect(intervals, scope)


def coverage_at_least(sets: Sequence[Iterable[Sequence[int]] | npt.ArrayLike], k: int) -> Intervals:
    """The bytes covered by at least *k* of the interval *sets* (each set counts once per byte), normalised.

    With ``k = ceil(len(sets) / 2)`` this is the "usually hot" set of a series of snapshots.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    norm = [normalize(s) for s in sets]
    norm = [s for s in norm if s.shape[0]]
    if len(norm) < k:
        return _EMPTY.copy()
    allv = np.concatenate(norm)
    pos = np.concatenate([allv[:, 0], allv[:, 1]])
    delta = np.concatenate([np.ones(allv.shape[0], np.int64), -np.ones(allv.shape[0], np.int64)])
    xs, inv = np.unique(pos, return_inverse=True)
    d = np.zeros(xs.size, dtype=np.int64)
    np.add.at(d, inv.ravel(), delta)
    count = np.cumsum(d)  # sets covering [xs[i], xs[i+1])
    ok = count[:-1] >= k
    return normalize(np.stack([xs[:-1][ok], xs[1:][ok]], axis=1))


# -- snapshots -------------------------------------------------------------------------------------------------


def hot_threshold(max_nr_accesses: int, fraction: float = HOT_FRACTION) -> int:
    """The smallest ``nr_accesses`` that counts as hot: ``max(1, ceil(fraction * max_nr_accesses))``.

    :raises ValueError: negative *fraction*
    """
    if fraction < 0:
        raise ValueError("fraction must not be negative")
    return max(1, math.ceil(fraction * max_nr_accesses - 1e-9))


def regions_at_least(starts: npt.ArrayLike, ends: npt.ArrayLike, nr_accesses: npt.ArrayLike, threshold: int
                     ) -> Intervals:
    """The ``[start, end)`` of the regions with ``nr_accesses >= threshold``, normalised."""
    s = np.asarray(starts, dtype=np.int64).ravel()
    e = np.asarray(ends, dtype=np.int64).ravel()
    n = np.asarray(nr_accesses, dtype=np.int64).ravel()
    if not (s.size == e.size == n.size):
        raise ValueError("starts, ends and nr_accesses differ in length")
    sel = n >= threshold
    return normalize(np.stack([s[sel], e[sel]], axis=1))


def hot_set(target: Any, max_nr_accesses: int, fraction: float = HOT_FRACTION) -> Intervals:
    """The hot regions of one target of a snapshot (anything with ``start``, ``end`` and ``nr_accesses``
    arrays, e.g. :class:`~damon_bpf.engine.TargetSnapshot`)."""
    return regions_at_least(target.start, target.end, target.nr_accesses, hot_threshold(max_nr_accesses, fraction))


def wss_bytes(target: Any, scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None) -> int:
    """Working-set size of one target of a snapshot: bytes of the regions with any access, within *scope*."""
    return total_bytes(clip(regions_at_least(target.start, target.end, target.nr_accesses, 1), scope))


def wss_error(monitor_bytes: int, truth_bytes: int) -> float | None:
    """Relative working-set-size error ``(monitor - truth) / truth`` (signed; ``None`` for an empty truth)."""
    if truth_bytes <= 0:
        return None
    return (monitor_bytes - truth_bytes) / truth_bytes


@dataclass(frozen=True)
class Score:
    """Precision and recall by bytes of a detected hot set against the true one.

    ``precision`` is ``None`` when nothing was detected (undefined), ``recall`` when the truth is empty.
    """

    precision: float | None
    recall: float | None
    detected_bytes: int
    truth_bytes: int
    overlap_bytes: int


def precision_recall(detected: Iterable[Sequence[int]] | npt.ArrayLike, truth: Iterable[Sequence[int]] | npt.ArrayLike,
                     scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None) -> Score:
    """Score a detected hot set against the true one, by bytes, counting only bytes inside *scope*."""
    scope_n = None if scope is None else normalize(scope)
    d = clip(detected, scope_n)
    t = clip(truth, scope_n)
    db, tb = total_bytes(d), total_bytes(t)
    ob = intersection_bytes(d, t)
    return Score(precision=ob / db if db else None, recall=ob / tb if tb else None,
                 detected_bytes=db, truth_bytes=tb, overlap_bytes=ob)


@dataclass(frozen=True)
class Agreement:
    """How much two hot sets agree, by bytes (see the module docstring)."""

    jaccard: float | None
    overlap: float | None
    a_bytes: int
    b_bytes: int
    both_bytes: int


def agreement(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike,
              scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None) -> Agreement:
    """Jaccard index and overlap coefficient of two hot sets, by bytes, within *scope*."""
    x, y = clip(a, scope), clip(b, scope)
    ab, bb = total_bytes(x), total_bytes(y)
    both = intersection_bytes(x, y)
    union = ab + bb - both
    return Agreement(jaccard=both / union if union else None,
                     overlap=both / min(ab, bb) if min(ab, bb) else None,
                     a_bytes=ab, b_bytes=bb, both_bytes=both)


def jaccard(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike) -> float | None:
    """``|A & B| / |A | B|`` by bytes; ``None`` when both sets are empty."""
    return agreement(a, b).jaccard


def overlap_coefficient(a: Iterable[Sequence[int]] | npt.ArrayLike, b: Iterable[Sequence[int]] | npt.ArrayLike
                        ) -> float | None:
    """``|A & B| / min(|A|, |B|)`` by bytes; ``None`` when either set is empty."""
    return agreement(a, b).overlap


def _profile(sets: Sequence[Iterable[Sequence[int]] | npt.ArrayLike]) -> tuple[npt.NDArray[np.int64],
                                                                              npt.NDArray[np.float64]]:
    # breakpoints xs and, on [xs[i], xs[i+1]), the share of the sets that cover it
    norm = [normalize(s) for s in sets]
    nonempty = [s for s in norm if s.shape[0]]
    if not nonempty:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    allv = np.concatenate(nonempty)
    pos = np.concatenate([allv[:, 0], allv[:, 1]])
    delta = np.concatenate([np.ones(allv.shape[0], np.int64), -np.ones(allv.shape[0], np.int64)])
    xs, inv = np.unique(pos, return_inverse=True)
    d = np.zeros(xs.size, dtype=np.int64)
    np.add.at(d, inv.ravel(), delta)
    return xs, np.cumsum(d)[:-1] / len(norm)


def frequency_agreement(sets_a: Sequence[Iterable[Sequence[int]] | npt.ArrayLike],
                        sets_b: Sequence[Iterable[Sequence[int]] | npt.ArrayLike]) -> Agreement:
    """Agreement of two *series* of hot sets taken at different times (sources run one after the other),
    weighted by how often each byte was hot: with ``fa(x)``, ``fb(x)`` the share of each series' sets that
    hold byte ``x``, Jaccard is ``sum(min(fa, fb)) / sum(max(fa, fb))`` (the weighted Jaccard index) and the
    overlap coefficient ``sum(min(fa, fb)) / min(sum(fa), sum(fb))``. For series of one set each this is
    :func:`agreement`. The ``*_bytes`` fields hold the expected hot bytes (``sum(fa)``, ``sum(fb)``,
    ``sum(min)``), rounded.
    """
    xa, fa = _profile(sets_a)
    xb, fb = _profile(sets_b)
    xs = np.union1d(xa, xb)
    if xs.size < 2:
        return Agreement(None, None, 0, 0, 0)

    def at(x: npt.NDArray[np.int64], f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if not x.size:
            return np.zeros(xs.size - 1)
        i = np.searchsorted(x, xs[:-1], side="right") - 1
        ok = (i >= 0) & (i < f.size)
        return np.where(ok, f[np.clip(i, 0, max(f.size - 1, 0))], 0.0)

    va, vb = at(xa, fa), at(xb, fb)
    ln = np.diff(xs).astype(np.float64)
    a_b, b_b = float((va * ln).sum()), float((vb * ln).sum())
    both = float((np.minimum(va, vb) * ln).sum())
    union = float((np.maximum(va, vb) * ln).sum())
    return Agreement(jaccard=both / union if union else None,
                     overlap=both / min(a_b, b_b) if min(a_b, b_b) else None,
                     a_bytes=round(a_b), b_bytes=round(b_b), both_bytes=round(both))


# -- phases ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseChange:
    """A ground-truth phase whose hot set differs from the phase before it: ``[start, end)`` monotonic
    seconds and its hot ranges."""

    start: float
    end: float
    hot: Intervals


def _same(a: Intervals, b: Intervals) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def phase_changes(phases: Sequence[Any], include_first: bool = False) -> list[PhaseChange]:
    """The phases (objects with ``start``, ``end`` and ``hot_ranges``, e.g.
    :class:`~damon_bpf.workload.TruthPhase`, in time order) whose hot set differs from the previous phase's.

    :param include_first: count the first phase as a change (from nothing hot)
    """
    out: list[PhaseChange] = []
    prev: Intervals | None = None
    for p in phases:
        hot = normalize(p.hot_ranges)
        if (prev is None and include_first) or (prev is not None and not _same(hot, prev)):
            out.append(PhaseChange(float(p.start), float(p.end), hot))
        prev = hot
    return out


def dominant_phase(phases: Sequence[Any], t0: float, t1: float) -> int | None:
    """The index of the phase (objects with ``start`` and ``end``) that covers most of ``[t0, t1]``, or
    ``None`` if none overlaps it (for a zero-length window: the phase containing *t1*)."""
    best, best_len = None, 0.0
    for i, p in enumerate(phases):
        if t1 <= t0:
            if p.start <= t1 < p.end:
                return i
            continue
        ov = min(t1, p.end) - max(t0, p.start)
        if ov > best_len:
            best, best_len = i, ov
    return best


def _seen_in_phase(change: PhaseChange, samples: Sequence[tuple[float, Intervals]], min_recall: float,
                   scope: Iterable[Sequence[int]] | npt.ArrayLike | None) -> Iterable[tuple[float, bool]]:
    # (time, recall >= min_recall) of the samples taken after the change's start, up to the phase's end
    for t, detected in samples:
        if t <= change.start:
            continue
        if t > change.end:
            break
        r = precision_recall(detected, change.hot, scope).recall
        yield t, r is not None and r >= min_recall


def phase_change_delay(change: PhaseChange, samples: Sequence[tuple[float, Intervals]], min_recall: float = 0.5,
                       scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None) -> float | None:
    """Seconds from *change*'s start to the first sample (``(time, detected hot set)``, in time order) taken
    after it and no later than the phase's end whose hot set covers at least *min_recall* of the phase's hot
    bytes (within *scope*); ``None`` when none did."""
    return next((t - change.start for t, seen in _seen_in_phase(change, samples, min_recall, scope) if seen), None)


def phase_change_stable_delay(change: PhaseChange, samples: Sequence[tuple[float, Intervals]],
                              min_recall: float = 0.5, scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None
                              ) -> float | None:
    """Like :func:`phase_change_delay`, but until the recall reaches *min_recall* and stays there for the rest
    of the phase (every later sample within the phase too); ``None`` when the phase's last sample is below it."""
    first: float | None = None
    for t, seen in _seen_in_phase(change, samples, min_recall, scope):
        if not seen:
            first = None
        elif first is None:
            first = t
    return None if first is None else first - change.start


def phase_change_delays(changes: Sequence[PhaseChange], samples: Sequence[tuple[float, Intervals]],
                        min_recall: float = 0.5, scope: Iterable[Sequence[int]] | npt.ArrayLike | None = None,
                        since: float | None = None) -> list[float | None]:
    """:func:`phase_change_delay` of every change that starts at or after *since* (default: the first
    sample's time), so changes from before the monitoring started are left out."""
    if not samples:
        return []
    t_first = samples[0][0] if since is None else since
    return [phase_change_delay(c, samples, min_recall, scope) for c in changes if c.start >= t_first]


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not ``None``; ``None`` if there are none."""
    vals = [float(v) for v in values if v is not None]
    return float(np.median(vals)) if vals else None
