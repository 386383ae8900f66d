"""The bench's own pure helpers in ``bench/_common.py`` (throughput, slowdown, summaries, goals, formatting)
and how its source cases map to ``damon-bpf compare``'s source names. Scoring against the truth is
``damon_bpf.eval.scoring``, tested in ``tests/unit/eval/test_scoring.py``."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from damon_bpf.ops.sources import PteOptions, get_source

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_common.py"
_spec = importlib.util.spec_from_file_location("damon_bpf_bench_common", _PATH)
assert _spec is not None and _spec.loader is not None
C = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = C
_spec.loader.exec_module(C)

MiB = 1 << 20


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


# -- source cases ------------------------------------------------------------------------------------------

def test_source_case_takes_ops_and_options_from_compare() -> None:
    from damon_bpf.eval.compare import source_spec

    sp = C.SourceCase("fault+pageout", "fault+pageout", file_backed=True).spec()
    assert sp.name == "fault+pageout" and sp.ops_id == "fault"
    assert sp.options == source_spec("fault+pageout").options and sp.options.probe == "pageout"
    assert C.SourceCase("numa", "fault+numa").spec().options.numa_hint_faults is True
    perf = C.SourceCase("perf", "perf:page-faults").spec()
    assert perf.ops_id == "perf" and perf.options.events == "page-faults"
    assert C.SourceCase("pte", "pte").spec().options == PteOptions()


def test_source_case_overrides_go_on_top() -> None:
    sp = C.SourceCase("damon-bpf perf", "perf:page-faults", {"rate_limit": 0}).spec()
    assert sp.options.rate_limit == 0 and sp.options.events == "page-faults"
    assert C.SourceCase("pte@5ms", "pte", {"cpu_budget": 0.0}).spec().options == PteOptions(cpu_budget=0.0)


def test_source_case_rejects_unknown_names_and_synthetic_needs_a_workload() -> None:
    with pytest.raises(ValueError):
        C.SourceCase("x", "nosuch")
    with pytest.raises(ValueError):
        C.SourceCase("x", "fault,pte")
    with pytest.raises(ValueError):  # InvalidParamsError: the synthetic source follows the workload's truth
        C.SourceCase("synthetic", "synthetic").spec()


# -- children ------------------------------------------------------------------------------------------------

def test_stop_child_ends_and_forgets_a_child() -> None:
    p = C.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    C.stop_child(p, timeout_s=5.0)
    assert p.returncode is not None and p not in C._children
    C.stop_child(p)  # already ended: nothing happens


def _load(name: str) -> object:
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"damon_bpf_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# each bench case: the ops id and the options it ran with before it named compare's sources
_BEFORE = {
    "pte": ("pte", {}), "pte@5ms": ("pte", {"cpu_budget": 0.0}), "pte+file": ("pte", {}),
    "fault+pageout": ("fault", {"probe": "pageout"}), "fault+numa": ("fault", {"numa_hint_faults": True}),
    "fault": ("fault", {}), "perf": ("perf", {"events": "page-faults"}),
}


@pytest.mark.parametrize("bench", ["accuracy", "overhead"])
def test_bench_cases_run_what_they_ran_before(bench: str) -> None:
    cases = _load(bench).CASES  # type: ignore[attr-defined]
    assert set(cases) - set(_BEFORE) == {"synthetic"}
    for key, case in cases.items():
        if key == "synthetic":
            assert case.source == "synthetic"
            continue
        sp = case.spec()
        ops_id, options = _BEFORE[key]
        assert sp.ops_id == ops_id
        assert {k: getattr(sp.options, k) for k in options} == options
        # what compare adds for the BPF sources are the ops' own defaults: the options are those alone
        assert sp.options == get_source(ops_id).options_type(**options)
        assert getattr(sp.options, "rate_limit", 200_000) == 200_000 and getattr(sp.options, "bpf_stats", True)
