"""damon_bpf.eval.scoring: interval math by bytes, hot sets, precision/recall, agreement, phase-change delay."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from damon_bpf.eval import scoring as S


def rows(a: np.ndarray) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in a.tolist()]


# -- normalize ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, want", [
    ([], []),
    ([(5, 5)], []),                                  # empty range dropped
    ([(7, 3)], []),                                  # reversed range dropped
    ([(0, 4), (4, 8)], [(0, 8)]),                    # touching ranges merge
    ([(0, 4), (5, 8)], [(0, 4), (5, 8)]),            # a one-byte gap stays
    ([(4, 8), (0, 6)], [(0, 8)]),                    # overlapping, unsorted
    ([(0, 10), (2, 3), (4, 5)], [(0, 10)]),          # nested
    ([(0, 10), (2, 3), (10, 12), (20, 30)], [(0, 12), (20, 30)]),
    ([(10, 20), (0, 5), (5, 5), (19, 25)], [(0, 5), (10, 25)]),
])
def test_normalize(given: list[tuple[int, int]], want: list[tuple[int, int]]) -> None:
    assert rows(S.normalize(given)) == want
    assert rows(S.normalize(np.array(given, dtype=np.int64).reshape(-1, 2))) == want


def test_normalize_does_not_touch_its_input_and_keeps_big_addresses() -> None:
    a = np.array([[0x7FFF_0000_0000, 0x7FFF_0000_1000], [0x1000, 0x2000]], dtype=np.int64)
    b = a.copy()
    out = S.normalize(a)
    assert (a == b).all()
    assert rows(out) == [(0x1000, 0x2000), (0x7FFF_0000_0000, 0x7FFF_0000_1000)]
    assert out.dtype == np.int64 and out.shape == (2, 2)


def test_normalize_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        S.normalize(np.zeros((3, 3), dtype=np.int64))


def test_total_bytes_counts_overlaps_once() -> None:
    assert S.total_bytes([]) == 0
    assert S.total_bytes([(0, 4096)]) == 4096
    assert S.total_bytes([(0, 100), (50, 150), (150, 160)]) == 160
    assert S.total_bytes([(0, 100), (0, 100)]) == 100


# -- intersect / union ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, want", [
    ([], [], []),
    ([(0, 10)], [], []),
    ([], [(0, 10)], []),
    ([(0, 10)], [(10, 20)], []),                          # touching: no common byte
    ([(0, 10)], [(9, 20)], [(9, 10)]),                    # one common byte
    ([(0, 10)], [(2, 4), (6, 8)], [(2, 4), (6, 8)]),      # one spans several
    ([(0, 5), (10, 15), (20, 25)], [(3, 22)], [(3, 5), (10, 15), (20, 22)]),
    ([(0, 100)], [(0, 100)], [(0, 100)]),
    ([(0, 4), (4, 8)], [(2, 6)], [(2, 6)]),               # touching input is merged first
    ([(0, 10), (20, 30)], [(10, 20)], []),                # b fills a's gap exactly
    ([(0, 30)], [(5, 10), (8, 12), (25, 40)], [(5, 12), (25, 30)]),
])
def test_intersect(a: list[tuple[int, int]], b: list[tuple[int, int]], want: list[tuple[int, int]]) -> None:
    assert rows(S.intersect(a, b)) == want
    assert rows(S.intersect(b, a)) == want
    assert S.intersection_bytes(a, b) == sum(e - s for s, e in want)


def test_intersect_matches_a_byte_map() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        sets = []
        for _ in range(2):
            n = int(rng.integers(0, 6))
            st = rng.integers(0, 60, n)
            sets.append([(int(s), int(s + rng.integers(0, 15))) for s in st])
        bits = []
        for ivs in sets:
            m = np.zeros(80, dtype=bool)
            for s, e in ivs:
                m[s:e] = True
            bits.append(m)
        assert S.intersection_bytes(*sets) == int((bits[0] & bits[1]).sum())
        assert S.union_bytes(*sets) == int((bits[0] | bits[1]).sum())
        assert S.total_bytes(sets[0]) == int(bits[0].sum())


def test_union_and_clip() -> None:
    assert S.union_bytes([(0, 10)], [(5, 20)]) == 20
    assert S.union_bytes([], []) == 0
    assert rows(S.clip([(0, 10), (20, 30)], None)) == [(0, 10), (20, 30)]
    assert rows(S.clip([(0, 10), (20, 30)], [(5, 25)])) == [(5, 10), (20, 25)]
    assert rows(S.clip([(0, 10)], [])) == []


def test_coverage_at_least() -> None:
    sets = [[(0, 10)], [(5, 15)], [(8, 20)], []]
    assert rows(S.coverage_at_least(sets, 1)) == [(0, 20)]
    assert rows(S.coverage_at_least(sets, 2)) == [(5, 15)]
    assert rows(S.coverage_at_least(sets, 3)) == [(8, 10)]
    assert rows(S.coverage_at_least(sets, 4)) == []
    # overlaps inside one set count once; touching sets do not overlap
    assert rows(S.coverage_at_least([[(0, 10), (5, 10)], [(10, 20)]], 2)) == []
    assert rows(S.coverage_at_least([], 1)) == []
    with pytest.raises(ValueError):
        S.coverage_at_least(sets, 0)


# -- snapshots -----------------------------------------------------------------------------------------------------


def test_hot_threshold() -> None:
    assert S.hot_threshold(20) == 2          # 10% of 20
    assert S.hot_threshold(21) == 3          # ceil(2.1)
    assert S.hot_threshold(10) == 1
    assert S.hot_threshold(5) == 1           # at least one access
    assert S.hot_threshold(0) == 1
    assert S.hot_threshold(20, 0.0) == 1
    assert S.hot_threshold(20, 1.0) == 20
    with pytest.raises(ValueError):
        S.hot_threshold(20, -0.1)


def target(regions: list[tuple[int, int, int]]) -> SimpleNamespace:
    a = np.array(regions, dtype=np.int64).reshape(-1, 3)
    return SimpleNamespace(start=a[:, 0], end=a[:, 1], nr_accesses=a[:, 2])


def test_hot_set_and_wss_of_a_snapshot() -> None:
    t = target([(0, 10, 0), (10, 20, 1), (20, 30, 2), (30, 40, 20), (50, 60, 3)])
    assert rows(S.hot_set(t, 20)) == [(20, 40), (50, 60)]  # adjacent hot regions merge
    assert rows(S.hot_set(t, 20, 0.0)) == [(10, 40), (50, 60)]
    assert S.wss_bytes(t) == 40
    assert S.wss_bytes(t, scope=[(15, 55)]) == 5 + 20 + 5
    assert S.wss_bytes(target([])) == 0
    assert rows(S.hot_set(target([]), 20)) == []
    with pytest.raises(ValueError):
        S.regions_at_least([0, 1], [1], [1], 1)


def test_regions_at_least_takes_uint64_snapshot_arrays() -> None:
    s = np.array([0, 4096], dtype=np.uint64)
    e = np.array([4096, 8192], dtype=np.uint64)
    assert rows(S.regions_at_least(s, e, np.array([0, 3]), 1)) == [(4096, 8192)]


def test_wss_error() -> None:
    mib = 1 << 20
    assert S.wss_error(20 * mib, 16 * mib) == pytest.approx(0.25)
    assert S.wss_error(8 * mib, 16 * mib) == pytest.approx(-0.5)
    assert S.wss_error(0, 16 * mib) == -1.0
    assert S.wss_error(5, 0) is None


# -- precision / recall / agreement ----------------------------------------------------------------------------------


def test_precision_recall() -> None:
    sc = S.precision_recall([(0, 100)], [(50, 150)])
    assert (sc.precision, sc.recall) == (0.5, 0.5)
    assert (sc.detected_bytes, sc.truth_bytes, sc.overlap_bytes) == (100, 100, 50)
    perfect = S.precision_recall([(0, 50), (50, 100)], [(0, 100)])
    assert (perfect.precision, perfect.recall) == (1.0, 1.0)
    nothing = S.precision_recall([], [(0, 100)])
    assert nothing.precision is None and nothing.recall == 0.0
    no_truth = S.precision_recall([(0, 10)], [])
    assert no_truth.precision == 0.0 and no_truth.recall is None
    both_empty = S.precision_recall([], [])
    assert both_empty.precision is None and both_empty.recall is None
    # bytes outside the scope count for nothing
    scoped = S.precision_recall([(0, 100), (1000, 2000)], [(50, 150)], scope=[(0, 200)])
    assert (scoped.precision, scoped.recall) == (0.5, 0.5)


def test_agreement() -> None:
    ag = S.agreement([(0, 100)], [(50, 100)])
    assert ag.jaccard == 0.5 and ag.overlap == 1.0  # one contains the other
    assert (ag.a_bytes, ag.b_bytes, ag.both_bytes) == (100, 50, 50)
    assert S.jaccard([(0, 10)], [(10, 20)]) == 0.0  # touching, no common byte
    assert S.overlap_coefficient([(0, 10)], [(10, 20)]) == 0.0
    assert S.jaccard([], []) is None
    assert S.overlap_coefficient([], [(0, 10)]) is None
    assert S.jaccard([], [(0, 10)]) == 0.0
    assert S.jaccard([(0, 10), (5, 10)], [(0, 10)]) == 1.0
    assert S.agreement([(0, 100)], [(0, 50), (1000, 1100)], scope=[(0, 100)]).jaccard == 0.5


# -- phases ---------------------------------------------------------------------------------------------------------


def phase(start: float, end: float, hot: list[tuple[int, int]]) -> SimpleNamespace:
    return SimpleNamespace(start=start, end=end, hot_ranges=hot)


def test_phase_changes() -> None:
    phases = [phase(0, 1, [(0, 10)]), phase(1, 2, [(0, 5), (5, 10)]), phase(2, 3, [(10, 20)]),
              phase(3, 4, [(10, 20)]), phase(4, 5, [])]
    ch = S.phase_changes(phases)
    assert [(c.start, rows(c.hot)) for c in ch] == [(2, [(10, 20)]), (4, [])]
    assert [c.start for c in S.phase_changes(phases, include_first=True)] == [0, 2, 4]
    assert S.phase_changes([]) == []


def test_dominant_phase() -> None:
    phases = [phase(0, 1, []), phase(1.05, 2, []), phase(2, 3, [])]
    assert S.dominant_phase(phases, 0.2, 0.3) == 0
    assert S.dominant_phase(phases, 0.9, 1.2) == 1   # 0.15 s of phase 1 against 0.1 s of phase 0
    assert S.dominant_phase(phases, 0.98, 1.05) == 0  # the gap between phases counts for nobody
    assert S.dominant_phase(phases, 1.0, 1.05) is None
    assert S.dominant_phase(phases, 5, 6) is None
    assert S.dominant_phase(phases, 2.5, 2.5) == 2   # zero-length window: the phase containing it
    assert S.dominant_phase(phases, 1.02, 1.02) is None
    assert S.dominant_phase([], 0, 1) is None


def test_phase_change_delay() -> None:
    change = S.PhaseChange(10.0, 12.0, S.normalize([(0, 100)]))
    samples = [(9.5, S.normalize([(0, 100)])),   # before the change: ignored even if it matches
               (10.1, S.normalize([(0, 20)])),   # recall 0.2
               (10.2, S.normalize([(0, 60)])),   # recall 0.6: seen
               (10.3, S.normalize([(0, 100)]))]
    assert S.phase_change_delay(change, samples) == pytest.approx(0.2)
    assert S.phase_change_delay(change, samples, min_recall=0.9) == pytest.approx(0.3)
    assert S.phase_change_delay(change, samples[:2]) is None  # never covered: missed
    late = [(12.5, S.normalize([(0, 100)]))]  # after the phase ended: too late
    assert S.phase_change_delay(change, late) is None
    # scope: only bytes in it count
    assert S.phase_change_delay(change, [(10.5, S.normalize([(0, 10)]))], scope=[(0, 10)]) == pytest.approx(0.5)
    # an empty new hot set has no recall: never "seen"
    assert S.phase_change_delay(S.PhaseChange(0, 1, S.normalize([])), [(0.5, S.normalize([]))]) is None


def test_phase_change_stable_delay_waits_for_the_last_relapse() -> None:
    hot = S.normalize([(100, 200)])
    change = S.PhaseChange(10.0, 12.0, hot)
    none = S.normalize([])
    samples = [(10.1, hot), (10.2, none), (10.3, none), (10.4, hot), (10.5, hot), (12.1, none)]
    assert S.phase_change_delay(change, samples) == pytest.approx(0.1)
    assert S.phase_change_stable_delay(change, samples) == pytest.approx(0.4)  # the sample after the end: ignored
    assert S.phase_change_stable_delay(change, samples[:3]) is None  # below at the phase's last sample
    assert S.phase_change_stable_delay(change, []) is None
    # min_recall and scope as for phase_change_delay: 100..140 of 100..150 in scope is 80%
    part = [(10.5, S.normalize([(100, 140)]))]
    assert S.phase_change_stable_delay(change, part, 0.75, scope=[(0, 150)]) == pytest.approx(0.5)
    assert S.phase_change_stable_delay(change, part, 0.9, scope=[(0, 150)]) is None


def test_phase_change_delays_skip_changes_before_monitoring() -> None:
    changes = [S.PhaseChange(1.0, 2.0, S.normalize([(0, 10)])), S.PhaseChange(5.0, 6.0, S.normalize([(10, 20)])),
               S.PhaseChange(7.0, 8.0, S.normalize([(30, 40)]))]
    samples = [(4.0, S.normalize([(0, 10)])), (5.5, S.normalize([(10, 20)])), (7.5, S.normalize([]))]
    assert S.phase_change_delays(changes, samples) == [pytest.approx(0.5), None]
    assert S.phase_change_delays(changes, samples, since=0.0) == [None, pytest.approx(0.5), None]
    assert S.phase_change_delays(changes, []) == []


def test_median() -> None:
    assert S.median([]) is None
    assert S.median([None, None]) is None
    assert S.median([3.0, None, 1.0, 2.0]) == 2.0
    assert S.median([1, 2]) == 1.5


def test_frequency_agreement() -> None:
    # one set each: plain agreement
    one = S.frequency_agreement([[(0, 100)]], [[(50, 100)]])
    assert (one.jaccard, one.overlap) == (0.5, 1.0)
    # the same hot-byte frequencies at different times agree fully (stairs seen at different phases)
    a = [[(0, 10)], [(10, 20)], [(20, 30)], [(30, 40)]]
    b = [[(20, 30)], [(30, 40)], [(0, 10)], [(10, 20)]]
    ag = S.frequency_agreement(a, b)
    assert ag.jaccard == pytest.approx(1.0) and ag.overlap == pytest.approx(1.0)
    assert ag.a_bytes == ag.b_bytes == ag.both_bytes == 10
    # hot half the time against always: min 0.5 / max 1 over [0, 10)
    half = S.frequency_agreement([[(0, 10)], []], [[(0, 10)], [(0, 10)]])
    assert half.jaccard == pytest.approx(0.5) and half.overlap == pytest.approx(1.0)
    # disjoint, touching
    assert S.frequency_agreement([[(0, 10)]], [[(10, 20)]]).jaccard == 0.0
    # nothing hot anywhere: undefined
    none = S.frequency_agreement([[]], [[], []])
    assert none.jaccard is None and none.overlap is None
    assert S.frequency_agreement([[(0, 10)]], [[]]).overlap is None
    assert S.frequency_agreement([], [[(0, 10)]]).jaccard == 0.0
