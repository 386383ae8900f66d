"""Shared helpers of the benches (``bench/accuracy.py``, ``bench/overhead.py``, ``bench/pte_cost.py``,
``bench/wss.py``, ``bench/many_targets.py``, ``bench/refaults.py``, ...).

Three parts:

- **Bench statistics** (no I/O, unit-tested in ``tests/unit/test_bench_scoring.py``): workload throughput from
  ground-truth phase records, slowdown, CPU per event, summaries ("once settled" medians), goals and the text
  table. Scoring the monitor's output against the truth (interval sets, hot sets, precision and recall by
  bytes, working-set-size error, phase-change delays) is :mod:`damon_bpf.eval.scoring`, as in ``damon-bpf compare``.
- **Process plumbing**: starting the bundled workload (or ``tests/kernel/toucher.py``) and waiting for it,
  running one :class:`~damon_bpf.session.monitor.Monitor` session for a measured window (CPU time, source stats, BPF
  program run time, snapshots) with a source named as ``damon-bpf compare`` names it
  (:func:`damon_bpf.eval.compare.source_spec`), ending every child on the way out
  (:func:`damon_bpf.linux.process.terminate`), and a guard that puts back any sysctl found changed at the end
  (the library restores its own overrides, :class:`damon_bpf.linux.sysctl.SysctlOverride`; the guard is the bench's
  belt and braces).
- **Working sets** (``bench/wss.py``, ``bench/many_targets.py``): the classic reference (``clear_refs``, a
  window, ``Referenced:`` of ``smaps_rollup``; parsers unit-tested in ``tests/unit/test_bench_wss.py``), a
  snapshot consumer that records the monitor's ``working_set_bytes`` where the library has it (issue #16) and a
  labelled fallback where it does not, and ``bench/wss_target.py`` as a child process.

The bench scripts are not a package: they import this file with ``sys.path`` set to ``bench/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
TOUCHER = REPO / "tests" / "kernel" / "toucher.py"
MiB = 1 << 20

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from damon_bpf.eval import scoring as S  # noqa: E402
from damon_bpf.eval.compare import SourceSpec, parse_sources, source_spec  # noqa: E402
from damon_bpf.errors import NotSupportedError  # noqa: E402
from damon_bpf.linux.process import on_signals, terminate  # noqa: E402
from damon_bpf.linux.sysctl import STATE_DIR, held_sysctls, read_sysctl  # noqa: E402
from damon_bpf.workload import disk_backed_dir as file_dir  # the benches import it from here

# ================================================================================================ statistics
# Scoring of monitoring results (interval sets, hot sets, precision/recall, WSS error, phase-change delays) is
# damon_bpf.eval.scoring; what follows are the benches' own figures.


def throughput(phases: Iterable[Any], t0: float, t1: float) -> tuple[float | None, float, float]:
    """Touches per second of a workload over ``[t0, t1]``, from its ground-truth phase records.

    A phase record only says how many touches its whole run made; a phase that overlaps the window partly counts
    with the share of its touches that its overlap is of its duration (touches at an even pace within a phase).

    :param phases: ``TruthPhase``-like records (``start``, ``end``, ``regions[i].nr_touches``)
    :return: (touches/s or ``None`` when no phase overlaps, touches counted, seconds of phases counted)
    """
    touches = 0.0
    secs = 0.0
    for p in phases:
        dur = p.end - p.start
        ov = min(p.end, t1) - max(p.start, t0)
        if dur <= 0 or ov <= 0:
            continue
        touches += sum(int(r.nr_touches) for r in p.regions) * ov / dur
        secs += ov
    return (touches / secs if secs > 0 else None), touches, secs


def slowdown(off: float | None, on: float | None) -> float | None:
    """``1 - on/off``: the share of throughput lost with the monitor on (negative: faster with it on)."""
    if not off or on is None:
        return None
    return 1.0 - on / off


def per_event_ns(cpu_ns: float, events: int) -> float | None:
    """CPU nanoseconds per event (``None`` without events)."""
    return cpu_ns / events if events > 0 else None


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """n, median, mean, min, max, p10 and p90 of the values that are not ``None`` (``n_undefined`` counts
    the others); every figure is ``None`` when there are none."""
    items = list(values)
    vals = [float(v) for v in items if v is not None]
    n_undef = len(items) - len(vals)
    if not vals:
        return {"n": 0, "n_undefined": n_undef, "median": None, "mean": None, "min": None, "max": None,
                "p10": None, "p90": None}
    s = sorted(vals)

    def q(p: float) -> float:
        k = (len(s) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"n": len(s), "n_undefined": n_undef, "median": statistics.median(s), "mean": statistics.fmean(s),
            "min": s[0], "max": s[-1], "p10": q(0.1), "p90": q(0.9)}


def settled(samples: Sequence[Any], t_first: float, skip_s: float, key: Callable[[Any], float] = lambda x: x[0]
            ) -> list[Any]:
    """The samples taken at least *skip_s* seconds after *t_first* ("once settled")."""
    return [x for x in samples if key(x) >= t_first + skip_s]


def goal_met(value: float | None, goal: float, higher_is_better: bool) -> bool | None:
    """Whether *value* meets *goal* (``None`` when there is no value)."""
    if value is None:
        return None
    return value >= goal if higher_is_better else value <= goal


def fmt(value: Any, kind: str = "f2") -> str:
    """Format a figure for the tables: ``None`` as ``-``; kinds ``f2``/``f1``/``f0``, ``pct`` (0.123 ->
    12.3%), ``ns``, ``mib``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pct2":
        return f"{100 * value:.2f}%"
    if kind == "mib":
        return f"{value / MiB:.1f}M"
    if kind == "ns":
        return f"{value:,.0f} ns"
    if kind.startswith("f"):
        return f"{value:.{int(kind[1:])}f}"
    return str(value)


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with left-aligned columns."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ================================================================================================ plumbing

