"""Bundled workload generator with ground truth, in the spirit of DAMON's ``masim`` memory access simulator.

masim (``sjp38/masim``) reads a config of regions and phases and accesses them so that DAMON's output can
be compared with what really happened. This package does the same in Python: :mod:`.config` describes the
regions and phases (and the built-in ``stairs``/``zigzag``/``hotcold`` patterns), :mod:`.runner` maps the
regions and touches them from N threads with vectorised numpy, writing a JSON-lines ground truth, and
:mod:`.truth` reads that ground truth back so monitoring accuracy can be scored. :mod:`.cli` is the
``damon-bpf-workload`` command.
"""

from __future__ import annotations

from damon_bpf.workload.config import (
    BUILTIN_PATTERNS,
    Access,
    Pattern,
    PhaseAccess,
    PhaseSpec,
    RegionSpec,
    WorkloadConfig,
    builtin_pattern,
    config_from_dict,
    load_config,
)
from damon_bpf.workload.runner import RegionInfo, Workload, disk_backed_dir
from damon_bpf.workload.truth import (
    PhaseRegion,
    Truth,
    TruthPhase,
    TruthRegion,
    TruthStart,
    hot_ranges_at,
    load_truth,
    phase_at,
)

__all__ = (
    "disk_backed_dir",
    "BUILTIN_PATTERNS",
    "Access",
    "Pattern",
    "PhaseAccess",
    "PhaseSpec",
    "RegionSpec",
    "WorkloadConfig",
    "builtin_pattern",
    "config_from_dict",
    "load_config",
    "RegionInfo",
    "Workload",
    "PhaseRegion",
    "Truth",
    "TruthPhase",
    "TruthRegion",
    "TruthStart",
    "hot_ranges_at",
    "load_truth",
    "phase_at",
)
