"""Monitoring sessions: processes (given or spawned), an access source, the kdamond, and snapshot consumers.

A :class:`Monitor` is the library behind ``monitor``, ``record`` and ``compare``, and the one owner of every
lifetime it starts: the spawned command, the access source (its ``cleanup`` detaches BPF programs and restores
sysctls), the DAMOS metrics provider, the child follower, and, in :meth:`Monitor.stopping_on_signals`, the
signal handlers. :meth:`Monitor.close` (or leaving the ``with`` block) ends them all, once, whether the loop ran
or not.
"""

from __future__ import annotations

import contextlib
import logging
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import damon_bpf.ops  # noqa: F401  (registers the built-in access sources)
from damon_bpf.engine import Attrs, Ctx, Kdamond, Snapshot, StopReason, Target
from damon_bpf.errors import DamonBpfError, InvalidParamsError, NotSupportedError, TargetGoneError
from damon_bpf.linux.process import is_running, on_signals, spawn, terminate
from damon_bpf.ops.sources import SourceOptions, create_ops, find_source
from damon_bpf.ops.sources.synthetic import synthetic_pattern_for_workload

__all__ = ("MonitorSpec", "Monitor", "DEFAULT_ATTRS", "synthetic_pattern_for_workload", "exit_status",
           "startup_overrun")

log = logging.getLogger(__name__)


def _default_attrs() -> Attrs:
    # damo's defaults (--monitoring_intervals 5ms 100ms 1s, --monitoring_nr_regions_range 10 1000)
    return Attrs(sample_interval_us=5_000, aggr_interval_us=100_000, ops_update_interval_us=1_000_000,
                 min_nr_regions=10, max_nr_regions=1000)


DEFAULT_ATTRS = _default_attrs()


