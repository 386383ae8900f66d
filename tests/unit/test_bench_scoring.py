"""The pure scoring functions of ``bench/_common.py`` (interval sets, precision/recall by bytes, WSS error,
phase-change delays, throughput, summaries)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_common.py"
_spec = importlib.util.spec_from_file_location("damon_bpf_bench_common", _PATH)
assert _spec is not None and _spec.loader is not None
C = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = C
_spec.loader.exec_module(C)

MiB = 1 << 20


# -- interval sets -----------------------------------------------------------------------------------------

def test_normalize_sorts_merges_and_drops_empty() -> None:
    assert C.normalize([(10, 20), (0, 5), (5, 7), (15, 30), (40, 40), (50, 45)]) == [(0, 7), (10, 30)]
    assert C.normalize([]) == []


def test_total_bytes_counts_overlaps_once() -> None:
    assert C.total_bytes([(0, 10), (5, 15), (20, 21)]) == 16


def test_intersect_and_overlap() -> None:
    a = [(0, 10), (20, 30), (40, 50)]
    b = [(5, 25), (45, 100)]
    assert C.intersect(a, b) == [(5, 10), (20, 25), (45, 50)]
    assert C.overlap_bytes(a, b) == 15
    assert C.intersect(a, []) == []


def test_clip_to_scope_and_none() -> None:
    assert C.clip([(0, 100)], [(10, 20), (30, 40)]) == [(10, 20), (30, 40)]
    assert C.clip([(5, 6), (0, 3)], None) == [(0, 3), (5, 6)]


_ivs = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=8)


def _points(ivs: list[tuple[int, int]]) -> set[int]:
    return {x for s, e in ivs for x in range(s, e)}


@settings(max_examples=200, deadline=None)
@given(_ivs, _ivs)
def test_interval_ops_match_sets_of_bytes(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    assert C.total_bytes(a) == len(_points(a))
    assert _points(C.intersect(a, b)) == _points(a) & _points(b)
    assert C.overlap_bytes(a, b) == len(_points(a) & _points(b))
    n = C.normalize(a)
    assert all(e > s for s, e in n) and all(n[i][1] < n[i + 1][0] for i in range(len(n) - 1))


# -- hot sets, precision / recall, WSS ---------------------------------------------------------------------

@pytest.mark.parametrize("mx, frac, expect", [(20, 0.1, 2), (20, 0.0, 1), (10, 0.1, 1), (1, 0.1, 1), (0, 0.1, 1),
                                              (21, 0.1, 3), (30, 0.1, 3)])
def test_hot_threshold(mx: int, frac: float, expect: int) -> None:
    assert C.hot_threshold(mx, frac) == expect


def test_hot_threshold_rejects_negative_fraction() -> None:
    with pytest.raises(ValueError):
        C.hot_threshold(20, -0.1)


def test_regions_at_least_merges_adjacent_hot_regions() -> None:
    starts, ends, nr = [0, 10, 20, 30], [10, 20, 30, 40], [5, 2, 0, 7]
    assert C.regions_at_least(starts, ends, nr, 2) == [(0, 20), (30, 40)]
    assert C.regions_at_least(starts, ends, nr, 6) == [(30, 40)]
    assert C.regions_at_least(starts, ends, nr, 99) == []


def test_regions_at_least_takes_numpy_arrays() -> None:
    import numpy as np
    s = np.array([0, 4096], dtype=np.uint64)
    e = np.array([4096, 8192], dtype=np.uint64)
    assert C.regions_at_least(s, e, np.array([0, 3]), 1) == [(4096, 8192)]


def test_precision_recall_by_bytes() -> None:
    sc = C.precision_recall([(0, 30)], [(10, 50)])
    assert sc.overlap_bytes == 20 and sc.detected_bytes == 30 and sc.truth_bytes == 40
    assert sc.precision == pytest.approx(20 / 30)
    assert sc.recall == pytest.approx(0.5)


def test_precision_recall_counts_only_bytes_in_scope() -> None:
    # a hot interpreter heap at 1000..2000 is outside the workload's regions: not a false positive
    scope = [(0, 100), (200, 300)]
    sc = C.precision_recall([(0, 50), (1000, 2000), (250, 400)], [(0, 50), (200, 300)], scope)
    assert sc.detected_bytes == 100 and sc.truth_bytes == 150 and sc.overlap_bytes == 100
    assert sc.precision == 1.0
    assert sc.recall == pytest.approx(100 / 150)


def test_precision_undefined_when_nothing_detected_and_recall_when_no_truth() -> None:
    sc = C.precision_recall([], [(0, 10)])
    assert sc.precision is None and sc.recall == 0.0
    sc = C.precision_recall([(0, 10)], [])
    assert sc.precision == 0.0 and sc.recall is None
    sc = C.precision_recall([(0, 10)], [(0, 10)], scope=[(100, 200)])
    assert sc.precision is None and sc.recall is None


def test_wss_error() -> None:
    assert C.wss_error(20 * MiB, 16 * MiB) == pytest.approx(0.25)
    assert C.wss_error(8 * MiB, 16 * MiB) == pytest.approx(-0.5)
    assert C.wss_error(0, 16 * MiB) == -1.0
    assert C.wss_error(5, 0) is None


# -- phase-change delay ------------------------------------------------------------------------------------

HOT = [(100, 200)]


def _samples(pairs: list[tuple[float, list[tuple[int, int]]]]) -> list[tuple[float, list[tuple[int, int]]]]:
    return pairs


def test_phase_delay_first_sample_with_enough_recall() -> None:
    s = _samples([(9.9, HOT), (10.1, []), (10.2, [(100, 140)]), (10.3, [(100, 160)]), (10.4, HOT)])
    # 10.2 covers 40%, 10.3 covers 60%: first >= 50% at 10.3
    assert C.phase_delay(10.0, 12.0, HOT, s) == pytest.approx(0.3)
    assert C.phase_delay(10.0, 12.0, HOT, s, min_recall=0.3) == pytest.approx(0.2)


def test_phase_delay_ignores_samples_before_onset_and_after_end() -> None:
    s = _samples([(9.0, HOT), (10.0, HOT), (12.5, HOT)])
    assert C.phase_delay(10.0, 12.0, HOT, s) is None


def test_phase_delay_respects_scope() -> None:
    # only 100..150 of the hot range is in scope; 100..150 detected is full recall
    s = _samples([(10.5, [(100, 150)])])
    assert C.phase_delay(10.0, 12.0, HOT, s, scope=[(0, 150)]) == pytest.approx(0.5)
    assert C.phase_delay(10.0, 12.0, HOT, s, min_recall=0.6) is None


def test_phase_delay_stable_waits_for_the_last_relapse() -> None:
    s = _samples([(10.1, HOT), (10.2, []), (10.3, []), (10.4, HOT), (10.5, HOT), (12.1, [])])
    assert C.phase_delay(10.0, 12.0, HOT, s) == pytest.approx(0.1)
    assert C.phase_delay_stable(10.0, 12.0, HOT, s) == pytest.approx(0.4)
    assert C.phase_delay_stable(10.0, 12.0, HOT, s[:3]) is None
    assert C.phase_delay_stable(10.0, 12.0, HOT, []) is None


# -- throughput and slowdown -------------------------------------------------------------------------------

@dataclass
class _R:
    nr_touches: int


@dataclass
class _P:
    start: float
    end: float
    regions: tuple[_R, ...]


def test_throughput_counts_overlapping_phases_pro_rata() -> None:
    phases = [_P(0.0, 1.0, (_R(100), _R(0))), _P(1.0, 2.0, (_R(300),)), _P(2.0, 3.5, (_R(150), _R(150))),
              _P(3.5, 4.5, (_R(999),))]
    tput, touches, secs = C.throughput(phases, 1.0, 3.5)
    assert touches == pytest.approx(600) and secs == pytest.approx(2.5)
    assert tput == pytest.approx(240.0)
    # half of the first phase, all of the second, a third of the third
    tput, touches, secs = C.throughput(phases, 0.5, 2.5)
    assert touches == pytest.approx(50 + 300 + 100) and secs == pytest.approx(2.0)
    assert C.throughput(phases, 10.0, 20.0) == (None, 0.0, 0.0)
    # gaps between phases (threads switching) are not counted as time
    gap = [_P(0.0, 1.0, (_R(100),)), _P(1.5, 2.5, (_R(100),))]
    assert C.throughput(gap, 0.0, 2.5)[0] == pytest.approx(100.0)
    assert C.throughput([_P(1.0, 1.0, (_R(5),))], 0.0, 2.0) == (None, 0.0, 0.0)


def test_slowdown_and_per_event() -> None:
    assert C.slowdown(100.0, 98.0) == pytest.approx(0.02)
    assert C.slowdown(100.0, 105.0) == pytest.approx(-0.05)
    assert C.slowdown(None, 1.0) is None and C.slowdown(0.0, 1.0) is None and C.slowdown(1.0, None) is None
    assert C.per_event_ns(2200.0, 1) == 2200.0
    assert C.per_event_ns(1.0, 0) is None


# -- summaries, settling, goals, formatting ----------------------------------------------------------------

def test_summarize_ignores_undefined_values() -> None:
    s = C.summarize([1.0, None, 3.0, 2.0, None])
    assert s["n"] == 3 and s["n_undefined"] == 2
    assert s["median"] == 2.0 and s["mean"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    assert s["p10"] == pytest.approx(1.2) and s["p90"] == pytest.approx(2.8)
    e = C.summarize([None])
    assert e["n"] == 0 and e["n_undefined"] == 1 and e["median"] is None
    g = C.summarize(x for x in [4.0, None])
    assert g["n"] == 1 and g["n_undefined"] == 1


def test_settled_drops_the_first_seconds() -> None:
    samples = [(10.0, "a"), (11.0, "b"), (12.0, "c"), (12.5, "d")]
    assert C.settled(samples, 10.0, 2.0) == [(12.0, "c"), (12.5, "d")]


def test_goal_met_and_verdict() -> None:
    assert C.goal_met(0.95, 0.9, True) is True
    assert C.goal_met(0.85, 0.9, True) is False
    assert C.goal_met(0.01, 0.02, False) is True
    assert C.goal_met(None, 0.02, False) is None
    assert [C.verdict(x) for x in (True, False, None)] == ["yes", "NO", "-"]


def test_fmt_and_table() -> None:
    assert C.fmt(None) == "-"
    assert C.fmt(0.1234, "pct") == "12.3%"
    assert C.fmt(0.98765) == "0.99"
    assert C.fmt(16 * MiB, "mib") == "16.0M"
    t = C.table(["a", "bb"], [[1, "x"], ["long", None]]).splitlines()
    assert t[0].split() == ["a", "bb"] and set(t[1]) <= {"-", " "} and t[3].split() == ["long", "None"]
