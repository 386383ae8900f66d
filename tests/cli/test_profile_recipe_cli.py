"""``damon-bpf record --do_record`` and the reports of damo's profiling recipe from the command line (issue
#19): the options' refusals are one line before anything starts, perf's absence is an error when cpu_profile is
asked for (the default does not record it), and the reports' bad inputs are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
import pytest

PY = sys.executable


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_error_line(r: subprocess.CompletedProcess[str], rc: int, text: str) -> None:
    assert r.returncode == rc, (r.returncode, r.stderr)
    assert r.stderr.startswith("damon-bpf: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("items, text", [
    (["bogus"], "--do_record: unknown item 'bogus'"),
    (["access", "17"], "unknown item '17' (choose from access, cpu_profile, mem_footprint, vmas, "
                             "proc_stats, damon_trace_events; give the PIDs before --do_record)"),
    (["access", "damon_trace_events"], "damon_trace_events: damon-bpf runs no kernel DAMON"),
    (["mem_footprint,vmas"], "always records accesses"),
])
def test_do_record_refusals_touch_nothing(tmp_path: Path, items: list[str], text: str) -> None:
    r = cli("record", "--source", "synthetic", "-o", str(tmp_path / "x"), "--do_record", *items, "--", "sleep", "9")
    one_error_line(r, 2, text)
    assert os.listdir(tmp_path) == []


def test_cpu_profile_without_perf(tmp_path: Path) -> None:
    env = {"PERF": "no-such-perf"}
    # asked for by name: not supported here (3), before the session starts
    r = cli("record", "--source", "synthetic", "-o", str(tmp_path / "x"), "--do_record", "access", "cpu_profile",
            "--", "sleep", "9", env=env)
    one_error_line(r, 3, "--do_record cpu_profile: ")
    assert os.listdir(tmp_path) == []
    # the default needs no perf: the cheap items only
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "--duration", "1.5s", "-o", str(tmp_path / "x"),
            "--", "sleep", "9", env=env)
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["x", "x.kdamonds", "x.mem_footprint", "x.proc_stats"]


def test_only_the_asked_files_are_written_and_a_side_file_in_the_way_is_refused(tmp_path: Path) -> None:
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "--duration", "1s", "-o", str(tmp_path / "x"),
            "--do_record", "access,mem_footprint", "--", "sleep", "60")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["x", "x.kdamonds", "x.mem_footprint"]
    fps = json.loads((tmp_path / "x.mem_footprint").read_text())
    assert fps and len({fp["footprints"][0]["pid"] for fp in fps}) == 1 and fps[0]["footprints"][1]["pid"] is None
    # a folder where a side file goes: refused before the session, the record untouched
    before = (tmp_path / "x").read_bytes()
    (tmp_path / "x.proc_stats").mkdir()
    r = cli("record", "--source", "synthetic", "-o", str(tmp_path / "x"), "--", "sleep", "9")
    one_error_line(r, 2, "x.proc_stats")
    assert (tmp_path / "x").read_bytes() == before and not (tmp_path / "x.old").exists()


def test_report_inputs_are_checked(tmp_path: Path) -> None:
    rec = tmp_path / "x"
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "--duration", "1s", "-o", str(rec),
            "--do_record", "access", "--", "sleep", "9")
    assert r.returncode == 0, r.stderr
    one_error_line(cli("report", "footprints", "-i", str(rec)), 2, f"{rec}.mem_footprint: no such file")
    one_error_line(cli("report", "profile", "-i", str(rec)), 2, f"{rec}.profile: no such file")
    os.mkfifo(tmp_path / "fifo.mem_footprint")
    one_error_line(cli("report", "footprints", "-i", str(tmp_path / "fifo.mem_footprint"), timeout=20), 2,
                   "FIFO")
    one_error_line(cli("report", "times", "-i", str(rec), "--access_rate", "x", "y"), 2, "invalid percent value")
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    one_error_line(cli("report", "holistic", "-i", str(rec), "--png", str(tmp_path / "link.png")), 2,
                   "symbolic link")
    assert not (tmp_path / "elsewhere.png").exists()
    # holistic without footprints or profile: the rest, and what is missing as comment lines
    r = cli("report", "holistic", "-i", str(rec), "--color", "never")
    assert r.returncode == 0, r.stderr
    assert "# Heatmap" in r.stdout and "       wss " in r.stdout
    assert f"# no memory footprints: {rec}.mem_footprint does not exist" in r.stdout
    assert f"# no hotspot functions: {rec}.profile does not exist" in r.stdout
    # nr_regions on this short record: damo's text from every snapshot, and a note
    r = cli("report", "nr_regions", "-i", str(rec))
    assert r.returncode == 0 and r.stdout.startswith("# <percentile> <# regions>\n# target_id\t0\n# avr:\t")
    assert "damon-bpf: note: target 0: " in r.stderr and "all of them counted" in r.stderr
