"""DAMOS ops-layer filters for the vaddr operations set: the user-space ``damos_folio_filter_match()``.

**Per piece, not per folio.** The kernel evaluates ops-layer filters per folio while it walks the region's page
table; user space cannot, so each *piece* (the part of a region in one VMA, cut further at PMD-mapped huge pages
when a ``hugepage_size`` filter needs folio sizes) gets one decision, with the kernel's
``damos_filter_out()`` semantics: the first matching filter decides, else the core's default.

**Types.** ``anon`` classifies whole VMAs; ``memcg`` treats all of a process's memory as charged to its current
cgroup; ``hugepage_size`` uses the ``PAGEMAP_SCAN`` ioctl (Linux 6.7+); ``unmapped`` never matches inside a VMA;
``young`` and ``active`` are refused by :func:`check_filters`, never silently ignored.

Everything here is pure and works on plain data: a process's memory cgroup comes from
:func:`damon_bpf.linux.cgroups.read_memcg_path`, its huge pages from :class:`damon_bpf.linux.pagemap.PagemapScanner`.
See docs/ops.md, section "DAMOS ops-layer filters", for the decision rule and what each type approximates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.cgroups import normalize_cgroup_path
from damon_bpf.linux.procmaps import Vma, mappings_in

__all__ = (
    "OPS_FILTER_TYPES",
    "REFUSED_FILTER_TYPES",
    "Piece",
    "filter_type_name",
    "ops_filters_of",
    "check_filters",
    "filter_refused_reason",
    "is_anon_vma",
    "split_at_vmas",
    "split_by_huge",
    "filter_match",
    "piece_passes",
    "evaluate",
)


#: The ``enum damos_filter_type`` values handled by the ops layer (``damos_filter_for_ops()``).
OPS_FILTER_TYPES = frozenset({"anon", "active", "memcg", "young", "hugepage_size", "unmapped"})

#: Ops filter types vaddr cannot evaluate from user space, with the reason (see the module docstring).
REFUSED_FILTER_TYPES = {
    "young": "the young filter needs the page-table accessed bits of the target's pages (the kernel's "
             "damon_folio_young()), which user space cannot read for another process",
    "active": "the active filter needs the LRU state of the target's pages (folio_test_active()), which user "
              "space cannot read for another process",
}

_PAGE_SIZE = 4096


def filter_type_name(f: Any) -> str:
    """The filter's type name (``f.type.value``)."""
    t = getattr(f, "type", None)
    v = getattr(t, "value", t)
    return v if isinstance(v, str) else ""


def ops_filters_of(scheme: Any) -> list[Any]:
    """The ops-layer filters of *scheme*, in order (``scheme.ops_filters`` where the scheme has it, else the
    filters whose type is not a core type); empty for schemes without filters."""
    filters = getattr(scheme, "ops_filters", None)
    if filters is None:
        filters = [f for f in getattr(scheme, "filters", None) or () if filter_type_name(f) in OPS_FILTER_TYPES]
    return list(filters)


def filter_refused_reason(f: Any) -> str | None:
    """Why vaddr cannot evaluate filter *f* (None: it can)."""
    reason = REFUSED_FILTER_TYPES.get(filter_type_name(f))
    return f"DAMOS filter {filter_type_name(f)!r}: {reason}" if reason else None


def check_filters(filters: Iterable[Any], hugepage_size_supported: Callable[[], str | None] | None = None) -> None:
    """Refuse, before a scheme starts, the ops filters this layer cannot evaluate.

    :param filters: the scheme's ops-layer filters
    :param hugepage_size_supported: returns None when ``hugepage_size`` filters can be evaluated here, else
        the reason (see :meth:`PagemapScanner.probe`)
    :raises NotSupportedError: a ``young`` or ``active`` filter, or a ``hugepage_size`` filter on a kernel
        without ``PAGEMAP_SCAN``
    :raises InvalidParamsError: a ``memcg`` filter without ``memcg_path``, or a ``hugepage_size`` filter with
        ``sz_min > sz_max``
    """
    for f in filters:
        reason = filter_refused_reason(f)
        if reason:
            raise NotSupportedError(reason)
        t = filter_type_name(f)
        if t == "memcg" and not getattr(f, "memcg_path", None):
            raise InvalidParamsError("DAMOS filter 'memcg' needs a memcg_path")
        if t == "hugepage_size":
            if int(getattr(f, "sz_min", 0)) > int(getattr(f, "sz_max", 0)):
                raise InvalidParamsError("DAMOS filter 'hugepage_size': sz_min > sz_max")
            why = hugepage_size_supported() if hugepage_size_supported is not None else None
            if why:
                raise NotSupportedError(f"DAMOS filter 'hugepage_size': {why}")


