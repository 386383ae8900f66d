"""Ports of ``mm/damon/tests/vaddr-kunit.h`` (torvalds/linux), one test per kunit case, same vectors.

The kernel builds these tests with ``DAMON_MIN_REGION`` 1, hence ``min_region_sz=1`` here.

``damon_test_split_evenly`` is not ported: it tests ``damon_va_evenly_split_region()``, which Linux 7.1
removed when the core took over honouring ``min_nr_regions`` (``damon_apply_min_nr_regions()``); vaddr's init
now just sets the three regions.
"""

from __future__ import annotations

from damon_bpf.engine.core import set_regions
from damon_bpf.engine.model import AddrRange, Region, Target
from damon_bpf.linux.procmaps import Vma, parse_maps, real_vmas
from damon_bpf.ops.vaddr import three_regions


def test_three_regions_in_vmas() -> None:
    """``damon_test_three_regions_in_vmas``: mappings 10-20-25, 200-210-220, 300-305, 307-330 have the gaps
    25-200, 220-300 and 305-307; the two biggest are left out: 10-25, 200-220, 300-330."""
    vmas = [Vma(10, 20), Vma(20, 25), Vma(200, 210), Vma(210, 220), Vma(300, 305), Vma(307, 330)]
    regions = three_regions(vmas, 1)
    assert regions == [AddrRange(10, 25), AddrRange(200, 220), AddrRange(300, 330)]


def _do_test_apply_three_regions(regions: list[int], three: list[tuple[int, int]], expected: list[int]) -> None:
    # damon_do_test_apply_three_regions()
    t = Target(regions=[Region(regions[i * 2], regions[i * 2 + 1]) for i in range(len(regions) // 2)])
    set_regions(t, [AddrRange(s, e) for s, e in three], 1)
    got = [x for r in t.regions for x in (r.start, r.end)]
    assert got == expected


def test_apply_three_regions1() -> None:
    """``damon_test_apply_three_regions1``: the three big regions slightly changed."""
    _do_test_apply_three_regions(
        [10, 20, 20, 30, 50, 55, 55, 57, 57, 59, 70, 80, 80, 90, 90, 100],
        [(5, 27), (45, 55), (73, 104)],
        [5, 20, 20, 27, 45, 55, 73, 80, 80, 90, 90, 104])


def test_apply_three_regions2() -> None:
    """``damon_test_apply_three_regions2``: the second big region now needs two target regions removed."""
    _do_test_apply_three_regions(
        [10, 20, 20, 30, 50, 55, 55, 57, 57, 59, 70, 80, 80, 90, 90, 100],
        [(5, 27), (56, 57), (65, 104)],
        [5, 20, 20, 27, 56, 57, 65, 80, 80, 90, 90, 104])


def test_apply_three_regions3() -> None:
    """``damon_test_apply_three_regions3``: the second big region was freed and mapped elsewhere."""
    _do_test_apply_three_regions(
        [10, 20, 20, 30, 50, 55, 55, 57, 57, 59, 70, 80, 80, 90, 90, 100],
        [(5, 27), (61, 63), (65, 104)],
        [5, 20, 20, 27, 61, 63, 65, 80, 80, 90, 90, 104])


def test_apply_three_regions4() -> None:
    """``damon_test_apply_three_regions4``: the second and third big regions both moved."""
    _do_test_apply_three_regions(
        [10, 20, 20, 30, 50, 55, 55, 57, 57, 59, 70, 80, 80, 90, 90, 100],
        [(5, 7), (30, 32), (65, 68)],
        [5, 7, 30, 32, 65, 68])


# -- beyond the kernel's vectors ---------------------------------------------------------------------------


def test_three_regions_needs_two_gaps() -> None:
    """The kernel's ``-EINVAL`` when either gap is empty: no regions."""
    assert three_regions([], 1) is None
    assert three_regions([Vma(10, 20)], 1) is None
    assert three_regions([Vma(10, 20), Vma(20, 30), Vma(30, 40)], 1) is None
    assert three_regions([Vma(10, 20), Vma(30, 40)], 1) is None
    assert three_regions([Vma(10, 20), Vma(20, 30), Vma(40, 50)], 1) is None


def test_three_regions_gap_order_and_ties() -> None:
    # a later, bigger gap pushes the old biggest into second place; the result is sorted by address
    vmas = [Vma(0, 10), Vma(20, 30), Vma(100, 110), Vma(115, 120)]  # gaps 10, 70, 5
    assert three_regions(vmas, 1) == [AddrRange(0, 10), AddrRange(20, 30), AddrRange(100, 120)]
    # equal gaps: the earlier ones win (strict comparisons)
    vmas = [Vma(0, 10), Vma(15, 20), Vma(25, 30), Vma(35, 40)]  # gaps 5, 5, 5
    assert three_regions(vmas, 1) == [AddrRange(0, 10), AddrRange(15, 20), AddrRange(25, 40)]


def test_three_regions_align_up() -> None:
    """Every edge is rounded *up* to ``min_region_sz`` (``ALIGN()``)."""
    vmas = [Vma(0x1000, 0x1800), Vma(0x10000, 0x10800), Vma(0x100000, 0x100800)]
    assert three_regions(vmas, 0x1000) == [
        AddrRange(0x1000, 0x2000), AddrRange(0x10000, 0x11000), AddrRange(0x100000, 0x101000)]


def test_three_regions_of_a_process_layout_ignores_vsyscall() -> None:
    maps = """\
55d4a3a00000-55d4a3a21000 r-xp 00000000 08:02 1 /usr/bin/app
55d4a3c00000-55d4a3c21000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 08:02 2 /usr/lib/libc.so.6
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
7ffe00000000-7ffe00021000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""
    regions = three_regions(real_vmas(parse_maps(maps)), 4096)
    assert regions == [
        AddrRange(0x55D4A3A00000, 0x55D4A3C21000),  # binary + heap
        AddrRange(0x7F0000000000, 0x7F0000300000),  # mmap area
        AddrRange(0x7FFE00000000, 0x7FFE00021000),  # stack
    ]
    # counting the gate area would make stack..vsyscall the biggest gap
    assert three_regions(parse_maps(maps), 4096)[-1].end == 0xFFFFFFFFFF601000  # type: ignore[index]
