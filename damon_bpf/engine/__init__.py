"""A user-space port of the DAMON monitoring core (``mm/damon/core.c``), standard library + numpy only.

Public surface: the data model (:mod:`.model`), the operations contract and registry (:mod:`.ops`), the core
algorithms (:mod:`.core`), DAMOS (:mod:`.damos`), push-style access reports (:mod:`.reports`) and the loop
(:mod:`.kdamond`). This package never imports ``damon_bpf.ops``, ``damon_bpf.probes``, ``bcc`` or the CLI.

Kernel release
    Every rule follows Linux ``KERNEL_RELEASE`` (7.3-rc1): ``mm/damon/core.c`` and ``mm/damon/ops-common.c``
    with the 7.3 mm-unstable DAMON patches that release carries (``damon_nr_accesses_mvsum()``, "always update
    ->last_nr_accesses for intervals change", partial splitting above max/2, the merge-loop fixes). Older
    behaviour that docstrings mention (``<= 7.2``) is history, not an option.

Deliberate differences
    - ``nr_accesses_bp``, removed in 7.3, is still kept as the <= 7.2 pseudo moving sum, because damo's record
      format carries it; DAMOS and scores use the 7.3 moving sum, never this field.
    - Batched checks: ops may account all sampling intervals up to the next boundary at once
      (``Operations.batched``); the results equal the per-sample loop's (tested).
    - A loop that falls behind by more than an aggregation interval restarts its window (``nr_resyncs``).
    - Randomness comes from ``Ctx.rng`` (a seedable generator) instead of the kernel's per-context lfsr113;
      time for quotas is ``CLOCK_MONOTONIC`` ms instead of jiffies.
    - DAMOS merge-back runs after each target's walk instead of region by region (same result: a walk never
      changes regions it has passed).
    - No online parameter commits (``damon_commit_ctx()``), ``damon_call()``, ``damos_walk()`` or data
      attributes probes: a new configuration means a new context.
    - ``task_mem_stall_us`` is a quota goal metric the kernel lacks.

``docs/engine.md`` lists each kernel function with its counterpart here and the tests that check it.
"""

from damon_bpf.engine.core import set_attrs, set_regions
from damon_bpf.engine.kdamond import Kdamond, RegionSnapshot, Snapshot, StopReason, TargetSnapshot
from damon_bpf.engine.model import DAMON_MIN_REGION_SZ, AddrRange, Attrs, Ctx, IntervalsGoal, Region, Target
from damon_bpf.engine.ops import (
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
    "Region",
    "Target",
    "Kdamond",
    "Snapshot",
    "TargetSnapshot",
    "RegionSnapshot",
    "StopReason",
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