_children: list[subprocess.Popen[Any]] = []
_children_lock = threading.Lock()


def spawn(cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start a child process that :func:`kill_children` will end."""
    proc = subprocess.Popen(list(cmd), **kw)
    with _children_lock:
        _children.append(proc)
    return proc


def stop_child(proc: subprocess.Popen[Any], timeout_s: float = 5.0) -> None:
    """End a child started with :func:`spawn` (:func:`damon_bpf.linux.process.terminate`: SIGTERM, then SIGKILL
    after *timeout_s*; always reaps) and forget it."""
    terminate(proc, timeout_s)
    with _children_lock:
        if proc in _children:
            _children.remove(proc)


def kill_children() -> None:
    """End every child started with :func:`spawn` that still runs."""
    with _children_lock:
        procs = list(_children)
    for p in procs:
        stop_child(p)


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGHUP while :func:`run_main` runs a bench."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int) -> None:
    # SIGTERM/SIGHUP end the bench like Ctrl-C does: with an exception, so every ``finally`` runs (the monitor
    # detaches and restores its sysctls, children are killed)
    raise Terminated(signum)


#: sysctls a run may touch (the library's overrides, and perf's)
GUARDED_SYSCTLS = ("kernel.numa_balancing", "kernel.bpf_stats_enabled", "kernel.perf_event_paranoid",
                   "kernel.perf_event_max_sample_rate", "kernel.task_delayacct")


class SysctlGuard:
    """Checks that a run leaves the guarded sysctls as it found them.

    Not a second :class:`damon_bpf.linux.sysctl.SysctlOverride`: the library changes and restores its own overrides
    (recorded in :data:`damon_bpf.linux.sysctl.STATE_DIR`); this guard changes nothing itself and is the backstop. On
    exit it (1) puts back any override only this process holds there and did not restore
    (:func:`damon_bpf.linux.sysctl.held_sysctls`), and (2) writes back a
    guarded sysctl that differs from its value on entry, unless another live damon-bpf session had it
    overridden on entry or has it overridden now (other sessions on the same machine turn
    ``kernel.numa_balancing`` or ``kernel.bpf_stats_enabled`` on and off themselves; their values are neither a
    baseline nor ours to change). Those are reported in ``left_to_others``."""

    def __init__(self, names: Sequence[str] = GUARDED_SYSCTLS, state_dir: Path = STATE_DIR) -> None:
        self.names = list(names)
        self.state_dir = state_dir
        self.before: dict[str, str] = {}
        self.foreign_at_entry: dict[str, int] = {}
        self.restored: list[str] = []
        self.left_to_others: list[str] = []

    @staticmethod
    def _read(name: str) -> str | None:
        try:
            return read_sysctl(name)
        except (OSError, NotSupportedError):
            return None

    def owned_by_other_session(self, name: str) -> int | None:
        """The pid of another live damon-bpf session that has *name* overridden (it restores it itself)."""
        for held in held_sysctls(self.state_dir):
            if held.name == name:
                return next((p for p in held.pids if p != os.getpid()), None)
        return None

    def __enter__(self) -> SysctlGuard:
        for n in self.names:
            v = self._read(n)
            if v is None:
                continue
            self.before[n] = v
            owner = self.owned_by_other_session(n)
            if owner is not None:
                self.foreign_at_entry[n] = owner
        return self

    def check(self) -> dict[str, tuple[str, str]]:
        """Sysctls whose value is not what it was on entry: name -> (before, now)."""
        out = {}
        for n, v in self.before.items():
            now = self._read(n)
            if now is not None and now != v:
                out[n] = (v, now)
        return out

    def _write(self, name: str, value: str, was: str) -> None:
        try:
            (Path("/proc/sys") / name.replace(".", "/")).write_text(value + "\n")
            self.restored.append(name)
            print(f"bench: restored {name}={value} (was left at {was})", file=sys.stderr)
        except OSError as err:
            print(f"bench: cannot restore {name}={value}: {err}", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        # our own overrides left behind, held by no other session (the library's record stays: its restore at
        # exit, or the watchdog, removes it)
        for held in held_sysctls(self.state_dir):
            if held.pids == (os.getpid(),):
                self._write(held.name, held.original, "an override of this run")
        for n, (v, now) in self.check().items():
            owner = self.foreign_at_entry.get(n) or self.owned_by_other_session(n)
            if owner is not None:
                self.left_to_others.append(f"{n}: {v} -> {now} (session pid {owner})")
                continue
            self._write(n, v, now)




class BundledWorkload:
    """``python -m damon_bpf.workload`` as a child process, with its ground truth in a temporary folder.

    :param file_backed: back the regions with files in :func:`file_dir` (needed for pageout probing here)
    """

    def __init__(self, pattern: str, threads: int = 2, *, file_backed: bool = False, scale: float = 1.0,
                 seed: int | None = 1, duration_s: float | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="damon-bpf-bench-")
        self.truth_path = os.path.join(self._tmp.name, "truth.jsonl")
        self.cmd = [sys.executable, "-m", "damon_bpf.workload", "--pattern", pattern, "--threads", str(threads),
                    "--truth", self.truth_path, "--quiet", "--scale", str(scale)]
        if seed is not None:
            self.cmd += ["--seed", str(seed)]
        if duration_s is not None:
            self.cmd += ["--duration", str(duration_s)]
        if file_backed:
            self.cmd += ["--file-backed", file_dir()]
        self.proc: subprocess.Popen[Any] | None = None
        self.start: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> BundledWorkload:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = spawn(self.cmd, env=env, cwd=str(REPO))
        try:
            self.start = self.wait_start()
        except BaseException:
            self.close()
            raise
        return self

    def wait_start(self, timeout_s: float = 60.0) -> Any:
        """Wait for the ``start`` record; returns it (``TruthStart``)."""
        from damon_bpf.workload import load_truth

        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bundled workload exited early (exit code {self.proc.returncode})")
            try:
                with open(self.truth_path) as f:
                    if f.readline().endswith("\n"):
                        return load_truth(self.truth_path).start
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the bundled workload did not start within {timeout_s:.0f} s")

    def truth(self) -> Any:
        """The ground truth so far (``Truth``)."""
        from damon_bpf.workload import load_truth

        return load_truth(self.truth_path)

    def synthetic_options(self, seed: int = 1) -> dict[str, Any]:
        """Options of the ``synthetic`` source that follow this workload's phases as they run now.

        ``pattern_from_truth`` times the phases from the start record with the config's nominal lengths; the
        real phases run a little longer (the threads' switch), so after a minute that pattern is ahead of the
        workload by a good part of a phase. Here the pattern starts at the end of the last phase recorded so far,
        with the phase that comes next, and the phase lengths scaled to the pace measured so far."""
        from damon_bpf.session.monitor import synthetic_pattern_for_workload
        from damon_bpf.workload import builtin_pattern

        truth = self.truth()
        config = builtin_pattern(truth.start.pattern)
        pat = synthetic_pattern_for_workload(truth.start, config)
        names = [p["name"] for p in pat["phases"]]
        done = truth.phases
        if done and done[-1].name in names:
            nominal = sum(p.duration_s for p in config.phases) / len(config.phases)
            steps = [b.start - a.start for a, b in zip(done, done[1:])]
            scale = (sum(steps) / len(steps) / nominal) if steps and nominal > 0 else 1.0
            k = (names.index(done[-1].name) + 1) % len(names)
            phases = pat["phases"][k:] + pat["phases"][:k]
            for p in phases:
                p["duration_s"] = p["duration_s"] * scale
            pat["phases"] = phases
            pat["start_ns"] = int(done[-1].end * 1e9)
        return {"pattern": pat, "seed": seed}

    def scope(self) -> S.Intervals:
        """The workload's own regions: the address ranges that scoring counts."""
        return S.normalize([(r.start, r.end) for r in self.start.regions])

    def stop(self) -> None:
        """End the workload (it writes the record of the phase it was in); the truth file stays readable."""
        if self.proc is not None:
            stop_child(self.proc)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Toucher:
    """``tests/kernel/toucher.py SIZE HOT - THREADS churn``: keeps dropping and re-touching its hot MiB, so
    page faults keep coming. Prints ``<addr> <size>`` when ready."""

    def __init__(self, size_mib: int = 64, hot_mib: int = 8, threads: int = 1, churn: bool = True) -> None:
        self.cmd = [sys.executable, str(TOUCHER), str(size_mib), str(hot_mib), "-", str(threads),
                    "churn" if churn else "-"]
        self.proc: subprocess.Popen[str] | None = None
        self.addr = self.size = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Toucher:
        self.proc = spawn(self.cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.close()
            raise RuntimeError("toucher.py did not start")
        self.addr, self.size = int(line[0]), int(line[1])
        return self

    def close(self) -> None:
        if self.proc is not None:
            stop_child(self.proc)

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class SourceCase:
    """A source as a bench runs it.

    *source* is a source name of ``damon-bpf compare`` (``pte``, ``fault+pageout``, ``perf:page-faults``, ...):
    its ops id and options come from :func:`damon_bpf.eval.compare.source_spec`; *overrides* are the bench's own
    options on top (``rate_limit=0``, ``cpu_budget=0.0``). *label* names the case in tables and results."""

    label: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    sample_us: int = 5_000
    aggr_us: int = 100_000
    #: needs a file-backed workload
    file_backed: bool = False
    note: str = ""
    #: tune the intervals with damo's recommended goal (4% 3 5ms 10s), starting from sample_us/aggr_us
    autotune: bool = False
    #: the source chooses its intervals for its cost (the pte default: Attrs.source_intervals)
    source_intervals: bool = False
    #: at least this long a measured window (auto-tuned intervals grow to seconds), and this long to settle
    min_window_s: float = 0.0
    settle_s: float = 0.0

    def __post_init__(self) -> None:
        if parse_sources(self.source) != [self.source]:  # raises for an unknown name
            raise ValueError(f"{self.label}: {self.source!r} is not one source name")

    def spec(self, workload: BundledWorkload | None = None) -> SourceSpec:
        """The ops id and options to run: ``source_spec(source)`` with *overrides* on top; the ``synthetic``
        source follows *workload*'s phases as they run now (:meth:`BundledWorkload.synthetic_options`)."""
        syn = workload.synthetic_options() if workload is not None and self.source == "synthetic" else {}
        base = source_spec(self.source, synthetic_pattern=syn.get("pattern"), seed=syn.get("seed"))
        return SourceSpec(self.label, base.ops_id, dataclasses.replace(base.options, **self.overrides))


def make_attrs(sample_us: int = 5_000, aggr_us: int = 100_000, max_nr_regions: int = 1000,
               autotune: bool = False, source_intervals: bool = False) -> Any:
    """The monitoring attributes of a bench case; *source_intervals*: what the CLI gives a source that chooses
    its own intervals with no interval options (``cli._args.attrs_from_args``)."""
    from damon_bpf.cli._args import SOURCE_START_INTERVALS
    from damon_bpf.config.units import text_to_us
    from damon_bpf.engine import Attrs, IntervalsGoal, SourceIntervals

    if source_intervals:
        sample_us, aggr_us = (text_to_us(v) for v in SOURCE_START_INTERVALS)
    attrs = Attrs(sample_interval_us=sample_us, aggr_interval_us=aggr_us,
                  ops_update_interval_us=max(1_000_000, aggr_us), min_nr_regions=10,
                  max_nr_regions=max_nr_regions)
    if autotune:
        attrs.intervals_goal = IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=5_000, max_sample_us=10_000_000)
    if source_intervals:
        attrs.source_intervals = SourceIntervals()
    return attrs


@dataclass
class Session:
    """What one measured monitoring window gave."""

    snapshots: list[Any]
    t_first: float  # monotonic seconds of the first snapshot (start of the measured window)
    t_last: float  # ... of the last one
    cpu_s: float  # process CPU time (all threads of this process) over the window
    setup_s: float  # open(): BPF compile and attach, first maps read
    stats: dict[str, Any]  # the source's stats at the window's end (rates: over the window)
    stats0: dict[str, Any]  # ... at its start (cumulative counters: subtract)
    bpf_run_ns: int | None  # BPF program run time over the window (kernel.bpf_stats_enabled)
    bpf_run_cnt: int | None
    notes: list[str]
    stop_reason: str = ""
    error: str | None = None

    def delta(self, key: str) -> int | None:
        """A cumulative counter of the source's stats over the window."""
        a, b = self.stats0.get(key), self.stats.get(key)
        return b - a if isinstance(a, int) and isinstance(b, int) else None

    @property
    def wall_s(self) -> float:
        return self.t_last - self.t_first


def run_session(pid: int, case: SourceCase, duration_s: float, *, spec: SourceSpec | None = None, seed: int = 1,
                max_nr_regions: int = 1000, on_open: Callable[[], None] | None = None,
                keep_snapshots: bool = True, skip_s: float = 0.0,
                on_window: Callable[[], None] | None = None) -> Session:
    """Monitor *pid* with *case*'s source (*spec*, default ``case.spec()``) for *duration_s* seconds of measured
    window, in this thread.

    The window runs from the first snapshot (after one aggregation interval, so setup is not in it; with
    *skip_s*, the first snapshot at least that long after it: the steady state) until the first snapshot at
    least *duration_s* later; CPU time, the source's stats and the BPF program run time are
    taken at those two snapshots. *on_open* is called once the source is attached, before monitoring.
    """
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    src = spec if spec is not None else case.spec()
    mspec = MonitorSpec(pids=[pid], source=src.ops_id, source_options=src.options,
                        attrs=make_attrs(case.sample_us, case.aggr_us, max_nr_regions, case.autotune,
                                         case.source_intervals),
                        duration_s=None, seed=seed)
    snaps: list[Any] = []
    state: dict[str, Any] = {}
    mon: Monitor

    def bpf_run(st: dict[str, Any]) -> tuple[int, int] | None:
        # the BPF programs' cumulative (run_time_ns, run_cnt), from the source's stats
        if "bpf_run_ns" not in st:
            return None
        return int(st["bpf_run_ns"]), int(st["bpf_run_cnt"])

    def stats_on() -> bool:
        try:
            return read_sysctl("kernel.bpf_stats_enabled") == "1"
        except (OSError, NotSupportedError):
            return False

    def consumer(snap: Any) -> None:
        t = snap.time_ns / 1e9
        state.setdefault("first", t)
        if "t0" not in state and t < state["first"] + skip_s:
            return
        if "t0" not in state:
            if on_window is not None:
                on_window()
            st0 = mon.source_stats()  # also the baseline of the source's rates
            state.update(t0=t, cpu0=time.process_time(), run0=bpf_run(st0), stats_on0=stats_on(), stats0=st0)
            if keep_snapshots:
                snaps.append(snap)
            return
        if keep_snapshots:
            snaps.append(snap)
        if t >= state["t0"] + duration_s and "t1" not in state:
            if on_window is not None:
                on_window()
            st1 = mon.source_stats()
            state.update(t1=t, cpu1=time.process_time(), run1=bpf_run(st1), stats=st1, stats_on1=stats_on())
            mon.stop()

    mon = Monitor(mspec, [consumer])
    t_open = time.monotonic()
    mon.open()
    setup_s = time.monotonic() - t_open
    # a safety net: the window ends by itself; this only fires if snapshots stop coming
    guard = threading.Timer(duration_s + 30.0, mon.stop)
    guard.daemon = True
    error = None
    try:
        if on_open is not None:
            on_open()
        guard.start()
        reason = mon.run()
    except Exception as err:  # the target died, ...: report, do not crash the whole bench
        reason = "error"
        error = f"{type(err).__name__}: {err}"
    finally:
        guard.cancel()
        mon.close()
    if "t1" not in state:  # stopped early: close the window at the last snapshot we saw
        state.setdefault("t0", time.monotonic())
        state.setdefault("cpu0", time.process_time())
        state.update(t1=snaps[-1].time_ns / 1e9 if snaps else state["t0"], cpu1=time.process_time(),
                     run1=None, stats={})
    run0, run1 = state.get("run0"), state.get("run1")
    notes = list(getattr(mon.ctx.ops, "notes", []) or []) if mon.ctx is not None else []
    if run0 and run1 and not (state.get("stats_on0") and state.get("stats_on1")):
        # another session on the machine turned kernel.bpf_stats_enabled off (restoring its own override)
        # during the window: the run-time counters stopped, their deltas mean nothing
        notes.append("kernel.bpf_stats_enabled was off during the window (another session's restore): "
                     "no BPF run-time figures")
        run0 = run1 = None
    return Session(
        snapshots=snaps, t_first=state["t0"], t_last=state["t1"], cpu_s=state["cpu1"] - state["cpu0"],
        setup_s=setup_s, stats=state["stats"], stats0=state.get("stats0", {}),
        bpf_run_ns=(run1[0] - run0[0]) if run0 and run1 else None,
        bpf_run_cnt=(run1[1] - run0[1]) if run0 and run1 else None,
        notes=notes, stop_reason=str(getattr(reason, "name", reason)), error=error)


# ================================================================================================ working sets
# The classic reference of a process's working set (bench/wss.py, bench/many_targets.py): clear the Accessed bits
# and PG_referenced of all its pages (``echo 1 > /proc/PID/clear_refs``), wait the window, and count the pages
# found referenced again (``Referenced:`` of /proc/PID/smaps_rollup, or per mapping of /proc/PID/smaps). It
# clears the very bits the pte source reads, so it never runs while a pte monitor watches the same process.


def parse_referenced(text: str) -> int:
    """Bytes of the ``Referenced:`` line of a ``/proc/PID/smaps_rollup`` (the sum over all its lines when given
    a whole ``/proc/PID/smaps``).

    :raises ValueError: no ``Referenced:`` line
    """
    total = 0
    found = False
    for line in text.splitlines():
        if line.startswith("Referenced:"):
            parts = line.split()
            total += int(parts[1]) * (1024 if len(parts) < 3 or parts[2] == "kB" else 1)
            found = True
    if not found:
        raise ValueError("no 'Referenced:' line")
    return total


def parse_smaps_referenced(text: str) -> list[tuple[int, int, int, str]]:
    """Each mapping of a ``/proc/PID/smaps`` as ``(start, end, referenced bytes, name)`` (name: the path or
    ``[heap]`` etc., empty for anonymous memory)."""
    out: list[tuple[int, int, int, str]] = []
    cur: list[Any] | None = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and ":" not in head[0]:
            # a mapping's header: "start-end perms offset dev inode [name]"
            if cur is not None:
                out.append((cur[0], cur[1], cur[2], cur[3]))
            lo, hi = head[0].split("-")
            cur = [int(lo, 16), int(hi, 16), 0, head[5].strip() if len(head) > 5 else ""]
        elif cur is not None and line.startswith("Referenced:"):
            cur[2] = int(line.split()[1]) * 1024
    if cur is not None:
        out.append((cur[0], cur[1], cur[2], cur[3]))
    return out


def referenced_in(mappings: Sequence[tuple[int, int, int, str]], ranges: Iterable[Sequence[int]]) -> int:
    """Referenced bytes of the mappings that overlap any of *ranges* (``[start, end)``). Mapping-granular: a
    mapping that holds more than the ranges (the kernel merges adjacent anonymous mappings) counts whole."""
    rs = [(int(a), int(b)) for a, b in ranges]
    return sum(ref for lo, hi, ref, _ in mappings if any(lo < b and a < hi for a, b in rs))


def clear_refs(pid: int) -> None:
    """``echo 1 > /proc/PID/clear_refs``: clear the Accessed bits (and PG_referenced, PG_young) of every page
    of the process."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("1")


def referenced_bytes(pid: int) -> int:
    """``Referenced:`` of ``/proc/PID/smaps_rollup``, in bytes."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return parse_referenced(f.read())


def smaps_referenced(pid: int) -> list[tuple[int, int, int, str]]:
    """:func:`parse_smaps_referenced` of ``/proc/PID/smaps``."""
    with open(f"/proc/{pid}/smaps") as f:
        return parse_smaps_referenced(f.read())


@dataclass
class RefSample:
    """One reference measurement of a process's working set."""

    pid: int
    t: float  # monotonic seconds at the read
    window_s: float  # from the clear to the read (a little longer than asked)
    referenced_bytes: int  # smaps_rollup's Referenced: the whole process
    in_ranges_bytes: int | None = None  # of the mappings that overlap the workload's own ranges (mapping-granular)
    #: of the mappings without a file (anonymous, heap, stacks): Referenced also counts PG_referenced, which
    #: other processes set on shared file pages (libraries read at their start-up), so the whole figure jumps
    #: while other programs start; this part does not
    anon_bytes: int | None = None


def reference_wss(pid: int, window_s: float = 1.0, ranges: Sequence[Sequence[int]] | None = None) -> RefSample:
    """The classic working-set reference of *pid*: :func:`clear_refs`, wait *window_s*, then read
    ``Referenced:`` (and from ``/proc/PID/smaps``, the referenced bytes of the mappings without a file, and with
    *ranges* those of the mappings that overlap them). Never while a pte monitor watches *pid*: it clears the bits
    that source reads."""
    return reference_wss_many([pid], window_s, {pid: ranges} if ranges is not None else None)[0]


def reference_wss_many(pids: Sequence[int], window_s: float = 1.0,
                       ranges: Mapping[int, Sequence[Sequence[int]]] | None = None) -> list[RefSample]:
    """:func:`reference_wss` of several processes in one window: clear them all, wait, read them all in the same
    order (each one's window is from its own clear to its own read)."""
    t_clear = {}
    for pid in pids:
        clear_refs(pid)
        t_clear[pid] = time.monotonic()
    time.sleep(window_s)
    out = []
    for pid in pids:
        ref = referenced_bytes(pid)
        t = time.monotonic()
        rs = (ranges or {}).get(pid)
        maps = smaps_referenced(pid)
        inr = referenced_in(maps, rs) if rs is not None else None
        anon = sum(r for _, _, r, name in maps if not name or name.startswith("["))
        out.append(RefSample(pid, t, t - t_clear[pid], ref, inr, anon))
    return out


def reference_series(pids: Sequence[int], window_s: float, n: int,
                     ranges: Mapping[int, Sequence[Sequence[int]]] | None = None,
                     gap_s: float = 0.2) -> dict[int, list[RefSample]]:
    """*n* rounds of :func:`reference_wss_many`, *gap_s* apart: pid -> its samples."""
    out: dict[int, list[RefSample]] = {pid: [] for pid in pids}
    for i in range(n):
        if i:
            time.sleep(gap_s)
        for s in reference_wss_many(pids, window_s, ranges):
            out[s.pid].append(s)
    return out


def ref_summary(samples: Sequence[RefSample]) -> dict[str, Any]:
    """Median, min and max of the samples' ``Referenced`` bytes (and of their in-ranges bytes)."""
    return {"n": len(samples),
            "median": statistics.median([s.referenced_bytes for s in samples]) if samples else None,
            "min": min((s.referenced_bytes for s in samples), default=None),
            "max": max((s.referenced_bytes for s in samples), default=None),
            "in_ranges_median": statistics.median([s.in_ranges_bytes or 0 for s in samples])
            if samples and all(s.in_ranges_bytes is not None for s in samples) else None,
            "anon_median": statistics.median([s.anon_bytes or 0 for s in samples])
            if samples and all(s.anon_bytes is not None for s in samples) else None,
            "window_s": statistics.median([s.window_s for s in samples]) if samples else None}


def rel_error(value: float | None, ref: float | None) -> float | None:
    """``(value - ref) / ref`` (``None`` without both, or for a zero reference)."""
    if value is None or not ref:
        return None
    return (value - ref) / ref


def monitor_spec_fields() -> set[str]:
    """The fields of :class:`~damon_bpf.session.monitor.MonitorSpec` in this checkout (to pass new ones, such
    as ``working_set_window_us``, only where they exist)."""
    import dataclasses

    from damon_bpf.session.monitor import MonitorSpec

    return {f.name for f in dataclasses.fields(MonitorSpec)}


class WorkingSetRecorder:
    """A snapshot consumer that keeps, per snapshot and target, what a working-set comparison needs (cheap: no
    copies of whole snapshots):

    - ``working_set_bytes`` of each :class:`~damon_bpf.engine.TargetSnapshot` and the snapshot's
      ``working_set_window_us``, where the library has them (the interface of issue #16); ``None`` otherwise;
    - the fallbacks for a library without them: the bytes of the regions with ``nr_accesses > 0`` in that one
      aggregation interval (``aggr``), and the accessed ranges themselves, from which :meth:`series` builds the
      union over the snapshots of the last *window_s* (``window``: "accessed within the last window");
    - the number of regions.

    With :attr:`monitor` set, it also keeps the source's stats (``Monitor.source_stats()``, read at most once a
    *stats_period_s*: the source drops its counters when the run ends, so they cannot be read after it). It
    counts its own CPU time (``thread_time``), so a CPU figure of the monitoring process can leave the bench's
    consumer out."""

    def __init__(self, window_s: float = 1.0, stats_period_s: float = 1.0) -> None:
        self.window_s = window_s
        self.rows: list[dict[str, Any]] = []
        self.cpu_s = 0.0
        self.on_snapshot: Callable[[Any], None] | None = None
        self.monitor: Any = None
        self.stats: dict[str, Any] = {}
        self.stats_period_s = stats_period_s
        self._stats_t = -math.inf

    def __call__(self, snap: Any) -> None:
        import numpy as np

        c0 = time.thread_time()
        targets = []
        win = getattr(snap, "working_set_window_us", None) or None  # 0: a snapshot without the estimate
        for tg in snap.targets:
            acc = tg.nr_accesses > 0
            starts, ends = tg.start[acc], tg.end[acc]
            ws = getattr(tg, "working_set_bytes", None) if win is not None else None
            targets.append({"pid": tg.pid, "ws": None if ws is None else int(ws),
                            "aggr": int(np.sum(ends - starts)), "acc": (starts, ends),
                            "nr_regions": int(tg.start.size)})
        self.rows.append({"t_ns": int(snap.time_ns), "start_ns": int(snap.start_time_ns),
                          "window_us": None if win is None else int(win), "aggr_us": int(snap.aggr_interval_us),
                          "sample_us": int(snap.sample_interval_us), "targets": targets})
        t = snap.time_ns / 1e9
        if self.monitor is not None and t - self._stats_t >= self.stats_period_s:
            self.stats = self.monitor.source_stats()
            self._stats_t = t
        self.cpu_s += time.thread_time() - c0
        if self.on_snapshot is not None:
            self.on_snapshot(snap)

    @property
    def has_attribute(self) -> bool:
        """Whether the library gave ``working_set_bytes`` (else the figures are the fallbacks)."""
        return any(t["ws"] is not None for r in self.rows for t in r["targets"])

    def series(self) -> list[dict[str, Any]]:
        """Per snapshot: ``t`` (seconds since the kdamond started), ``window_us``, ``aggr_us``, ``sample_us``
        and per target (in snapshot order) ``pid``, ``ws`` (the attribute or ``None``), ``aggr``, ``window``
        (the union fallback over the last *window_s*, counting only snapshots inside it) and ``nr_regions``."""
        out = []
        hist: dict[int, list[tuple[int, Any]]] = {}
        w_ns = int(self.window_s * 1e9)
        for r in self.rows:
            t_ns = r["t_ns"]
            row = {"t": round((t_ns - r["start_ns"]) / 1e9, 3), "window_us": r["window_us"],
                   "aggr_us": r["aggr_us"], "sample_us": r["sample_us"], "targets": []}
            for i, tg in enumerate(r["targets"]):
                h = hist.setdefault(i, [])
                h.append((t_ns, tg["acc"]))
                # snapshots whose aggregation window ends within the last window_s (the one ending at t_ns -
                # window_s started before it: left out)
                while h and h[0][0] <= t_ns - w_ns + r["aggr_us"] * 1000 - 1:
                    h.pop(0)
                union = S.total_bytes(S.normalize(_concat_ranges([a for _, a in h])))
                row["targets"].append({"pid": tg["pid"], "ws": tg["ws"], "aggr": tg["aggr"], "window": union,
                                       "nr_regions": tg["nr_regions"]})
            out.append(row)
        return out


def _concat_ranges(parts: Sequence[tuple[Any, Any]]) -> Any:
    import numpy as np

    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    return np.stack([np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])], axis=1)


