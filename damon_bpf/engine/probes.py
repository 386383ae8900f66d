"""Data attributes monitoring: DAMON's probes (Linux 7.2, weights 7.3).

Mirrors ``struct damon_probe`` and ``struct damon_filter`` (``include/linux/damon.h``) and the core's use of
them (``mm/damon/core.c``): a context has up to :data:`DAMON_MAX_PROBES` probes; each is an ordered list of
filters. Every sample the operations set (``apply_probes``) looks at the page at each region's sampling address
and, for each probe that page passes, adds one to the region's ``probe_hits[i]``. The counters are reset per
aggregation (``last_probe_hits = probe_hits``), merged size-weighted and copied on split like ``nr_accesses``
(``damon_bpf.engine.core``), and read between aggregations through :func:`probe_hits_mvsum`, the same moving
sum as ``damon_nr_accesses_mvsum()``.

The filter rule (``damon_probe_filter_pass()``): the first filter whose type *matches* the page (its attribute
equals ``matching``) decides, passing when it allows; every filter that does not match leaves ``not allow``;
an empty list passes. A page the operations set cannot look at (not present) has no attribute (``False``).

The engine does no I/O: what a page *is* comes from the operations set as a :class:`PageAttrs` array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.regions import NR_PROBE_SLOTS
from damon_bpf.errors import InvalidParamsError

__all__ = (
    "DAMON_MAX_PROBES",
    "KERNEL_FILTER_TYPES",
    "USER_FILTER_TYPES",
    "FILTER_TYPES",
    "USER_TYPE_PATH_PREFIX",
    "ProbeFilter",
    "Probe",
    "PageAttrs",
    "filter_attr",
    "probe_passes",
    "add_probe_hits",
    "probe_hits_mvsum",
    "probe_hits_wsum",
    "has_probe_weights",
    "probes_to_kvpairs",
    "probe_bytes",
    "validate_probes",
)

#: ``DAMON_MAX_PROBES`` (``include/linux/damon.h``, 7.2).
DAMON_MAX_PROBES = NR_PROBE_SLOTS

#: The kernel's probe filter types (7.2: anon, memcg; damo 3.4 also knows hugepage_size).
KERNEL_FILTER_TYPES = ("anon", "memcg", "hugepage_size")
#: damon-bpf's own types, which the kernel's probes lack: ``written`` (the leaf's Dirty bit), ``file`` (page
#: cache, not anonymous), ``active`` (on the active LRU list), ``node`` (the page's NUMA node).
USER_FILTER_TYPES = ("written", "file", "active", "node")
FILTER_TYPES = KERNEL_FILTER_TYPES + USER_FILTER_TYPES
#: How damon-bpf's own types are named in damo's files (``memcg`` filters of this path prefix)
USER_TYPE_PATH_PREFIX = "damon-bpf:"


@dataclass
class ProbeFilter:
    """``struct damon_filter``: *type* with its argument (``memcg_path``/``memcg_id``, ``[min_sz, max_sz]``,
    ``node``), ``matching`` (False: ``non``) and ``allow``."""

    type: str
    allow: bool = True
    matching: bool = True
    memcg_path: str | None = None
    #: the cgroup's inode number (what ``/proc/kpagecgroup`` gives), resolved from ``memcg_path`` by the ops
    memcg_id: int = 0
    min_sz: int = 0
    max_sz: int = 0
    node: int = 0

    def validate(self) -> None:
        if self.type not in FILTER_TYPES:
            raise InvalidParamsError(f"unknown probe filter type {self.type!r} (one of {', '.join(FILTER_TYPES)})")
        if self.type == "memcg" and not self.memcg_path:
            raise InvalidParamsError("memcg probe filter: no cgroup path")
        if self.type == "hugepage_size" and not 0 < self.min_sz <= self.max_sz:
            raise InvalidParamsError("hugepage_size probe filter: need 0 < MIN <= MAX")
        if self.type == "node" and self.node < 0:
            raise InvalidParamsError("node probe filter: a negative node")

    def to_str(self) -> str:
        """damo's words for it: ``allow|reject [non] TYPE [ARGS]``."""
        words = ["allow" if self.allow else "reject"] + ([] if self.matching else ["non"]) + [self.type]
        if self.type == "memcg":
            words.append(str(self.memcg_path))
        elif self.type == "hugepage_size":
            words += [str(self.min_sz), str(self.max_sz)]
        elif self.type == "node":
            words.append(str(self.node))
        return " ".join(words)

    def to_kvpairs(self) -> dict[str, Any]:
        """damo's ``DamonFilter.to_kvpairs()`` shape; damon-bpf's own types carry their argument in ``path``
        (damo 3.4.3 knows only the kernel's types: see :func:`probes_to_kvpairs`)."""
        path = self.memcg_path if self.type == "memcg" else (str(self.node) if self.type == "node" else None)
        sized = self.type == "hugepage_size"
        return {"filter_type": self.type, "matching": self.matching, "allow": self.allow, "path": path,
                "range_min": str(self.min_sz) if sized else None, "range_max": str(self.max_sz) if sized else None}


