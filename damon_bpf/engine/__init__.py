"""A user-space port of the DAMON monitoring core (``mm/damon/core.c``), standard library + numpy only.

Public surface: the data model (:mod:`.model`), the operations contract and registry (:mod:`.ops`), the core
algorithms (:mod:`.core`), DAMOS (:mod:`.damos`), push-style access reports (:mod:`.access_reports`) and the
loop (:mod:`.kdamond`). This package never imports ``damon_bpf.ops``, ``damon_bpf.probes``, ``bcc`` or the CLI.

Kernel release
    Every rule follows Linux ``KERNEL_RELEASE`` (7.3-rc1), with the 7.3 mm-unstable DAMON patches that release
    carries. Older behaviour that docstrings mention (``<= 7.2``) is history, not an option.

Deliberate differences
    ``nr_accesses_bp`` kept as the <= 7.2 pseudo moving sum (for damo's records), batched checks, restarting a
    window that fell behind, a seedable ``Ctx.rng``, DAMOS merge-back per target, no online commits, the
    ``task_mem_stall_us`` goal metric, and DAMOS pattern bounds given as a time or a percentage converted again
    when the intervals change (``AccessPattern.rebase``).

``docs/engine.md`` lists each kernel function with its counterpart here and the tests that check it, and each
deliberate difference with its reason.
"""

from damon_bpf.engine.core import set_attrs, set_regions
from damon_bpf.engine.kdamond import Kdamond, RegionSnapshot, Snapshot, StopReason, TargetSnapshot
from damon_bpf.engine.model import (
    DAMON_MIN_REGION_SZ,
    AddrRange,
    Attrs,
    Ctx,
    IntervalsGoal,
    Region,
    SourceIntervals,
    Target,
)
from damon_bpf.engine.ops import (
    Applied,
    BaseOperations,
    Operations,
    is_registered_ops,
    register_ops,
    registered_ops,
    select_ops,
)
from damon_bpf.engine.access_reports import AccessReports, account_reports

#: The Linux release whose ``mm/damon`` rules the engine follows (see the module docstring).
KERNEL_RELEASE = "7.3-rc1"

__all__ = (
    "KERNEL_RELEASE",
    "DAMON_MIN_REGION_SZ",
    "AddrRange",
    "Attrs",
    "Ctx",
    "IntervalsGoal",
    "SourceIntervals",
    "Region",
    "Target",
    "Kdamond",
    "Snapshot",
    "TargetSnapshot",
    "RegionSnapshot",
    "StopReason",
    "Applied",
    "BaseOperations",
    "Operations",
    "register_ops",
    "registered_ops",
    "is_registered_ops",
    "select_ops",
    "AccessReports",
    "account_reports",
    "set_attrs",
    "set_regions",
)