def monitor_figure(row_target: dict[str, Any]) -> tuple[int, str]:
    """The monitor's working set of one target of :meth:`WorkingSetRecorder.series`: ``working_set_bytes``
    where the library has it, else the window fallback; with the name of what it is."""
    if row_target["ws"] is not None:
        return row_target["ws"], "working_set_bytes"
    return row_target["window"], "fallback"


FALLBACK_NOTE = ("this library has no working_set_bytes (issue #16 not merged): the monitor's figure is the "
                 "fallback, the union of the regions with nr_accesses > 0 over the snapshots of the last window")


class TargetProc:
    """``bench/wss_target.py`` as a child process (see its docstring for the modes); *args* are its options.
    Waits for its ``ready`` line; with ``--report`` in *args*, a thread keeps its ``tick`` lines."""

    SCRIPT = REPO / "bench" / "wss_target.py"

    def __init__(self, args: Sequence[str]) -> None:
        self.cmd = [sys.executable, str(self.SCRIPT), *args]
        self.proc: subprocess.Popen[str] | None = None
        self.addr = self.size = self.hot_bytes = 0
        self.ticks: list[tuple[float, int]] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> TargetProc:
        self.proc = spawn(self.cmd, stdout=subprocess.PIPE, text=True)
        return self

    def wait_ready(self) -> TargetProc:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 4 or line[0] != "ready":
            rc = self.proc.poll()
            self.close()
            raise RuntimeError(f"wss_target.py did not start (exit code {rc})")
        self.addr, self.size, self.hot_bytes = int(line[1]), int(line[2]), int(line[3])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            w = line.split()
            if len(w) == 3 and w[0] == "tick":
                self.ticks.append((float(w[1]), int(w[2])))

    def rate(self, t0: float, t1: float) -> float | None:
        """Its touches per second between monotonic times *t0* and *t1*, from its ticks."""
        pts = [(t, n) for t, n in self.ticks if t0 <= t <= t1]
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return None
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(self.addr, self.addr + self.size)]

    def close(self) -> None:
        if self.proc is not None:
            stop_child(self.proc)

    def __enter__(self) -> TargetProc:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def environment() -> dict[str, Any]:
    """Where the figures were taken."""
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "loadavg": os.getloadavg()}


