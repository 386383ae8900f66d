"""damon-bpf: DAMON-style data access monitoring and DAMOS memory actions in user space, fed by eBPF.

The public face of the library:

Monitoring
    :class:`Monitor` runs a session described by a :class:`MonitorSpec` (targets, access source, intervals,
    DAMOS schemes) and hands every aggregation's :class:`Snapshot` to its consumers.
Schemes
    :func:`load_schemes` reads DAMOS schemes from damo's JSON (a file or text); :class:`Scheme` is the engine's.
Records
    :func:`read_records` reads damon-bpf's and damo's record files; :class:`RecordWriter` writes them.
Errors
    Every error is a :class:`DamonBpfError`; the subclasses say what went wrong.

``import damon_bpf`` works without bcc, without root and off Linux: BPF code is only loaded by
``damon_bpf.probes`` when a BPF access source is selected. The layers, bottom up: ``linux`` (system
primitives), ``probes`` (bcc), ``engine`` (DAMON's core), ``ops`` (access sources and DAMOS actions),
``config``, ``results``, ``session``, ``eval``, ``cli``.
"""

from typing import TYPE_CHECKING, Any

from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    MissingDependencyError,
    NotSupportedError,
    PermissionDeniedError,
    ProbeAttachError,
    ProbeLoadError,
    ProcessGoneError,
    TargetGoneError,
)

if TYPE_CHECKING:
    from damon_bpf.config.schemes import load_schemes
    from damon_bpf.engine import Attrs, IntervalsGoal, Snapshot
    from damon_bpf.engine.damos import Scheme
    from damon_bpf.results.records import Record, RecordWriter, read_records
    from damon_bpf.session.monitor import Monitor, MonitorSpec

# loaded on first use, so that importing one layer (``damon_bpf.engine``) does not import the ones above it
_LAZY = {
    "Monitor": "damon_bpf.session.monitor", "MonitorSpec": "damon_bpf.session.monitor",
    "Attrs": "damon_bpf.engine", "IntervalsGoal": "damon_bpf.engine", "Snapshot": "damon_bpf.engine",
    "Scheme": "damon_bpf.engine.damos", "load_schemes": "damon_bpf.config.schemes",
    "Record": "damon_bpf.results.records", "RecordWriter": "damon_bpf.results.records",
    "read_records": "damon_bpf.results.records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'damon_bpf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = (
    "__version__",
    "Monitor",
    "MonitorSpec",
    "Attrs",
    "IntervalsGoal",
    "Snapshot",
    "Scheme",
    "load_schemes",
    "Record",
    "RecordWriter",
    "read_records",
    "DamonBpfError",
    "InvalidParamsError",
    "MissingDependencyError",
    "NotSupportedError",
    "PermissionDeniedError",
    "ProbeAttachError",
    "ProbeLoadError",
    "ProcessGoneError",
    "TargetGoneError",
)
