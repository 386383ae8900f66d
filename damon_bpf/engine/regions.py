"""Columnar region storage: one numpy array per ``struct damon_region`` field.

The kernel keeps regions in a linked list and walks it a few times per aggregation interval. In Python a walk
over objects costs about a microsecond per region and pass, which at 1000 regions and 10 aggregations per
second alone exceeds the engine's 1%-of-a-core budget; so each target keeps its regions as parallel ``int64``
arrays (addresses of user space fit; the engine is not used for kernel addresses) and the core works on whole
arrays. Only the merge walk stays sequential, as its result depends on the order (the kernel's weighted
averages are truncated at every step), and it runs over plain Python lists.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ("COLUMNS", "NR_PROBE_SLOTS", "PROBE_COLUMNS", "RegionArray")

I64 = npt.NDArray[np.int64]

#: Field names, in the order ``Region`` takes them.
COLUMNS = ("start", "end", "nr_accesses", "nr_accesses_bp", "age", "last_nr_accesses")
#: ``DAMON_MAX_PROBES`` (7.2): probe hit counters per region.
NR_PROBE_SLOTS = 4
#: Per-probe counters (7.2/7.3 ``probe_hits[4]``, ``last_probe_hits[4]``): ``(n, NR_PROBE_SLOTS)`` arrays.
PROBE_COLUMNS = ("probe_hits", "last_probe_hits")


class RegionArray:
    """Regions of one target, sorted by address and non-overlapping, as parallel ``int64`` arrays."""

    __slots__ = COLUMNS + PROBE_COLUMNS

    start: I64
    end: I64
    nr_accesses: I64
    nr_accesses_bp: I64
    age: I64
    last_nr_accesses: I64
    probe_hits: I64
    last_probe_hits: I64

    def __init__(self, n: int = 0) -> None:
        for c in COLUMNS:
            setattr(self, c, np.zeros(n, dtype=np.int64))
        self._zero_probes()

    def _zero_probes(self) -> None:
        for c in PROBE_COLUMNS:
            setattr(self, c, np.zeros((self.start.size, NR_PROBE_SLOTS), dtype=np.int64))

    @classmethod
    def from_columns(cls, **cols: npt.ArrayLike) -> RegionArray:
        """Build from column arrays; missing counter columns are zero."""
        ra = cls.__new__(cls)
        start = np.asarray(cols["start"], dtype=np.int64)
        for c in COLUMNS:
            v = cols.get(c)
            setattr(ra, c, np.zeros(start.size, np.int64) if v is None else np.array(v, dtype=np.int64))
        ra._zero_probes()
        return ra

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]]) -> RegionArray:
        """Build from ``(start, end, nr_accesses, nr_accesses_bp, age, last_nr_accesses)`` rows."""
        if not rows:
            return cls()
        m = np.array(rows, dtype=np.int64).reshape(len(rows), len(COLUMNS))
        return cls.from_columns(**{c: m[:, i] for i, c in enumerate(COLUMNS)})

    def rows(self) -> list[tuple[int, int, int, int, int, int]]:
        return list(zip(*(getattr(self, c).tolist() for c in COLUMNS)))

    def __len__(self) -> int:
        return int(self.start.size)

    def __iter__(self) -> Iterator[tuple[int, int, int, int, int, int]]:
        return iter(self.rows())

    def copy(self) -> RegionArray:
        return self.take(slice(None))

    def take(self, idx: npt.ArrayLike | slice) -> RegionArray:
        """The regions selected by *idx* (index array, boolean mask or slice), copied."""
        ra = RegionArray.__new__(RegionArray)
        for c in COLUMNS + PROBE_COLUMNS:
            setattr(ra, c, np.array(getattr(self, c)[idx], dtype=np.int64))
        return ra

    def assign(self, other: RegionArray) -> None:
        """Replace this target's regions with *other*'s (no copy)."""
        for c in COLUMNS + PROBE_COLUMNS:
            setattr(self, c, getattr(other, c))

    def insert(self, i: int, row: Sequence[int], like: int | None = None) -> None:
        """Insert *row* before index *i*; its probe counters are copied from region *like* (zero if None)."""
        for c, v in zip(COLUMNS, row):
            setattr(self, c, np.insert(getattr(self, c), i, v))
        for c in PROBE_COLUMNS:
            a = getattr(self, c)
            counters = a[like] if like is not None else np.zeros(NR_PROBE_SLOTS, np.int64)
            setattr(self, c, np.insert(a, i, counters, axis=0))

    def delete(self, i: int | npt.NDArray[np.int64]) -> None:
        for c in COLUMNS + PROBE_COLUMNS:
            setattr(self, c, np.delete(getattr(self, c), i, axis=0))

    def repeat_counters(self, counts: npt.NDArray[np.int64], starts: I64, ends: I64) -> RegionArray:
        """Regions made by cutting region ``i`` into ``counts[i]`` pieces with the given bounds; every piece
        inherits its origin's counters and age (``damon_split_region_at()``)."""
        ra = RegionArray.__new__(RegionArray)
        ra.start = starts
        ra.end = ends
        for c in COLUMNS[2:]:
            setattr(ra, c, np.repeat(getattr(self, c), counts))
        for c in PROBE_COLUMNS:
            setattr(ra, c, np.repeat(getattr(self, c), counts, axis=0))
        return ra

    @property
    def sz(self) -> I64:
        return self.end - self.start

    def sz_total(self) -> int:
        return int((self.end - self.start).sum()) if self.start.size else 0
