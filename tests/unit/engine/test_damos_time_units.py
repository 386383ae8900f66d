"""DAMOS bounds given in time or percent keep their meaning when the monitoring intervals change (issue #16).

An age given as a time is converted to aggregation intervals, and an access rate given as a percentage to
samples, with damo's rules (``int(us / aggr_us)``, ``int(pct * max_nr_accesses / 100)``) again at every
``set_attrs()``: intervals auto-tuning and a source choosing its own interval. Bounds given in
``aggr_intervals`` or ``samples`` stay as given, as the kernel keeps them.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest

from damon_bpf.config.schemes import (
    pattern_never_matches,
    scheme_to_json,
    schemes_from_cli_words,
    schemes_from_json,
    schemes_never_matching,
    schemes_to_json,
)
from damon_bpf.engine import Kdamond
from damon_bpf.engine.core import init_ctx, set_attrs, tune_intervals
from damon_bpf.engine.damos import (
    UINT_MAX,
    AccessPattern,
    Action,
    Scheme,
    access_pct_to_nr_accesses,
    age_us_to_aggr_intervals,
    format_pct,
)
from damon_bpf.engine.model import Attrs, Ctx, IntervalsGoal, Region, Target
from damon_bpf.engine.ops import Applied, BaseOperations

START = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000)  # max_nr_accesses 20


def words(text: str, attrs: Attrs = START) -> list[Scheme]:
    # "N samples" / "N aggr_intervals" are one shell word each on a real command line
    out: list[str] = []
    for t in text.split():
        if t in ("samples", "aggr_intervals") and out:
            out[-1] = f"{out[-1]} {t}"
        else:
            out.append(t)
    return schemes_from_cli_words(out, attrs)


def ctx_with(schemes: list[Scheme], attrs: Attrs | None = None, sz: int = 4096 * 100) -> Ctx:
    a = attrs or Attrs(sample_interval_us=START.sample_interval_us, aggr_interval_us=START.aggr_interval_us)
    ctx = Ctx(attrs=a, min_region_sz=1, rng=random.Random(0))
    ctx.targets.append(Target(regions=[Region(0, sz)]))
    ctx.schemes = schemes
    init_ctx(ctx)
    return ctx


def bounds(s: Scheme) -> tuple[int, int, int, int]:
    p = s.pattern
    return p.min_nr_accesses, p.max_nr_accesses, p.min_age_region, p.max_age_region


# -------------------------------------------------------------------------------- conversions follow set_attrs

def test_time_and_percent_follow_set_attrs_kernel_units_stay() -> None:
    timed, counted = words("--damos_action stat --damos_age 5s max --damos_access_rate 20% 100% "
                           "--damos_action stat --damos_age 10 aggr_intervals max "
                           "--damos_access_rate 3 samples max")
    ctx = ctx_with([timed, counted])
    assert bounds(timed) == (4, 20, 50, UINT_MAX)
    assert bounds(counted) == (3, UINT_MAX, 10, UINT_MAX)
    # a source choosing a 280 ms aggregation interval of 10 ms samples (max_nr_accesses 28)
    set_attrs(ctx, Attrs(sample_interval_us=10_000, aggr_interval_us=280_000))
    # damo's rounding: int(5 s / 280 ms) = int(17.86) = 17; int(20 % * 28) = int(5.6) = 5
    assert bounds(timed) == (5, 28, 17, UINT_MAX)
    assert bounds(counted) == (3, UINT_MAX, 10, UINT_MAX)
    # back to the starting attrs: the starting bounds again, nothing drifted
    set_attrs(ctx, Attrs(sample_interval_us=5_000, aggr_interval_us=100_000))
    assert bounds(timed) == (4, 20, 50, UINT_MAX)
    assert bounds(counted) == (3, UINT_MAX, 10, UINT_MAX)


@pytest.mark.parametrize("aggr_us", [100_000, 150_000, 280_000, 1_000_000, 28_000_000, 7_000_001])
def test_age_matches_damo_for_any_aggregation_interval(aggr_us: int) -> None:
    (s,) = words("--damos_action stat --damos_age 5s 1m")
    ctx = ctx_with([s])
    set_attrs(ctx, Attrs(sample_interval_us=5_000, aggr_interval_us=aggr_us))
    assert s.pattern.min_age_region == int(5_000_000 / aggr_us)
    assert s.pattern.max_age_region == int(60_000_000 / aggr_us)
    # as if the scheme had been given with these intervals from the start
    (fresh,) = words("--damos_action stat --damos_age 5s 1m", ctx.attrs)
    assert bounds(fresh) == bounds(s)


@pytest.mark.parametrize("sample_us, aggr_us", [(5_000, 100_000), (7_000, 100_000), (1_000, 1_000_000),
                                                (10_000, 10_000)])
def test_rate_follows_max_nr_accesses(sample_us: int, aggr_us: int) -> None:
    (s,) = words("--damos_action stat --damos_access_rate 12.5% 20%")
    ctx = ctx_with([s])
    set_attrs(ctx, Attrs(sample_interval_us=sample_us, aggr_interval_us=aggr_us))
    mx = ctx.attrs.max_nr_accesses
    assert s.pattern.min_nr_accesses == int(Fraction(125, 10) * mx / 100)
    assert s.pattern.max_nr_accesses == int(20 * mx / 100)


def test_tuned_intervals_rescale_a_time_age() -> None:
    (s,) = words("--damos_action pageout --damos_age 5s max")
    attrs = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000, aggr_samples=20,
                  intervals_goal=IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=1_000,
                                               max_sample_us=1_000_000))
    ctx = ctx_with([s], attrs)
    assert s.pattern.min_age_region == 50
    for want_aggr_us in (200_000, 400_000, 800_000):  # nothing accessed: the intervals double each time
        assert tune_intervals(ctx)
        assert ctx.attrs.aggr_interval_us == want_aggr_us
        assert s.pattern.min_age_region == 5_000_000 // want_aggr_us
        assert s.pattern.max_age_region == UINT_MAX


def test_fixed_intervals_keep_the_starting_bounds() -> None:
    schemes = words("--damos_action stat --damos_age 1s 1m --damos_access_rate 5% 95% "
                    "--damos_action stat --damos_age 7 aggr_intervals 9 aggr_intervals "
                    "--damos_access_rate 3 samples 17 samples")
    before = [bounds(s) for s in schemes]
    ctx = ctx_with(schemes)
    assert [bounds(s) for s in schemes] == before
    set_attrs(ctx, Attrs(sample_interval_us=5_000, aggr_interval_us=100_000))
    assert [bounds(s) for s in schemes] == before


def test_programmatic_patterns_in_kernel_units_are_left_alone() -> None:
    s = Scheme(pattern=AccessPattern(1, 2, 3, 4, 5, 6))
    ctx = ctx_with([s])
    set_attrs(ctx, Attrs(sample_interval_us=1_000, aggr_interval_us=2_000_000))
    assert bounds(s) == (3, 4, 5, 6)


def test_conversion_helpers() -> None:
    a = Attrs(sample_interval_us=7_000, aggr_interval_us=100_000)  # max_nr_accesses 14
    assert age_us_to_aggr_intervals(0, a) == 0
    assert age_us_to_aggr_intervals(99_999, a) == 0 and age_us_to_aggr_intervals(100_000, a) == 1
    assert age_us_to_aggr_intervals(2**64 - 1, a) == UINT_MAX
    assert age_us_to_aggr_intervals(10**18, a) == UINT_MAX
    assert access_pct_to_nr_accesses(Fraction(50), a) == 7 and access_pct_to_nr_accesses(Fraction(10), a) == 1
    assert access_pct_to_nr_accesses(Fraction(10**12), a) == UINT_MAX
    for p in (Fraction(5), Fraction(25, 2), Fraction("33.333"), Fraction(0.1), Fraction(1, 3)):
        assert Fraction(format_pct(p)[:-2]) == p


# -------------------------------------------------------------------------------- a run whose intervals grow

class IdleOps(BaseOperations):
    """Sees no access at all (intervals tuning then grows the intervals) and applies every action fully."""

    name = "idle"
    supported_actions = frozenset(a.value for a in Action)

    def apply_scheme(self, ctx, target, region, scheme):  # type: ignore[no-untyped-def]
        return Applied(region.end - region.start)


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def clock_ns(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += int(round(seconds * 1e9))


def test_kdamond_with_growing_intervals_tries_a_timed_scheme_on_time() -> None:
    """The report of issue #16: the aggregation interval grew and a "5s" age came to mean 50 grown intervals,
    so nothing was tried. Here the intervals grow from 100 ms to 2 s; a region idle from the start is 3 s old
    after about 3 s, whatever the intervals did, and the scheme tries it then."""
    timed, counted = words("--damos_action stat --damos_age 3s max "
                           "--damos_action stat --damos_age 30 aggr_intervals max")
    attrs = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000, min_nr_regions=3, max_nr_regions=10,
                  intervals_goal=IntervalsGoal(access_bp=400, aggrs=1, min_sample_us=5_000,
                                               max_sample_us=100_000))
    ctx = Ctx(attrs=attrs, ops=IdleOps(), rng=random.Random(1))
    ctx.targets.append(Target(regions=[Region(0, 64 << 20)]))
    ctx.schemes = [timed, counted]
    clk = Clock()
    seen: list[tuple[int, int, int, int, int]] = []

    def watch(snap: object) -> None:
        seen.append((clk.ns - k.start_ns, ctx.attrs.aggr_interval_us, timed.pattern.min_age_region,
                     timed.stat.nr_tried, counted.pattern.min_age_region))

    ctx.after_aggregation.append(watch)
    k = Kdamond(ctx, clock_ns=clk.clock_ns, sleep=clk.sleep)
    k.run(max_aggregations=16)
    aggrs = [a for _, a, _, _, _ in seen]
    assert aggrs[0] == 100_000 and aggrs[-1] == 2_000_000  # the intervals did grow
    for _, aggr_us, min_age, _, counted_age in seen:
        assert min_age == 3_000_000 // aggr_us
        assert counted_age == 30  # aggregation intervals stay aggregation intervals
    first_tried_ns = next(t for t, _, _, tried, _ in seen if tried)
    assert 3e9 <= first_tried_ns <= 6e9  # 3 s, plus the aggregation interval it was tried in
    # the same run with the bounds frozen at the starting attrs (the old behaviour) would wait 30 intervals
    assert counted.stat.nr_tried == 0


# -------------------------------------------------------------------------------- writing schemes out

def test_json_keeps_the_units_given() -> None:
    (s,) = words("--damos_action pageout --damos_age 500ms 10 aggr_intervals --damos_access_rate 3 samples 20% "
                 "--damos_sz_region 4KiB max")
    d = scheme_to_json(s, START)
    assert d["access_pattern"]["age"] == {"min": "500 ms", "max": "10 aggr_intervals"}
    assert d["access_pattern"]["nr_accesses"] == {"min": "3 samples", "max": "20 %"}
    # written with other intervals: the same text, the unit is the bound's own
    other = Attrs(sample_interval_us=10_000, aggr_interval_us=2_000_000)
    assert scheme_to_json(s, other) == d
    # read back with other intervals: the time and the percentage convert for them, the counts stay
    (back,) = schemes_from_json(json.dumps([d]), Attrs(sample_interval_us=10_000, aggr_interval_us=250_000))
    assert bounds(back) == (3, 5, 2, 10)
    assert scheme_to_json(back, START) == d
    # the engine's own dict (the live view's JSON) keeps them too, and reads back
    ed = s.to_dict()["access_pattern"]
    assert ed["age"] == {"min": "500000 us", "max": "10 aggr_intervals"}
    assert ed["nr_accesses"] == {"min": "3 samples", "max": "20 %"}
    (back,) = schemes_from_json([s.to_dict()], START)
    assert back.to_dict() == s.to_dict()


@pytest.mark.parametrize("text", [
    "--damos_action stat",
    "--damos_action stat --damos_age 0 max --damos_access_rate 0% 0%",
    "--damos_action stat --damos_age 1500ms 2m --damos_access_rate 12.5% 100%",
    "--damos_action stat --damos_age 7 aggr_intervals 9 aggr_intervals --damos_access_rate 3 samples 17 samples",
    "--damos_action stat --damos_age 250000 90s",
])
def test_round_trip_keeps_units_and_meaning(text: str) -> None:
    schemes = words(text)
    dumped = json.dumps(schemes_to_json(schemes, START))
    back = schemes_from_json(dumped, START)
    assert [s.to_dict() for s in back] == [s.to_dict() for s in schemes]
    # both follow the same change of intervals the same way
    a, b = ctx_with(schemes), ctx_with(back)
    for ctx in (a, b):
        set_attrs(ctx, Attrs(sample_interval_us=3_000, aggr_interval_us=330_000))
    assert [bounds(s) for s in back] == [bounds(s) for s in schemes]


def test_zero_keeps_its_unit_max_and_defaults_have_none() -> None:
    (s,) = words("--damos_action stat --damos_age 0 max --damos_access_rate 0% max")
    p = s.pattern
    assert (p.min_age_us, p.max_age_us, p.min_nr_accesses_pct, p.max_nr_accesses_pct) == (0, None, 0, None)
    d = scheme_to_json(s, START)["access_pattern"]
    assert (d["age"], d["nr_accesses"]) == ({"min": "0 us", "max": "max"}, {"min": "0 %", "max": "max"})
    (default,) = words("--damos_action stat")
    d = scheme_to_json(default, START)["access_pattern"]
    assert (d["age"], d["nr_accesses"]) == ({"min": "0 aggr_intervals", "max": "max"},
                                           {"min": "0 samples", "max": "max"})


# -------------------------------------------------------------------------------- patterns that cannot match

def test_never_matching_reasons() -> None:
    old, rate, big, fine = words(
        "--damos_action pageout --damos_age 5s max "
        "--damos_action stat --damos_access_rate 30 samples max "
        "--damos_action cold --damos_sz_region 1GiB max --damos_access_rate 150% max "
        "--damos_action stat --damos_age 2s max --damos_access_rate 0% 100%")
    ctx = ctx_with([old, rate, big, fine], sz=64 << 20)
    assert schemes_never_matching(ctx) == [
        "scheme 1 (stat) can never match: its minimum access rate 30 samples is above the 20 samples an "
        "aggregation interval has",
        "scheme 2 (cold) can never match: its minimum access rate 150 % (30 samples) is above the 20 samples an "
        "aggregation interval has; its minimum region size 1 GiB is larger than the 64.000 MiB monitored",
    ]
    notes = schemes_never_matching(ctx, duration_us=3_000_000)
    assert notes[0] == "scheme 0 (pageout) can never match: its minimum age 5 s is longer than the 3 s run"
    assert len(notes) == 3 and not any(n.startswith("scheme 3") for n in notes)
    assert schemes_never_matching(ctx, duration_us=5_000_000)[0].startswith("scheme 1")  # 5 s is not longer


def test_never_matching_after_conversion() -> None:
    # a time minimum over a maximum in aggregation intervals, once the interval shrank
    (s,) = words("--damos_action stat --damos_age 1s 20 aggr_intervals")
    assert pattern_never_matches(s, START) == []
    ctx = ctx_with([s], Attrs(sample_interval_us=1_000, aggr_interval_us=20_000))
    assert s.pattern.min_age_region == 50
    (note,) = schemes_never_matching(ctx)
    assert "its minimum age 1 s (50 aggregation intervals) is above its maximum 20 aggr_intervals (20)" in note
    # an empty context (targets not known yet) checks no size
    assert pattern_never_matches(Scheme(pattern=AccessPattern(min_sz_bytes=1 << 40)), START) == []
