"""Several access sources on one target, side by side: the library behind ``damon-bpf compare``.

A :class:`Comparison` runs each chosen source with its own engine (a
:class:`~damon_bpf.session.monitor.Monitor`, whose kdamond runs in its own thread) on the same processes with
identical monitoring attributes, and scores the results with :mod:`damon_bpf.eval.scoring`: cost (events,
drops, BPF run time, the kdamond thread's CPU time), what each saw (WSS, hot bytes, pairwise agreement), and,
with the bundled workload, precision, recall and phase-change delay against its ground truth.

**Sources**: ``fault``, ``fault+numa``, ``fault+pageout``, ``perf``, ``perf:EVENTS`` and ``synthetic`` (bundled
workload only).

**Interference.** Sources run at once see each other's re-arming (pageout probing, NUMA hint faults), so
fault-based sources read more than they would alone; ``sequential`` runs them one after the other instead.

See docs/eval.md, section "Comparing sources", for what each measure counts and each source name means.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from damon_bpf.eval import scoring
from damon_bpf.engine import Attrs, Snapshot, StopReason
from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    MissingDependencyError,
    TargetGoneError,
)
from damon_bpf.session.monitor import DEFAULT_ATTRS, Monitor, MonitorSpec, synthetic_pattern_for_workload
from damon_bpf.workload import disk_backed_dir
from damon_bpf.linux.process import spawn, terminate

__all__ = (
    "SOURCES",
    "DEFAULT_SOURCES",
    "REFERENCE_SOURCE",
    "SourceSpec",
    "parse_sources",
    "source_spec",
    "SourceResult",
    "PairResult",
    "ComparisonResult",
    "Comparison",
    "interference_note",
    "write_heatmap",
)

log = logging.getLogger(__name__)

#: The fixed source names (``perf:EVENTS`` comes on top), with their ops id and constructor options.
SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "pte": ("pte", {}),
    "fault": ("fault", {}),
    "fault+numa": ("fault", {"numa_hint_faults": True}),
    "fault+pageout": ("fault", {"probe": "pageout"}),
    "perf": ("perf", {}),
    "synthetic": ("synthetic", {}),
}
#: What ``damon-bpf compare`` runs without ``--sources`` (plus ``synthetic`` with the bundled workload).
DEFAULT_SOURCES = ("pte", "fault", "fault+numa", "fault+pageout", "perf")
#: The kernel's own access check (PTE Accessed bits): every other source's agreement with it is shown.
REFERENCE_SOURCE = "pte"
#: Sources whose re-arming makes pages fault for every fault-based source running at the same time.
_REARMING = ("fault+numa", "fault+pageout")
#: Addresses of target *i* are shifted by ``i << _TARGET_SHIFT`` when the hot sets of several processes are put
#: in one interval set (user-space addresses are below 2**47 on x86-64 and arm64 with 4-level tables).
_TARGET_SHIFT = 48
#: Whether a phase change "shows": the detected hot set covers this share of the new phase's hot bytes.
MIN_RECALL_SEEN = 0.5
#: How long to wait for a source's thread to end once asked to (its cleanup detaches BPF programs).
_JOIN_TIMEOUT_S = 120.0
@dataclass(frozen=True)
class SourceSpec:
    """One source of a comparison: its display name, the ops id and the ops constructor's options."""

    name: str
    ops_id: str
    options: dict[str, Any] = field(default_factory=dict)


def _is_source_word(word: str) -> bool:
    return word in SOURCES or word.startswith("perf:")


