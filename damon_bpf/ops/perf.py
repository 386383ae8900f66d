"""The ``perf`` access source: perf samples with data addresses, counted per region in the kernel.

Per-CPU perf events (system-wide; the BPF program keeps the target processes' samples, so every thread, also
the ones created later, is covered) run ``bpf/perf_sample.bpf.c`` on each sample with ``PERF_SAMPLE_ADDR``.
Events: hardware data-address sampling when the CPU has it (Intel PEBS ``mem-loads``/``mem-stores``, AMD IBS
op), else software page faults, and any event perf's syntax names (``--event``).

Hardware samples stand for ``period`` accesses each, so ``nr_accesses`` comes from the density estimate of
:func:`damon_bpf.ops.bpf.density_nr_accesses`; software page faults with period 1 are exact events and use the
interval-hit rule, exactly like the ``fault`` source.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.model import Ctx
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops.bpf import BpfAccessOps, density_nr_accesses

__all__ = ("PerfOps",)

log = logging.getLogger(__name__)


def _write_specs(specs: list[Any]) -> list[Any]:
    # --writes-only keeps the store events (the program drops everything else too: WRITES_ONLY). A software
    # page fault's sample carries the address, thread, CPU and registers, not the fault's error code (x86 reads
    # it from the exception frame and overwrites orig_ax with -1 before the event fires): it cannot tell writes.
    kept = [s for s in specs if s.is_write]
    if not kept:
        raise NotSupportedError(
            "--writes-only needs store samples (mem-stores, PEBS) and " + ", ".join(s.name for s in specs)
            + " cannot tell reads from writes: use --source fault --writes-only (its tracepoint has the error code)")
    return kept


class PerfOps(BpfAccessOps):
    """The ``perf`` operations set.

    :param events: perf event names (``page-faults``, ``mem-loads,mem-stores``, ``ibs_op//``, ``TYPE:CONFIG``);
        None: hardware data-address sampling if available, else software page faults
    :param period: sampling period for every event (default: each event's own, primes for hardware events)
    """

    name = "perf"
    family = "perf_sample"

    def __init__(self, *, events: str | None = None, period: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        if period is not None and period <= 0:
            raise InvalidParamsError("the sampling period must be positive")
        self.events = events
        self.period = period
        self.specs: list[Any] = []
        self._attached: list[Any] = []

    def check_supported(self) -> None:
        super().check_supported()
        self._resolve()

    def _resolve(self) -> None:
        from damon_bpf.probes import perf_events

        if self.specs:
            return
        if self.events:
            self.specs = perf_events.parse_event(self.events, period=self.period)
        else:
            ok, why = perf_events.hardware_sampling_status()
            self.specs = perf_events.default_events()
            if not ok:
                self.notes.append(why)
            if self.period is not None:
                self.specs = perf_events.parse_event(",".join(s.name for s in self.specs), period=self.period)
        if self.writes_only:
            self.specs = _write_specs(self.specs)
        for spec in self.specs:
            perf_events.detect(spec)

    def attach(self, ctx: Ctx) -> None:
        from damon_bpf.probes import perf_events

        self._resolve()
        for spec in self.specs:
            att = perf_events.attach(self.probe.bpf, spec)
            self._attached.append(att)
            self.probe.note_attached(spec.describe(), spec.fn_name)
        self.attach_point = ", ".join(s.describe() for s in self.specs)
        periods = {s.sample_period for s in self.specs if s.sampled}
        if len(periods) > 1:
            self.notes.append("events with different periods share one counter: the density estimate uses "
                              f"their mean period ({int(np.mean(sorted(periods)))})")

    @property
    def sampled(self) -> bool:
        return any(s.sampled for s in self.specs)

    def nr_accesses_of(self, ctx: Ctx, drained: Any, nr_samples: int) -> npt.NDArray[np.int64]:
        if not self.sampled:
            return super().nr_accesses_of(ctx, drained, nr_samples)
        period = int(np.mean([s.sample_period for s in self.specs if s.sampled]))
        sz = np.concatenate([(e.astype(np.int64) - s.astype(np.int64)) for s, e in self._tables]) \
            if self._tables else np.zeros(0, np.int64)
        return density_nr_accesses(drained.nr_events, period, sz, nr_samples,
                                   ctx.attrs.sample_interval_us / 1e6)

    def cleanup(self, ctx: Ctx) -> None:
        from damon_bpf.probes import perf_events

        try:
            if self.probe is not None and self.probe.bpf is not None:
                for att in self._attached:
                    try:
                        perf_events.detach(self.probe.bpf, att)
                    except Exception:
                        log.exception("detaching perf events failed")
            self._attached.clear()
        finally:
            super().cleanup(ctx)
