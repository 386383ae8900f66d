"""A user-space port of the DAMON monitoring core (``mm/damon/core.c``), standard library + numpy only.

Public surface: the data model (:mod:`.model`), the operations contract and registry (:mod:`.ops`), the core
algorithms (:mod:`.core`), push-style access reports (:mod:`.reports`) and the loop (:mod:`.kdamond`).
This package never imports ``damon_bpf.ops``, ``damon_bpf.probes``, ``bcc`` or the CLI.
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
from damon_bpf.engine.reports import AccessReports, account_reports

__all__ = (
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
