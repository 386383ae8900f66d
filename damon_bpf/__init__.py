"""damon-bpf: DAMON-style data access monitoring and DAMOS memory actions in user space, fed by eBPF.

``import damon_bpf`` works without bcc, without root and off Linux: BPF code is only loaded by
``damon_bpf.probes`` when a BPF access source is selected.
"""

from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    MissingDependencyError,
    NotSupportedError,
    PermissionDeniedError,
    ProbeAttachError,
    ProbeLoadError,
    TargetGoneError,
)

__version__ = "0.1.0"

__all__ = (
    "__version__",
    "DamonBpfError",
    "InvalidParamsError",
    "MissingDependencyError",
    "NotSupportedError",
    "PermissionDeniedError",
    "ProbeAttachError",
    "ProbeLoadError",
    "TargetGoneError",
)
