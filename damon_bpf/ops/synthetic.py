"""A synthetic access source: access reports generated from a described access pattern, no kernel involved.

The test double of the event sources that feed :class:`~damon_bpf.ops.vaddr.VaddrOps` through pushed reports;
engine tests and benchmarks use it to drive the monitoring core with a known ground truth.

**The pattern.** A :class:`SyntheticPattern` is a list of phases, each lasting ``duration_s`` (``None``: for
ever, last phase only) and listing address ranges of target ``target``, each page accessed per sampling
interval with chance ``p``, or at ``rate_hz`` accesses per second (``p = 1 - exp(-rate_hz * sample_interval)``).
Overlapping ranges add up; nothing else is accessed, and nothing after the last phase unless ``loop`` is set.

**Models** (``SyntheticOps(model=...)``): ``"events"`` (default) reports every access event, as a page-fault or
PMU source would; ``"accessed_bit"`` checks one random address per region per interval, as the kernel's vaddr.

Targets with ``pid`` None are fixed address spaces; targets with a pid get their three regions from
``/proc/<pid>/maps``. Reports are capped at ``max_reports_per_check``; randomness is seeded (``seed`` or
``ctx.rng``). See docs/ops.md, section "The synthetic source", for the dict form and the models' statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import set_regions
from damon_bpf.engine.model import AddrRange, Ctx, Target
from damon_bpf.engine.access_reports import AccessReports
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops.vaddr import VaddrOps

__all__ = ("SyntheticRange", "SyntheticPhase", "SyntheticPattern", "SyntheticOps", "MODELS")

#: The sampling models :class:`SyntheticOps` implements (see the module docstring).
MODELS = ("events", "accessed_bit")

# phases with no end, in ns since the pattern start
_FOREVER_NS = 1 << 62


def _addr(x: Any) -> int:
    if isinstance(x, str):
        return int(x.replace(",", "").replace("_", ""), 0)
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InvalidParamsError(f"not an address: {x!r}")
    return int(x)


@dataclass(frozen=True)
class SyntheticRange:
    """Pages ``[start, end)`` of target number ``target``, each accessed with chance ``p`` per sampling
    interval, or ``rate_hz`` times per second (exactly one of the two is set)."""

    start: int
    end: int
    p: float | None = None
    rate_hz: float | None = None
    target: int = 0

    def validate(self) -> None:
        """:raises InvalidParamsError: empty range, both or neither of ``p``/``rate_hz``, or out of bounds"""
        if not 0 <= self.start < self.end:
            raise InvalidParamsError(f"synthetic range [{self.start:#x}, {self.end:#x}) is empty or negative")
        if (self.p is None) == (self.rate_hz is None):
            raise InvalidParamsError("a synthetic range needs exactly one of 'p' and 'rate_hz'")
        if self.p is not None and not 0.0 <= self.p <= 1.0:
            raise InvalidParamsError(f"p must be within [0, 1] (got {self.p})")
        if self.rate_hz is not None and not (0.0 <= self.rate_hz < math.inf):
            raise InvalidParamsError(f"rate_hz must be finite and not negative (got {self.rate_hz})")
        if self.target < 0:
            raise InvalidParamsError(f"target index must not be negative (got {self.target})")

    def lam(self, sample_s: float) -> float:
        """Expected accesses per page per sampling interval (the Poisson mean): ``-ln(1 - p)`` or
        ``rate_hz * sample_s``; ``inf`` for ``p == 1``."""
        if self.rate_hz is not None:
            return self.rate_hz * sample_s
        assert self.p is not None
        return math.inf if self.p >= 1.0 else -math.log1p(-self.p)

    def prob(self, sample_s: float) -> float:
        """The chance a page is accessed in one sampling interval of *sample_s* seconds."""
        if self.p is not None:
            return self.p
        return -math.expm1(-self.lam(sample_s))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end}
        if self.p is not None:
            d["p"] = self.p
        if self.rate_hz is not None:
            d["rate_hz"] = self.rate_hz
        d["target"] = self.target
        return d

    @classmethod
    def from_dict(cls, d: Any) -> SyntheticRange:
        """From ``{"start", "end", "p" | "rate_hz", "target"?}`` or ``[start, end, p]``."""
        try:
            if isinstance(d, SyntheticRange):
                r = d
            elif isinstance(d, dict):
                unknown = set(d) - {"start", "end", "p", "rate_hz", "target"}
                if unknown:
                    raise InvalidParamsError(f"unknown synthetic range keys: {sorted(unknown)}")
                r = cls(_addr(d["start"]), _addr(d["end"]),
                        None if d.get("p") is None else float(d["p"]),
                        None if d.get("rate_hz") is None else float(d["rate_hz"]),
                        int(d.get("target", 0)))
            elif isinstance(d, (list, tuple)) and len(d) == 3:
                r = cls(_addr(d[0]), _addr(d[1]), float(d[2]))
            else:
                raise InvalidParamsError(f"not a synthetic range: {d!r}")
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InvalidParamsError):
                raise
            raise InvalidParamsError(f"bad synthetic range {d!r}: {err}") from err
        r.validate()
        return r


@dataclass
class SyntheticPhase:
    """One phase of a :class:`SyntheticPattern`: its ranges are accessed for ``duration_s`` seconds
    (``None``: until the end of monitoring; only the last phase may be endless)."""

    duration_s: float | None
    ranges: list[SyntheticRange] = field(default_factory=list)
    name: str = ""

    def validate(self) -> None:
        """:raises InvalidParamsError: a bad duration or range"""
        if self.duration_s is not None and not (0 < self.duration_s < math.inf):
            raise InvalidParamsError(f"phase {self.name!r}: duration_s must be positive (got {self.duration_s})")
        for r in self.ranges:
            r.validate()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "duration_s": self.duration_s, "ranges": [r.to_dict() for r in self.ranges]}

    @classmethod
    def from_dict(cls, d: Any) -> SyntheticPhase:
        if isinstance(d, SyntheticPhase):
            ph = d
        elif isinstance(d, dict):
            unknown = set(d) - {"name", "duration_s", "ranges"}
            if unknown:
                raise InvalidParamsError(f"unknown synthetic phase keys: {sorted(unknown)}")
            dur = d.get("duration_s")
            try:
                duration = None if dur is None else float(dur)
            except (TypeError, ValueError) as err:
                raise InvalidParamsError(f"bad duration_s {dur!r}") from err
            ph = cls(duration, [SyntheticRange.from_dict(r) for r in d.get("ranges", [])], str(d.get("name", "")))
        else:
            raise InvalidParamsError(f"not a synthetic phase: {d!r}")
        ph.validate()
        return ph


@dataclass
class SyntheticPattern:
    """An access pattern: phases run in order (see the module docstring for the model and the dict form).

    :ivar page_sz: the page size reports are generated for (bytes, a power of two)
    :ivar loop: start over after the last phase (otherwise nothing is accessed any more)
    :ivar start_ns: CLOCK_MONOTONIC ns at which the first phase starts; None: the start of the first checked
        sampling interval
    """

    phases: list[SyntheticPhase] = field(default_factory=list)
    loop: bool = False
    page_sz: int = 4096
    start_ns: int | None = None

    def validate(self) -> None:
        """:raises InvalidParamsError: a bad page size, phase, or an endless phase that is not the last"""
        if self.page_sz <= 0 or self.page_sz & (self.page_sz - 1):
            raise InvalidParamsError(f"page_sz must be a power of two (got {self.page_sz})")
        for i, ph in enumerate(self.phases):
            ph.validate()
            if ph.duration_s is None and i != len(self.phases) - 1:
                raise InvalidParamsError(f"only the last phase may have no duration (phase {i} {ph.name!r})")

    @property
    def total_duration_s(self) -> float:
        """The length of one pass over the phases; ``inf`` when the last phase is endless."""
        if any(ph.duration_s is None for ph in self.phases):
            return math.inf
        return sum(ph.duration_s or 0.0 for ph in self.phases)

    @property
    def nr_targets(self) -> int:
        """One more than the highest target index any range names (0 without ranges)."""
        return max((r.target + 1 for ph in self.phases for r in ph.ranges), default=0)

    def phase_indices(self, elapsed_ns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The index of the phase running at each time (ns since the pattern start); -1 for none (before the
        start, or after the end without ``loop``)."""
        e = np.asarray(elapsed_ns, dtype=np.int64)
        out = np.full(e.shape, -1, dtype=np.int64)
        if not self.phases:
            return out
        durs = [_FOREVER_NS if ph.duration_s is None else max(1, int(round(ph.duration_s * 1e9)))
                for ph in self.phases]
        ends = np.minimum(np.cumsum(np.asarray(durs, dtype=np.int64)), _FOREVER_NS)
        total = int(ends[-1])
        ok = e >= 0
        ee = e[ok]
        if self.loop and total < _FOREVER_NS:
            ee = ee % total
        idx = np.searchsorted(ends, ee, side="right").astype(np.int64)
        idx[idx >= len(self.phases)] = -1
        out[ok] = idx
        return out

    def phase_at(self, elapsed_s: float) -> SyntheticPhase | None:
        """The phase running *elapsed_s* seconds after the pattern start, or None."""
        i = int(self.phase_indices([int(elapsed_s * 1e9)])[0])
        return None if i < 0 else self.phases[i]

    def ranges_of(self, target: int = 0) -> list[AddrRange]:
        """The union of every phase's ranges of *target*, as sorted, non-touching address ranges: the
        address space of a fixed target that has no regions of its own."""
        spans = sorted((r.start, r.end) for ph in self.phases for r in ph.ranges if r.target == target)
        out: list[AddrRange] = []
        for s, e in spans:
            if out and s <= out[-1].end:
                out[-1].end = max(out[-1].end, e)
            else:
                out.append(AddrRange(s, e))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"page_sz": self.page_sz, "loop": self.loop, "start_ns": self.start_ns,
                "phases": [ph.to_dict() for ph in self.phases]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SyntheticPattern:
        """:raises InvalidParamsError: the dict does not describe a valid pattern"""
        if not isinstance(d, dict):
            raise InvalidParamsError(f"a synthetic pattern is a dict (got {type(d).__name__})")
        unknown = set(d) - {"page_sz", "loop", "start_ns", "phases"}
        if unknown:
            raise InvalidParamsError(f"unknown synthetic pattern keys: {sorted(unknown)}")
        start_ns = d.get("start_ns")
        try:
            pat = cls([SyntheticPhase.from_dict(ph) for ph in d.get("phases", [])], bool(d.get("loop", False)),
                      int(d.get("page_sz", 4096)), None if start_ns is None else int(start_ns))
        except (TypeError, ValueError) as err:
            if isinstance(err, InvalidParamsError):
                raise
            raise InvalidParamsError(f"bad synthetic pattern: {err}") from err
        pat.validate()
        return pat

    @classmethod
    def coerce(cls, obj: SyntheticPattern | dict[str, Any] | Iterable[Any] | None) -> SyntheticPattern:
        """A pattern from a pattern, its dict form, a plain list of phases (:class:`SyntheticPhase` or phase
        dicts), or None (no phases: nothing is ever accessed)."""
        if obj is None:
            return cls()
        if isinstance(obj, SyntheticPattern):
            obj.validate()
            return obj
        if isinstance(obj, dict):
            return cls.from_dict(obj)
        try:
            phases = [SyntheticPhase.from_dict(ph) for ph in obj]
        except TypeError as err:
            raise InvalidParamsError(f"not a synthetic pattern: {obj!r}") from err
        pat = cls(phases)
        pat.validate()
        return pat


