"""Perf events that deliver a data address to ``bpf/perf_sample.bpf.c``: parsing, detection, attach and detach.

The perf-event side of the ``perf`` access source, after perf's own event parser (``parse-events.c``,
``pmu.c``) and ``perf mem record``'s event choice (``mem-events.c``). One module per job:

- :mod:`~damon_bpf.probes.perf_events.spec`: :class:`EventSpec`, default periods, the BPF program names;
- :mod:`~damon_bpf.probes.perf_events.pmus`: the PMU sysfs reader (``/sys/bus/event_source/devices``);
- :mod:`~damon_bpf.probes.perf_events.lexer` and :mod:`~damon_bpf.probes.perf_events.grammar`: the event
  syntax, :func:`parse_event`;
- :mod:`~damon_bpf.probes.perf_events.opening`: :func:`detect` (a trial ``perf_event_open``), :func:`attach`,
  :func:`detach`, and the errno -> reason table;
- :mod:`~damon_bpf.probes.perf_events.defaults`: the hardware events this machine can sample
  (:func:`check_hardware_events`, shared with the ``pmu/*`` rows of ``damon-bpf features``), and
  :func:`default_events`.

**Syntax.** A comma-separated list of events (commas inside ``pmu/.../`` belong to that event): software page
faults (``page-faults``, exact, no PMU needed), Intel PEBS ``mem-loads``/``mem-stores`` (``ldlat=N``), ``mem``
(what ``perf mem record`` would use here), ``ibs_op``, ``arm_spe``, ``PMU/TERMS/MODS``, ``rHEX`` and
``TYPE:CONFIG``, with the modifiers ``p``/``pp``/``ppp``, ``P``, ``u`` and ``k``.

**Opening.** Every event is opened per CPU and system-wide (``pid=-1``); the BPF program keeps only samples of
the target tgids (``agg_targets``), which catches every thread of a target, including threads created later.

See docs/ops.md, section "Perf events with data addresses", for the full syntax and its perf counterparts.
"""

from damon_bpf.probes.perf_events.defaults import check_hardware_events, default_events, hardware_sampling_status
from damon_bpf.probes.perf_events.grammar import parse_event
from damon_bpf.probes.perf_events.opening import AttachedEvents, attach, detach, detect
from damon_bpf.probes.perf_events.spec import (
    DEFAULT_IBS_PERIOD,
    DEFAULT_PEBS_PERIOD,
    DEFAULT_RAW_PERIOD,
    DEFAULT_SOFTWARE_PERIOD,
    FN_READ,
    FN_WRITE,
    KINDS,
    PERF_MEM_LDLAT,
    SAMPLE_TYPE,
    EventSpec,
)

__all__ = (
    "DEFAULT_IBS_PERIOD",
    "DEFAULT_PEBS_PERIOD",
    "DEFAULT_RAW_PERIOD",
    "DEFAULT_SOFTWARE_PERIOD",
    "FN_READ",
    "FN_WRITE",
    "KINDS",
    "PERF_MEM_LDLAT",
    "SAMPLE_TYPE",
    "AttachedEvents",
    "EventSpec",
    "attach",
    "check_hardware_events",
    "default_events",
    "detach",
    "detect",
    "hardware_sampling_status",
    "parse_event",
)