def parse_sources(text: str) -> list[str]:
    """Split a ``--sources`` list: comma-separated names, where the events of ``perf:EVENTS`` may contain
    commas themselves (``perf:mem-loads,mem-stores,fault`` is two sources), also inside ``/.../`` terms.

    :raises InvalidParamsError: an unknown or repeated name, or an empty list
    """
    words: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "/":
            depth ^= 1
        if ch == "," and not depth:
            words.append(cur)
            cur = ""
        else:
            cur += ch
    words.append(cur)
    out: list[str] = []
    for w in (w.strip() for w in words):
        if not w:
            raise InvalidParamsError(f"--sources: empty name in {text!r}")
        if _is_source_word(w):
            if w == "perf:":
                raise InvalidParamsError("--sources: perf: needs event names, e.g. perf:page-faults")
            out.append(w)
        elif out and out[-1].startswith("perf:"):
            out[-1] += "," + w  # one more event of the perf:EVENTS before it
        else:
            raise InvalidParamsError(f"--sources: unknown source {w!r} (known: {', '.join(SOURCES)}, perf:EVENTS)")
    seen: set[str] = set()
    for name in out:
        if name in seen:
            raise InvalidParamsError(f"--sources: {name} is listed twice")
        seen.add(name)
    return out


def source_spec(name: str, *, rate_limit: int = 200_000, bpf_stats: bool = True,
                synthetic_pattern: dict[str, Any] | None = None, seed: int | None = None) -> SourceSpec:
    """The :class:`SourceSpec` of a source name (see the module docstring).

    :param synthetic_pattern: the pattern the ``synthetic`` source follows (required for it)
    :raises InvalidParamsError: unknown name, or ``synthetic`` without a pattern
    """
    if name.startswith("perf:"):
        ops_id = "perf"
        options: dict[str, Any] = {"events": name[len("perf:"):]}
    elif name in SOURCES:
        ops_id, options = SOURCES[name][0], dict[str, Any](SOURCES[name][1])
    else:
        raise InvalidParamsError(f"unknown source {name!r} (known: {', '.join(SOURCES)}, perf:EVENTS)")
    if ops_id in ("fault", "perf"):
        options["rate_limit"] = rate_limit
        options["bpf_stats"] = bpf_stats
    elif ops_id == "synthetic":
        if synthetic_pattern is None:
            raise InvalidParamsError("the synthetic source follows the bundled workload's ground truth: "
                                     "it needs --workload")
        options["pattern"] = synthetic_pattern
        options["seed"] = seed
    return SourceSpec(name, ops_id, options)


def interference_note(names: Sequence[str], sequential: bool) -> str | None:
    """The warning that goes with sources run at once that see each other's re-arming, or ``None``."""
    if sequential:
        return None
    rearm = [n for n in names if n in _REARMING]
    seers = [n for n in names if n.startswith("fault") or n.startswith("perf")]
    notes = []
    if rearm and len(seers) >= 2:
        notes.append(f"the faults that {' and '.join(rearm)} cause by re-arming pages are seen by every fault-based "
                     "source (fault, fault+*, perf with software page faults), so they read more than they would "
                     "alone")
    if REFERENCE_SOURCE in names and "fault+pageout" in names:
        notes.append("pages that fault+pageout made non-present read as not accessed to pte until they fault back")
    if not notes:
        return None
    return f"sources ran at once: {'; '.join(notes)}; --sequential runs them one after the other"


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


# -- running ---------------------------------------------------------------------------------------------------


