"""What ``damon-bpf compare`` measured and how it is scored: the results model (:class:`ComparisonResult`, its
``--json`` form), the scoring of each source's snapshots (:func:`score`, with :mod:`damon_bpf.eval.scoring`)
and the side-by-side heatmap picture (:func:`write_heatmap`, drawn with
:mod:`damon_bpf.results.damo_reports`). :mod:`damon_bpf.eval.compare` runs the sources.

See docs/eval.md, section "Comparing sources", for what each measure counts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from damon_bpf.engine import Attrs, Snapshot
from damon_bpf.errors import DamonBpfError
from damon_bpf.eval import scoring
from damon_bpf.linux.files import save_figure
from damon_bpf.results import damo_reports
from damon_bpf.results.records import Intervals, Record, RecordSnapshot

__all__ = ("MIN_RECALL_SEEN", "SourceResult", "PairResult", "ComparisonResult", "score", "write_heatmap")

#: Whether a phase change "shows": the detected hot set covers this share of the new phase's hot bytes.
MIN_RECALL_SEEN = 0.5
#: Addresses of target *i* are shifted by ``i << _TARGET_SHIFT`` when the hot sets of several processes are put
#: in one interval set (user-space addresses are below 2**47 on x86-64 and arm64 with 4-level tables).
_TARGET_SHIFT = 48


# -- results ---------------------------------------------------------------------------------------------------


@dataclass
class SourceResult:
    """What one source did and saw. Figures are ``None`` when they do not apply or could not be measured.

    :ivar status: ``"ok"``, ``"not run"`` (could not start here: see *reason*) or ``"failed"`` (stopped with an
        error while running)
    :ivar window_s: the measured window: from the first to the last snapshot; ``events``, ``dropped``
        (events over the BPF rate limit) and ``probed_pages`` count within it
    :ivar cpu_pct: CPU time of the kdamond thread over the window, in % of one CPU
    :ivar wss_bytes: median over the settled snapshots of the bytes in regions with any access
    :ivar hot_bytes: median over the settled snapshots of the hot bytes (:data:`damon_bpf.eval.scoring.HOT_FRACTION`)
    :ivar precision: median precision of the hot set against the ground truth (bytes in the workload's regions)
    :ivar phase_delays_s: per phase change during the run, seconds until it showed (``None``: missed)
    """

    name: str
    ops_id: str
    status: str = "not run"
    reason: str | None = None
    attach: str = ""
    notes: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    started_at: float | None = None
    nr_snapshots: int = 0
    window_s: float | None = None
    events: int | None = None
    events_per_s: float | None = None
    dropped: int | None = None
    bpf_ns_per_event: float | None = None
    probed_pages: int | None = None
    cpu_s: float | None = None
    cpu_pct: float | None = None
    nr_regions: float | None = None
    wss_bytes: int | None = None
    hot_bytes: int | None = None
    precision: float | None = None
    recall: float | None = None
    phase_delays_s: list[float | None] = field(default_factory=list)
    #: the snapshots (not part of :meth:`to_dict`)
    snapshots: list[Snapshot] = field(default_factory=list, repr=False)
    # settled hot sets, per snapshot: (time, intervals)
    _hot: list[tuple[float, scoring.Intervals]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def phase_delay_s(self) -> float | None:
        """Median delay of the phase changes that showed."""
        return scoring.median(self.phase_delays_s)

    @property
    def nr_phase_changes_missed(self) -> int:
        return sum(1 for d in self.phase_delays_s if d is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "ops": self.ops_id, "status": self.status, "reason": self.reason,
            "attach": self.attach, "notes": list(self.notes), "stop_reason": self.stop_reason,
            "nr_snapshots": self.nr_snapshots, "window_s": _r(self.window_s, 3), "events": self.events,
            "events_per_s": _r(self.events_per_s, 1), "dropped_rate_limit": self.dropped,
            "bpf_ns_per_event": _r(self.bpf_ns_per_event, 1), "probed_pages": self.probed_pages,
            "cpu_s": _r(self.cpu_s, 4), "cpu_pct": _r(self.cpu_pct, 2), "nr_regions": _r(self.nr_regions, 1),
            "wss_bytes": self.wss_bytes, "hot_bytes": self.hot_bytes, "precision": _r(self.precision, 4),
            "recall": _r(self.recall, 4), "phase_changes": len(self.phase_delays_s),
            "phase_changes_missed": self.nr_phase_changes_missed,
            "phase_delay_s": _r(self.phase_delay_s, 3),
            "phase_delays_s": [_r(d, 3) for d in self.phase_delays_s],
        }


@dataclass
class PairResult:
    """Agreement of two sources' hot sets, by bytes: medians over time-matched pairs of settled snapshots
    (sources run at once), or weighted by how often each byte was hot in each source's settled snapshots (one
    after the other: :func:`damon_bpf.eval.scoring.frequency_agreement`). ``None`` when neither source saw a hot
    byte; the overlap coefficient is 0 when only one did."""

    a: str
    b: str
    jaccard: float | None
    overlap: float | None
    nr_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "jaccard": _r(self.jaccard, 4), "overlap": _r(self.overlap, 4),
                "nr_pairs": self.nr_pairs}


@dataclass
class ComparisonResult:
    """Everything a comparison measured; :meth:`to_dict` is the ``--json`` form."""

    pids: list[int]
    mode: str  # "concurrent" or "sequential"
    duration_s: float
    attrs: Attrs
    settle_s: float
    hot_fraction: float
    sources: list[SourceResult]
    pairs: list[PairResult]
    workload: str | None = None
    truth_hot_bytes: int | None = None
    #: the workload's regions, ``(name, start, end)``: where precision and recall are counted
    scope: list[tuple[str, int, int]] | None = None
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    truth_phases: list[Any] = field(default_factory=list, repr=False)

    def source(self, name: str) -> SourceResult:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def pair(self, a: str, b: str) -> PairResult | None:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pids": list(self.pids), "mode": self.mode, "duration_s": self.duration_s,
            "attrs": self.attrs.to_dict(), "settle_s": self.settle_s, "hot_fraction": self.hot_fraction,
            "min_recall_phase_seen": MIN_RECALL_SEEN,
            "workload": self.workload, "truth_hot_bytes": self.truth_hot_bytes,
            "scope": None if self.scope is None else [{"name": n, "start": s, "end": e} for n, s, e in self.scope],
            "sources": [s.to_dict() for s in self.sources],
            "agreement": [p.to_dict() for p in self.pairs],
            "notes": list(self.notes),
        }


def _r(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)


# -- scoring ---------------------------------------------------------------------------------------------------


def score(results: list[SourceResult], *, pids: list[int], attrs: Attrs, duration_s: float, settle_s: float,
          hot_fraction: float, sequential: bool, workload: str | None, truth: Any, notes: list[str],
          started_at: float) -> ComparisonResult:
    """Score what each source saw (its :class:`SourceResult` with the snapshots and the cost figures): WSS and
    hot bytes after *settle_s*, precision, recall and phase-change delays against the workload's *truth*
    (``damon_bpf.workload.Truth``, or None), and the pairwise agreement of the hot sets."""
    scope_named: list[tuple[str, int, int]] | None = None
    scope: scoring.Intervals | None = None
    phases: list[Any] = []
    changes: list[scoring.PhaseChange] = []
    if truth is not None:
        scope_named = [(r.name, r.start, r.end) for r in truth.start.regions]
        scope = scoring.normalize([(s, e) for _, s, e in scope_named])
        phases = list(truth.phases)
        changes = scoring.phase_changes(phases)
    aggr_s = attrs.aggr_interval_us / 1e6
    truth_hot: list[int] = []
    for res in results:
        if not res.snapshots:
            continue
        start = res.started_at if res.started_at is not None else res.snapshots[0].time_ns / 1e9 - aggr_s
        hots: list[tuple[float, scoring.Intervals]] = []
        settled: list[tuple[float, scoring.Intervals, int, int]] = []
        for snap in res.snapshots:
            t = snap.time_ns / 1e9
            hot = _hot_of(snap, hot_fraction)
            hots.append((t, hot))
            if t >= start + settle_s:
                settled.append((t, hot, _wss_of(snap), snap.nr_regions))
        if not settled:
            settled = [(t, h, _wss_of(s), s.nr_regions) for (t, h), s in zip(hots, res.snapshots)]
        res._hot = [(t, h) for t, h, _, _ in settled]
        res.wss_bytes = int(np.median([w for _, _, w, _ in settled]))
        res.hot_bytes = int(np.median([scoring.total_bytes(h) for _, h, _, _ in settled]))
        res.nr_regions = float(np.median([n for _, _, _, n in settled]))
        if truth is not None:
            precs: list[float | None] = []
            recs: list[float | None] = []
            for t, h, _, _ in settled:
                pi = scoring.dominant_phase(phases, t - aggr_s, t)
                if pi is None:
                    continue
                sc = scoring.precision_recall(h, phases[pi].hot_ranges, scope)
                precs.append(sc.precision)
                recs.append(sc.recall)
                truth_hot.append(sc.truth_bytes)
            res.precision = scoring.median(precs)
            res.recall = scoring.median(recs)
            res.phase_delays_s = scoring.phase_change_delays(changes, hots, MIN_RECALL_SEEN, scope, since=start)
    return ComparisonResult(
        pids=pids, mode="sequential" if sequential else "concurrent", duration_s=duration_s,
        attrs=copy.deepcopy(attrs), settle_s=settle_s, hot_fraction=hot_fraction,
        sources=list(results), pairs=_pairs(results, attrs, sequential), workload=workload,
        truth_hot_bytes=int(np.median(truth_hot)) if truth_hot else None, scope=scope_named, notes=notes,
        started_at=started_at, truth_phases=phases)


def _pairs(results: list[SourceResult], attrs: Attrs, sequential: bool) -> list[PairResult]:
    done = [r for r in results if r._hot]
    out = []
    tol = attrs.aggr_interval_us / 1e6 / 2 + 1e-3
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            if sequential:
                # different times: compare how often each byte was hot
                ag = scoring.frequency_agreement([h for _, h in a._hot], [h for _, h in b._hot])
                out.append(PairResult(a.name, b.name, ag.jaccard, _overlap(ag), min(len(a._hot), len(b._hot))))
                continue
            tb = np.array([t for t, _ in b._hot])
            js: list[float | None] = []
            ovs: list[float | None] = []
            for t, h in a._hot:
                k = int(np.argmin(np.abs(tb - t)))
                if abs(tb[k] - t) > tol:
                    continue
                ag = scoring.agreement(h, b._hot[k][1])
                if ag.jaccard is None:  # neither saw a hot byte: nothing to agree on, left out
                    continue
                js.append(ag.jaccard)
                ovs.append(_overlap(ag))
            out.append(PairResult(a.name, b.name, scoring.median(js), scoring.median(ovs), len(js)))
    return out


def _overlap(ag: scoring.Agreement) -> float | None:
    # one side saw hot bytes and the other none: they disagree (the coefficient itself is 0/0)
    return 0.0 if ag.overlap is None and ag.jaccard is not None else ag.overlap


def _shifted(ti: int, start: Any, end: Any) -> tuple[Any, Any]:
    off = np.int64(ti) << np.int64(_TARGET_SHIFT)
    return start + off, end + off


def _hot_of(snap: Snapshot, fraction: float) -> scoring.Intervals:
    thr = scoring.hot_threshold(snap.max_nr_accesses, fraction)
    parts = []
    for ti, t in enumerate(snap.targets):
        s, e = _shifted(ti, t.start, t.end)
        parts.append(scoring.regions_at_least(s, e, t.nr_accesses, thr))
    return scoring.normalize(np.concatenate(parts)) if parts else scoring.normalize([])


def _wss_of(snap: Snapshot) -> int:
    return sum(scoring.wss_bytes(t) for t in snap.targets)


# -- the heatmap -----------------------------------------------------------------------------------------------

#: At most this many address ranges side by side (the layout of :func:`damon_bpf.results.damo_reports.heatmap`
#: gives each at least 1/50 of the columns): beyond it, neighbours across the narrowest gaps are drawn as one.
_MAX_SEGMENTS = 50


def _axis_segments(result: ComparisonResult) -> list[tuple[int, int, str]]:
    # the address ranges drawn: the workload's regions, or else what the first target's regions covered
    if result.scope:
        segs = [(s, e, n) for n, s, e in sorted(result.scope, key=lambda x: x[1])]
    else:
        parts = [np.stack([s.targets[0].start, s.targets[0].end], axis=1)
                 for src in result.sources for s in src.snapshots if s.targets]
        cov = scoring.normalize(np.concatenate(parts)) if parts else scoring.normalize([])
        segs = [(int(s), int(e), f"{int(s):#x}") for s, e in cov.tolist()]
    while len(segs) > _MAX_SEGMENTS:
        i = min(range(len(segs) - 1), key=lambda k: segs[k + 1][0] - segs[k][1])
        segs[i:i + 2] = [(segs[i][0], segs[i + 1][1], segs[i][2])]
    return segs


def _record(snapshots: list[Snapshot], attrs: Attrs) -> Record:
    # a source's snapshots of its first target as a record, for damo_reports.heatmap
    snaps = [RecordSnapshot(int(s.time_ns) - s.aggr_interval_us * 1000, int(s.time_ns),
                            s.targets[0].start.astype(np.int64), s.targets[0].end.astype(np.int64),
                            s.targets[0].nr_accesses.astype(np.int64), s.targets[0].age.astype(np.int64),
                            s.sample_interval_us)
             for s in snapshots if s.targets]
    return Record(0, Intervals(attrs.sample_interval_us, attrs.aggr_interval_us), snaps)


def _truth_record(result: ComparisonResult, segs: list[tuple[int, int, str]], begin_ns: int,
                  end_ns: int) -> Record:
    # the ground truth's hot ranges as a record: every aggregation interval, the drawn ranges cut at the hot
    # ranges' ends, hot pieces at the largest nr_accesses and the others at 0
    a = result.attrs
    aggr_ns = a.aggr_interval_us * 1000
    rec = Record(0, Intervals(a.sample_interval_us, a.aggr_interval_us))
    for t in range(begin_ns, max(end_ns, begin_ns + aggr_ns), aggr_ns):
        mid_s = (t + aggr_ns / 2) / 1e9
        pi = scoring.dominant_phase(result.truth_phases, mid_s, mid_s)
        hot = scoring.normalize(result.truth_phases[pi].hot_ranges if pi is not None else [])
        ends = set(hot.ravel().tolist())
        starts, stops = [], []
        for s, e, _ in segs:
            cuts = sorted({s, e} | {x for x in ends if s < x < e})
            starts += cuts[:-1]
            stops += cuts[1:]
        lo = np.array(starts, dtype=np.int64)
        i = np.searchsorted(hot[:, 0], lo, side="right") - 1
        inside = (i >= 0) & (lo < hot[np.maximum(i, 0), 1]) if hot.shape[0] else np.zeros(lo.size, bool)
        rec.snapshots.append(RecordSnapshot(t, t + aggr_ns, lo, np.array(stops, dtype=np.int64),
                                            np.where(inside, a.max_nr_accesses, 0).astype(np.int64),
                                            np.zeros(lo.size, np.int64), a.sample_interval_us))
    return rec


def write_heatmap(result: ComparisonResult, path: str, nbins: int = 200) -> None:
    """Write a PNG with one time x address heatmap per source that ran (the first target's regions; brightness:
    ``nr_accesses / max_nr_accesses``), side by side, plus the ground truth's hot ranges for the workload. Each
    is :func:`damon_bpf.results.damo_reports.heatmap` of the source's snapshots, one row per aggregation interval.

    The address axis is the workload's regions, or else the address ranges the regions covered, put side by side
    (gaps between them left out).

    :raises MissingDependencyError: matplotlib is not installed
    :raises DamonBpfError: nothing to draw, or the file cannot be written
    """
    plt = damo_reports.pyplot()
    srcs = [s for s in result.sources if any(snap.targets for snap in s.snapshots)]
    if not srcs:
        raise DamonBpfError("no source produced snapshots: nothing to draw")
    segs = _axis_segments(result)
    if not segs:
        raise DamonBpfError("no address ranges to draw")
    ranges = [(s, e) for s, e, _ in segs]
    cols = max(nbins, 4 * len(segs))
    records = [_record(s.snapshots, result.attrs) for s in srcs]
    base_ns = int(result.started_at * 1e9)
    if result.truth_phases:
        begin = min(r.snapshots[0].start_time for r in records)
        records.append(_truth_record(result, segs, begin, max(r.snapshots[-1].end_time for r in records)))
    titles = [s.name for s in srcs] + (["ground truth (hot)"] if result.truth_phases else [])
    fig, axes = plt.subplots(1, len(records), figsize=(2.4 * len(records) + 1.6, 4.8), sharey=True, squeeze=False,
                             constrained_layout=True)
    ax_list = list(axes[0])
    image = None
    for ax, rec, title in zip(ax_list, records, titles):
        span = (rec.snapshots[0].start_time, rec.snapshots[-1].end_time)
        hm = damo_reports.heatmap([rec], time_range=span, address_ranges=ranges,
                                  resol=(min(max(len(rec.snapshots), 1), 1000), cols))
        image = damo_reports.draw_heatmap(ax, hm, base_ns=base_ns, scale=result.attrs.sample_interval_us / 1e6,
                                          vmax=1.0, labels=[n for _, _, n in segs], max_labels=12)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds")
    ax_list[0].set_ylabel("address (" + ("the workload's regions" if result.scope else
                                         "mapped ranges, gaps left out") + ")")
    if image is not None:
        fig.colorbar(image, ax=ax_list, label="nr_accesses / max_nr_accesses", shrink=0.8)
    how = "one after the other" if result.mode == "sequential" else "at once"
    fig.suptitle(f"damon-bpf compare: pid {' '.join(map(str, result.pids))}"
                 f"{' (' + result.workload + ')' if result.workload else ''}, sources run {how}; "
                 "seconds since the start", fontsize=9)
    try:
        save_figure(fig, path, dpi=100)  # exactly path, never through a symlink or into a device
    finally:
        plt.close(fig)