def busy_warning(load_at_start: tuple[float, float, float]) -> str | None:
    """A line to print when other work was loading the machine (1-minute load average above the CPU count
    minus the bench's own share), which makes the timing figures noisy."""
    cpus = os.cpu_count() or 1
    worst = max(load_at_start[0], os.getloadavg()[0])
    if worst > cpus * 0.75 + 2:
        return (f"note: the machine was busy with other work (1-minute load average up to {worst:.1f} on {cpus} "
                "CPUs, the bench itself accounts for about 2-3): timing figures are noisy")
    return None


def with_busy_note(text: str, load_at_start: tuple[float, float, float]) -> str:
    """*text* with :func:`busy_warning`'s line after it, when there is one."""
    warn = busy_warning(load_at_start)
    return text + "\n\n" + warn if warn else text


def write_results(name: str, obj: Any, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the results as JSON to *path* (default ``bench/results/<name>.json``); returns the path."""
    out = Path(path) if path is not None else RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    return out


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def run_main(name: str, main: Callable[[], int]) -> int:
    """Run a bench's ``main``; an interrupt or a termination signal (SIGTERM, SIGHUP: an exception in the main
    thread, see :func:`damon_bpf.linux.process.on_signals`) ends it with one line (the children were ended and
    the sysctls left as found by the cleanup handlers)."""
    try:
        with on_signals(_raise_terminated, (signal.SIGTERM, signal.SIGHUP)):
            return main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; children ended, sysctls left as found", file=sys.stderr)
        return 130
    except Terminated as t:
        print(f"{name}: terminated by signal {t.signum}; children ended, sysctls left as found", file=sys.stderr)
        return 128 + t.signum


def name_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``."""
    return [s.strip() for s in text.split(",") if s.strip()]


def check_names(ap: Any, names: Sequence[str], known: Iterable[str], what: str) -> None:
    """End the bench with argparse's usage error for a name that is not in *known*."""
    known = set(known)
    for n in names:
        if n not in known:
            ap.error(f"unknown {what} {n!r}")