class _Run:
    """One source's monitor, its thread and what its snapshot consumer collected."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.res = SourceResult(spec.name, spec.ops_id)
        self.mon: Monitor | None = None
        self.thread: threading.Thread | None = None
        self.first: tuple[float, float, dict[str, Any]] | None = None
        self.last: tuple[float, float, dict[str, Any]] | None = None
        self._own_cpu = 0.0  # CPU the consumer spent on itself, excluded from the monitor's
        self._own_cpu_first = 0.0
        self._own_cpu_last = 0.0
        self._cleaned = False

    def open(self, pids: list[int], attrs: Attrs, seed: int | None) -> None:
        spec = MonitorSpec(pids=list(pids), source=self.spec.ops_id, source_options=dict(self.spec.options),
                           attrs=copy.deepcopy(attrs), seed=seed)
        mon: Monitor | None = None
        try:
            mon = Monitor(spec, [self._consume])
            mon.open()
        except Exception as err:  # any source that cannot start is listed with the reason; the others go on
            if not isinstance(err, (DamonBpfError, OSError)):
                log.warning("source %s: unexpected error while starting", self.spec.name, exc_info=True)
            if mon is not None:
                mon.close()
            self.res.status, self.res.reason = "not run", _one_line(err)
            return
        # bcc's compile and teardown are serialised inside damon_bpf.probes, so the sources' cleanups may run in
        # their own kdamond threads (when stopped, or when the target exits)
        ops = mon.ctx.ops if mon.ctx else None
        self.res.attach = ops.attach_point if ops is not None else ""
        self.res.notes = [str(n) for n in ops.notes] if ops is not None else []
        self.mon = mon

    def start(self) -> None:
        assert self.mon is not None
        self.res.started_at = time.monotonic()
        self.thread = threading.Thread(target=self._body, name=f"kdamond-{self.spec.name}", daemon=True)
        self.thread.start()

    def _body(self) -> None:
        assert self.mon is not None
        try:
            self.res.stop_reason = self.mon.run().value
            self.res.status = "ok"
        except BaseException as err:  # reported as this source's failure; the others go on
            log.debug("source %s failed", self.spec.name, exc_info=True)
            self.res.status, self.res.reason = "failed", _one_line(err)
            self.res.stop_reason = StopReason.ERROR.value

    def _consume(self, snap: Snapshot) -> None:
        # runs in the kdamond thread, at every aggregation boundary
        started = self.res.started_at
        if started is None or snap.time_ns < started * 1e9:
            return  # the window from the kdamond's init to its start (others were opening): stale, left out
        c0 = time.thread_time()
        own_before = self._own_cpu
        self.res.snapshots.append(snap)
        counters = _counters(self.mon)
        now = time.monotonic()
        if self.first is None:
            self.first = (now, c0, counters)
            self._own_cpu_first = own_before
        self.last = (now, c0, counters)
        self._own_cpu_last = own_before
        self._own_cpu += time.thread_time() - c0

    def stop(self) -> None:
        if self.mon is not None:
            self.mon.stop()

    def join(self, timeout: float) -> None:
        if self.thread is None and self.mon is not None and not self._cleaned:
            # opened but never started (stopped while the others were opening): run the stopped kdamond once
            # so the ops' cleanup detaches the BPF programs and restores sysctls
            self.mon.stop()
            try:
                self.mon.run()
            except BaseException:
                log.debug("cleaning up %s failed", self.spec.name, exc_info=True)
            self.res.reason = self.res.reason or "stopped before it started"
            self._cleaned = True
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("source %s did not stop within %.0f s", self.spec.name, timeout)
        if self.mon is not None:
            self.mon.close()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def cost(self) -> None:
        """Fill in the cost figures from the first and last snapshot's counters."""
        res = self.res
        res.nr_snapshots = len(res.snapshots)
        if self.first is None or self.last is None:
            return
        (t0, c0, k0), (t1, c1, k1) = self.first, self.last
        res.window_s = t1 - t0

        def delta(key: str) -> int | None:
            # counted within the window only: a BPF program counts from its attach, while others still open
            return k1[key] - k0[key] if key in k0 and key in k1 else None

        res.events = delta("events")
        res.dropped = delta("dropped")
        res.probed_pages = delta("probed_pages")
        if res.window_s > 0:
            cpu = max(0.0, (c1 - c0) - (self._own_cpu_last - self._own_cpu_first))
            res.cpu_s = cpu
            res.cpu_pct = 100.0 * cpu / res.window_s
            if res.events is not None:
                res.events_per_s = res.events / res.window_s
        r0, r1 = k0.get("run"), k1.get("run")
        if r0 is not None and r1 is not None and r1[1] > r0[1]:
            res.bpf_ns_per_event = (r1[0] - r0[0]) / (r1[1] - r0[1])


