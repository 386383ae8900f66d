"""DAMON_STAT's figures against hand-computed vectors of mm/damon/stat.c's formulas."""

from __future__ import annotations

import numpy as np

from damon_bpf.results.damon_stat import damon_stat, estimated_memory_bandwidth, idle_time_percentiles_ms


def cols(*rows: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def test_bandwidth() -> None:
    s, e, nr, _ = cols((0, 100, 5, 3), (100, 400, 0, 9))
    # (100 * 5 + 300 * 0) bytes per 100 ms aggregation -> 5000 bytes/s
    assert estimated_memory_bandwidth(s, e, nr, 100_000) == 5000
    assert estimated_memory_bandwidth(s, e, nr, 3) == 500 * 1000 * 1000 // 3  # integer division at the end


def test_idle_percentiles() -> None:
    s, e, nr, age = cols((0, 100, 5, 3), (100, 400, 0, 9))
    p = idle_time_percentiles_ms(s, e, nr, age, 100_000)
    # accessed: -(3 + 1) intervals = -400 ms up to 25 % of the bytes; then idle (9 + 1) intervals = 1000 ms
    assert p[:26] == [-400] * 26 and p[26:] == [1000] * 75
    # a region accessed in the last window with age 0 counts as -1 interval, not 0
    s, e, nr, age = cols((0, 4096, 1, 0))
    assert set(idle_time_percentiles_ms(s, e, nr, age, 5_000)) == {-5}
    # C division truncates toward zero: -(0 + 1) * 999 us / 1000 = 0 ms, not -1
    assert set(idle_time_percentiles_ms(s, e, nr, age, 999)) == {0}


def test_idle_percentiles_three_regions_and_ties() -> None:
    s, e, nr, age = cols((0, 10, 0, 1), (10, 20, 0, 1), (20, 100, 2, 0))
    p = idle_time_percentiles_ms(s, e, nr, age, 1000)
    # sorted: the accessed 80 bytes (-1 ms) reach 80 %; then the idle 2-interval regions (2 ms)
    assert p[:81] == [-1] * 81 and p[81:] == [2] * 20


def test_figures() -> None:
    s, e, nr, age = cols((0, 100, 20, 1), (100, 200, 10, 1), (200, 400, 0, 5))
    st = damon_stat(s, e, nr, age, 20, 100_000)
    assert (st.monitored_bytes, st.working_set_bytes, st.nr_regions) == (400, 200, 3)
    assert st.estimated_memory_bandwidth == (100 * 20 + 100 * 10) * 10
    # rates 1.0, 0.5, 0: cumulative bytes at <= 0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0
    assert st.bytes_by_access_rate == (200, 200, 200, 200, 300, 300, 400)
    assert len(st.idle_ms_percentiles) == 101
    empty = damon_stat(*cols(), 20, 100_000)
    assert (empty.monitored_bytes, empty.working_set_bytes, empty.idle_ms_percentiles[50]) == (0, 0, 0)


def test_mutations_of_the_idle_time_fail() -> None:
    """A wrong sign or an off-by-one in ``age + 1`` changes these vectors: each mutant disagrees with the port."""
    s, e, nr, age = cols((0, 300, 0, 4), (300, 400, 3, 2))
    want = idle_time_percentiles_ms(s, e, nr, age, 10_000)
    # by hand: accessed 100 bytes at -(2 + 1) * 10 ms = -30 ms up to 25 %; idle (4 + 1) * 10 ms = 50 ms after
    assert want == [-30] * 26 + [50] * 75

    def mutant(idle_of: object) -> list[int]:
        idle = [idle_of(int(n), int(a)) for n, a in zip(nr, age)]  # type: ignore[operator]
        order = sorted(range(len(idle)), key=lambda i: idle[i])
        sz = (e - s).tolist()
        total, acc, nxt, out = sum(sz), 0, 0, [0] * 101
        for i in order:
            acc += sz[i]
            while nxt <= acc * 100 // total:
                out[nxt] = int(idle[i] * 10_000 / 1000)
                nxt += 1
        return out

    assert mutant(lambda n, a: -(a + 1) if n else a + 1) == want  # the reference re-derived
    for wrong in (lambda n, a: (a + 1) if n else a + 1,  # no sign for accessed regions
                  lambda n, a: -a if n else a,  # age, not age + 1
                  lambda n, a: -(a + 1) if n else a,  # off by one for idle regions only
                  lambda n, a: (a + 1) if n else -(a + 1)):  # signs swapped
        assert mutant(wrong) != want
