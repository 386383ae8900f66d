"""damon_bpf.config.schemes: damo's --damos_* words and JSON scheme shape to engine Schemes and back.

The round-trip tests follow damo's ``tests/unit/test_damon.py: test_kvpairs_transition``: an object turned into
key-value pairs and read back is the same object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from damon_bpf.config.schemes import (
    age_from_text,
    load_schemes,
    nr_accesses_from_text,
    scheme_to_json,
    schemes_from_cli,
    schemes_from_cli_words,
    schemes_from_json,
    schemes_to_json,
)
from damon_bpf.engine import Attrs
from damon_bpf.engine.damos import UINT_MAX, Action, FilterType, QuotaGoalMetric, Scheme, WmarkMetric
from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import U64_MAX

ATTRS = Attrs(sample_interval_us=5_000, aggr_interval_us=100_000)  # max_nr_accesses 20
ATTRS_ODD = Attrs(sample_interval_us=7_000, aggr_interval_us=100_000)  # max_nr_accesses 14


def words(text: str) -> list[Scheme]:
    return schemes_from_cli_words(text.split(), ATTRS)


def params(schemes: list[Scheme]) -> list[dict[str, object]]:
    return [s.to_dict() for s in schemes]


# -------------------------------------------------------------------------------- value conversions

@pytest.mark.parametrize("text, attrs, want", [
    ("0%", ATTRS, 0), ("0 %", ATTRS, 0), ("5%", ATTRS, 1), ("10%", ATTRS, 2), ("12.5%", ATTRS, 2),
    ("100%", ATTRS, 20), ("50", ATTRS, 10), (50, ATTRS, 10), (12.5, ATTRS, 2), ("max", ATTRS, UINT_MAX),
    ("min", ATTRS, 0), ("3 samples", ATTRS, 3), ("1,000 samples", ATTRS, 1000),
    ("50%", ATTRS_ODD, 7), ("10%", ATTRS_ODD, 1),  # damo: int(percent * max / 100)
])
def test_nr_accesses_from_text(text: object, attrs: Attrs, want: int) -> None:
    assert nr_accesses_from_text(text, attrs) == want


@pytest.mark.parametrize("text, want", [
    ("30s", 300), ("30 s", 300), ("1 m", 600), ("150ms", 1), ("99ms", 0), ("250000", 2), (250000, 2),
    ("max", UINT_MAX), ("min", 0), ("12 aggr_intervals", 12), ("1 m 30 s", 900),
])
def test_age_from_text(text: object, want: int) -> None:
    assert age_from_text(text, ATTRS) == want


def test_age_follows_the_aggregation_interval() -> None:
    assert age_from_text("30s", Attrs(sample_interval_us=5_000, aggr_interval_us=1_000_000)) == 30


@pytest.mark.parametrize("text", ["abc", "-1%", "5 x", "", "1 aggr_interval"])
def test_bad_access_rates(text: str) -> None:
    with pytest.raises(InvalidParamsError, match="nr_accesses"):
        nr_accesses_from_text(text, ATTRS)


# -------------------------------------------------------------------------------- command-line words

def test_reclaim_scheme_from_words() -> None:
    (s,) = words("--damos_action pageout --damos_access_rate 0% 0% --damos_age 30s max "
                 "--damos_sz_region 4KiB max --damos_quotas 10ms 128MiB 1s --damos_filter reject anon")
    assert s.action is Action.PAGEOUT
    p = s.pattern
    assert (p.min_sz_bytes, p.max_sz_bytes) == (4096, U64_MAX)
    assert (p.min_nr_accesses, p.max_nr_accesses) == (0, 0)
    assert (p.min_age_region, p.max_age_region) == (300, UINT_MAX)
    q = s.quota
    assert (q.ms, q.sz, q.reset_interval_ms) == (10, 128 << 20, 1000)
    assert (q.weight_sz, q.weight_nr_accesses, q.weight_age) == (0, 0, 0)
    (f,) = s.filters
    assert (f.type, f.matching, f.allow) == (FilterType.ANON, True, False)


def test_defaults_match_everything() -> None:
    (s,) = words("--damos_action stat")
    p = s.pattern
    assert (p.min_sz_bytes, p.max_sz_bytes, p.min_nr_accesses, p.max_nr_accesses, p.min_age_region,
            p.max_age_region) == (0, U64_MAX, 0, UINT_MAX, 0, UINT_MAX)
    assert s.apply_interval_us == 0 and not s.filters and s.wmarks.metric is WmarkMetric.NONE
    assert (s.quota.ms, s.quota.sz, s.quota.goals) == (0, 0, [])


def test_options_apply_to_the_latest_scheme() -> None:
    a, b, c = words("--damos_action stat --damos_age 1s max "
                    "--damos_action migrate_hot 1 --damos_access_rate 50% 100% --damos_apply_interval 1s "
                    "--damos_action cold --damos_sz_region 2MiB 1GiB --damos_max_nr_snapshots 3")
    assert (a.action, a.pattern.min_age_region, a.pattern.min_nr_accesses) == (Action.STAT, 10, 0)
    assert (b.action, b.target_nid, b.pattern.min_nr_accesses, b.apply_interval_us) == (
        Action.MIGRATE_HOT, 1, 10, 1_000_000)
    assert b.pattern.min_age_region == 0
    assert (c.pattern.min_sz_bytes, c.pattern.max_sz_bytes, c.max_nr_snapshots) == (2 << 20, 1 << 30, 3)


def test_groups_keep_dashes_optional() -> None:
    (s,) = schemes_from_cli([("damos_action", ["stat"]), ("--damos-age", ["1s", "2s"])], ATTRS)
    assert (s.pattern.min_age_region, s.pattern.max_age_region) == (10, 20)


@pytest.mark.parametrize("text, want", [
    ("10ms", (10, 0, U64_MAX, 0, 0, 0)),  # damo: no reset interval given means never reset
    ("10ms 1GiB", (10, 1 << 30, U64_MAX, 0, 0, 0)),
    ("1s 100MiB 2s", (1000, 100 << 20, 2000, 0, 0, 0)),
    ("10 100M 1000 1 2 3", (10, 100 << 20, 1000, 1, 2, 3)),
    ("10ms 0 1s 10% 20% 0", (10, 0, 1000, 100, 200, 0)),
])
def test_quotas(text: str, want: tuple[int, ...]) -> None:
    (s,) = words(f"--damos_action pageout --damos_quotas {text}")
    q = s.quota
    assert (q.ms, q.sz, q.reset_interval_ms, q.weight_sz, q.weight_nr_accesses, q.weight_age) == want


def test_separate_quota_options() -> None:
    (s,) = words("--damos_action pageout --damos_quota_space 64MiB --damos_quota_interval 1s")
    q = s.quota
    assert (q.ms, q.sz, q.reset_interval_ms) == (0, 64 << 20, 1000)
    assert (q.weight_sz, q.weight_nr_accesses, q.weight_age) == (1, 1, 1)
    (s,) = words("--damos_action pageout --damos_quota_time 5ms --damos_quota_weights 0 3 7")
    assert (s.quota.ms, s.quota.reset_interval_ms, s.quota.weight_age) == (5, U64_MAX, 7)


def test_quota_goals() -> None:
    (s,) = words("--damos_action pageout --damos_quotas 10ms 0 1s "
                 "--damos_quota_goal node_mem_free_bp 40% 1 --damos_quota_goal some_mem_psi_us 1ms "
                 "--damos_quota_goal user_input 1000 250 --damos_quota_goal node_memcg_used_bp 3000 /wl 2 "
                 "--damos_quota_goal node_memcg_free_bp 10% 0 /a/b --damos_quota_goal_tuner temporal")
    g = s.quota.goals
    assert [(x.metric, x.target_value, x.current_value, x.nid, x.memcg_path) for x in g] == [
        (QuotaGoalMetric.NODE_MEM_FREE_BP, 4000, 0, 1, None),
        (QuotaGoalMetric.SOME_MEM_PSI_US, 1000, 0, 0, None),
        (QuotaGoalMetric.USER_INPUT, 1000, 250, 0, None),
        (QuotaGoalMetric.NODE_MEMCG_USED_BP, 3000, 0, 2, "/wl"),
        (QuotaGoalMetric.NODE_MEMCG_FREE_BP, 1000, 0, 0, "/a/b"),
    ]
    assert s.quota.goal_tuner == "temporal"


def test_watermarks() -> None:
    (s,) = words("--damos_action pageout --damos_wmarks free_mem_rate 5s 500 40% 200")
    w = s.wmarks
    assert (w.metric, w.interval_us, w.high, w.mid, w.low) == (WmarkMetric.FREE_MEM_RATE, 5_000_000, 500, 400, 200)


def test_filters_new_and_old_forms() -> None:
    (s,) = words("--damos_action pageout --damos_filter reject anon "
                 "--damos_filter allow none memcg /workload "
                 "--damos_filter reject addr 0x1000 0x5000 allow target 1 "
                 "--damos_filter allow hugepage_size 2MiB 2MiB "
                 "--damos_filter young nomatching "
                 "--damos_filter memcg matching /a allow "
                 "--damos_filter addr matching 4KiB 8KiB pass "
                 "--damos_filter active matching block")
    got = [(f.type, f.matching, f.allow) for f in s.filters]
    assert got == [
        (FilterType.ANON, True, False), (FilterType.MEMCG, False, True), (FilterType.ADDR, True, False),
        (FilterType.TARGET, True, True), (FilterType.HUGEPAGE_SIZE, True, True),
        (FilterType.YOUNG, False, False), (FilterType.MEMCG, True, True), (FilterType.ADDR, True, True),
        (FilterType.ACTIVE, True, False),
    ]
    f = s.filters
    assert f[1].memcg_path == "/workload" and f[6].memcg_path == "/a"
    assert (f[2].addr_start, f[2].addr_end) == (0x1000, 0x5000)
    assert f[3].target_idx == 1
    assert (f[4].sz_min, f[4].sz_max) == (2 << 20, 2 << 20)
    assert (f[7].addr_start, f[7].addr_end) == (4096, 8192)


@pytest.mark.parametrize("text, msg", [
    ("--damos_age 1s max --damos_action stat", "--damos_age is given before any --damos_action"),
    ("--damos_action", "no action given"),
    ("--damos_action sleep", "unknown action 'sleep'"),
    ("--damos_action stat 3", "stat takes no further value"),
    ("--damos_action migrate_cold", "migrate_cold needs a target node id"),
    ("--damos_action migrate_cold x", "node id: not an integer"),
    ("--damos_action stat --damos_access_rate 50% 10%", "--damos_access_rate (scheme 0): minimum '50%'"),
    ("--damos_action stat --damos_access_rate x 10%", "--damos_access_rate (scheme 0) min: invalid percentage"),
    ("--damos_action stat --damos_access_rate 1%", "expected 2 values, got 1"),
    ("--damos_action stat --damos_age 1x max", "--damos_age (scheme 0) min: invalid time unit"),
    ("--damos_action stat --damos_sz_region 1Q max", "--damos_sz_region (scheme 0) min: invalid size unit"),
    ("--damos_action stat --damos_age 1s max --damos_age 2s max", "given twice"),
    ("--damos_action stat --damos_action cold --damos_quotas 1 2 3 4 5 6 7", "--damos_quotas (scheme 1)"),
    ("--damos_action stat --damos_quotas 1 --damos_quota_space 5", "cannot be combined"),
    ("--damos_action stat --damos_quota_goal node_mem_used_bp 40%", "quota goals need a reset interval"),
    ("--damos_action stat --damos_quotas 1 0 1s --damos_quota_goal mem 40%", "unknown quota goal metric 'mem'"),
    ("--damos_action stat --damos_quotas 1 0 1s --damos_quota_goal user_input 0", "must be positive"),
    ("--damos_action stat --damos_quotas 1 0 1s --damos_quota_goal active_mem_bp 1% 0", "takes only VALUE"),
    ("--damos_action stat --damos_quotas 1 0 1s --damos_quota_goal node_memcg_used_bp 1%", "MEMCG_PATH"),
    ("--damos_action stat --damos_quota_goal_tuner fast", "unknown quota goal tuner 'fast'"),
    ("--damos_action stat --damos_wmarks free 1s 1 1 1", "unknown watermarks metric 'free'"),
    ("--damos_action stat --damos_wmarks free_mem_rate 1s 100 500 200", "LOW <= MID <= HIGH"),
    ("--damos_action stat --damos_filter", "expected allow|reject"),
    ("--damos_action stat --damos_filter bogus", "'bogus' is neither allow/reject nor a filter type"),
    ("--damos_action stat --damos_filter reject", "no filter type"),
    ("--damos_action stat --damos_filter reject none", "no filter type"),
    ("--damos_action stat --damos_filter allow bogus", "unknown filter type 'bogus'"),
    ("--damos_action stat --damos_filter reject memcg", "no memcg path"),
    ("--damos_action stat --damos_filter reject addr 0x10", "needs two values"),
    ("--damos_action stat --damos_filter reject addr 0x20 0x10", "is not below end"),
    ("--damos_action stat --damos_filter reject target x", "not an integer"),
    ("--damos_action stat --damos_filter reject anon extra", "expected allow or reject, got 'extra'"),
    ("--damos_action stat --damos_filter anon", "must be followed by matching or nomatching"),
    ("--damos_action stat --damos_filter anon matching x allow", "unexpected 'x'"),
    ("--damos_action stat --damos_max_nr_snapshots -1", "must be at least 0"),
    ("--damos_action stat --damos_bogus 1", "unknown DAMOS option --damos_bogus"),
])
def test_cli_errors_name_the_option(text: str, msg: str) -> None:
    with pytest.raises(InvalidParamsError) as exc:
        words(text)
    assert msg in str(exc.value)
    assert "\n" not in str(exc.value)


def test_words_must_start_with_an_option() -> None:
    with pytest.raises(InvalidParamsError, match="expected a --damos_\\* option"):
        schemes_from_cli_words(["pageout"], ATTRS)


# -------------------------------------------------------------------------------- JSON

#: damo's own example: `damo args damon --damos_action pageout --damos_access_rate 0% 0% --damos_age 30s max
#: --damos_sz_region 4KiB max --damos_quotas 10ms 128MiB 1s --damos_filter reject anon --format json`
DAMO_OUTPUT = """{"kdamonds": [{"refresh_ms": 0, "contexts": [{
   "ops": "paddr", "addr_unit": "1 B",
   "targets": [{"pid": null, "obsolete": false, "regions": [{"start": "4,096", "end": "26,843,545,600"}]}],
   "intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s",
                 "intervals_goal": {"access_bp": "0 %", "aggrs": "0", "min_sample_us": "0 ns",
                                    "max_sample_us": "0 ns"}},
   "nr_regions": {"min": "10", "max": "1,000"},
   "schemes": [{
     "action": "pageout", "dests": [],
     "access_pattern": {"sz_bytes": {"min": "4.000 KiB", "max": "max"},
                        "nr_accesses": {"min": "0 %", "max": "0 %"},
                        "age": {"min": "30 s", "max": "max"}},
     "apply_interval_us": "0 ns",
     "quotas": {"time_ms": "10 ms", "sz_bytes": "128.000 MiB", "reset_interval_ms": "1 s",
                "goals": [], "goal_tuner": "consist", "effective_sz_bytes": "0 B",
                "weights": {"sz_permil": "0 %", "nr_accesses_permil": "0 %", "age_permil": "0 %"}},
     "watermarks": {"metric": "none", "interval_us": "0 ns", "high_permil": "0 %",
                    "mid_permil": "0 %", "low_permil": "0 %"},
     "filters": [{"filter_type": "anon", "matching": true, "allow": false, "memcg_path": null,
                  "address_range": null, "damon_target_idx": null, "hugepage_size": null}]}]}]}]}"""


def test_damo_kdamonds_file_equals_the_same_cli_words() -> None:
    from_json = schemes_from_json(DAMO_OUTPUT, ATTRS)
    from_cli = words("--damos_action pageout --damos_access_rate 0% 0% --damos_age 30s max "
                     "--damos_sz_region 4KiB max --damos_quotas 10ms 128MiB 1s --damos_filter reject anon")
    assert params(from_json) == params(from_cli)


def test_json_shapes() -> None:
    one = {"action": "stat", "access_pattern": {"age": {"min": "12 aggr_intervals", "max": "max"},
                                                "nr_accesses": {"min": "0 samples", "max": "1 samples"}}}
    for obj in ([one], {"schemes": [one]}, one, {"kdamonds": [{"contexts": [{"schemes": [one]}]}]}):
        (s,) = schemes_from_json(obj, ATTRS)
        assert (s.pattern.min_age_region, s.pattern.max_nr_accesses) == (12, 1)
    two = {"kdamonds": [{"contexts": [{"schemes": [one]}, {"schemes": [dict(one, action="cold")]}]}]}
    assert [s.action for s in schemes_from_json(two, ATTRS)] == [Action.STAT, Action.COLD]
    assert schemes_from_json([], ATTRS) == []


def test_json_defaults_and_other_names() -> None:
    (s,) = schemes_from_json([{"action": "migrate_cold", "dests": [{"id": 2, "weight": 1000}],
                               "quotas": {"time_ms": 5},
                               "filters": [{"filter_type": "young", "matching": False, "pass": True}]}], ATTRS)
    assert s.target_nid == 2
    assert (s.quota.ms, s.quota.reset_interval_ms) == (5, U64_MAX)
    assert (s.filters[0].matching, s.filters[0].allow) == (False, True)
    (s,) = schemes_from_json([{"action": "pageout", "quotas": {"reset_interval_ms": "1s", "goals": [
        {"target_value_bp": 8000, "current_value_bp": 100}]}}], ATTRS)
    g = s.quota.goals[0]
    assert (g.metric, g.target_value, g.current_value) == (QuotaGoalMetric.USER_INPUT, 8000, 100)


def test_engine_to_dict_reads_back() -> None:
    # the live view's JSON ("schemes": [scheme.to_dict()]) is itself a valid --schemes input
    src = words("--damos_action pageout --damos_access_rate 0% 5% --damos_age 2s max "
                "--damos_quotas 10ms 64MiB 1s 1 2 3 --damos_filter allow addr 4096 8192")
    back = schemes_from_json([s.to_dict() for s in src], ATTRS)
    assert params(back) == params(src)


ROUND_TRIP_WORDS = [
    "--damos_action stat",
    "--damos_action pageout --damos_access_rate 0% 0% --damos_age 30s max --damos_sz_region 4KiB max "
    "--damos_quotas 10ms 128MiB 1s --damos_filter reject anon",
    "--damos_action migrate_hot 1 --damos_access_rate 5% 100% --damos_age 0 1m --damos_apply_interval 2500ms "
    "--damos_quotas 1s 1GiB 5s 100 200 300 --damos_quota_goal node_mem_used_bp 40.5% 0 "
    "--damos_quota_goal some_mem_psi_us 1ms --damos_quota_goal node_memcg_free_bp 20% 1 /a "
    "--damos_quota_goal_tuner temporal --damos_wmarks free_mem_rate 5s 800 600 100 --damos_max_nr_snapshots 7",
    "--damos_action cold --damos_access_rate 3 samples 17 samples --damos_age 7 aggr_intervals 9 aggr_intervals "
    "--damos_sz_region 12345 98765 --damos_filter allow none memcg /x/y reject addr 0x7f0000001000 0x7f0000009000 "
    "allow target 0 reject hugepage_size 4KiB 2MiB allow unmapped reject active allow young",
    "--damos_action lru_prio --damos_quota_time 7 --damos_action lru_deprio --damos_quota_space 4097",
]


@pytest.mark.parametrize("text", ROUND_TRIP_WORDS)
@pytest.mark.parametrize("attrs", [ATTRS, ATTRS_ODD], ids=["5ms-100ms", "7ms-100ms"])
def test_kvpairs_transition(text: str, attrs: Attrs) -> None:
    # damo's test_kvpairs_transition: object -> JSON -> object is the identity
    schemes = _words_with_spaces(text, attrs)
    dumped = json.dumps(schemes_to_json(schemes, attrs))
    back = schemes_from_json(dumped, attrs)
    assert params(back) == params(schemes)
    # and again through the full kdamonds shape, twice
    full = schemes_to_json(back, attrs, kdamonds=True)
    again = schemes_from_json(json.loads(json.dumps(full)), attrs)
    assert params(again) == params(schemes)
    assert schemes_to_json(again, attrs) == json.loads(dumped)


def _words_with_spaces(text: str, attrs: Attrs) -> list[Scheme]:
    # "3 samples" and "7 aggr_intervals" are one shell word each on a real command line
    toks = text.split()
    out: list[str] = []
    for t in toks:
        if t in ("samples", "aggr_intervals") and out:
            out[-1] = f"{out[-1]} {t}"
        else:
            out.append(t)
    return schemes_from_cli_words(out, attrs)


def test_human_units_in_output() -> None:
    (s,) = words("--damos_action pageout --damos_access_rate 0% 10% --damos_age 30s max "
                 "--damos_sz_region 4KiB max --damos_quotas 10ms 128MiB 1s")
    d = scheme_to_json(s, ATTRS)
    assert d["access_pattern"] == {"sz_bytes": {"min": "4 KiB", "max": "max"},
                                   "nr_accesses": {"min": "0 %", "max": "10 %"},
                                   "age": {"min": "30 s", "max": "max"}}
    assert (d["quotas"]["time_ms"], d["quotas"]["sz_bytes"], d["quotas"]["reset_interval_ms"]) == (
        "10 ms", "128 MiB", "1 s")
    # a count that is not a whole percentage stays in samples
    (s,) = schemes_from_cli_words(["--damos_action", "stat", "--damos_access_rate", "1 samples", "max"], ATTRS_ODD)
    assert scheme_to_json(s, ATTRS_ODD)["access_pattern"]["nr_accesses"] == {"min": "1 samples", "max": "max"}


@pytest.mark.parametrize("obj, msg", [
    ("[", "not JSON"),
    ('"x"', "expected a list of schemes"),
    ({"foo": 1}, "expected a list of schemes"),
    ([{"access_pattern": {}}], "schemes[0]: no \"action\""),
    ([{"action": "zap"}], "schemes[0].action: unknown action 'zap'"),
    ([3], "schemes[0]: a scheme must be an object"),
    ([{"action": "stat", "access_pattern": {"nr_accesses": {"min": "x", "max": "max"}}}],
     "schemes[0].access_pattern.nr_accesses.min: invalid percentage"),
    ([{"action": "stat", "access_pattern": {"age": {"min": "2s", "max": "1s"}}}],
     "schemes[0].access_pattern.age: minimum '2s' is larger"),
    ([{"action": "stat", "access_pattern": []}], "schemes[0].access_pattern: expected an object"),
    ([{"action": "stat", "quotas": {"time_ms": "1 parsec"}}], "schemes[0].quotas.time_ms: invalid time unit"),
    ([{"action": "stat", "quotas": {"goals": [{"metric": "user_input"}]}}],
     "schemes[0].quotas.goals[0]: no \"target_value\""),
    ([{"action": "stat", "quotas": {"goals": [{"metric": "x", "target_value": 1}]}}],
     "schemes[0].quotas.goals[0].metric: unknown quota goal metric"),
    ([{"action": "stat", "watermarks": {"metric": "free_mem_rate", "high_permil": 1, "mid_permil": 5}}],
     "schemes[0]: watermarks must satisfy"),
    ([{"action": "stat", "filters": [{"filter_type": "addr"}]}], "schemes[0].filters[0].address_range"),
    ([{"action": "stat", "filters": [{"filter_type": "nope"}]}], "schemes[0].filters[0].filter_type: unknown"),
    ([{"action": "stat", "filters": [{"filter_type": "anon", "matching": "yes"}]}],
     "schemes[0].filters[0].matching: expected true or false"),
    ([{"action": "stat", "filters": [{"filter_type": "memcg"}]}], "memcg filter: no memcg path"),
    ({"kdamonds": [{"contexts": [{"schemes": [{"action": "x"}]}]}]},
     "kdamonds[0].contexts[0].schemes[0].action: unknown action"),
    ({"kdamonds": {}}, "kdamonds: expected a list"),
])
def test_json_errors_name_the_field(obj: object, msg: str) -> None:
    with pytest.raises(InvalidParamsError) as exc:
        schemes_from_json(obj, ATTRS)
    assert msg in str(exc.value)


def test_load_schemes_from_file_or_text(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(DAMO_OUTPUT)
    (s,) = load_schemes(str(f), ATTRS)
    assert s.action is Action.PAGEOUT
    (s,) = load_schemes('[{"action": "cold"}]', ATTRS)
    assert s.action is Action.COLD
    with pytest.raises(InvalidParamsError, match="neither a file nor JSON"):
        load_schemes(str(tmp_path / "missing.json"), ATTRS)
    f.write_text('[{"action": "cold", "apply_interval_us": "x"}]')
    with pytest.raises(InvalidParamsError, match=r"s\.json: schemes\[0\]\.apply_interval_us"):
        load_schemes(str(f), ATTRS)
