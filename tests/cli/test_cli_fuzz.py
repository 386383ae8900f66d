"""A fuzz of the command line, in process (``damon_bpf.cli.main(argv)``): random options and values for
``monitor``/``record``/``report``, and random, truncated and odd files for every reader. Whatever the input, the
exit code is a documented one (never 70, a bug), standard error holds no traceback, and an error is one line
(issue #17, item 5)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from damon_bpf.cli import EXIT_CODES, EXIT_SOFTWARE, main
from damon_bpf.engine import Attrs, Snapshot, TargetSnapshot
from damon_bpf.results.records import RecordWriter

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", "80")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NO_PID = "4194305"  # above the largest pid_max: a monitor stops at its first step, after every option was checked


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert isinstance(rc, int)
    assert rc in EXIT_CODES and rc != EXIT_SOFTWARE, (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    if rc != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("damon-bpf"), (argv, err)
    return rc, out, err


# -- values ----------------------------------------------------------------------------------------------------

_WORDS = ["0", "1", "-1", "5", "1000", "99999999999999999999", "1e400", "nan", "inf", "max", "min", "", " ", "x",
          "5ms", "0ms", "-5ms", "1us", "100ms", "1s", "2h", "3 d", "10%", "-10%", "150%", "0.5", "4KiB", "1GiB",
          "1,000", "0x1000", "\x00", "\udcff", "é", "--", "-", "[]", "{}", "[[[", "stat", "pageout", "anon",
          "allow", "reject", "matching", "5 samples", "3 aggr_intervals", "max max"]
word = st.one_of(st.sampled_from(_WORDS), st.text(max_size=12), st.integers(-10**6, 10**12).map(str))

_MONITOR_OPTS: dict[str, int] = {
    "--every": 1, "--rows": 1, "--duration": 1, "--sample": 1, "--aggr": 1, "--updr": 1, "--minr": 1,
    "--maxr": 1, "--wss-window": 1, "--seed": 1, "--cpu-budget": 1, "--rate-limit": 1, "--period": 1,
    "--event": 1, "--pte-clear": 1, "--probe": 1, "--source": 1, "--monitoring_intervals_goal": 4,
    "--monitoring_intervals_autotune": 0, "--numa-hint-faults": 0, "--json": 0, "--dry-run": 0,
    "--follow-children": 0, "--no-bpf-stats": 0, "--schemes": 1,
    "--damos_action": 1, "--damos_access_rate": 2, "--damos_sz_region": 2, "--damos_age": 2,
    "--damos_apply_interval": 1, "--damos_quotas": 3, "--damos_quota_time": 1, "--damos_quota_space": 1,
    "--damos_quota_interval": 1, "--damos_quota_weights": 3, "--damos_quota_goal": 2, "--damos_quota_goal_tuner": 1,
    "--damos_wmarks": 5, "--damos_filter": 2, "--damos_max_nr_snapshots": 1,
}
_SOURCES = ["synthetic", "pte", "fault", "perf"]


#: values that usually pass, so that sessions run with them
plausible = st.sampled_from(["1", "3", "10", "100", "5ms", "10ms", "100ms", "1s", "0%", "10%", "100%", "max", "min",
                             "4KiB", "stat", "pageout", "anon", "allow", "reject", "user_input", "consist"])


@st.composite
def option(draw: Any, table: dict[str, int], values: Any = word) -> list[str]:
    name = draw(st.sampled_from(sorted(table)))
    n = table[name]
    if name == "--source":
        return [name, draw(st.sampled_from(_SOURCES + ["auto", "nope"]))]
    vals = draw(st.lists(values, min_size=n, max_size=n))
    if n == 1 and draw(st.booleans()):
        return [f"{name}={vals[0]}"]  # values that start with '-'
    return [name, *vals]


@FUZZ
@given(opts=st.lists(option(_MONITOR_OPTS), max_size=6), source=st.sampled_from(_SOURCES))
def test_monitor_options(opts: list[list[str]], source: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["monitor", "--source", source] + [w for o in opts for w in o] + [NO_PID]
    rc, _, _ = run_cli(argv, capsys)
    assert rc != 0  # the pid never exists: at best the options pass and the target is gone (5)


@pytest.fixture(scope="module")
def sleeper() -> Iterator[int]:
    import subprocess

    p = subprocess.Popen(["sleep", "600"])
    yield p.pid
    p.kill()
    p.wait()


_SESSION_OPTS = {k: v for k, v in _MONITOR_OPTS.items() if k not in ("--duration", "--source", "--follow-children")}


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 4))
@given(opts=st.lists(option(_SESSION_OPTS, st.one_of(plausible, plausible, plausible, word)), max_size=5))
def test_monitor_sessions(sleeper: int, opts: list[list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    # the options that pass run a real (synthetic-source) session for 0.2 s
    argv = ["monitor", "--source", "synthetic"] + [w for o in opts for w in o] + ["--duration", "0.2s", str(sleeper)]
    run_cli(argv, capsys)


@FUZZ
@given(opts=st.lists(option(_MONITOR_OPTS), max_size=4), flush=word)
def test_record_options(tmp_path: Path, opts: list[list[str]], flush: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["record", "--source", "synthetic", "-o", str(tmp_path / "r.data"), f"--flush={flush}"]
    argv += [w for o in opts for w in o] + [NO_PID]
    rc, _, _ = run_cli(argv, capsys)
    assert rc != 0


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.sampled_from(["[" * 70 + "]" * 70, '[{"action": "stat"}]' * 2,
                                                              '{"kdamonds": [{"contexts": 5}]}', "[{}]", "[" * 5000])))
def test_schemes_text(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["monitor", "--source", "synthetic", f"--schemes={text}", NO_PID], capsys)


# -- files -----------------------------------------------------------------------------------------------------


def _valid_record(nr: int = 6) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.data"
        w = RecordWriter(str(path), attrs=Attrs(), rewrite_interval_s=3600.0)
        for i in range(nr):
            start = np.array([0x1000, 0x5000], dtype=np.int64)
            end = np.array([0x5000, 0x9000], dtype=np.int64)
            acc = np.array([i % 20, 3], dtype=np.int64)
            t = TargetSnapshot(77, start, end, acc, np.array([i, 0], dtype=np.int64), acc * 1000, acc)
            w(Snapshot(10**9 + i * 10**8, 10**9, 20 * (i + 1), 5000, 100000, 20, (t,)))
        w.close()
        return path.read_bytes()


VALID = _valid_record()
VALID_JSON = zlib.decompress(VALID)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["target_id", "snapshots", "start_time", "end_time", "regions", "start", "end",
                         "nr_accesses", "age", "samples", "percent", "usec", "aggr_intervals", "intervals",
                         "sample_us", "aggr_us", "pid", "damo_records", "x"]), c, max_size=5),
    max_leaves=30)


@st.composite
def record_file(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["random", "cut", "flip", "json", "deep", "gzip", "text"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=3000)))
    if kind == "cut":
        raw = draw(st.sampled_from([VALID, VALID_JSON, gzip.compress(VALID_JSON)]))
        return raw[: draw(st.integers(0, len(raw)))]
    if kind == "flip":
        raw = bytearray(draw(st.sampled_from([VALID, VALID_JSON])))
        for _ in range(draw(st.integers(1, 5))):
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        return bytes(raw)
    if kind == "json":
        text = json.dumps(draw(_json_values)).encode()
        return zlib.compress(text) if draw(st.booleans()) else text
    if kind == "deep":
        n = draw(st.integers(60, 3000))
        return zlib.compress(b"[" * n + b"]" * n) if draw(st.booleans()) else b"[" * n
    if kind == "gzip":
        return gzip.compress(draw(st.binary(max_size=200)))
    lines = draw(st.lists(st.sampled_from([
        "kdamond.0 1 [0] 1.000000: damon:damon_aggregated: target_id=0 nr_regions=1 4096-8192: 3 1",
        "kdamond.0 1 [0] 2.000000: damon:damon_aggregated: target_id=0 nr_regions=2 0-0: -1 -1",
        "x 1.5: damon:damon_monitor_intervals_tune: sample_us=5000",
        "1.0: damon_aggregated: target_id=zz", "garbage"]), max_size=8))
    return "\n".join(lines).encode()


_REPORT_OPTS: dict[str, dict[str, int]] = {
    "heatmap": {"--resol": 2, "--time_range": 2, "--address_range": 2, "--draw_range": 1, "--target": 1,
                "--color": 1, "--stdout_colorset": 1},
    "wss": {"-r": 3, "--exclude_samples": 1, "--acc_thres": 1, "--sz_thres": 1, "--sortby": 1, "--all_wss": 0,
            "--per_target": 0, "--raw_number": 0, "--nr_cols_bar": 1, "--target": 1},
    "access": {"--snapshot_idx": 1, "--all": 0, "--raw_number": 0, "--target": 1},
    "raw": {"--format": 1, "--raw_number": 0},
    "info": {"--raw_number": 0},
    "code": {"--top": 1, "--ips": 1, "--last": 1, "--json": 0, "--no-bcc": 0},
    "objects": {"--top": 1, "--last": 1, "--json": 0, "--regions": 0, "--hot": 0, "--cold": 0, "--no-live": 0,
                "--kind": 1, "--target": 1},
}


@FUZZ
@given(data=record_file(), kind=st.sampled_from(sorted(_REPORT_OPTS)))
def test_report_of_any_file(tmp_path: Path, data: bytes, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "fuzz.data"
    p.write_bytes(data)
    run_cli(["report", kind, "-i", str(p)], capsys)


@FUZZ
@given(kind=st.sampled_from(sorted(_REPORT_OPTS)), data=st.data())
def test_report_options(tmp_path: Path, kind: str, data: st.DataObject, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "valid.data"
    p.write_bytes(VALID)
    opts = data.draw(st.lists(option(_REPORT_OPTS[kind]), max_size=4))
    run_cli(["report", kind, "-i", str(p)] + [w for o in opts for w in o], capsys)


@FUZZ
@given(data=st.binary(max_size=500), as_text=st.booleans())
def test_schemes_and_pattern_files(tmp_path: Path, data: bytes, as_text: bool,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "conf.json"
    p.write_bytes(data if not as_text else json.dumps(data.decode("latin-1")).encode())
    run_cli(["monitor", "--source", "synthetic", "--schemes", str(p), NO_PID], capsys)
    run_cli(["monitor", "--source", "synthetic", "--synthetic-pattern", str(p), NO_PID], capsys)
