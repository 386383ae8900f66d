"""The ``replay`` source described (its operations set: :mod:`damon_bpf.ops.replay`): samples of a perf
recording replayed on a fake clock, built by ``damon-bpf import`` (:mod:`damon_bpf.session.replay`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from damon_bpf.ops.sources.base import SourceDescriptor, SourceOptions

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("ReplayOptions", "ReplaySource")


@dataclass(frozen=True)
class ReplayOptions(SourceOptions):
    """:ivar samples: the recording's samples (:class:`damon_bpf.results.perfscript.PerfSamples`)
    :ivar estimator: how samples become ``nr_accesses`` (``damon_bpf.ops.replay.ESTIMATORS``)"""

    samples: Any = None
    estimator: str = "auto"


class ReplaySource(SourceDescriptor[ReplayOptions]):
    name = "replay"
    summary = "replay: samples of a perf recording"
    ops_path = "damon_bpf.ops.replay:ReplayOps"
    options_type = ReplayOptions
    selectable = False
    # the recording holds the processes it holds
    adds_processes = False
    compare_default = False

    def create_ops(self, options: ReplayOptions, *, follow_children: bool = False) -> Operations:
        from damon_bpf.ops.replay import ReplayOps

        return ReplayOps(options.samples, estimator=options.estimator)

    def compare_variants(self) -> dict[str, ReplayOptions]:
        return {}  # nothing to replay while the others monitor
