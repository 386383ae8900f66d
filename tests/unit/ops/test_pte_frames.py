"""ops/pte_frames.py: the extent of the large folio a sample lies in, the page_idle bitmap words of a set of
frames, whether anonymous mTHP sizes are enabled, and what /proc/kpageflags and /proc/kpagecount say of this
machine's own page frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from damon_bpf.ops import pte_frames

HEAD = 1 << 15
TAIL = 1 << 16


def _flags_reader(flags: dict[int, int]):
    def read(first: int, n: int) -> np.ndarray:
        return np.array([flags.get(first + i, 0) for i in range(n)], dtype=np.uint64)

    return read


def test_folio_ranges_small_page_is_one_page() -> None:
    starts, lengths = pte_frames.folio_ranges(np.array([0x7000_0000_5000]), np.array([1000]), _flags_reader({}))
    assert starts.tolist() == [0x7000_0000_5000] and lengths.tolist() == [4096]


def test_folio_ranges_covers_whole_large_folio() -> None:
    # a 16-page folio at pfns 1024..1039; the sample is its 5th page, mapped at 0x...5000 + 4 pages
    flags = {1024: HEAD, **{p: TAIL for p in range(1025, 1040)}}
    addr = 0x7F00_0010_0000 + 4 * 4096
    starts, lengths = pte_frames.folio_ranges(np.array([addr]), np.array([1028]), _flags_reader(flags))
    assert starts.tolist() == [0x7F00_0010_0000]
    assert lengths.tolist() == [16 * 4096]


def test_folio_ranges_head_sample_and_neighbour_folio() -> None:
    # two adjacent 4-page folios: a sample in the second must not take in the first
    flags = {2048: HEAD, 2049: TAIL, 2050: TAIL, 2051: TAIL, 2052: HEAD, 2053: TAIL, 2054: TAIL, 2055: TAIL}
    a = 0x6000_0000_0000
    starts, lengths = pte_frames.folio_ranges(np.array([a, a + 4 * 4096]), np.array([2052, 2052 + 0]),
                                           _flags_reader(flags))
    assert lengths.tolist() == [4 * 4096, 4 * 4096]
    assert starts.tolist() == [a, a + 4 * 4096]


def test_folio_ranges_folio_larger_than_block_falls_back_to_pmd() -> None:
    # every page of the 512-pfn block is a tail (the head lies before it): a folio > 2 MiB, advise its 2 MiB
    flags = {p: TAIL for p in range(4096, 4096 + 512)}
    addr = 0x7F00_0020_0000 + 7 * 4096
    starts, lengths = pte_frames.folio_ranges(np.array([addr]), np.array([4096 + 7]), _flags_reader(flags))
    assert starts.tolist() == [0x7F00_0020_0000] and lengths.tolist() == [2 << 20]


def _thp_tree(tmp_path: Path, top: str, sizes: dict[str, str]) -> str:
    base = tmp_path / "kernel" / "mm" / "transparent_hugepage"
    base.mkdir(parents=True)
    (base / "enabled").write_text(top)
    for name, mode in sizes.items():
        (base / name).mkdir()
        (base / name / "enabled").write_text(mode)
    return str(tmp_path)


@pytest.mark.parametrize("top,sizes,want", [
    ("always [madvise] never", {"hugepages-2048kB": "always [inherit] madvise never",
                                "hugepages-64kB": "always inherit madvise [never]"}, False),
    ("always [madvise] never", {"hugepages-64kB": "always inherit [madvise] never"}, True),
    ("always madvise [never]", {"hugepages-64kB": "always [inherit] madvise never"}, False),
    ("[always] madvise never", {"hugepages-16kB": "always [inherit] madvise never"}, True),
])
def test_anon_mthp_enabled(tmp_path: Path, top: str, sizes: dict[str, str], want: bool) -> None:
    assert pte_frames.anon_mthp_enabled(_thp_tree(tmp_path, top, sizes)) is want


def test_page_idle_words_encode_pfns_as_the_kernel_reads_them() -> None:
    # bit pfn % 64 of the u64 at byte offset pfn / 64 * 8 (Documentation/admin-guide/mm/idle_page_tracking.rst)
    words, bits = pte_frames.page_idle_words(np.array([0, 63, 64, 130, 63, 4097]))
    assert words.tolist() == [0, 1, 2, 64]
    assert bits.tolist() == [(1 << 0) | (1 << 63), 1, 1 << 2, 1 << 1]


def test_folio_ranges_512_page_folio_is_advised_exactly() -> None:
    # a PMD-sized folio mapped by PTEs at an address that is not 2 MiB-aligned (a THP moved by mremap()): its
    # range starts at the head's address, 512 pages long, not the sample's aligned 2 MiB block
    flags = {8192: HEAD, **{p: TAIL for p in range(8193, 8192 + 512)}, 8192 + 512: HEAD}
    head_va = 0x7F00_0000_0000 + 64 * 1024
    addr = head_va + 300 * 4096
    starts, lengths = pte_frames.folio_ranges(np.array([addr]), np.array([8192 + 300]), _flags_reader(flags))
    assert starts.tolist() == [head_va] and lengths.tolist() == [2 << 20]


def test_without_page_frame_files_every_page_counts() -> None:
    """No /proc/kpageflags (not root, no CONFIG_PROC_PAGE_MONITOR): every accessed page counts, none is a large
    folio or shared, and the folio reader returns nothing."""
    frames = pte_frames.PageFrames()
    frames.open("/nonexistent")
    assert not frames.has_flags
    pfns = np.array([1, 2, 3], np.int64)
    assert frames.page_ok(pfns, 0).all()
    compound, shared = frames.facts(pfns, 0)
    assert not compound.any() and not shared.any()
    assert frames.read(0, 4).size == 0
    frames.close()
