"""The access-source registry (:mod:`damon_bpf.ops.sources`): every descriptor's options from the command line,
``--source auto``'s order, the one "cannot see resident memory" warning, compare's source names, and the rule that
no layer above ops tests a source's name."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
from pathlib import Path

import pytest

import damon_bpf
import damon_bpf.ops
from damon_bpf.cli import monitor as monitor_cli
from damon_bpf.errors import InvalidParamsError, PermissionDeniedError
from damon_bpf.ops import sources
from damon_bpf.ops.sources import (
    FaultOptions,
    PerfOptions,
    PteOptions,
    ReplayOptions,
    SharedSettings,
    SourceOptions,
    SyntheticOptions,
)
from damon_bpf.session.monitor import Monitor, MonitorSpec

PTE, FAULT, PERF, SYNTHETIC, REPLAY = (sources.get_source(n) for n in ("pte", "fault", "perf", "synthetic", "replay"))


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    monitor_cli.add_arguments(p)
    return p.parse_args(list(argv))


def test_every_source_is_registered_once_with_its_operations_set() -> None:
    names = [d.name for d in sources.SOURCES]
    assert names == ["pte", "fault", "perf", "synthetic", "replay"]
    for d in sources.SOURCES:
        assert damon_bpf.ops.BUILTIN_OPS[d.name] == d.ops_path
        ops = d.create_ops(d.defaults())
        assert f"{type(ops).__module__}:{type(ops).__name__}" == d.ops_path
        assert ops.name == d.name
        assert issubclass(d.options_type, SourceOptions) and dataclasses.is_dataclass(d.options_type)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(d.defaults(), dataclasses.fields(d.options_type)[0].name, None)
    assert sources.selectable_names() == ["pte", "fault", "perf", "synthetic"]
    with pytest.raises(InvalidParamsError, match="unknown source 'nope'"):
        sources.get_source("nope")


@pytest.mark.parametrize("argv, source, options", [
    ([], PTE, PteOptions(clear="auto", cpu_budget=0.01)),
    (["--pte-clear", "page_idle", "--cpu-budget", "0.5%"], PTE, PteOptions(clear="page_idle", cpu_budget=0.005)),
    ([], FAULT, FaultOptions()),
    (["--numa-hint-faults", "--rate-limit", "7", "--no-bpf-stats"], FAULT,
     FaultOptions(numa_hint_faults=True, rate_limit=7, bpf_stats=False)),
    (["--probe", "pageout"], FAULT, FaultOptions(probe="pageout")),
    ([], PERF, PerfOptions()),
    (["--event", "mem-loads,mem-stores", "--period", "11", "--rate-limit", "0"], PERF,
     PerfOptions(events="mem-loads,mem-stores", period=11, rate_limit=0)),
    ([], SYNTHETIC, SyntheticOptions()),
    (["--seed", "3"], SYNTHETIC, SyntheticOptions(seed=3)),
])
def test_options_round_trip_from_the_command_line(argv: list[str], source: sources.SourceDescriptor[SourceOptions],
                                                  options: SourceOptions) -> None:
    args = _args("--source", source.name, *argv, "1")
    assert sources.resolve_source(args) is source
    got_source, got = sources.source_from_args(args)
    assert got_source is source and got == options and isinstance(got, source.options_type)
    assert source.options_type.from_dict(got.to_dict()) == got
    if not argv:
        assert got == dataclasses.replace(source.defaults(), **{"seed": None} if source is SYNTHETIC else {})


def test_synthetic_pattern_file_is_read_into_the_options(tmp_path: Path) -> None:
    pattern = {"phases": [{"duration_s": 1, "ranges": [{"start": 4096, "end": 8192, "p": 0.5}]}]}
    path = tmp_path / "pattern.json"
    path.write_text(json.dumps(pattern))
    _, options = sources.source_from_args(_args("--source", "synthetic", "--synthetic-pattern", str(path), "1"))
    assert options == SyntheticOptions(pattern=pattern)
    with pytest.raises(InvalidParamsError, match="not both"):
        sources.source_from_args(_args("--source", "synthetic", "--synthetic-pattern", str(path),
                                       "--synthetic-workload", str(path), "1"))


@pytest.mark.parametrize("argv, message", [
    (["--source", "fault", "--cpu-budget", "2%"], "--pte-clear and --cpu-budget belong to the pte source"),
    (["--source", "synthetic", "--probe", "pageout"], "--numa-hint-faults and --probe belong to the fault source"),
    (["--source", "fault", "--period", "5"], "--event and --period belong to the perf source"),
    (["--source", "pte", "--event", "page-faults"], "--event and --period belong to the perf source"),
])
def test_options_of_another_source_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidParamsError, match=message):
        sources.source_from_args(_args(*argv, "1"))


def test_options_of_one_source_select_it_under_auto() -> None:
    assert sources.resolve_source(_args("--probe", "pageout", "1")) is FAULT
    assert sources.resolve_source(_args("--numa-hint-faults", "1")) is FAULT
    assert sources.resolve_source(_args("--event", "page-faults", "1")) is PERF


def test_auto_order_and_the_help_that_says_it() -> None:
    assert [d.name for d in sources.auto_order()] == ["perf", "pte", "fault"]
    p = argparse.ArgumentParser()
    monitor_cli.add_arguments(p)
    (action,) = [a for a in p._actions if a.dest == "source"]
    assert list(action.choices or []) == ["auto", "pte", "fault", "perf", "synthetic"]
    assert action.help is not None and action.help.endswith(
        "; auto (default): perf with hardware sampling if available, else pte, else fault")


def test_auto_takes_the_last_when_nothing_before_it_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.os, "geteuid", lambda: 0)
    for d in sources.auto_order():
        monkeypatch.setattr(d, "auto_usable", lambda: False)
    assert sources.auto_source() is FAULT


def test_auto_without_root_says_root_not_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user without root asking for ``auto`` is told that damon-bpf needs root, not why the fault source (the
    last resort) fails; a usable source is still picked whoever asks (e.g. one that needs no BPF)."""
    monkeypatch.setattr(sources.os, "geteuid", lambda: 1000)
    for d in sources.auto_order():
        monkeypatch.setattr(d, "auto_usable", lambda: False)
    with pytest.raises(PermissionDeniedError) as err:
        sources.auto_source()
    assert "root" in str(err.value) and "fault" not in str(err.value)
    monkeypatch.setattr(FAULT, "auto_usable", lambda: True)
    assert sources.auto_source() is FAULT


