"""What an access source is, written once: :class:`SourceDescriptor` and the options every source shares.

An operations set (``ops/<name>.py``) is the code that watches memory; its descriptor (``ops/sources/<name>.py``)
is everything the layers above need to know about it without importing it: its name, its typed options and
their command-line form, the machine features it needs, whether it chooses its own intervals, what it cannot
see, and how ``damon-bpf compare`` and ``demo`` spell and configure it. The layers above ask the descriptor;
none of them tests a source's name. Descriptors import their backend only when a session builds it, so
``damon-bpf --help`` and ``features`` load no backend (the lazy import paths of ``ops/__init__.py``).

The kernel has no counterpart: ``struct damon_operations`` (``include/linux/damon.h``) is the backend itself;
this is what damo's ``_damon_features.py`` and its per-interface ``supported()`` checks are to damo.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from damon_bpf.config.units import nonnegative_int
from damon_bpf.errors import DamonBpfError, InvalidParamsError

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("SourceOptions", "BpfOptions", "SharedSettings", "SourceDescriptor", "BpfSourceDescriptor",
           "add_bpf_arguments")

#: Room for processes added while running (``--follow-children``) in the BPF sources' target map.
CHILDREN_ROOM = 32


@dataclass(frozen=True)
class SourceOptions:
    """The options of one source, frozen and typed (each source subclasses it); :meth:`to_dict` and
    :meth:`from_dict` round-trip them through plain dicts (JSON results, bench tables)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, kv: dict[str, Any]) -> SourceOptions:
        """:raises InvalidParamsError: a key that is no option of this source"""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kv) - names)
        if unknown:
            raise InvalidParamsError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(names)) or 'none'})")
        return cls(**kv)


@dataclass(frozen=True)
class BpfOptions(SourceOptions):
    """Options of every source whose events a BPF program counts in the kernel (``ops/bpf.py``).

    :ivar rate_limit: events counted per second per CPU at most (overhead bound; 0: none)
    :ivar bpf_stats: turn on ``kernel.bpf_stats_enabled`` for the session (the BPF ns per event figure)
    :ivar writes_only: count write accesses only (the program drops reads: ``-DWRITES_ONLY=1``)
    """

    rate_limit: int = 200_000
    bpf_stats: bool = True
    writes_only: bool = False


@dataclass(frozen=True)
class SharedSettings:
    """What a command gives every source it runs besides their own options (``compare``: the rate limit, BPF
    statistics, the seed and the bundled workload).

    :ivar workload_pattern: the synthetic access pattern of the bundled workload that runs, if one does
    """

    rate_limit: int = 200_000
    bpf_stats: bool = True
    seed: int | None = None
    workload_pattern: dict[str, Any] | None = None


O = TypeVar("O", bound=SourceOptions)
B = TypeVar("B", bound=BpfOptions)


