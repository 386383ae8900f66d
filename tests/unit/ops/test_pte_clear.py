"""ops/pte_clear.py: how each target's clearing method is chosen by measured cost."""

from __future__ import annotations

from damon_bpf.ops.pte_clear import Clearing, PteTarget
from damon_bpf.ops.pte_frames import PageFrames


def choose(clearing: Clearing, pt: PteTarget) -> None:
    # the first window (windows % 32 == 0: an exploring one), 500 ms aggregations (5 ms of a 1% budget a window)
    clearing.choose_method(pt, 0, 500_000, 0.01)


def test_clear_method_prefers_madvise_within_the_budget() -> None:
    """madvise disturbs reclaim least (bench/refaults.py): clear_refs takes over only when madvise costs more than
    4x it and more than 30% of a window's budget."""
    clearing = Clearing(PageFrames())
    pt = PteTarget(pid=1, ti=0, rss_pages=10_000, madvise_measured=True, refs_measured=True)
    pt.madvise_window_ns, pt.refs_ns_per_page = 1_000_000.0, 60.0  # 1 ms against 0.6 ms: madvise stays
    choose(clearing, pt)
    assert pt.method == "madvise"
    pt.madvise_window_ns = 2_000_000.0  # 3.3x clear_refs, 40% of the window's budget: still madvise
    choose(clearing, pt)
    assert pt.method == "madvise"
    pt.madvise_window_ns = 3_000_000.0  # 5x clear_refs and 60% of the window's budget: clear_refs
    choose(clearing, pt)
    assert pt.method == "clear_refs"
    pt.rss_pages = 10_000_000  # 600 ms of clear_refs
    choose(clearing, pt)
    assert pt.method == "madvise"


def test_clear_refs_is_measured_only_when_it_could_take_over() -> None:
    clearing = Clearing(PageFrames())
    # madvise 4.5x the prior of clear_refs but within 30% of the budget: madvise stays, clear_refs is tried once
    pt = PteTarget(pid=1, ti=0, rss_pages=5_000, madvise_measured=True, refs_measured=False)
    pt.madvise_window_ns = 1_350_000.0
    choose(clearing, pt)
    assert pt.method == "madvise" and pt.explore == "clear_refs"
    # over 4x and over 30% of the budget: clear_refs (its prior) takes over
    pt.madvise_window_ns = 3_000_000.0
    choose(clearing, pt)
    assert pt.method == "clear_refs"
    pt = PteTarget(pid=1, ti=0, rss_pages=100_000, madvise_measured=True, refs_measured=False)
    choose(clearing, pt)
    assert pt.method == "madvise" and pt.explore is None


def test_page_idle_is_kept_while_it_works() -> None:
    clearing = Clearing(PageFrames())
    clearing.idle_fd = 99  # as if /sys/kernel/mm/page_idle/bitmap were open
    pt = PteTarget(pid=1, ti=0, rss_pages=10, method="page_idle", madvise_measured=True,
                            refs_measured=True)
    choose(clearing, pt)
    assert pt.method == "page_idle" and pt.explore is None
    clearing.idle_fd = -1