def test_fault_without_rearming_warns_once_in_one_place() -> None:
    text = FAULT.blind_to_resident(FaultOptions())
    assert text and "fault source sees natural page faults only" in text and "\n" not in text
    assert FAULT.blind_to_resident(FaultOptions(numa_hint_faults=True)) is None
    assert FAULT.blind_to_resident(FaultOptions(probe="pageout")) is None
    assert SYNTHETIC.blind_to_resident(SyntheticOptions()) is None
    assert monitor_cli.source_warning(MonitorSpec(pids=[1], source="fault", source_options=FaultOptions())) == text
    assert monitor_cli.source_warning(MonitorSpec(pids=[1], source="fault")) == text  # defaults
    assert monitor_cli.source_warning(MonitorSpec(pids=[1], source="synthetic")) is None
    from damon_bpf.ops.fault import FaultOps

    assert "resident memory" not in " ".join(FaultOps().notes)  # the backend does not say it a second time


def test_followed_children_get_room_in_the_bpf_sources() -> None:
    assert FAULT.create_ops(FaultOptions(), follow_children=True).extra_targets == 32  # type: ignore[attr-defined]
    assert PERF.create_ops(PerfOptions(), follow_children=False).extra_targets == 0  # type: ignore[attr-defined]
    assert not SYNTHETIC.adds_processes and not REPLAY.adds_processes and FAULT.adds_processes