@dataclass
class MonitorSpec:
    """What to monitor and how.

    :ivar pids: processes to monitor (one target each)
    :ivar command: a command to spawn and monitor until it exits (appended as the last target)
    :ivar source: the access source, an ops id (``synthetic``, ``fault``, ``perf``)
    :ivar source_options: the source's options (:mod:`damon_bpf.ops.sources`: ``PteOptions``, ``FaultOptions``,
        ...); None: its defaults
    :ivar duration_s: stop after this long; None: until stopped or every target exited
    :ivar started_at: when the start-up began (``time.monotonic()``; the CLI gives the time the command started):
        a start-up (schemes, access source, BPF compilation) longer than *duration_s* from there is refused
        (:func:`startup_overrun`); None: the start-up is not bounded. The monitoring itself lasts *duration_s*
        from :meth:`Monitor.run`
    :ivar schemes: DAMOS schemes (``damon_bpf.engine.damos.Scheme``, e.g. from :mod:`damon_bpf.config.schemes`),
        applied by the access source's operations set; their stats count in place
    :ivar dry_run: decide as usual but apply nothing: the schemes' stats count what would have been applied
    """

    pids: list[int] = field(default_factory=list)
    command: list[str] | None = None
    source: str = "synthetic"
    source_options: SourceOptions | None = None
    attrs: Attrs = field(default_factory=_default_attrs)
    duration_s: float | None = None
    started_at: float | None = None
    seed: int | None = None
    #: send the spawned command's standard output to our standard error (keeps JSON output parseable)
    command_stdout_to_stderr: bool = False
    #: also monitor the processes the targets fork later (process-events connector)
    follow_children: bool = False
    schemes: list[Any] = field(default_factory=list)
    dry_run: bool = False
    #: the window of the working-set estimate (``TargetSnapshot.working_set_bytes``), µs
    working_set_window_us: int = 1_000_000
    #: data attribute probes (``damon_bpf.engine.probes.Probe``), for sources whose descriptor ``evaluates_probes``
    probes: list[Any] = field(default_factory=list)

    def validate(self) -> None:
        if not self.pids and not self.command:
            raise InvalidParamsError("nothing to monitor: give pids or a command")
        for pid in self.pids:
            if pid <= 0:
                raise InvalidParamsError(f"invalid pid {pid}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidParamsError("duration must be positive")
        if self.working_set_window_us <= 0:
            raise InvalidParamsError("the working-set window must be positive")
        source = find_source(self.source)
        if source is not None:
            source.options_or_defaults(self.source_options)  # options of another source are refused here
        self.attrs.validate()
        if self.probes and (source is None or not source.evaluates_probes):
            raise NotSupportedError(f"data attribute probes (--probe_filter): the {self.source} source sees no "
                                    f"page frame per sample; use --source pte")


class Monitor:
    """One monitoring session. Use as a context manager, or call :meth:`open`, :meth:`run`, :meth:`close`.

    :param consumers: called with every :class:`~damon_bpf.engine.Snapshot`, in the kdamond's thread
    """

    def __init__(self, spec: MonitorSpec, consumers: list[Callable[[Snapshot], None]] | None = None) -> None:
        spec.validate()
        self.spec = spec
        self.consumers = list(consumers or [])
        self.child: subprocess.Popen[bytes] | None = None
        self.ctx: Ctx | None = None
        self.kdamond: Kdamond | None = None
        self._timer: threading.Timer | None = None
        self.started_at = 0.0
        self.follower: Any = None
        #: processes that could not be added while following children, with the reason
        self.follow_errors: list[str] = []
        self.metrics: Any = None  # the DAMOS metrics provider, when a scheme needs one
        #: one line each for the user, found when the session opened (e.g. a DAMOS scheme that can never match)
        self.notes: list[str] = []
        #: the spawned command's exit status when it ended by itself before the session closed (a signal N is
        #: ``128 + N``, as shells say it); None while it runs, when the session ended it, or without a command
        self.command_status: int | None = None
        self._stop_requested = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Check the pids, spawn the command, select and initialise the access source.

        :raises InvalidParamsError: also when the start-up took longer than the duration, counted from
            ``spec.started_at`` (:func:`startup_overrun`; checked between its steps: a BPF compilation under
            way finishes first)
        """
        self._check_startup()
        for pid in self.spec.pids:
            if not is_running(pid):
                raise TargetGoneError(pid, f"no such process: {pid}")
        pids = list(self.spec.pids)
        if self.spec.command:
            try:
                self.child = spawn(
                    self.spec.command, stdout=sys.stderr.fileno() if self.spec.command_stdout_to_stderr else None)
            except OSError as err:
                raise InvalidParamsError(f"cannot run {self.spec.command[0]!r}: {err.strerror}") from err
            pids.append(self.child.pid)
        try:
            ops = create_ops(self.spec.source, self.spec.source_options, follow_children=self.spec.follow_children)
            if self.spec.dry_run:
                from damon_bpf.ops.dryrun import DryRunOps

                ops = DryRunOps(ops)
            ctx = Ctx(attrs=self.spec.attrs, ops=ops,
                      rng=random.Random(self.spec.seed) if self.spec.seed is not None else random.Random())
            ctx.targets = [Target(pid=pid) for pid in pids]
            ctx.working_set_window_us = self.spec.working_set_window_us
            ctx.probes = list(self.spec.probes)
            ctx.schemes = list(self.spec.schemes)
            ctx.after_aggregation.extend(self.consumers)
            self.ctx = ctx
            self.kdamond = Kdamond(ctx)
            if any(s.quota.goals or s.wmarks.metric.value != "none" for s in ctx.schemes):
                # quota goals and watermarks read system metrics (/proc/meminfo, PSI, taskstats)
                from damon_bpf.ops.damos_metrics import install

                self.metrics = install(ctx)
                for s in ctx.schemes:
                    self.metrics.check(s)  # a metric this machine cannot measure is refused before the start
            self.kdamond.init()
            self._note_unmatchable_schemes(ctx)
            if self.spec.follow_children:
                self._start_following(pids)
            self._check_startup()
        except TargetGoneError as err:
            self.close()
            if self.child is not None and err.pid == self.child.pid and self.command_status is not None:
                cmd = self.spec.command[0] if self.spec.command else "?"
                raise TargetGoneError(err.pid, f"the command {cmd!r} (pid {err.pid}) exited with "
                                               f"status {self.command_status} before monitoring started",
                                      command_status=self.command_status) from err
            raise
        except BaseException:
            self.close()
            raise
        if self._stop_requested:  # a signal came while the source was starting
            self.kdamond.stop()

    def _check_startup(self) -> None:
        # the start-up is bounded by the duration too (`--duration 2s` never means "still starting at 30 s")
        d, t0 = self.spec.duration_s, self.spec.started_at
        if d is not None and t0 is not None and time.monotonic() - t0 > d:
            raise startup_overrun(d, time.monotonic() - t0)

    def _note_unmatchable_schemes(self, ctx: Ctx) -> None:
        # once the regions are set and the patterns converted for the starting attrs (Kdamond.init)
        from damon_bpf.config.schemes import schemes_never_matching

        d = self.spec.duration_s
        for note in schemes_never_matching(ctx, None if d is None else round(d * 1_000_000)):
            log.info("%s", note)
            self.notes.append(note)

    def _start_following(self, pids: list[int]) -> None:
        from damon_bpf.linux.proc_events import ChildFollower

        assert self.ctx is not None and self.ctx.ops is not None
        if not self.ctx.ops.can_add_targets:
            raise InvalidParamsError(f"the {self.spec.source} source cannot add processes while running")
        self.follower = ChildFollower(pids)
        self.follower.start()
        for pid in sorted(self.follower.tracked() - set(pids)):
            self._add(pid)
        assert self.ctx is not None
        self.ctx.after_aggregation.insert(0, self._follow)

    def _add(self, pid: int) -> None:
        err = self.add_pid(pid)
        if err is not None:
            self.follow_errors.append(f"pid {pid}: {err}")

    def add_pid(self, pid: int) -> DamonBpfError | None:
        """Monitor one more process while running (from a consumer, in the kdamond's thread); a pid already
        monitored is left alone. Returns the error that kept it out, None when added or gone already (a
        short-lived process).

        :raises InvalidParamsError: the source cannot add processes while running
        """
        assert self.ctx is not None and self.ctx.ops is not None
        if not self.ctx.ops.can_add_targets:
            raise InvalidParamsError(f"the {self.spec.source} source cannot add processes while running")
        if any(t.pid == pid for t in self.ctx.targets):
            return None
        try:
            self.ctx.ops.add_target(self.ctx, pid)
            log.info("monitoring process %d too", pid)
        except TargetGoneError:
            pass  # gone before we could open it
        except DamonBpfError as err:
            return err
        return None

    def _follow(self, snap: Snapshot) -> None:
        for ch in self.follower.poll():
            if ch.kind == "fork":
                self._add(ch.pid)

    def run(self) -> StopReason:
        """Monitor in the calling thread until stopped, the duration is over, or every target exited."""
        if self.kdamond is None:
            self.open()
        assert self.kdamond is not None
        self.started_at = time.monotonic()
        if self.spec.duration_s is not None:
            self._timer = threading.Timer(self.spec.duration_s, self.kdamond.stop)
            self._timer.daemon = True
            self._timer.start()
        try:
            return self.kdamond.run()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def stop(self) -> None:
        """Ask the session to end; safe from a signal handler or another thread, also before :meth:`open`
        finished (the loop then ends at once)."""
        self._stop_requested = True
        if self.kdamond is not None:
            self.kdamond.stop()

    @contextlib.contextmanager
    def stopping_on_signals(self) -> Iterator[Monitor]:
        """While the block runs, SIGINT, SIGTERM and SIGHUP end the session cleanly (:meth:`stop`)."""
        with on_signals(lambda signum: self.stop()):
            yield self

    def close(self) -> None:
        """End everything the session started, once: the duration timer, the child follower, the access source
        (``ops.cleanup()``: BPF programs detached, sysctls restored), the DAMOS metrics provider, and the
        spawned command (SIGTERM, then SIGKILL)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._timer is not None:
                self._timer.cancel()
            if self.follower is not None:
                self.follower.stop()
                self.follower = None
            if self.kdamond is not None:
                self.kdamond.close()
        finally:
            try:
                if self.metrics is not None:
                    self.metrics.close()
                    self.metrics = None
            finally:
                if self.child is not None:
                    status = self.child.poll()  # before terminate(): did it end by itself?
                    if status is not None:
                        self.command_status = exit_status(status)
                    terminate(self.child, timeout_s=3)

    def __enter__(self) -> Monitor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- information -------------------------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [t.pid for t in self.ctx.targets if t.pid is not None] if self.ctx else []

    def source_stats(self) -> dict[str, Any]:
        """Counters of the access source (events, drops, ...), if it keeps any."""
        if self.ctx is None or self.ctx.ops is None:
            return {}
        stats: dict[str, Any] = dict(self.ctx.ops.stats())
        if self.ctx.reports is not None:
            s = self.ctx.reports.stats
            stats.setdefault("reports", s.nr_reported)
            stats.setdefault("reports_accounted", s.nr_accounted)
            stats.setdefault("reports_stale", s.nr_stale)
        return stats


def exit_status(returncode: int) -> int:
    """A :class:`subprocess.Popen` return code as a shell reports it: 0..255, or ``128 + N`` for signal N."""
    return 128 - returncode if returncode < 0 else returncode & 0xFF


def startup_overrun(duration_s: float, elapsed_s: float) -> InvalidParamsError:
    """The error of a session whose duration ran out before monitoring began."""
    return InvalidParamsError(f"the start-up took longer than the duration ({elapsed_s:.1f} s of {duration_s:g} s: "
                              "schemes, access source, BPF compilation): nothing was monitored; give a longer "
                              "duration")
