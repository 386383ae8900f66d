"""The access sources of damon-bpf, each described once, and what is decided across them.

Every source has one :class:`~damon_bpf.ops.sources.base.SourceDescriptor` (``ops/sources/<name>.py``) with its
typed options, its command-line options, the machine features it needs and what it can see. This registry puts
them together for the layers above: the ``access source`` option group and ``--source auto``
(:func:`add_source_arguments`, :func:`source_from_args`, :func:`auto_source`), building a session's operations
set (:func:`create_ops`), and the source names of ``damon-bpf compare`` (:func:`parse_compare_sources`,
:func:`compare_source`). Nothing above the ops layer tests a source's name.

To add a source, write its operations set and its descriptor (one file will do) and add the descriptor to
:data:`SOURCES`; ``ops/__init__.py`` registers its operations set from there.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from damon_bpf.errors import InvalidParamsError, PermissionDeniedError
from damon_bpf.ops.sources.base import (
    BpfOptions,
    SharedSettings,
    SourceDescriptor,
    SourceOptions,
    add_bpf_arguments,
)
from damon_bpf.ops.sources.fault import FaultOptions, FaultSource
from damon_bpf.ops.sources.perf import PerfOptions, PerfSource
from damon_bpf.ops.sources.pte import PteOptions, PteSource
from damon_bpf.ops.sources.replay import ReplayOptions, ReplaySource
from damon_bpf.ops.sources.synthetic import SyntheticOptions, SyntheticSource

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = (
    "SOURCES", "AUTO", "SourceDescriptor", "SourceOptions", "BpfOptions", "SharedSettings",
    "PteOptions", "FaultOptions", "PerfOptions", "SyntheticOptions", "ReplayOptions",
    "get_source", "find_source", "selectable_names", "auto_order", "auto_source", "reference_source",
    "add_source_arguments", "resolve_source", "source_from_args", "create_ops",
    "compare_names", "compare_default_names", "compare_workload_names", "compare_known", "is_compare_name",
    "compare_source", "parse_compare_sources",
)

#: Every source, once. Their order is the order of ``--source``'s help, of the checks of options given for
#: another source, and of ``compare``'s names.
SOURCES: tuple[SourceDescriptor[Any], ...] = (
    PteSource(),
    FaultSource(),
    PerfSource(),
    SyntheticSource(),
    ReplaySource(),
)

#: ``--source auto``: :func:`auto_source` decides.
AUTO = "auto"


def find_source(name: str) -> SourceDescriptor[Any] | None:
    for d in SOURCES:
        if d.name == name:
            return d
    return None


def get_source(name: str) -> SourceDescriptor[Any]:
    """:raises InvalidParamsError: no source has that name"""
    d = find_source(name)
    if d is None:
        raise InvalidParamsError(f"unknown source {name!r} (known: {', '.join(d.name for d in SOURCES)})")
    return d


def selectable_names() -> list[str]:
    """The names ``--source`` takes besides ``auto``."""
    return [d.name for d in SOURCES if d.selectable]


def auto_order() -> list[SourceDescriptor[Any]]:
    """What ``--source auto`` tries, in order: hardware data-address sampling (``perf``), the kernel's own
    primitive (``pte``), page faults (``fault``, taken when nothing before it is usable)."""
    return sorted((d for d in SOURCES if d.auto_rank is not None), key=lambda d: d.auto_rank or 0)


def auto_source() -> SourceDescriptor[Any]:
    """The source ``--source auto`` picks on this machine: the first of :func:`auto_order` whose
    :meth:`~SourceDescriptor.auto_usable` says yes, else the last. Without root none is usable, and the
    error says that, not why the last one fails (``PermissionDeniedError``)."""
    order = auto_order()
    for d in order[:-1]:
        if d.auto_usable():
            return d
    if os.geteuid() != 0 and not order[-1].auto_usable():
        raise PermissionDeniedError(NOT_ROOT)
    return order[-1]


#: the one line a user without root gets for ``--source auto``
NOT_ROOT = ("damon-bpf watches memory accesses through BPF programs, which only root may load: "
            "run it as root (e.g. with sudo)")


def reference_source() -> SourceDescriptor[Any]:
    """The source whose hot sets ``compare`` holds the others against: the kernel's own access check."""
    return next(d for d in SOURCES if d.reference)


# -- the command line --------------------------------------------------------------------------------------------


def add_source_arguments(parser: argparse.ArgumentParser, default: str = AUTO) -> None:
    """``--source`` and every source's own options, in an ``access source`` group (a source's options that
    are no access options of their own kind go to *parser*)."""
    g = parser.add_argument_group("access source")
    auto_help = ", else ".join(d.auto_help or d.name for d in auto_order())
    g.add_argument("--source", default=default, choices=(AUTO, *selectable_names()),
                   help="; ".join(d.summary for d in SOURCES if d.selectable)
                   + f"; {AUTO} (default): {auto_help}")
    for d in SOURCES:
        if d.selectable:
            d.add_arguments(parser, g)
    add_bpf_arguments(g)


