"""The ``synthetic`` source described (its operations set: :mod:`damon_bpf.ops.synthetic`): accesses generated
from a pattern, or from a bundled workload's ground truth (a reference for a perfect source)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from damon_bpf.config import limits
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops.sources.base import SharedSettings, SourceDescriptor, SourceOptions

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("SyntheticOptions", "SyntheticSource", "pattern_from_truth", "synthetic_pattern_for_workload")


@dataclass(frozen=True)
class SyntheticOptions(SourceOptions):
    """:ivar pattern: the access pattern (:class:`damon_bpf.ops.synthetic.SyntheticPattern` as a dict); None:
        the source's own default
    :ivar seed: seed of the generator (None: random)"""

    pattern: dict[str, Any] | None = None
    seed: int | None = None


def synthetic_pattern_for_workload(start: Any, config: Any, p_hot: float = 0.3) -> dict[str, Any]:
    """A synthetic access pattern that follows a bundled workload's phases: in each phase the regions it
    touches are accessed (every page with chance *p_hot* per sampling interval), the others are not.

    :param start: the workload's ground-truth start record (``damon_bpf.workload.TruthStart``)
    :param config: the workload's config (``damon_bpf.workload.WorkloadConfig``)
    """
    addr = {r.name: (r.start, r.end) for r in start.regions}
    phases = []
    for ph in config.phases:
        ranges = [{"start": addr[a.region][0], "end": addr[a.region][1], "p": p_hot}
                  for a in ph.accesses if a.region in addr]
        phases.append({"name": ph.name, "duration_s": ph.duration_s, "ranges": ranges})
    return {"loop": True, "start_ns": int(start.time * 1e9), "phases": phases}


def pattern_from_truth(path: str) -> dict[str, Any]:
    """The pattern that follows the bundled workload whose ground truth *path* holds.

    :raises InvalidParamsError: unreadable, no start record, or not a built-in workload
    """
    from damon_bpf.workload import BUILTIN_PATTERNS, builtin_pattern, load_truth

    try:
        truth = load_truth(path)
    except OSError as err:
        raise InvalidParamsError(f"cannot read {path}: {err.strerror}") from err
    if truth.start is None:
        raise InvalidParamsError(f"{path}: no start record")
    if truth.start.pattern not in BUILTIN_PATTERNS:
        raise InvalidParamsError(f"{path}: workload {truth.start.pattern!r} is not a built-in pattern; "
                                 "describe it with --synthetic-pattern")
    return synthetic_pattern_for_workload(truth.start, builtin_pattern(truth.start.pattern))


class SyntheticSource(SourceDescriptor[SyntheticOptions]):
    name = "synthetic"
    summary = "synthetic: generated from a pattern"
    ops_path = "damon_bpf.ops.synthetic:SyntheticOps"
    options_type = SyntheticOptions
    # generated for the targets it started with
    adds_processes = False
    in_demo = True
    needs_workload = True
    compare_default = False

    def add_arguments(self, parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
        parser.add_argument("--synthetic-pattern", metavar="FILE",
                            help="synthetic source: a JSON access pattern (see damon_bpf.ops.synthetic)")
        parser.add_argument("--synthetic-workload", metavar="TRUTH",
                            help="synthetic source: follow the phases of a bundled workload, from its --truth file")

    def options_from_args(self, args: argparse.Namespace) -> SyntheticOptions:
        if args.synthetic_pattern and args.synthetic_workload:
            raise InvalidParamsError("give --synthetic-pattern or --synthetic-workload, not both")
        if args.synthetic_pattern:
            path = args.synthetic_pattern
            data = limits.read_regular(path, limits.MAX_CONFIG_BYTES, "--synthetic-pattern file")
            return SyntheticOptions(pattern=limits.json_loads(data, path), seed=args.seed)
        if args.synthetic_workload:
            return SyntheticOptions(pattern=pattern_from_truth(args.synthetic_workload), seed=args.seed)
        return SyntheticOptions(seed=args.seed)

    def create_ops(self, options: SyntheticOptions, *, follow_children: bool = False) -> Operations:
        from damon_bpf.ops.synthetic import SyntheticOps

        return SyntheticOps(options.pattern, seed=options.seed)

    def with_settings(self, options: SyntheticOptions, settings: SharedSettings) -> SyntheticOptions:
        if settings.workload_pattern is None:
            raise InvalidParamsError("the synthetic source follows the bundled workload's ground truth: "
                                     "it needs --workload")
        return dataclasses.replace(options, pattern=settings.workload_pattern, seed=settings.seed)

    def demo_options(self, truth_path: str, seed: int | None) -> SyntheticOptions:
        return SyntheticOptions(pattern=pattern_from_truth(truth_path), seed=seed)
