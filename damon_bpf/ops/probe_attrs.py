"""Data attribute probes (7.2's ``apply_probes``) for the ``pte`` source: what the page at each probe address
*is*, from the page-table walk the source already does every window and the page frame files.

Per probe page (:mod:`damon_bpf.ops.pte`'s random pages of each region, read at the end of each window) the
walk gives the leaf entry: present or not, its level (PTE, PMD, PUD: the mapping size for ``hugepage_size``),
its Dirty bit (``written``) and the PFN. The PFN gives ``/proc/kpageflags`` (``anon``, ``file``, ``active``;
pages off the LRU and the zero page are what ``damon_get_folio()`` does not return: no attribute, as the
kernel's missing folio), ``/proc/kpagecgroup`` (``memcg``, only read when a probe has a memcg filter) and the
memory block's NUMA node (``node``, only when a probe has a node filter). Each region's hits are
``nr_samples`` times the share of its probe pages that pass (:func:`damon_bpf.engine.probes.add_probe_hits`).

Limits: ``written`` is the leaf's Dirty bit, which nothing here re-arms (no soft-dirty): a page written once
stays Dirty until writeback cleans it (file pages) or for good (anonymous pages not swapped), so it says
"written since it was last clean", not "written in this window". ``hugepage_size`` sees the mapping size of
the leaf: a large folio mapped by PTEs (mTHP) reads as 4 KiB.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.model import Ctx
from damon_bpf.engine.probes import PageAttrs, Probe, add_probe_hits
from damon_bpf.errors import NotSupportedError
from damon_bpf.linux.kpage import KPF_ACTIVE, KPF_ANON, KPF_LRU, KPF_ZERO_PAGE, KPageReader, memcg_inode, node_blocks

__all__ = ("PteProbeEval", "apply_pte_probes", "LEAF_SIZES")

#: bytes mapped by a leaf of each walk level (1 PTE, 2 PMD, 3 PUD)
LEAF_SIZES = {1: 4096, 2: 2 << 20, 3: 1 << 30}


class PteProbeEval:
    """The page attributes of walk results, for *probes* (opened once per session).

    :raises PermissionDeniedError: not root (``/proc/kpageflags``)
    :raises NotSupportedError: a file the probes need is missing, or a memcg filter names no cgroup
    """

    def __init__(self, probes: list[Probe], proc_root: str = "/proc", sys_root: str = "/sys") -> None:
        types = {f.type for p in probes for f in p.filters}
        if "memcg" in types:
            from damon_bpf.linux.cgroups import cgroup_mounts

            # the hierarchy of the memory controller: /proc/kpagecgroup gives its cgroups' inodes
            v2, v1_memory = cgroup_mounts(proc_root)
            root = v1_memory or v2
            if root is None:
                raise NotSupportedError("memcg probe filter: no cgroup hierarchy with the memory controller")
            for p in probes:
                for f in p.filters:
                    if f.type == "memcg" and f.memcg_path is not None:
                        f.memcg_id = memcg_inode(f.memcg_path, root)
        self.reader = KPageReader(proc_root, cgroup="memcg" in types)
        self.block_sz, self.blocks = node_blocks(sys_root) if "node" in types else (0, {})
        self.need_node = "node" in types
        self.nr_pages = 0

    def page_attrs(self, results: npt.NDArray[np.uint64]) -> PageAttrs:
        from damon_bpf.probes.pte import R_DIRTY, R_PRESENT, result_level, result_phys

        present = (results & np.uint64(R_PRESENT)) != 0
        phys = result_phys(results).astype(np.int64)
        present &= phys != 0
        pfns = np.where(present, phys >> 12, 0)
        flags = self.reader.flags(pfns)
        present &= ((flags & np.uint64(KPF_LRU)) != 0) & ((flags & np.uint64(KPF_ZERO_PAGE)) == 0)
        level = result_level(results)
        map_sz = np.select([level == 1, level == 2, level == 3], [LEAF_SIZES[1], LEAF_SIZES[2], LEAF_SIZES[3]], 0)
        node = np.full(results.size, -1, np.int64)
        if self.need_node and self.block_sz:
            blk = phys // self.block_sz
            node = np.array([self.blocks.get(b, -1) for b in blk.tolist()], np.int64)
        self.nr_pages += int(results.size)
        return PageAttrs(present=present, anon=(flags & np.uint64(KPF_ANON)) != 0,
                         dirty=(results & np.uint64(R_DIRTY)) != 0, active=(flags & np.uint64(KPF_ACTIVE)) != 0,
                         map_sz=np.where(present, map_sz, 0).astype(np.int64),
                         memcg=self.reader.memcgs(np.where(present, pfns, 0)), node=node)

    def close(self) -> None:
        self.reader.close()


def apply_pte_probes(ops: Any, ctx: Ctx, nr_samples: int, window: tuple[Any, Any] | None) -> None:
    """``apply_probes`` of the pte source: *window* is ``(walk results, global region index)`` of the window's
    probe pages (None when the window read none). The evaluator lives on *ops* (``_probe_eval``)."""
    if window is None or not ctx.probes:
        return
    ev: PteProbeEval | None = getattr(ops, "_probe_eval", None)
    if ev is None:
        ev = PteProbeEval(ctx.probes, getattr(ops, "proc_root", "/proc"))
        setattr(ops, "_probe_eval", ev)
        weakref.finalize(ops, ev.close)  # its file descriptors go with the source
    results, region = window
    pa = ev.page_attrs(results)
    offs = ops._region_offs
    for k, (_ti, t, _pt) in enumerate(ops._live_now):
        lo, hi = int(offs[k]), int(offs[k + 1])
        if hi - lo != len(t.ra):
            continue
        sel = (region >= lo) & (region < hi)
        if not sel.any():
            continue
        sub = PageAttrs(*(getattr(pa, f)[sel] for f in ("present", "anon", "dirty", "active", "map_sz", "memcg",
                                                         "node")))
        add_probe_hits(t.ra.probe_hits, ctx.probes, region[sel] - lo, sub, nr_samples, rng=ops._rng)
