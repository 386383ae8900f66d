"""Monitoring sessions: processes (given or spawned), an access source, the kdamond, and snapshot consumers.

This is the library behind ``damon-bpf monitor`` (and later ``record`` and ``compare``): it owns the
lifetime of everything it starts. A spawned command is terminated when the session ends; the operations
set's ``cleanup`` (BPF programs detached, sysctls restored) always runs, through the kdamond's ``finally``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import damon_bpf.ops  # noqa: F401  (registers the built-in access sources)
from damon_bpf.engine import Attrs, Ctx, Kdamond, Snapshot, StopReason, Target, select_ops
from damon_bpf.errors import DamonBpfError, InvalidParamsError, TargetGoneError

__all__ = ("MonitorSpec", "Monitor", "DEFAULT_ATTRS", "synthetic_pattern_for_workload")

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
    :ivar source_options: keyword arguments for the source's ops constructor
    :ivar duration_s: stop after this long; None: until stopped or every target exited
    :ivar schemes: DAMOS schemes (``damon_bpf.engine.damos.Scheme``, e.g. from :mod:`damon_bpf.damos_config`),
        applied by the access source's operations set; their stats count in place
    :ivar dry_run: decide as usual but apply nothing: the schemes' stats count what would have been applied
    """

    pids: list[int] = field(default_factory=list)
    command: list[str] | None = None
    source: str = "synthetic"
    source_options: dict[str, Any] = field(default_factory=dict)
    attrs: Attrs = field(default_factory=_default_attrs)
    duration_s: float | None = None
    seed: int | None = None
    #: send the spawned command's standard output to our standard error (keeps JSON output parseable)
    command_stdout_to_stderr: bool = False
    #: also monitor the processes the targets fork later (process-events connector)
    follow_children: bool = False
    schemes: list[Any] = field(default_factory=list)
    dry_run: bool = False

    def validate(self) -> None:
        if not self.pids and not self.command:
            raise InvalidParamsError("nothing to monitor: give pids or a command")
        for pid in self.pids:
            if pid <= 0:
                raise InvalidParamsError(f"invalid pid {pid}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidParamsError("duration must be positive")
        self.attrs.validate()


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

    # -- lifecycle ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Check the pids, spawn the command, select and initialise the access source."""
        for pid in self.spec.pids:
            if not os.path.exists(f"/proc/{pid}"):
                raise TargetGoneError(pid, f"no such process: {pid}")
        pids = list(self.spec.pids)
        if self.spec.command:
            try:
                self.child = subprocess.Popen(
                    self.spec.command, stdout=sys.stderr.fileno() if self.spec.command_stdout_to_stderr else None)
            except OSError as err:
                raise InvalidParamsError(f"cannot run {self.spec.command[0]!r}: {err.strerror}") from err
            pids.append(self.child.pid)
        options = dict(self.spec.source_options)
        if self.spec.follow_children and self.spec.source in ("fault", "perf"):
            options.setdefault("extra_targets", 32)
        ops = select_ops(self.spec.source, **options)
        if self.spec.dry_run:
            _make_dry_run(ops)
        import random

        ctx = Ctx(attrs=self.spec.attrs, ops=ops,
                  rng=random.Random(self.spec.seed) if self.spec.seed is not None else random.Random())
        ctx.targets = [Target(pid=pid) for pid in pids]
        ctx.schemes = list(self.spec.schemes)
        if any(s.quota.goals or s.wmarks.metric.value != "none" for s in ctx.schemes):
            # quota goals and watermarks read system metrics (/proc/meminfo, PSI, taskstats); the ops'
            # cleanup closes the provider (and restores kernel.task_delayacct if it turned it on)
            from damon_bpf.ops.damos_metrics import install

            install(ctx)
        ctx.after_aggregation.extend(self.consumers)
        self.ctx = ctx
        self.kdamond = Kdamond(ctx)
        try:
            self.kdamond.init()
            if self.spec.follow_children:
                self._start_following(pids)
        except BaseException:
            ops.cleanup(ctx)
            if self.follower is not None:
                self.follower.stop()
            raise

    def _start_following(self, pids: list[int]) -> None:
        from damon_bpf.ops.proc_events import ChildFollower

        if not hasattr(self.ctx.ops if self.ctx else None, "add_target"):
            raise InvalidParamsError(f"the {self.spec.source} source cannot add processes while running")
        self.follower = ChildFollower(pids)
        self.follower.start()
        for pid in sorted(self.follower.tracked() - set(pids)):
            self._add(pid)
        assert self.ctx is not None
        self.ctx.after_aggregation.insert(0, self._follow)

    def _add(self, pid: int) -> None:
        assert self.ctx is not None and self.ctx.ops is not None
        if any(t.pid == pid for t in self.ctx.targets):
            return
        try:
            self.ctx.ops.add_target(self.ctx, pid)  # type: ignore[attr-defined]
            log.info("following child process %d", pid)
        except TargetGoneError:
            pass  # a short-lived child: gone before we could open it
        except DamonBpfError as err:
            self.follow_errors.append(f"pid {pid}: {err}")

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
        """Ask the session to end; safe from a signal handler or another thread."""
        if self.kdamond is not None:
            self.kdamond.stop()

    def close(self) -> None:
        """Stop following children and terminate the spawned command, if it still runs."""
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        child = self.child
        if child is None:
            return
        if child.poll() is None:
            try:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            except ProcessLookupError:
                pass

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
        stats: dict[str, Any] = {}
        getter = getattr(self.ctx.ops, "stats", None)
        if callable(getter):
            stats.update(getter())
        if self.ctx.reports is not None:
            s = self.ctx.reports.stats
            stats.setdefault("reports", s.nr_reported)
            stats.setdefault("reports_accounted", s.nr_accounted)
            stats.setdefault("reports_stale", s.nr_stale)
        return stats


def _make_dry_run(ops: Any) -> None:
    """``--dry-run``: replace the instance's ``apply_scheme`` by one that answers what the vaddr family would
    apply, without calling the kernel.

    - ``stat`` changes nothing, so the real ``apply_scheme`` runs (with its ops-filter accounting);
    - an action the source does not support, or a target without a process, applies nothing (0);
    - any other action: the bytes of the page-aligned region that lie in the target's VMAs (holes skipped, as
      the vaddr family skips them; ``/proc/<pid>/maps`` is read once per apply pass); with ops-layer filters
      (``anon``, ``memcg``, ``hugepage_size``, ``unmapped``), the bytes that pass them, as
      ``(bytes applied, bytes passed)``. Approximations: ``hugepage_size`` filters see every page as a base page
      (no ``PAGEMAP_SCAN`` in a dry run), and when the ops-filter evaluator is not available the filters are
      not subtracted. Migrations count every byte, also pages already on the destination node.
    """
    from damon_bpf.engine.core import align_down, align_up
    from damon_bpf.ops.procmaps import mappings_in, read_maps

    page_sz = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    supported = frozenset(getattr(ops, "supported_actions", frozenset()))
    real_apply = ops.apply_scheme
    maps_cache: dict[int, tuple[int, list[Any]]] = {}

    def vmas_of(ctx: Ctx, pid: int) -> list[Any]:
        hit = maps_cache.get(pid)
        if hit is not None and hit[0] == ctx.passed_sample_intervals:
            return hit[1]
        try:
            vmas = read_maps(pid)
        except DamonBpfError:
            vmas = []
        maps_cache[pid] = (ctx.passed_sample_intervals, vmas)
        return vmas

    def apply_scheme(ctx: Ctx, target: Target, region: Any, scheme: Any) -> Any:
        action = getattr(getattr(scheme, "action", None), "value", None)
        if action == "stat":
            return real_apply(ctx, target, region, scheme)
        if action is None or action not in supported or target.pid is None:
            return 0
        start, end = align_down(region.start, page_sz), align_up(region.end, page_sz)
        vmas = vmas_of(ctx, target.pid)
        in_vmas = sum(min(end, v.end) - max(start, v.start) for v in mappings_in(vmas, start, end))
        if not any(not getattr(f, "core", True) for f in getattr(scheme, "filters", [])):
            return in_vmas
        passed = _dry_run_ops_filter_passed(scheme, target.pid, start, end, vmas)
        if passed is None:
            return in_vmas
        return passed, passed

    ops.apply_scheme = apply_scheme
    ops.dry_run = True


def _dry_run_ops_filter_passed(scheme: Any, pid: int, start: int, end: int, vmas: list[Any]) -> int | None:
    # bytes of [start, end) that pass the scheme's ops-layer filters; None when they cannot be evaluated here
    try:
        from damon_bpf.ops import damos_filters

        pieces = damos_filters.split_at_vmas(start, end, vmas)
        memcg = None
        if any(getattr(f.type, "value", "") == "memcg" for f in scheme.filters):
            memcg = damos_filters.read_memcg_path(pid)
        return sum(p.sz for p, ok in damos_filters.evaluate(scheme, pieces, memcg) if ok)
    except (ImportError, AttributeError, DamonBpfError) as err:
        log.debug("dry run: ops filters not evaluated: %s", err)
        return None


def synthetic_pattern_for_workload(start: Any, config: Any, p_hot: float = 0.3) -> dict[str, Any]:
    """A synthetic access pattern that follows a bundled workload's phases: in each phase the regions it
    touches are accessed (every page with chance *p_hot* per sampling interval), the others are not.

    :param start: the workload's ground-truth start record (``damon_bpf.workload.TruthStart``)
    :param config: the workload's config (``damon_bpf.workload.WorkloadConfig``)
    """
    addr = {r.name: (r.start, r.end) for r in start.regions}
    phases = []
    for ph in config.phases:
        ranges = [{"start": addr[a.region][0], "end": addr[a.region][1], "p": p_hot}
                  for a in ph.accesses if a.region in addr]
        phases.append({"name": ph.name, "duration_s": ph.duration_s, "ranges": ranges})
    return {"loop": True, "start_ns": int(start.time * 1e9), "phases": phases}