_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

# a Poisson mean large enough that exp(-mean) is 0 in float64 terms (p == 1)
_LAM_ALWAYS = 50.0


def _segments(ranges: Sequence[SyntheticRange], sample_s: float) -> tuple[_I64, _F64] | None:
    # Elementary segments [pts[k], pts[k+1]) of possibly overlapping ranges and the chance a page in each is
    # accessed in one sampling interval: the ranges' Poisson means add up (superposition).
    if not ranges:
        return None
    pts = np.unique(np.array([r.start for r in ranges] + [r.end for r in ranges], dtype=np.int64))
    diff = np.zeros(pts.size, dtype=np.float64)
    for r in ranges:
        lam = min(r.lam(sample_s), _LAM_ALWAYS)
        diff[np.searchsorted(pts, r.start)] += lam
        diff[np.searchsorted(pts, r.end)] -= lam
    lam_seg = np.maximum(np.cumsum(diff)[:-1], 0.0)
    return pts, -np.expm1(-lam_seg)


class SyntheticOps(VaddrOps):
    """The ``synthetic`` operations set: :class:`~damon_bpf.ops.vaddr.VaddrOps` fed by reports generated from
    a :class:`SyntheticPattern` (see the module docstring).

    :param pattern: a :class:`SyntheticPattern`, its dict form, or a plain list of phases; None: no accesses
    :param seed: seeds the generator; None: drawn from ``ctx.rng`` at init (still deterministic)
    :param model: ``"events"`` or ``"accessed_bit"``
    :param max_reports_per_check: budget of generated reports per ``check_accesses`` call (``events`` model)
    :param proc_root: procfs mount point (process targets only)
    :param use_pidfd: see :class:`~damon_bpf.ops.vaddr.VaddrOps`
    :raises InvalidParamsError: a bad pattern, model or budget
    """

    name = "synthetic"

    def __init__(self, pattern: SyntheticPattern | dict[str, Any] | Sequence[Any] | None = None, *,
                 seed: int | None = None, model: str = "events", max_reports_per_check: int = 1_000_000,
                 proc_root: str = "/proc", use_pidfd: bool = True) -> None:
        super().__init__(proc_root=proc_root, use_pidfd=use_pidfd)
        if model not in MODELS:
            raise InvalidParamsError(f"unknown synthetic model {model!r} (known: {', '.join(MODELS)})")
        if max_reports_per_check < 1:
            raise InvalidParamsError("max_reports_per_check must be positive")
        self.pattern = SyntheticPattern.coerce(pattern)
        self.seed = seed
        self.model = model
        self.max_reports_per_check = int(max_reports_per_check)
        #: reports generated so far
        self.nr_generated = 0
        #: check_accesses calls whose events had to be thinned to the budget
        self.nr_thinned_checks = 0
        self._gen: np.random.Generator | None = None
        self._t0_ns: int | None = None

    # -- hooks -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        """Always supported: fixed targets need nothing, process targets are checked at init."""

    def init(self, ctx: Ctx) -> None:
        """Reset the generator, then initialise targets as vaddr does; fixed targets without regions get the
        pattern's ranges.

        :raises InvalidParamsError: the pattern names a target the context does not have
        """
        if self.pattern.nr_targets > len(ctx.targets):
            raise InvalidParamsError(
                f"the synthetic pattern names target {self.pattern.nr_targets - 1} but the context has "
                f"{len(ctx.targets)} target(s)")
        self._gen = None
        self._t0_ns = None
        super().init(ctx)

    def init_fixed_target(self, ctx: Ctx, target_idx: int, target: Target) -> None:
        """A fixed target keeps its regions; without regions it gets the union of the pattern's ranges.

        :raises InvalidParamsError: neither regions nor pattern ranges for this target
        """
        if target.nr_regions:
            return
        ranges = self.pattern.ranges_of(target_idx)
        if not ranges:
            raise InvalidParamsError(
                f"synthetic: target {target_idx} has no pid, no regions and no ranges in the pattern")
        set_regions(target, ranges, ctx.min_region_sz)

    def stats(self) -> dict[str, int]:
        """Counters of the source: reports generated, and checks whose events were thinned to the budget."""
        return {"generated": self.nr_generated, "thinned_checks": self.nr_thinned_checks}

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        """Generate the reports of the *nr_samples* sampling intervals starting at ``ctx.window_start_ns``,
        queue them, and account them (:meth:`VaddrOps.check_accesses`)."""
        self.generate(ctx, nr_samples)
        return super().check_accesses(ctx, nr_samples)

    # -- generation ------------------------------------------------------------------------------------

    def generate(self, ctx: Ctx, nr_samples: int) -> int:
        """Queue into ``ctx.reports`` the reports of the *nr_samples* sampling intervals that start at
        ``ctx.window_start_ns``; returns how many were queued."""
        if ctx.reports is None:
            ctx.reports = AccessReports()
        if self._gen is None:
            seed = self.seed if self.seed is not None else ctx.rng.getrandbits(64)
            self._gen = np.random.default_rng(seed)
        w0 = ctx.window_start_ns
        if self._t0_ns is None:
            self._t0_ns = self.pattern.start_ns if self.pattern.start_ns is not None else w0
        sample_ns = ctx.attrs.sample_interval_ns
        if nr_samples < 1 or not self.pattern.phases:
            return 0
        elapsed = (w0 - self._t0_ns) + np.arange(nr_samples, dtype=np.int64) * sample_ns
        pidx = self.pattern.phase_indices(elapsed)
        # runs of sampling intervals in the same phase: (first interval, nr intervals, phase)
        cuts = np.flatnonzero(np.diff(pidx)) + 1
        bounds = np.concatenate(([0], cuts, [nr_samples]))
        runs = [(int(a), int(b - a), self.pattern.phases[int(pidx[a])])
                for a, b in zip(bounds[:-1], bounds[1:]) if pidx[a] >= 0]
        if not runs:
            return 0
        valid = [self.target_valid(t) for t in ctx.targets]
        if self.model == "events":
            out = self._gen_events(ctx, runs, valid, w0, sample_ns)
        else:
            out = self._gen_accessed_bit(ctx, runs, valid, w0, sample_ns)
        n = 0
        for ti, chunks in out.items():
            addrs = np.concatenate([c[0] for c in chunks])
            times = np.concatenate([c[1] for c in chunks])
            if addrs.size:
                ctx.reports.report(ti, addrs, times)
                n += int(addrs.size)
        self.nr_generated += n
        return n

    def _gen_events(self, ctx: Ctx, runs: list[tuple[int, int, SyntheticPhase]], valid: list[bool], w0: int,
                    sample_ns: int) -> dict[int, list[tuple[_U64, _I64]]]:
        gen = self._gen
        assert gen is not None
        page_sz = self.pattern.page_sz
        sample_s = sample_ns / 1e9
        # (target, range, first interval, nr intervals, picks per page per interval or inf, first page, pages)
        items: list[tuple[int, SyntheticRange, int, int, float, int, int]] = []
        expected = 0.0
        for k0, m, phase in runs:
            for rg in phase.ranges:
                if rg.target >= len(valid) or not valid[rg.target]:
                    continue
                lam = rg.lam(sample_s)
                if lam <= 0:
                    continue
                first = rg.start // page_sz
                npages = -(-rg.end // page_sz) - first
                items.append((rg.target, rg, k0, m, lam, first, npages))
                expected += (npages if math.isinf(lam) else lam * npages) * m
        budget = self.max_reports_per_check
        thin = min(1.0, budget / expected) if expected > 0 else 1.0
        if thin < 1.0:
            self.nr_thinned_checks += 1
        out: dict[int, list[tuple[_U64, _I64]]] = {}
        for ti, rg, k0, m, lam, first, npages in items:
            if math.isinf(lam) and thin >= 1.0:
                # p == 1: every page, every interval
                pages = np.tile(np.arange(npages, dtype=np.uint64), m)
                k = np.repeat(np.arange(m, dtype=np.int64), npages)
            else:
                mean = (npages if math.isinf(lam) else lam * npages) * thin
                counts = gen.poisson(mean, size=m)
                pages = gen.integers(0, npages, size=int(counts.sum()), dtype=np.uint64)
                k = np.repeat(np.arange(m, dtype=np.int64), counts)
            if pages.size == 0:
                continue
            addrs = (pages + np.uint64(first)) * np.uint64(page_sz)
            addrs = np.maximum(addrs, np.uint64(rg.start))  # a range need not start on a page boundary
            times = w0 + (k0 + k) * sample_ns + gen.integers(0, sample_ns, size=pages.size, dtype=np.int64)
            out.setdefault(ti, []).append((addrs, times))
        return out

    def _gen_accessed_bit(self, ctx: Ctx, runs: list[tuple[int, int, SyntheticPhase]], valid: list[bool],
                          w0: int, sample_ns: int) -> dict[int, list[tuple[_U64, _I64]]]:
        gen = self._gen
        assert gen is not None
        sample_s = sample_ns / 1e9
        out: dict[int, list[tuple[_U64, _I64]]] = {}
        for ti, t in enumerate(ctx.targets):
            if not valid[ti] or not t.nr_regions:
                continue
            starts = t.ra.start
            ends = t.ra.end
            nr = starts.size
            for k0, m, phase in runs:
                seg = _segments([r for r in phase.ranges if r.target == ti], sample_s)
                if seg is None:
                    continue
                pts, seg_p = seg
                # one sampling address per region per sampling interval (damon_rand(r->ar.start, r->ar.end))
                offs = gen.integers(0, ends - starts, size=(m, nr), dtype=np.int64)
                addrs = (starts + offs).ravel()
                j = np.searchsorted(pts, addrs, side="right") - 1
                inside = (j >= 0) & (j < seg_p.size)
                prob = np.where(inside, seg_p[np.clip(j, 0, seg_p.size - 1)], 0.0)
                acc = gen.random(prob.size) < prob
                if not acc.any():
                    continue
                k = np.repeat(np.arange(m, dtype=np.int64), nr)[acc]
                hit = addrs[acc].astype(np.uint64)
                times = w0 + (k0 + k) * sample_ns + gen.integers(0, sample_ns, size=hit.size, dtype=np.int64)
                out.setdefault(ti, []).append((hit, times))
        return out
