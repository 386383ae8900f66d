"""Several access sources on one target, side by side: the library behind ``damon-bpf compare``.

A :class:`Comparison` runs each chosen source with its own engine (a
:class:`~damon_bpf.session.monitor.Monitor`, whose kdamond runs in its own thread) on the same processes with
identical monitoring attributes, and scores the results (:mod:`damon_bpf.eval.compare_report`): cost (events,
drops, BPF run time, the kdamond thread's CPU time), what each saw (WSS, hot bytes, pairwise agreement), and,
with the bundled workload, precision, recall and phase-change delay against its ground truth.

**Sources**: the names of :func:`damon_bpf.ops.sources.compare_names` (``pte``, ``fault``, ``fault+numa``,
``fault+pageout``, ``perf``, ``perf:EVENTS``, and ``synthetic`` on the bundled workload only), each standing for
a source and its options (:meth:`~damon_bpf.ops.sources.base.SourceDescriptor.compare_variants`).

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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from damon_bpf.engine import Attrs, Snapshot, StopReason
from damon_bpf.errors import DamonBpfError, InvalidParamsError, TargetGoneError
from damon_bpf.eval import scoring
from damon_bpf.eval.compare_report import (
    MIN_RECALL_SEEN,
    ComparisonResult,
    PairResult,
    SourceResult,
    score,
    write_heatmap,
)
from damon_bpf.linux.process import is_running, spawn, terminate
from damon_bpf.ops import sources as access_sources
from damon_bpf.ops.sources import SharedSettings, SourceOptions
from damon_bpf.ops.sources.synthetic import synthetic_pattern_for_workload
from damon_bpf.session.monitor import DEFAULT_ATTRS, Monitor, MonitorSpec
from damon_bpf.workload import disk_backed_dir

__all__ = (
    "DEFAULT_SOURCES",
    "MIN_RECALL_SEEN",
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

#: What ``damon-bpf compare`` runs without ``--sources`` (plus ``synthetic`` with the bundled workload).
DEFAULT_SOURCES = tuple(access_sources.compare_default_names())
#: The kernel's own access check (PTE Accessed bits): every other source's agreement with it is shown.
REFERENCE_SOURCE = access_sources.reference_source().name
#: How long to wait for a source's thread to end once asked to (its cleanup detaches BPF programs).
_JOIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SourceSpec:
    """One source of a comparison: its display name, the ops id and its options."""

    name: str
    ops_id: str
    options: SourceOptions


def parse_sources(text: str) -> list[str]:
    """Split a ``--sources`` list (:func:`damon_bpf.ops.sources.parse_compare_sources`).

    :raises InvalidParamsError: an unknown or repeated name, or an empty list
    """
    return access_sources.parse_compare_sources(text)


def source_spec(name: str, *, rate_limit: int = 200_000, bpf_stats: bool = True,
                synthetic_pattern: dict[str, Any] | None = None, seed: int | None = None) -> SourceSpec:
    """The :class:`SourceSpec` of a source name (:func:`damon_bpf.ops.sources.compare_source`).

    :param synthetic_pattern: the pattern the ``synthetic`` source follows (required for it)
    :raises InvalidParamsError: unknown name, or ``synthetic`` without a pattern
    """
    settings = SharedSettings(rate_limit=rate_limit, bpf_stats=bpf_stats, seed=seed,
                              workload_pattern=synthetic_pattern)
    source, options = access_sources.compare_source(name, settings)
    return SourceSpec(name, source.name, options)


def interference_note(specs: Sequence[SourceSpec], sequential: bool) -> str | None:
    """The warning that goes with sources run at once that see each other's re-arming, or ``None``."""
    if sequential:
        return None
    described = [(sp.name, access_sources.get_source(sp.ops_id), sp.options) for sp in specs]
    rearm = [name for name, d, o in described if d.rearms_faults(o)]
    seers = [name for name, d, o in described if d.counts_faults(o)]
    unmapping = [name for name, d, o in described if d.unmaps_pages(o)]
    reference = [name for name, d, _ in described if d.reference]
    notes = []
    if rearm and len(seers) >= 2:
        notes.append(f"the faults that {' and '.join(rearm)} cause by re-arming pages are seen by every fault-based "
                     "source (fault, fault+*, perf with software page faults), so they read more than they would "
                     "alone")
    if reference and unmapping:
        notes.append(f"pages that {' and '.join(unmapping)} made non-present read as not accessed to "
                     f"{reference[0]} until they fault back")
    if not notes:
        return None
    return f"sources ran at once: {'; '.join(notes)}; --sequential runs them one after the other"


# -- running ---------------------------------------------------------------------------------------------------


class _SourceSession:
    """One source's monitoring session in a comparison: its monitor, the thread that runs it, and what its
    snapshot consumer collected (the snapshots, and the counters and CPU time at the first and last)."""

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
        spec = MonitorSpec(pids=list(pids), source=self.spec.ops_id, source_options=self.spec.options,
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
        blind = access_sources.get_source(self.spec.ops_id).blind_to_resident(self.spec.options)
        if blind:
            self.res.notes.append(blind)
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
            if not access_sources.is_compare_name(n):
                raise InvalidParamsError(f"unknown source {n!r} (known: {access_sources.compare_known()})")
        if len(set(names)) != len(names):
            raise InvalidParamsError("a source is listed twice")
        given = sum(1 for x in (bool(pids), bool(command), workload is not None) if x)
        if given == 0:
            raise InvalidParamsError("nothing to compare on: give pids, -- CMD, or --workload PATTERN")
        if given > 1:
            raise InvalidParamsError("give pids, -- CMD or --workload, only one of them")
        if workload is None:
            for n in names:  # a source that follows the workload's ground truth says what it needs
                access_sources.compare_source(n)
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
        self._runs: list[_SourceSession] = []

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
            if not is_running(pid):
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
            self._runs = [_SourceSession(s) for s in specs]
            if self.bpf_stats and any(access_sources.get_source(s.ops_id).loads_bpf for s in specs):
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
        note = interference_note([r.spec for r in self._runs if r.res.status != "not run"], self.sequential)
        if note:
            notes.append(note)
        for r in self._runs:
            r.cost()
        return score([r.res for r in self._runs], pids=pids, attrs=self.attrs, duration_s=self.duration_s,
                     settle_s=self.settle_s, hot_fraction=self.hot_fraction, sequential=self.sequential,
                     workload=self.workload, truth=truth, notes=notes, started_at=started_at)

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

    def _open(self, run: _SourceSession, pids: list[int], index: int) -> None:
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

    def _wait(self, live: list[_SourceSession]) -> None:
        deadline = time.monotonic() + self.duration_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not any(r.running for r in live):
                break
            self._stop.wait(min(left, 0.2))
        for r in live:
            r.stop()