def test_monitor_spec_takes_typed_options_of_its_own_source() -> None:
    with pytest.raises(InvalidParamsError, match="the fault source takes FaultOptions, not PteOptions"):
        Monitor(MonitorSpec(pids=[1], source="fault", source_options=PteOptions()))
    assert sources.create_ops("vaddr").name == "vaddr"  # an operations set with no descriptor of its own
    with pytest.raises(InvalidParamsError):
        sources.create_ops("no-such-source")


def test_chooses_intervals_is_said_by_the_source() -> None:
    assert [d.name for d in sources.SOURCES if d.chooses_intervals] == ["pte"]
    assert sources.reference_source() is PTE


def test_compare_names_and_their_options() -> None:
    assert sources.compare_names() == ["pte", "fault", "fault+numa", "fault+pageout", "perf", "synthetic"]
    assert sources.compare_default_names() == ["pte", "fault", "fault+numa", "fault+pageout", "perf"]
    assert sources.compare_workload_names() == ["synthetic"]
    assert sources.compare_known() == "pte, fault, fault+numa, fault+pageout, perf, synthetic, perf:EVENTS"
    settings = SharedSettings(rate_limit=5, bpf_stats=False, seed=2, workload_pattern={"phases": []})
    assert sources.compare_source("fault+numa", settings) == (
        FAULT, FaultOptions(numa_hint_faults=True, rate_limit=5, bpf_stats=False))
    assert sources.compare_source("perf:mem-loads,mem-stores") == (PERF, PerfOptions(events="mem-loads,mem-stores"))
    assert sources.compare_source("pte", settings) == (PTE, PteOptions())
    assert sources.compare_source("synthetic", settings) == (SYNTHETIC,
                                                             SyntheticOptions(pattern={"phases": []}, seed=2))
    with pytest.raises(InvalidParamsError, match="needs --workload"):
        sources.compare_source("synthetic")
    with pytest.raises(InvalidParamsError, match="unknown source 'replay'"):
        sources.compare_source("replay")
    assert sources.parse_compare_sources("fault,perf:mem-loads,mem-stores,fault+numa") == [
        "fault", "perf:mem-loads,mem-stores", "fault+numa"]
    with pytest.raises(InvalidParamsError, match="perf: needs event names"):
        sources.parse_compare_sources("perf:")


def test_compare_interference_comes_from_what_sources_do() -> None:
    from damon_bpf.eval.compare import interference_note, source_spec

    specs = [source_spec(n) for n in ("pte", "fault", "fault+pageout")]
    note = interference_note(specs, sequential=False)
    assert note == ("sources ran at once: the faults that fault+pageout cause by re-arming pages are seen by every "
                    "fault-based source (fault, fault+*, perf with software page faults), so they read more than "
                    "they would alone; pages that fault+pageout made non-present read as not accessed to pte until "
                    "they fault back; --sequential runs them one after the other")
    assert interference_note(specs, sequential=True) is None
    assert interference_note([source_spec("pte"), source_spec("perf")], sequential=False) is None


def test_features_name_rows_of_damon_bpf_features() -> None:
    from damon_bpf.probes import features

    rows = set(features.names())
    for d in sources.SOURCES:
        assert set(d.features) | set(d.features_any) <= rows, d.name


def test_replay_options_build_the_replay_ops() -> None:
    ops = REPLAY.create_ops(ReplayOptions(estimator="density"))
    assert ops.estimator == "density"  # type: ignore[attr-defined]


def _compares_source_names(tree: ast.AST, names: set[str]) -> list[int]:
    # lines where a string literal naming a source is compared (==, !=, in, not in): a test of a source's name
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                elts = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(e, ast.Constant) and e.value in names for e in elts):
                    out.append(node.lineno)
    return out


def test_no_layer_above_ops_tests_a_source_name() -> None:
    root = Path(damon_bpf.__file__).parent
    names = {d.name for d in sources.SOURCES}
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("ops", "probes") or rel.name == "perfscript.py":  # perfscript: the perf tool's name
            continue
        lines = _compares_source_names(ast.parse(path.read_text()), names)
        if lines:
            found[str(rel)] = lines
    assert found == {}