@dataclass
class Probe:
    """``struct damon_probe``: its filters in order and its ``weight`` (7.3; nonzero weights make the context
    attributes-only, which damon-bpf does not implement: see :func:`validate_probes`)."""

    filters: list[ProbeFilter] = field(default_factory=list)
    weight: int = 0


@dataclass
class PageAttrs:
    """What the operations set found of one page per entry (the page at a sampling address): arrays of equal
    length. ``present`` False means nothing else is known (every attribute reads False, as the kernel's
    missing folio does)."""

    present: npt.NDArray[np.bool_]
    anon: npt.NDArray[np.bool_]
    dirty: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]
    #: bytes mapped by the leaf entry (4 KiB, 2 MiB, 1 GiB), 0 if not present
    map_sz: npt.NDArray[np.int64]
    #: memcg inode (``/proc/kpagecgroup``), 0 if unknown
    memcg: npt.NDArray[np.int64]
    #: NUMA node, -1 if unknown
    node: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.present.size)


def filter_attr(f: ProbeFilter, pa: PageAttrs) -> npt.NDArray[np.bool_]:
    """Per page, whether it has *f*'s attribute (before ``matching``)."""
    p = pa.present
    if f.type == "anon":
        return p & pa.anon
    if f.type == "file":
        return p & ~pa.anon
    if f.type == "written":
        return p & pa.dirty
    if f.type == "active":
        return p & pa.active
    if f.type == "memcg":
        return p & (pa.memcg == f.memcg_id) & (f.memcg_id != 0)
    if f.type == "hugepage_size":
        return p & (pa.map_sz >= f.min_sz) & (pa.map_sz <= f.max_sz)
    if f.type == "node":
        return p & (pa.node == f.node)
    raise InvalidParamsError(f"unknown probe filter type {f.type!r}")


def probe_passes(probe: Probe, pa: PageAttrs) -> npt.NDArray[np.bool_]:
    """Per page, whether it passes *probe*'s filters: the first matching filter decides (``allow``); a filter
    that does not match leaves ``not allow`` for the pages no later filter matches; no filters: all pass."""
    n = len(pa)
    passed = np.ones(n, bool)
    decided = np.zeros(n, bool)
    for f in probe.filters:
        match = filter_attr(f, pa) == f.matching
        newly = match & ~decided
        passed[newly] = f.allow
        rest = ~match & ~decided
        passed[rest] = not f.allow
        decided |= match
    return passed


def add_probe_hits(probe_hits: npt.NDArray[np.int64], probes: Sequence[Probe], region_of: npt.NDArray[np.int64],
                   pa: PageAttrs, nr_samples: int = 1, weight: npt.NDArray[np.float64] | None = None,
                   rng: np.random.Generator | None = None) -> None:
    """Add the hits of one batch of samples to *probe_hits* (``(nr_regions, DAMON_MAX_PROBES)``, in place).

    Entry ``j`` of *pa* is a page of region ``region_of[j]``. With one page per region and ``nr_samples == 1``
    this is the kernel's ``apply_probes``: one hit per passing probe. With several pages per region (a batched
    source probing many pages per window) each region gets ``nr_samples`` times the share of its pages that
    pass, rounded stochastically (so sums stay unbiased), as if each sample had looked at one random page of
    them. Regions with no page get nothing.
    """
    nreg = probe_hits.shape[0]
    if not len(pa) or not probes:
        return
    w = np.ones(len(pa)) if weight is None else weight
    tot = np.bincount(region_of, weights=w, minlength=nreg)[:nreg]
    got = tot > 0
    for i, probe in enumerate(probes[:DAMON_MAX_PROBES]):
        ok = probe_passes(probe, pa)
        share = np.bincount(region_of, weights=w * ok, minlength=nreg)[:nreg]
        exp = np.where(got, nr_samples * share / np.where(got, tot, 1), 0.0)
        if rng is not None:
            base = np.floor(exp)
            got_hits = base + (rng.random(nreg) < exp - base)
        else:
            got_hits = np.rint(exp)
        probe_hits[:, i] += got_hits.astype(np.int64)