# -- pieces ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Piece:
    """A part of a region inside one VMA: ``[start, end)`` with the VMA and the folio size attributed to it
    (``PAGE_SIZE``, or the PMD size for PMD-mapped huge pages)."""

    start: int
    end: int
    vma: Vma
    folio_sz: int = _PAGE_SIZE

    @property
    def sz(self) -> int:
        return self.end - self.start


def is_anon_vma(vma: Vma) -> bool:
    """Anonymous memory: no backing inode, and not a special mapping (``[vdso]``, ``[vvar]``, ``[vsyscall]``,
    ``[uprobes]``...). ``[heap]``, ``[stack]`` and ``[anon:<name>]`` are anonymous."""
    if vma.inode != 0:
        return False
    name = vma.pathname
    if not name or name in ("[heap]", "[stack]") or name.startswith("[anon:") or name.startswith("[stack:"):
        return True
    return not (name.startswith("[") and name.endswith("]"))


def split_at_vmas(start: int, end: int, vmas: Sequence[Vma]) -> list[Piece]:
    """Cut ``[start, end)`` at VMA boundaries; holes (no VMA) and gate areas (``[vsyscall]``) are left out.

    :param vmas: sorted by address, as :func:`~.procmaps.read_maps` returns them
    """
    return [Piece(max(start, v.start), min(end, v.end), v) for v in mappings_in(vmas, start, end) if not v.is_gate]


def split_by_huge(pieces: Iterable[Piece], huge: Sequence[tuple[int, int]], huge_sz: int) -> list[Piece]:
    """Cut *pieces* where the sorted, disjoint *huge* ranges begin and end; the parts inside get
    ``folio_sz = huge_sz``, the others keep theirs."""
    out: list[Piece] = []
    for p in pieces:
        cur = p.start
        for hs, he in huge:
            if he <= cur or hs >= p.end:
                continue
            hs, he = max(hs, cur), min(he, p.end)
            if hs > cur:
                out.append(Piece(cur, hs, p.vma, p.folio_sz))
            out.append(Piece(hs, he, p.vma, huge_sz))
            cur = he
        if cur < p.end:
            out.append(Piece(cur, p.end, p.vma, p.folio_sz))
    return out


# -- matching --------------------------------------------------------------------------------------------------

def filter_match(f: Any, piece: Piece, memcg_path: str | None = None) -> bool:
    """``damos_folio_filter_match()`` on a piece: whether the piece is of *f*'s type, compared with
    ``f.matching`` (so the result says whether *f* applies to the piece).

    :param memcg_path: the target process's memory cgroup (``memcg`` filters)
    :raises NotSupportedError: a filter type this layer refuses (``young``, ``active``) or does not know
    """
    t = filter_type_name(f)
    if t == "anon":
        matched = is_anon_vma(piece.vma)
    elif t == "memcg":
        want = getattr(f, "memcg_path", None)
        matched = memcg_path is not None and want is not None and \
            normalize_cgroup_path(want) == normalize_cgroup_path(memcg_path)
    elif t == "hugepage_size":
        matched = int(getattr(f, "sz_min", 0)) <= piece.folio_sz <= int(getattr(f, "sz_max", 0))
    elif t == "unmapped":
        matched = False  # everything in a VMA is mapped
    else:
        raise NotSupportedError(filter_refused_reason(f) or f"unknown DAMOS ops filter type {t!r}")
    return matched == bool(getattr(f, "matching", True))


def piece_passes(filters: Sequence[Any], piece: Piece, default_reject: bool, memcg_path: str | None = None) -> bool:
    """The first filter that applies to the piece decides (``allow``: pass, else reject); with none, the
    piece passes unless *default_reject* (``s->ops_filters_default_reject``)."""
    for f in filters:
        if filter_match(f, piece, memcg_path):
            return bool(getattr(f, "allow", False))
    return not default_reject


def evaluate(scheme: Any, pieces: Sequence[Piece], memcg_path: str | None = None) -> list[tuple[Piece, bool]]:
    """Each piece with whether it passes *scheme*'s ops filters (all pass when the core layer allowed the
    region, ``scheme.core_filters_allowed``, or when there is no ops filter)."""
    filters = ops_filters_of(scheme)
    if not filters or getattr(scheme, "core_filters_allowed", False):
        return [(p, True) for p in pieces]
    default_reject = bool(getattr(scheme, "ops_filters_default_reject", False))
    return [(p, piece_passes(filters, p, default_reject, memcg_path)) for p in pieces]