class SourceDescriptor(Generic[O]):
    """One access source, described once. Subclasses set the attributes and override the hooks that apply.

    :ivar name: the ops id (``--source NAME``, ``MonitorSpec.source``)
    :ivar summary: its part of ``--source``'s help
    :ivar ops_path: ``"module:Class"`` of its operations set, registered lazily in the engine's registry
    :ivar options_type: its frozen options dataclass
    :ivar features: rows of ``damon-bpf features`` it needs, every one
    :ivar features_any: rows of which it needs one (alternative attach points); empty: none
    :ivar selectable: offered by ``--source`` (replay is built by ``damon-bpf import`` only)
    :ivar auto_rank: where ``--source auto`` tries it (lowest first; the last is taken when nothing before it is
        usable), None: never
    :ivar auto_help: how ``--source``'s help names it in the ``auto`` order (default: its name)
    :ivar chooses_intervals: with no interval option, the source chooses the intervals for its cost
        (``Attrs.source_intervals``) instead of damo's defaults
    :ivar adds_processes: can monitor processes added while running (followed children, cgroups)
    :ivar loads_bpf: runs BPF programs (``compare`` then turns BPF run-time statistics on for all)
    :ivar in_demo: offered by ``damon-bpf demo --source``
    :ivar demo_file_backed: ``demo`` gives the workload file-backed memory for it
    :ivar needs_workload: ``compare`` runs it only on the bundled workload (it follows its ground truth)
    :ivar compare_default: ``compare`` runs its spellings without ``--sources``
    :ivar compare_prefix: a ``compare`` spelling ``PREFIXVALUE`` (``perf:EVENTS``), or None
    :ivar compare_prefix_help: how the prefix spelling reads in messages (``perf:EVENTS``)
    :ivar reference: its hot sets are what ``compare`` holds the others against (the kernel's own check)
    :ivar counts_writes: tells writes from reads, so it takes ``--writes-only`` (fault: the fault's error code;
        perf: store events)
    :ivar evaluates_probes: evaluates data attribute probes (``--probe_filter``, ``Operations.apply_probes``): it
        sees the page frame behind each sample; under ``--source auto`` probes select it
    """

    name: str = ""
    summary: str = ""
    ops_path: str = ""
    options_type: type[O]
    features: tuple[str, ...] = ()
    features_any: tuple[str, ...] = ()
    selectable: bool = True
    auto_rank: int | None = None
    auto_help: str = ""
    chooses_intervals: bool = False
    adds_processes: bool = True
    loads_bpf: bool = False
    in_demo: bool = False
    demo_file_backed: bool = False
    needs_workload: bool = False
    compare_default: bool = True
    compare_prefix: str | None = None
    compare_prefix_help: str = ""
    reference: bool = False
    evaluates_probes: bool = False
    counts_writes: bool = False

    # -- options -------------------------------------------------------------------------------------------

    def defaults(self) -> O:
        return self.options_type()

    def options_or_defaults(self, options: SourceOptions | None) -> O:
        """*options* when they are this source's, its defaults for None.

        :raises InvalidParamsError: options of another source
        """
        if options is None:
            return self.defaults()
        if not isinstance(options, self.options_type):
            raise InvalidParamsError(f"the {self.name} source takes {self.options_type.__name__}, not "
                                     f"{type(options).__name__}")
        return options

    # -- the command line ----------------------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
        """Add its own options (to the ``access source`` *group*, or to *parser*); none by default."""

    def given_arguments(self, args: argparse.Namespace) -> list[str]:
        """Its own options given on the command line (not at their defaults), as option names."""
        return []

    def owned_arguments(self) -> list[str]:
        """The option names :meth:`given_arguments` may name: said when another source is chosen with them."""
        return []

    def selected_by(self, args: argparse.Namespace) -> bool:
        """Whether options given select this source under ``--source auto`` (``--probe`` selects ``fault``;
        ``--probe_filter`` a source that :attr:`evaluates_probes`)."""
        return self.evaluates_probes and bool(getattr(args, "probe_filter", None))

    def options_from_args(self, args: argparse.Namespace) -> O:
        """:raises InvalidParamsError: an option value it cannot take"""
        return self.defaults()

    def refuse_writes_only(self, counters: list[str]) -> None:
        """``--writes-only`` was given and this source does not :attr:`count_writes`: say why (one line).

        :param counters: the sources that do
        :raises InvalidParamsError: always (a source may raise a more telling error)
        """
        raise InvalidParamsError(f"--writes-only belongs to the {' and '.join(counters)} sources, not {self.name}")

    def check_not_given(self, args: argparse.Namespace) -> None:
        """:raises InvalidParamsError: its options were given while another source was chosen"""
        if self.given_arguments(args):
            raise InvalidParamsError(f"{' and '.join(self.owned_arguments())} belong to the {self.name} source")

    # -- the machine ---------------------------------------------------------------------------------------

    def check_supported(self, options: O | None = None) -> None:
        """Whether this machine can run the source with *options* (default: its defaults): the backend's own
        check (root, bcc, BTF, PMU, ...).

        :raises NotSupportedError, PermissionDeniedError, MissingDependencyError: what it lacks
        """
        self.create_ops(options if options is not None else self.defaults()).check_supported()

    def auto_usable(self) -> bool:
        """Whether ``--source auto`` may pick it on this machine (default: :meth:`check_supported` passes)."""
        try:
            self.check_supported()
        except DamonBpfError:
            return False
        return True

    # -- what it sees --------------------------------------------------------------------------------------

    def blind_to_resident(self, options: O) -> str | None:
        """One line saying that the source with *options* cannot see accesses to memory that stays resident,
        or None when it can."""
        return None

    def counts_faults(self, options: O) -> bool:
        """Whether it counts page faults (it then sees the faults other sources' re-arming causes)."""
        return False

    def rearms_faults(self, options: O) -> bool:
        """Whether it makes resident pages fault again (pageout probing, NUMA hint faults)."""
        return False

    def unmaps_pages(self, options: O) -> bool:
        """Whether it makes pages non-present (their Accessed bits then read as clear until they fault back)."""
        return False

    # -- running -------------------------------------------------------------------------------------------

    def create_ops(self, options: O, *, follow_children: bool = False) -> Operations:
        """Build the operations set for *options*; *follow_children*: leave room for processes added later."""
        raise NotImplementedError

    # -- compare and demo ----------------------------------------------------------------------------------

    def compare_variants(self) -> dict[str, O]:
        """Its fixed ``compare`` spellings, with the options each stands for (default: its name, defaults)."""
        return {self.name: self.defaults()}

    def compare_prefixed(self, value: str) -> O:
        """The options of the spelling ``compare_prefix + value``."""
        raise InvalidParamsError(f"the {self.name} source has no {self.compare_prefix_help} spelling")

    def compare_options(self, word: str) -> O | None:
        """The options a ``compare`` spelling stands for, None when *word* is not one of this source's."""
        variants = self.compare_variants()
        if word in variants:
            return variants[word]
        if self.compare_prefix is not None and word.startswith(self.compare_prefix):
            return self.compare_prefixed(word[len(self.compare_prefix):])
        return None

    def with_settings(self, options: O, settings: SharedSettings) -> O:
        """*options* with what the command gives every source (``compare``: rate limit, seed, workload).

        :raises InvalidParamsError: the settings lack what the source needs (synthetic: a workload)
        """
        return options

    def demo_options(self, truth_path: str, seed: int | None) -> O:
        """The options ``damon-bpf demo`` runs it with, the bundled workload writing its truth to *truth_path*."""
        return self.defaults()


