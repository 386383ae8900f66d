"""The pte source's probes: which pages it watches, and what their Accessed bits say (pure numpy, no I/O).

**Clear once per window, then only read.** The kernel clears ("mkolds") one random page per region every sampling
interval and reads it back one interval later. User space cannot clear one entry for tens of ns, so the pte
source clears its probe pages once per window (an aggregation, or a shorter batch) and then only *reads* them:
after the first sampling interval, and at the end of the window (:func:`read_points`).

**The kernel's scale.** The kernel's ``nr_accesses`` of a region counts the sampling intervals in which that
interval's random page was accessed: in expectation ``n`` times the mean, over the region's pages, of their chance
``p`` to be accessed in one interval. The share of the region's probes found accessed one interval after their
clear is an unbiased estimate of that mean, whatever mix of pages the region holds (for one page, "accessed in the
first interval" is the only unbiased estimate of ``p`` from its first touch: the geometric family is complete),
so ``nr_accesses = n * share``, rounded up or down at random to stay unbiased. Its noise is the kernel's with as
many probes as the kernel has sampling intervals. Estimates that use the later first touches too (``1/T``, or
the geometric maximum likelihood) are only right where the region's pages are alike: a region half hot, half cold
read 0.3 or 0.05 of the intervals instead of 0.5, which kept the adaptive split from finding the hot half.

**Working set within a window.** Probes persist across windows (by address: they follow splits and merges), and
each keeps a bit per past window, set when it was touched then (found set at any read). The bytes accessed within
the last ``W`` are then measured, not inferred: per region, the share of its probes touched in the windows that
cover ``W``, times its size; the classic ``clear_refs`` + ``Referenced`` working set, on a sample. (Inferring it
from access rates, ``1 - (1 - p)^(W/s)``, overstates a region whose few pages are touched often.)

See docs/pte.md, sections "Clear once, read twice" and "Working set".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ("ProbeSet", "read_points", "stochastic_round", "PAGE_SZ")

PAGE_SZ = 4096
#: History bits a probe keeps (windows).
HISTORY = 63
#: Probes every region gets, at most, before the rest go by size.
BASE_PROBES = 8

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=256)
def read_points(n: int) -> tuple[int, ...]:
    """The sampling intervals after which a window of *n* reads its probes: after the first (the access rate) and
    at the end (the working set): ``(1, n)``."""
    return (1, n) if n > 1 else (1,)


def stochastic_round(x: F64, rng: np.random.Generator) -> I64:
    """Round each value down or up with the chance that keeps its expectation (counts stay unbiased)."""
    lo = np.floor(x)
    out: I64 = (lo + (rng.random(x.shape) < (x - lo))).astype(np.int64)
    return out


@dataclass(eq=False)
class ProbeSet:
    """One target's probe pages and what they showed, as columns.

    :ivar addr: page address of each probe
    :ivar hist: bit ``i`` set when the probe was touched in the ``i``-th last completed window
    :ivar nwin: windows the probe was observed in (its usable history), at most :data:`HISTORY`
    :ivar first: the read (sampling intervals into the window) that first found the probe touched (0: none yet)
    :ivar valid: the probe's bit was clear when the current window began (a set bit that could not be cleared
        tells nothing)
    :ivar region: the region index of each probe in the current window
    """

    addr: U64 = field(default_factory=lambda: np.zeros(0, np.uint64))
    hist: U64 = field(default_factory=lambda: np.zeros(0, np.uint64))
    nwin: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    first: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    valid: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    region: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.addr.size)

    def _keep(self, keep: npt.NDArray[np.bool_] | I64) -> None:
        self.addr, self.hist, self.nwin = self.addr[keep], self.hist[keep], self.nwin[keep]
        self.first, self.valid, self.region = self.first[keep], self.valid[keep], self.region[keep]

    def regions_of(self, starts: npt.ArrayLike, ends: npt.ArrayLike) -> I64:
        """The index of the region holding each probe, -1 where none does (addresses, or any unsigned keys
        that order like them)."""
        a = self.addr
        s, e = np.asarray(starts).astype(np.uint64), np.asarray(ends).astype(np.uint64)
        if not s.size:
            return np.full(a.size, -1, np.int64)
        i = np.searchsorted(s, a, side="right").astype(np.int64) - 1
        inside = (i >= 0) & (a < e[np.maximum(i, 0)])
        out: I64 = np.where(inside, i, -1)
        return out

    def allocate(self, starts: npt.ArrayLike, ends: npt.ArrayLike, nr_probes: int, rng: np.random.Generator,
                 retire_chance: float = 0.0) -> int:
        """Give each region its probes for the next window: an equal share of half of *nr_probes* (at least one,
        at most :data:`BASE_PROBES`), the rest by size times the spread of what its probes showed; probes outside every region go, a random share *retire_chance* retires (so the pages watched
        keep changing, as the kernel's random sampling pages do), regions with too many drop their youngest,
        regions with too few get new uniformly random pages. Returns how many probes are new."""
        starts, ends = np.asarray(starts).astype(np.uint64), np.asarray(ends).astype(np.uint64)
        nreg = int(starts.size)
        if not nreg:
            self._keep(np.zeros(len(self), bool))
            return 0
        self.region = self.regions_of(starts, ends)
        keep = self.region >= 0
        if retire_chance > 0 and keep.any():
            keep &= rng.random(keep.size) >= retire_chance
        self._keep(keep)
        pages_of = ((ends - starts) // np.uint64(PAGE_SZ)).astype(np.int64)
        sz = pages_of.astype(np.float64)
        # each region an equal share of half the probes (its access rate: the kernel samples every region alike),
        # up to BASE_PROBES; the rest where the working set is uncertain: by size times the spread of what the
        # region's probes showed in the last window (Neyman's allocation; a region all touched or all idle needs
        # few, and every probe of a hot region costs a clear each window)
        base = min(BASE_PROBES, max(1, int(nr_probes) // (2 * nreg)))
        extra = max(0, int(nr_probes) - base * nreg)
        cnt = np.bincount(self.region, minlength=nreg)[:nreg]
        hot = np.bincount(self.region, weights=(self.hist & np.uint64(1)).astype(np.float64), minlength=nreg)[:nreg]
        share = np.where(cnt > 0, hot / np.maximum(cnt, 1), 0.5)
        weight = sz * (0.1 + np.sqrt(share * (1.0 - share)))
        want_f = base + extra * weight / max(weight.sum(), 1e-9)
        want = np.floor(want_f).astype(np.int64)
        want += (rng.random(nreg) < (want_f - want)).astype(np.int64)
        want = np.minimum(want, np.maximum(pages_of, 1))
        # regions with too many: keep the oldest (longest history) of each
        order = np.lexsort((-self.nwin, self.region))
        ri_sorted = self.region[order]
        first_of = np.searchsorted(ri_sorted, ri_sorted, side="left")
        rank = np.arange(ri_sorted.size) - first_of
        kept = order[rank < want[ri_sorted]]
        kept.sort()
        self._keep(kept)
        have = np.bincount(self.region, minlength=nreg)
        need = np.maximum(want - have, 0)
        total = int(need.sum())
        if total:
            reg = np.repeat(np.arange(nreg), need)
            pages = np.maximum(pages_of[reg], 1)
            off = (rng.random(total) * pages).astype(np.uint64)
            new = starts[reg] + off * np.uint64(PAGE_SZ)
            self.addr = np.concatenate([self.addr, new])
            self.hist = np.concatenate([self.hist, np.zeros(total, np.uint64)])
            self.nwin = np.concatenate([self.nwin, np.zeros(total, np.int64)])
            self.first = np.concatenate([self.first, np.zeros(total, np.int64)])
            self.valid = np.concatenate([self.valid, np.zeros(total, bool)])
            self.region = np.concatenate([self.region, reg])
        # one probe per page; in address order (the walk is cheaper in order)
        self._keep(np.argsort(self.addr, kind="stable"))
        if self.addr.size > 1:
            uniq = np.ones(self.addr.size, bool)
            uniq[1:] = self.addr[1:] != self.addr[:-1]
            self._keep(uniq)
        self.first = np.zeros(self.addr.size, np.int64)
        return total

    def end_window(self) -> None:
        """Shift the current window's touches into the history."""
        touched = (self.first > 0).astype(np.uint64)
        self.hist = ((self.hist << np.uint64(1)) | touched) & np.uint64((1 << HISTORY) - 1)
        self.nwin = np.minimum(self.nwin + self.valid.astype(np.int64), HISTORY)

    def access_rates(self, nreg: int) -> tuple[F64, npt.NDArray[np.bool_]]:
        """Per region, the chance of an access per sampling interval: the share of its usable probes found
        accessed by the first read (see the module docstring); and whether the region had a usable probe."""
        v = self.valid
        cnt = np.bincount(self.region[v], minlength=nreg)[:nreg]
        hit = np.bincount(self.region[v], weights=(self.first[v] == 1).astype(np.float64), minlength=nreg)[:nreg]
        has = cnt > 0
        out: F64 = np.where(has, hit / np.maximum(cnt, 1), 0.0)
        return out, has

    def touched_share(self, starts: npt.ArrayLike, ends: npt.ArrayLike, nwindows: int) -> tuple[
            F64, npt.NDArray[np.bool_]]:
        """Per region (of the given ranges), the share of its probes touched within the last *nwindows*
        completed windows, from the probes with that much history (or, in a region without such probes, from
        whatever history its probes have), and whether the region had any probe with history."""
        nreg = int(np.asarray(starts).size)
        ri = self.regions_of(starts, ends)
        mask = np.uint64((1 << min(max(nwindows, 1), HISTORY)) - 1)
        touched = ((self.hist & mask) != 0).astype(np.float64)
        ok = ri >= 0
        full = ok & (self.nwin >= nwindows)
        some = ok & (self.nwin >= 1)
        out = np.zeros(nreg)
        has = np.zeros(nreg, bool)
        for sel in (some, full):  # full history wins where a region has it
            cnt = np.bincount(ri[sel], minlength=nreg)[:nreg]
            tot = np.bincount(ri[sel], weights=touched[sel], minlength=nreg)[:nreg]
            got = cnt > 0
            out[got] = tot[got] / cnt[got]
            has |= got
        return out, has