def _counters(mon: Monitor | None) -> dict[str, Any]:
    """Cumulative counters of a source: events (BPF events or generated reports), rate-limit drops, probed pages
    and the BPF programs' ``(run_time_ns, run_cnt)``."""
    if mon is None:
        return {}
    try:
        st = mon.source_stats()
    except Exception:  # a counter read failing must not stop the monitor
        log.debug("reading source stats failed", exc_info=True)
        return {}
    out: dict[str, Any] = {}
    if "events" in st:
        out["events"] = int(st["events"])
    elif "generated" in st:
        out["events"] = int(st["generated"])
    if "dropped_rate_limit" in st:
        out["dropped"] = int(st["dropped_rate_limit"])
    if "probed_pages" in st:
        out["probed_pages"] = int(st["probed_pages"])
    if "bpf_run_ns" in st and "bpf_run_cnt" in st:
        out["run"] = (int(st["bpf_run_ns"]), int(st["bpf_run_cnt"]))
    return out


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(err, DamonBpfError) and line:
        return line
    return f"{type(err).__name__}: {line}" if line else type(err).__name__




class Comparison:
    """Run several access sources on the same processes and score them (see the module docstring).

    Give the processes as *pids*, as a *command* to spawn, or as a bundled *workload* pattern (``hotcold``,
    ``stairs``, ``zigzag``) started here with file-backed regions under ``/var/tmp`` (so ``fault+pageout`` can
    probe them without swap) and scored against its ground truth.

    :param sources: source names (:func:`parse_sources`)
    :param duration_s: how long the sources run (each, when *sequential*)
    :param settle_s: snapshots of a source's first *settle_s* seconds are left out of the medians (regions
        have not adapted yet); all are used when that leaves none
    :param sequential: run the sources one after the other instead of at once (no interference)
    :param progress: called with one-line progress messages (the CLI prints them)
    :raises InvalidParamsError: bad parameters
    """

    def __init__(self, sources: Sequence[str], *, pids: Sequence[int] = (), command: Sequence[str] | None = None,
                 workload: str | None = None, workload_threads: int = 2, attrs: Attrs | None = None,
                 duration_s: float = 10.0, settle_s: float = 1.0, sequential: bool = False,
                 hot_fraction: float = scoring.HOT_FRACTION, rate_limit: int = 200_000, bpf_stats: bool = True,
                 seed: int | None = None, command_stdout_to_stderr: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        names = list(sources)
        if not names:
            raise InvalidParamsError("no sources to compare")
        for n in names:
            if not _is_source_word(n):
                raise InvalidParamsError(f"unknown source {n!r} (known: {', '.join(SOURCES)}, perf:EVENTS)")
        if len(set(names)) != len(names):
            raise InvalidParamsError("a source is listed twice")
        given = sum(1 for x in (bool(pids), bool(command), workload is not None) if x)
        if given == 0:
            raise InvalidParamsError("nothing to compare on: give pids, -- CMD, or --workload PATTERN")
        if given > 1:
            raise InvalidParamsError("give pids, -- CMD or --workload, only one of them")
        if "synthetic" in names and workload is None:
            raise InvalidParamsError("the synthetic source follows the bundled workload's ground truth: "
                                     "it needs --workload")
        if workload is not None:
            from damon_bpf.workload import BUILTIN_PATTERNS

            if workload not in BUILTIN_PATTERNS:
                raise InvalidParamsError(f"unknown workload {workload!r} (choose {', '.join(BUILTIN_PATTERNS)})")
            if not 1 <= workload_threads <= 64:
                raise InvalidParamsError("workload threads must be between 1 and 64")
        for pid in pids:
            if pid <= 0:
                raise InvalidParamsError(f"invalid pid {pid}")
        if not duration_s > 0 or not math.isfinite(duration_s):
            raise InvalidParamsError("the duration must be positive")
        if settle_s < 0:
            raise InvalidParamsError("the settle time must not be negative")
        if not 0 <= hot_fraction <= 1:
            raise InvalidParamsError("the hot fraction must lie within [0, 1]")
        if rate_limit < 0:
            raise InvalidParamsError("the rate limit must not be negative")
        self.names = names
        self.pids = list(pids)
        self.command = list(command) if command else None
        self.workload = workload
        self.workload_threads = workload_threads
        self.attrs = copy.deepcopy(attrs) if attrs is not None else copy.deepcopy(DEFAULT_ATTRS)
        self.attrs.validate()
        self.duration_s = float(duration_s)
        self.settle_s = float(settle_s)
        self.sequential = sequential
        self.hot_fraction = hot_fraction
        self.rate_limit = rate_limit
        self.bpf_stats = bpf_stats
        self.seed = seed
        self.command_stdout_to_stderr = command_stdout_to_stderr
        self._progress = progress or (lambda msg: None)
        self._stop = threading.Event()
        self._runs: list[_Run] = []

    def stop(self) -> None:
        """End the comparison early (safe from a signal handler or another thread); :meth:`run` still scores
        what was collected."""
        self._stop.set()
        for r in list(self._runs):
            r.stop()

    # -- the session ---------------------------------------------------------------------------------------

    def run(self) -> ComparisonResult:
        """Start the target (workload or command) if asked, run the sources, stop everything, score.

        :raises TargetGoneError: a pid does not exist
        :raises DamonBpfError: the workload or command could not be started
        """
        self._stop.clear()
        for pid in self.pids:
            if not os.path.exists(f"/proc/{pid}"):
                raise TargetGoneError(pid, f"no such process: {pid}")
        child: subprocess.Popen[bytes] | None = None
        tmp: tempfile.TemporaryDirectory[str] | None = None
        stats_override: Any = None
        truth_path: str | None = None
        notes: list[str] = []
        started_at = time.monotonic()
        try:
            pids = list(self.pids)
            synthetic_pattern = None
            if self.workload is not None:
                tmp = tempfile.TemporaryDirectory(prefix="damon-bpf-compare-")
                truth_path = os.path.join(tmp.name, "truth.jsonl")
                child = self._start_workload(truth_path)
                pids = [child.pid]
                synthetic_pattern = self._synthetic_pattern(truth_path)
            elif self.command:
                try:
                    child = spawn(
                        self.command, stdout=sys.stderr.fileno() if self.command_stdout_to_stderr else None)
                except OSError as err:
                    raise InvalidParamsError(f"cannot run {self.command[0]!r}: {err.strerror}") from err
                pids = [child.pid]
            specs = [source_spec(n, rate_limit=self.rate_limit, bpf_stats=self.bpf_stats,
                                 synthetic_pattern=synthetic_pattern, seed=self.seed) for n in self.names]
            self._runs = [_Run(s) for s in specs]
            if self.bpf_stats and any(s.ops_id != "synthetic" for s in specs):
                stats_override = self._enable_bpf_stats(notes)
            started_at = time.monotonic()
            if self.sequential:
                self._run_sequential(pids)
            else:
                self._run_concurrent(pids)
        finally:
            for r in self._runs:
                r.stop()
            for r in self._runs:
                r.join(_JOIN_TIMEOUT_S)
            if stats_override is not None:
                try:
                    stats_override.restore()
                except Exception:
                    log.exception("restoring kernel.bpf_stats_enabled failed")
            if child is not None:
                terminate(child)
        try:
            truth = None
            if truth_path is not None:
                from damon_bpf.workload import load_truth

                try:
                    truth = load_truth(truth_path)
                except DamonBpfError as err:
                    notes.append(f"cannot read the workload's ground truth: {err}")
        finally:
            if tmp is not None:
                tmp.cleanup()
        begun = [r.res.started_at for r in self._runs if r.res.started_at is not None]
        if begun:
            started_at = min(begun)
        note = interference_note([r.spec.name for r in self._runs if r.res.status != "not run"], self.sequential)
        if note:
            notes.append(note)
        return self._score(pids, truth, notes, started_at)

    def _enable_bpf_stats(self, notes: list[str]) -> Any:
        # One override for the whole comparison: the sources' own overrides then find the value set and leave it
        # alone, so one source ending first cannot switch the statistics off under the others.
        if os.geteuid() != 0:
            return None
        from damon_bpf.linux.sysctl import SysctlOverride

        try:
            return SysctlOverride("kernel.bpf_stats_enabled", "1").apply()
        except (DamonBpfError, OSError) as err:
            notes.append(f"BPF run-time statistics unavailable: {_one_line(err)}")
            return None

    def _start_workload(self, truth_path: str) -> subprocess.Popen[bytes]:
        assert self.workload is not None
        cmd = [sys.executable, "-m", "damon_bpf.workload", "--pattern", self.workload, "--threads",
               str(self.workload_threads), "--truth", truth_path, "--quiet", "--file-backed", disk_backed_dir()]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        self._progress(f"starting the bundled workload: damon-bpf-workload --pattern {self.workload} "
                       f"--threads {self.workload_threads} --file-backed {disk_backed_dir()}")
        try:
            proc = spawn(cmd, stdout=subprocess.DEVNULL)
        except OSError as err:
            raise DamonBpfError(f"cannot start the bundled workload: {err.strerror}") from err
        try:
            deadline = time.monotonic() + 60.0
            while True:
                if proc.poll() is not None:
                    raise DamonBpfError(f"the bundled workload exited early (exit code {proc.returncode})")
                try:
                    with open(truth_path) as f:
                        if f.readline().endswith("\n"):
                            return proc
                except FileNotFoundError:
                    pass
                if self._stop.is_set():
                    raise DamonBpfError("stopped while the bundled workload was starting")
                if time.monotonic() > deadline:
                    raise DamonBpfError("the bundled workload did not start within 60 s")
                time.sleep(0.05)
        except BaseException:
            terminate(proc)
            raise

    def _synthetic_pattern(self, truth_path: str) -> dict[str, Any]:
        from damon_bpf.workload import builtin_pattern, load_truth

        truth = load_truth(truth_path)
        assert self.workload is not None
        return synthetic_pattern_for_workload(truth.start, builtin_pattern(self.workload))

    def _open(self, run: _Run, pids: list[int], index: int) -> None:
        self._progress(f"opening {run.spec.name}")
        seed = None if self.seed is None else self.seed + index
        run.open(pids, self.attrs, seed)
        if run.mon is None:
            self._progress(f"{run.spec.name}: not run: {run.res.reason}")

    def _run_concurrent(self, pids: list[int]) -> None:
        for i, run in enumerate(self._runs):
            if self._stop.is_set():
                break
            self._open(run, pids, i)
        live = [r for r in self._runs if r.mon is not None]
        if not live or self._stop.is_set():
            return
        self._progress(f"running {len(live)} source(s) at once for {self.duration_s:g} s")
        for r in live:
            r.start()
        self._wait(live)

    def _run_sequential(self, pids: list[int]) -> None:
        for i, run in enumerate(self._runs):
            if self._stop.is_set():
                run.res.reason = "stopped before its turn"
                continue
            self._open(run, pids, i)
            if run.mon is None:
                continue
            self._progress(f"running {run.spec.name} for {self.duration_s:g} s")
            run.start()
            self._wait([run])
            run.stop()
            run.join(_JOIN_TIMEOUT_S)

    def _wait(self, live: list[_Run]) -> None:
        deadline = time.monotonic() + self.duration_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not any(r.running for r in live):
                break
            self._stop.wait(min(left, 0.2))
        for r in live:
            r.stop()

    # -- scoring -------------------------------------------------------------------------------------------

    def _score(self, pids: list[int], truth: Any, notes: list[str], started_at: float) -> ComparisonResult:
        scope_named: list[tuple[str, int, int]] | None = None
        scope: scoring.Intervals | None = None
        phases: list[Any] = []
        changes: list[scoring.PhaseChange] = []
        if truth is not None:
            scope_named = [(r.name, r.start, r.end) for r in truth.start.regions]
            scope = scoring.normalize([(s, e) for _, s, e in scope_named])
            phases = list(truth.phases)
            changes = scoring.phase_changes(phases)
        aggr_s = self.attrs.aggr_interval_us / 1e6
        truth_hot: list[int] = []
        for run in self._runs:
            run.cost()
            res = run.res
            if not res.snapshots:
                continue
            start = res.started_at if res.started_at is not None else res.snapshots[0].time_ns / 1e9 - aggr_s
            hots: list[tuple[float, scoring.Intervals]] = []
            settled: list[tuple[float, scoring.Intervals, int, int]] = []
            for snap in res.snapshots:
                t = snap.time_ns / 1e9
                hot = _hot_of(snap, self.hot_fraction)
                hots.append((t, hot))
                if t >= start + self.settle_s:
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
        pairs = self._pairs()
        return ComparisonResult(
            pids=pids, mode="sequential" if self.sequential else "concurrent", duration_s=self.duration_s,
            attrs=copy.deepcopy(self.attrs), settle_s=self.settle_s, hot_fraction=self.hot_fraction,
            sources=[r.res for r in self._runs], pairs=pairs, workload=self.workload,
            truth_hot_bytes=int(np.median(truth_hot)) if truth_hot else None, scope=scope_named, notes=notes,
            started_at=started_at, truth_phases=phases)

    def _pairs(self) -> list[PairResult]:
        done = [r.res for r in self._runs if r.res._hot]
        out = []
        tol = self.attrs.aggr_interval_us / 1e6 / 2 + 1e-3
        for i, a in enumerate(done):
            for b in done[i + 1:]:
                if self.sequential:
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


def _axis_segments(result: ComparisonResult) -> list[tuple[int, int, str]]:
    if result.scope:
        return [(s, e, n) for n, s, e in sorted(result.scope, key=lambda x: x[1])]
    parts = [np.stack([s.targets[0].start, s.targets[0].end], axis=1)
             for src in result.sources for s in src.snapshots if s.targets]
    cov = scoring.normalize(np.concatenate(parts)) if parts else scoring.normalize([])
    return [(int(s), int(e), f"{int(s):#x}") for s, e in cov.tolist()]


def _bin_addresses(segs: list[tuple[int, int, str]], nbins: int, sub: int) -> np.ndarray:
    # sample addresses of each bin of the compressed address axis (the segments put end to end)
    sizes = np.array([e - s for s, e, _ in segs], dtype=np.float64)
    off = np.concatenate([[0.0], np.cumsum(sizes)])
    x = (np.arange(nbins * sub) + 0.5) / (nbins * sub) * off[-1]
    k = np.clip(np.searchsorted(off, x, side="right") - 1, 0, len(segs) - 1)
    starts = np.array([s for s, _, _ in segs], dtype=np.float64)
    out: np.ndarray = (starts[k] + (x - off[k])).astype(np.int64)
    return out


def _heat(snap: Snapshot, addrs: np.ndarray, nbins: int, sub: int) -> np.ndarray:
    t = snap.targets[0]
    vals = np.zeros(addrs.size)
    if t.start.size:
        i = np.searchsorted(t.start, addrs, side="right") - 1
        ok = (i >= 0) & (addrs < t.end[np.maximum(i, 0)])
        vals[ok] = t.nr_accesses[i[ok]] / max(snap.max_nr_accesses, 1)
    heat: np.ndarray = vals.reshape(nbins, sub).mean(axis=1)
    return heat


def write_heatmap(result: ComparisonResult, path: str, nbins: int = 200) -> None:
    """Write a PNG with one time x address heatmap per source that ran (the first target's regions; brightness:
    ``nr_accesses / max_nr_accesses``), side by side, plus the ground truth's hot ranges for the workload.

    The address axis is the workload's regions, or else the address ranges the regions covered, put end to end
    (gaps between them left out).

    :raises MissingDependencyError: matplotlib is not installed
    :raises DamonBpfError: nothing to draw, or the file cannot be written
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError("--png needs matplotlib (pip install matplotlib)") from err
    srcs = [s for s in result.sources if s.snapshots]
    if not srcs:
        raise DamonBpfError("no source produced snapshots: nothing to draw")
    segs = _axis_segments(result)
    if not segs:
        raise DamonBpfError("no address ranges to draw")
    sub = 8
    addrs = _bin_addresses(segs, nbins, sub)
    total = sum(e - s for s, e, _ in segs)
    t0 = result.started_at
    aggr_s = result.attrs.aggr_interval_us / 1e6
    panels = len(srcs) + (1 if result.truth_phases else 0)
    fig, axes = plt.subplots(1, panels, figsize=(2.4 * panels + 1.6, 4.8), sharey=True, squeeze=False,
                             constrained_layout=True)
    yedges = np.linspace(0, total / (1 << 20), nbins + 1)
    mesh = None
    ax_list = list(axes[0])
    for ax, src in zip(ax_list, srcs):
        times = np.array([s.time_ns / 1e9 - t0 for s in src.snapshots])
        xedges = np.concatenate([[times[0] - aggr_s], times])
        if np.any(np.diff(xedges) <= 0):
            xedges = np.arange(times.size + 1) * aggr_s + times[0] - aggr_s
        z = np.stack([_heat(s, addrs, nbins, sub) for s in src.snapshots], axis=1)
        mesh = ax.pcolormesh(xedges, yedges, z, cmap="inferno", vmin=0.0, vmax=1.0, shading="flat")
        ax.set_title(src.name, fontsize=9)
        ax.set_xlabel("seconds")
    if result.truth_phases:
        ax = ax_list[-1]
        tbeg = min(s.snapshots[0].time_ns / 1e9 for s in srcs) - t0 - aggr_s
        tend = max(s.snapshots[-1].time_ns / 1e9 for s in srcs) - t0
        times = np.arange(tbeg + aggr_s / 2, max(tend, tbeg + aggr_s), aggr_s)
        z = np.zeros((nbins, times.size))
        for j, tt in enumerate(times):
            pi = scoring.dominant_phase(result.truth_phases, t0 + tt, t0 + tt)
            if pi is None:
                continue
            hot = scoring.normalize(result.truth_phases[pi].hot_ranges)
            if hot.shape[0]:
                i = np.searchsorted(hot[:, 0], addrs, side="right") - 1
                ok = (i >= 0) & (addrs < hot[np.maximum(i, 0), 1])
                z[:, j] = ok.reshape(nbins, sub).mean(axis=1)
        xedges = np.concatenate([times - aggr_s / 2, [times[-1] + aggr_s / 2]])
        ax.pcolormesh(xedges, yedges, z, cmap="inferno", vmin=0.0, vmax=1.0, shading="flat")
        ax.set_title("ground truth (hot)", fontsize=9)
        ax.set_xlabel("seconds")
    # segment boundaries as lines; names (workload regions) in the middle, or start addresses, as labels
    off = 0
    bounds, ticks, labels = [], [], []
    for s, e, name in segs:
        bounds.append(off / (1 << 20))
        ticks.append((off + (e - s) / 2 if result.scope else off) / (1 << 20))
        labels.append(name)
        off += e - s
    if len(segs) > 12:
        keep = np.linspace(0, len(segs) - 1, 12).astype(int)
        ticks, labels = [ticks[i] for i in keep], [labels[i] for i in keep]
    ax0 = ax_list[0]
    ax0.set_yticks(ticks)
    ax0.set_yticklabels(labels, fontsize=7)
    ax0.set_ylabel("address (" + ("the workload's regions" if result.scope else "mapped ranges, gaps left out")
                   + ")")
    for ax in ax_list:
        for b in bounds[1:]:
            ax.axhline(b, color="white", linewidth=0.4, alpha=0.5)
    if mesh is not None:
        fig.colorbar(mesh, ax=ax_list, label="nr_accesses / max_nr_accesses", shrink=0.8)
    how = "one after the other" if result.mode == "sequential" else "at once"
    fig.suptitle(f"damon-bpf compare: pid {' '.join(map(str, result.pids))}"
                 f"{' (' + result.workload + ')' if result.workload else ''}, sources run {how}; "
                 "seconds since the start", fontsize=9)
    try:
        from damon_bpf.linux.files import save_figure

        save_figure(fig, path, dpi=100)  # exactly path, never through a symlink or into a device
    finally:
        plt.close(fig)