class BpfSourceDescriptor(SourceDescriptor[B]):
    """A source whose events a BPF program counts (``ops/bpf.py``): shared options, room for children."""

    loads_bpf = True

    def with_settings(self, options: B, settings: SharedSettings) -> B:
        return dataclasses.replace(options, rate_limit=settings.rate_limit, bpf_stats=settings.bpf_stats)

    @staticmethod
    def bpf_arguments(args: argparse.Namespace) -> dict[str, Any]:
        """The shared BPF options of the command line (:func:`add_bpf_arguments`)."""
        return {"rate_limit": int(args.rate_limit), "bpf_stats": not args.no_bpf_stats,
                "writes_only": bool(getattr(args, "writes_only", False))}

    @staticmethod
    def children_room(follow_children: bool) -> int:
        return CHILDREN_ROOM if follow_children else 0


def add_bpf_arguments(group: argparse._ArgumentGroup) -> None:
    """The options every BPF source takes (:class:`BpfOptions`)."""
    group.add_argument("--rate-limit", type=nonnegative_int, default=200_000, metavar="N",
                       help="BPF sources: count at most N events per second per CPU (overhead bound; 0: none)")
    group.add_argument("--no-bpf-stats", action="store_true",
                       help="BPF sources: do not enable kernel.bpf_stats_enabled (no BPF ns per event figure)")
    group.add_argument("--writes-only", action="store_true",
                       help="fault and perf sources: count write accesses only (the BPF program drops reads); fault: "
                            "the page fault's error code, perf: store events (the software page-fault event cannot "
                            "tell); not the pte source")