def resolve_source(args: argparse.Namespace) -> SourceDescriptor[Any]:
    """The source the options choose: ``--source NAME``, or for ``auto`` the source that options given belong
    to (``--probe``: fault), else :func:`auto_source`."""
    if args.source != AUTO:
        return get_source(str(args.source))
    for d in SOURCES:
        if d.selectable and d.selected_by(args):
            return d
    return auto_source()


def source_from_args(args: argparse.Namespace,
                     source: SourceDescriptor[Any] | None = None) -> tuple[SourceDescriptor[Any], SourceOptions]:
    """The source (default: :func:`resolve_source`) and its options from the command line.

    :raises InvalidParamsError: options of another source were given, or a value the source cannot take
    :raises NotSupportedError: ``--writes-only`` with a source that cannot count writes here (``pte``)
    """
    source = source if source is not None else resolve_source(args)
    for d in SOURCES:
        if d is not source and d.selectable:
            d.check_not_given(args)
    if getattr(args, "writes_only", False) and not source.counts_writes:
        source.refuse_writes_only([d.name for d in SOURCES if d.counts_writes])
    return source, source.options_from_args(args)


def create_ops(name: str, options: SourceOptions | None = None, *, follow_children: bool = False) -> Operations:
    """The operations set of source *name* with *options* (None: its defaults). An operations set registered
    in the engine without a descriptor (``vaddr``, ``fvaddr``, one of the caller's) is built with no arguments.

    :raises InvalidParamsError: unknown name, options of another source
    """
    d = find_source(name)
    if d is None:
        from damon_bpf.engine.ops import is_registered_ops, select_ops

        if is_registered_ops(name) and options is None:
            return select_ops(name)
        raise InvalidParamsError(f"unknown source {name!r} (known: {', '.join(s.name for s in SOURCES)})")
    return d.create_ops(d.options_or_defaults(options), follow_children=follow_children)


# -- damon-bpf compare's source names -------------------------------------------------------------------------


def compare_names() -> list[str]:
    """Every fixed source name of ``compare`` (``fault+numa``, ...), in :data:`SOURCES` order."""
    return [name for d in SOURCES for name in d.compare_variants()]


def compare_default_names() -> list[str]:
    """What ``compare`` runs without ``--sources``."""
    return [name for d in SOURCES if d.compare_default for name in d.compare_variants()]


def compare_workload_names() -> list[str]:
    """What ``compare`` adds to its default sources on the bundled workload (they follow its ground truth)."""
    return [name for d in SOURCES if d.needs_workload for name in d.compare_variants()]


def compare_known() -> str:
    """The source names of ``compare`` as its messages list them."""
    return ", ".join(compare_names() + [d.compare_prefix_help for d in SOURCES if d.compare_prefix])


def _prefixed(word: str) -> SourceDescriptor[Any] | None:
    return next((d for d in SOURCES if d.compare_prefix and word.startswith(d.compare_prefix)), None)


def is_compare_name(word: str) -> bool:
    """Whether *word* is a source name of ``compare`` (a fixed one or a prefixed one, ``perf:EVENTS``)."""
    return word in compare_names() or _prefixed(word) is not None


def compare_source(word: str, settings: SharedSettings | None = None) -> tuple[SourceDescriptor[Any], SourceOptions]:
    """The source a ``compare`` name stands for and its options, with *settings* on top.

    :raises InvalidParamsError: unknown name, or *settings* lack what the source needs
    """
    for d in SOURCES:
        options = d.compare_options(word)
        if options is not None:
            return d, d.with_settings(options, settings if settings is not None else SharedSettings())
    raise InvalidParamsError(f"unknown source {word!r} (known: {compare_known()})")


def parse_compare_sources(text: str) -> list[str]:
    """Split a ``--sources`` list: comma-separated names, where the value of a prefixed name
    (``perf:mem-loads,mem-stores,fault`` is two sources) may contain commas itself, also inside ``/.../`` terms.

    :raises InvalidParamsError: an unknown or repeated name, or an empty list
    """
    words: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "/":
            depth ^= 1
        if ch == "," and not depth:
            words.append(cur)
            cur = ""
        else:
            cur += ch
    words.append(cur)
    out: list[str] = []
    for w in (w.strip() for w in words):
        if not w:
            raise InvalidParamsError(f"--sources: empty name in {text!r}")
        if is_compare_name(w):
            d = _prefixed(w)
            if d is not None and d.compare_prefix == w:
                d.compare_prefixed("")  # raises: the prefix needs a value
            out.append(w)
        elif out and _prefixed(out[-1]) is not None:
            out[-1] += "," + w  # one more value of the prefixed name before it
        else:
            raise InvalidParamsError(f"--sources: unknown source {w!r} (known: {compare_known()})")
    seen: set[str] = set()
    for name in out:
        if name in seen:
            raise InvalidParamsError(f"--sources: {name} is listed twice")
        seen.add(name)
    return out
