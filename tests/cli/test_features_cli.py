"""``damon-bpf features``: the JSON shape and the 80-column table, through the real CLI and in-process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from damon_bpf.probes import features
from damon_bpf.cli import features as cli_features

_KEYS = {"name", "supported", "reason", "detail"}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "damon_bpf", "features", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def json_rows() -> list[dict[str, object]]:
    rows = json.loads(_run_cli("--json").stdout)
    assert isinstance(rows, list)
    return rows


def _source_names() -> list[str]:
    from damon_bpf.ops import sources

    return [f"source/{d.name}" for d in sources.SOURCES if d.selectable] + ["source/auto"]


def test_json_shape(json_rows: list[dict[str, object]]) -> None:
    assert [row["name"] for row in json_rows] == list(features.names()) + _source_names()
    for row in json_rows:
        assert set(row) == _KEYS
        assert isinstance(row["name"], str) and "/" in row["name"]
        assert isinstance(row["supported"], bool)
        assert isinstance(row["reason"], str) and isinstance(row["detail"], str)
        if not row["supported"]:
            assert row["reason"], row


def test_table_fits_80_columns() -> None:
    lines = _run_cli().stdout.splitlines()
    assert lines[0].startswith("damon-bpf features: Linux ")
    assert lines[1].split()[:2] == ["FEATURE", "OK"]
    for line in lines:
        assert len(line) <= 80, line
    rows = {line.split()[0]: line.split()[1] for line in lines[2:]
            if line[:1] not in (" ", "") and not line.startswith(("--source auto picks: ", "SOURCE "))}
    assert set(rows) == set(features.names()) | set(_source_names()[:-1])
    assert set(rows.values()) <= {"yes", "no"}
    assert lines[-1].startswith("--source auto picks: ")


def test_source_rows_are_the_checks_auto_makes(json_rows: list[dict[str, object]]) -> None:
    # issue #18: `features` and `--source auto` decide with the same checks (the descriptors' check_supported)
    from damon_bpf.errors import DamonBpfError
    from damon_bpf.ops import sources

    by_name = {row["name"]: row for row in json_rows}
    for d in sources.SOURCES:
        if not d.selectable:
            continue
        try:
            d.check_supported()
            ok = True
        except DamonBpfError:
            ok = False
        assert by_name[f"source/{d.name}"]["supported"] is ok, d.name
    assert by_name["source/auto"]["detail"] == sources.auto_source().name
    # and the rows a source needs are rows of the table
    for d in sources.SOURCES:
        assert set(d.features) | set(d.features_any) <= set(features.names()), d.name


_FAKE = [
    features.Feature("bpf/syscall", True, detail="BPF_MAP_CREATE of an array map works"),
    features.Feature("probe/a_rather_long_feature_name_x", False, reason="word " * 40),
    features.Feature("mm/swap", False, reason="no swap: MADV_PAGEOUT of anonymous memory cannot work without swap"),
    features.Feature("mm/unbreakable", False, reason="/" + "x" * 120),
]


def test_format_table_wraps_under_80() -> None:
    lines = cli_features.format_table(_FAKE)
    assert all(len(line) <= 79 for line in lines)
    assert lines[1].startswith("bpf/syscall") and lines[1].split()[1] == "yes"
    # Continuation lines start in the text column, so names stay the first word of their rows only.
    firsts = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]
    assert firsts == [f.name for f in _FAKE]
    assert sum(line.count("word") for line in lines) == 40


def test_run_json_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(features, "check_all", lambda: list(_FAKE))
    parser = argparse.ArgumentParser()
    cli_features.add_arguments(parser)
    assert cli_features.run(parser.parse_args(["--json"])) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "name": "bpf/syscall",
        "supported": True,
        "reason": "",
        "detail": "BPF_MAP_CREATE of an array map works",
    }
    assert cli_features.run(parser.parse_args([])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("(1/4 supported)")
