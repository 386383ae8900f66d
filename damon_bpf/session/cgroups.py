"""Processes of cgroup v2 directories as monitoring targets: ``export --cgroup PATH``.

:class:`CgroupWatcher` reads each directory's ``cgroup.procs`` (:func:`damon_bpf.linux.cgroups.cgroup_procs`, at
most once a second, from a snapshot consumer) and adds the processes that are new to the running
:class:`~damon_bpf.session.monitor.Monitor`; processes that exit become invalid targets and drop out of the
figures. Exited targets stay in the context (the engine never removes one), so the watcher counts them and asks
for a fresh session with the live processes once they outnumber the live ones (see
:func:`damon_bpf.session.exporter.run_export`). The cgroup file formats live in :mod:`damon_bpf.linux.cgroups`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from damon_bpf.engine import Snapshot
from damon_bpf.linux.cgroups import cgroup_procs

__all__ = ("CgroupWatcher",)

log = logging.getLogger(__name__)


class CgroupWatcher:
    """Keep a monitor's targets in step with the processes of *directories*.

    :param interval_s: the least time between two reads of ``cgroup.procs``
    :param clock: monotonic seconds
    """

    def __init__(self, directories: list[str], interval_s: float = 1.0, clock: Any = time.monotonic) -> None:
        self.directories = list(directories)
        self.interval_s = interval_s
        self.clock = clock
        self.mon: Any = None
        self._next = 0.0
        #: set once exited targets outnumber the live ones: the session should start afresh
        self.wants_restart = False
        #: processes that could not be added, with the reason (the last 32)
        self.errors: list[str] = []
        self._refused: set[int] = set()

    def pids(self) -> list[int]:
        """The processes of every watched cgroup now."""
        out: set[int] = set()
        for d in self.directories:
            out.update(cgroup_procs(d))
        return sorted(out)

    def attach(self, mon: Any) -> None:
        """Watch for *mon* (after ``mon.open()``): a consumer at the head of its aggregation callbacks."""
        self.mon = mon
        self.wants_restart = False
        self._next = self.clock() + self.interval_s
        mon.ctx.after_aggregation.insert(0, self)

    def __call__(self, snap: Snapshot) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self.poll()

    def poll(self) -> None:
        """Add the cgroups' new processes; ask for a restart when exited targets pile up."""
        mon = self.mon
        ctx = mon.ctx
        known = {t.pid for t in ctx.targets}
        for pid in self.pids():
            if pid in known or pid in self._refused or pid == os.getpid():
                continue
            err = mon.add_pid(pid)
            if err is not None:
                self._refused.add(pid)  # a kernel thread, no permission: not retried
                self.errors = (self.errors + [f"pid {pid}: {err}"])[-32:]
                log.info("cannot monitor pid %d: %s", pid, err)
        live = sum(1 for t in ctx.targets if ctx.ops.target_valid(t))
        gone = len(ctx.targets) - live
        if gone > max(32, live):
            self.wants_restart = True
            mon.stop()
