"""ops/common.py: sample binning and the ops-common.c scores on hand-computed vectors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from damon_bpf.engine.model import Attrs, Ctx, Region
from damon_bpf.ops.common import (
    bin_samples,
    cold_score,
    hot_score,
    quota_weights,
    region_cold_score,
    region_hot_score,
    scheme_action,
)


def test_bin_samples() -> None:
    starts = [0, 100, 300]
    ends = [50, 200, 400]
    addrs = [0, 49, 50, 99, 100, 199, 200, 300, 399, 400, 1000, 150, 150]
    assert bin_samples(starts, ends, addrs).tolist() == [2, 4, 2]
    assert bin_samples(starts, ends, []).tolist() == [0, 0, 0]
    assert bin_samples([], [], [1, 2]).tolist() == []
    big = 0x7FFF_0000_0000
    assert bin_samples([big], [big + 4096], np.array([big, big + 4095, big + 4096], dtype=np.uint64)).tolist() == [2]
    with pytest.raises(ValueError):
        bin_samples([0, 1], [1], [0])


ATTRS = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000)  # max_nr_accesses 20, aggr 0.1 s


@pytest.mark.parametrize("nr_accesses, age, w_freq, w_age, hot", [
    # freq 50; age 0 s -> age_in_log 0 -> (0+32)*100/32/2 = 50; (50+50)/2 = 50; 50*99/100 = 49
    (10, 0, 1, 1, 49),
    # freq 0; 10 s -> ilog2(10)+1 = 4, negated -> 28*100/32 = 87, /2 = 43; 43/2 = 21; 21*99/100 = 20
    (0, 100, 1, 1, 20),
    # freq 100; 1000 s -> 10 -> 42*100/32 = 131, /2 = 65; (3*100+65)/4 = 91; 91*99/100 = 90
    (20, 10_000, 3, 1, 90),
    # both weights 0: nothing is divided, the score is 0
    (20, 10_000, 0, 0, 0),
    # freq 5; age 0.5 s -> 0 s -> 50; (5+50)/2 = 27; 27*99/100 = 26
    (1, 5, 1, 1, 26),
    # nr_accesses above max_nr_accesses: freq capped at 100 -> 100*99/100 = 99
    (40, 0, 1, 0, 99),
    # age log capped at 32: accessed -> 64*100/32/2 = 100 -> 99; idle -> 0
    (1, 10 * 2**40, 0, 1, 99),
    (0, 10 * 2**40, 0, 1, 0),
])
def test_hot_cold_score_vectors(nr_accesses: int, age: int, w_freq: int, w_age: int, hot: int) -> None:
    assert hot_score(nr_accesses, age, ATTRS, w_freq, w_age) == hot
    assert cold_score(nr_accesses, age, ATTRS, w_freq, w_age) == 99 - hot


def test_scores_stay_in_range() -> None:
    for nr in range(0, 25):
        for age in (0, 1, 9, 10, 11, 99, 100, 1000, 10**6, 10**12):
            for wf, wa in ((0, 0), (1, 0), (0, 1), (3, 7), (100, 1)):
                h = hot_score(nr, age, ATTRS, wf, wa)
                assert 0 <= h <= 99
                assert cold_score(nr, age, ATTRS, wf, wa) == 99 - h


def test_region_scores_read_ctx_and_scheme() -> None:
    ctx = Ctx(attrs=ATTRS)  # passed == next_aggregation_sis: the moving sum is nr_accesses
    r = Region(0, 4096, nr_accesses=10, age=0)
    scheme = SimpleNamespace(action="pageout", quota=SimpleNamespace(weight_nr_accesses=1, weight_age=1))
    assert region_hot_score(ctx, r, scheme) == 49
    assert region_cold_score(ctx, r, scheme) == 50
    assert region_hot_score(ctx, r, SimpleNamespace(action="pageout")) == 0  # no quota: weights 0


def test_scheme_helpers() -> None:
    import enum

    class Action(enum.Enum):
        PAGEOUT = "pageout"

    assert scheme_action(SimpleNamespace(action="cold")) == "cold"
    assert scheme_action(SimpleNamespace(action=Action.PAGEOUT)) == "pageout"
    assert scheme_action(object()) is None
    assert quota_weights(SimpleNamespace(quota=SimpleNamespace(weight_nr_accesses=2, weight_age=3))) == (2, 3)
    assert quota_weights(SimpleNamespace()) == (0, 0)