def probe_hits_mvsum(ctx: Any, probe_hits: npt.NDArray[np.int64],
                     last_probe_hits: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``damon_probe_hits_mvsum()`` (7.3): the moving sum of each probe's hits over one aggregation window,
    the formula of ``damon_nr_accesses_mvsum()`` (:func:`damon_bpf.engine.core.nr_accesses_mvsum`)."""
    from damon_bpf.engine.core import nr_accesses_mvsum

    return np.asarray(nr_accesses_mvsum(ctx, probe_hits, last_probe_hits), dtype=np.int64)


def probe_hits_wsum(probe_hits: npt.NDArray[np.int64], probes: Sequence[Probe],
                    weights: Sequence[int] | None = None) -> npt.NDArray[np.int64]:
    """``damon_probe_hits_wsum()``: per region, ``sum_i probe_hits[i] * weight_i`` over the context's probes
    (*weights* overrides the probes' own, e.g. all ones for an unweighted sum)."""
    ws = list(weights) if weights is not None else [p.weight for p in probes]
    w = np.zeros(probe_hits.shape[1], np.int64)
    n = min(len(ws), probe_hits.shape[1])
    w[:n] = ws[:n]
    return np.asarray(probe_hits @ w, dtype=np.int64)


def has_probe_weights(probes: Sequence[Probe]) -> bool:
    """``has_probe_weights()`` (7.3): any nonzero weight turns the context attributes-only."""
    return any(p.weight for p in probes)


def validate_probes(probes: Sequence[Probe]) -> None:
    """The checks of the kernel's probe setup, plus damon-bpf's limit: no attributes-only mode.

    :raises InvalidParamsError: more than :data:`DAMON_MAX_PROBES` probes, a bad filter, or a nonzero weight
    """
    if len(probes) > DAMON_MAX_PROBES:
        raise InvalidParamsError(f"at most {DAMON_MAX_PROBES} probes (got {len(probes)})")
    for p in probes:
        for f in p.filters:
            f.validate()
    if has_probe_weights(probes):
        raise InvalidParamsError("probe weights (7.3's attributes-only mode) are not supported: leave "
                                 "--probe_weight at 0")


def probes_to_kvpairs(probes: Sequence[Probe]) -> list[dict[str, Any]]:
    """The probes in damo's ``DamonProbe.to_kvpairs()`` shape (a ctx's ``probes`` in ``FILE.kdamonds``).

    damo 3.4.3 refuses filter types it does not know, so damon-bpf's own types are written as what damo can
    read: ``file`` as its exact equivalent ``non anon``; ``written``, ``active`` and ``node N`` as ``memcg``
    filters whose path is :data:`USER_TYPE_PATH_PREFIX` + ``TYPE[:N]`` (damo shows them by that name, and no
    cgroup has such a path, so the file never applies to a kernel as something else)."""
    out = []
    for p in probes:
        fl = []
        for f in p.filters:
            if f.type in KERNEL_FILTER_TYPES:
                fl.append(f.to_kvpairs())
            elif f.type == "file":
                fl.append(ProbeFilter("anon", allow=f.allow, matching=not f.matching).to_kvpairs())
            else:
                name = USER_TYPE_PATH_PREFIX + f.type + (f":{f.node}" if f.type == "node" else "")
                fl.append(ProbeFilter("memcg", allow=f.allow, matching=f.matching, memcg_path=name).to_kvpairs())
        out.append({"preps": [], "filters": fl, "weight": p.weight})
    return out


def probe_bytes(start: npt.NDArray[np.int64], end: npt.NDArray[np.int64], probe_hits: npt.NDArray[np.int64],
                max_nr_accesses: int) -> list[float]:
    """Per probe, the bytes of a target that pass it: ``sum(size * hits / max_nr_accesses)`` over its regions
    (each region's share of samples that passed, times its size)."""
    if probe_hits.size == 0:
        return [0.0] * probe_hits.shape[1] if probe_hits.ndim == 2 else []
    share = np.minimum(probe_hits / max(max_nr_accesses, 1), 1.0)
    return [float(v) for v in ((end - start).astype(np.float64)[:, None] * share).sum(axis=0)]
