"""Issue #17, items 4, 5 and 8, reproduced: input that never ends or eats memory, tracebacks, and the exit
codes of ``monitor -- CMD``, a refused bind, bad counts and monitoring oneself. Each runs the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from damon_bpf.cli import EXIT_CODES, main
from damon_bpf.engine import Attrs, Snapshot, TargetSnapshot
from damon_bpf.results.records import RecordWriter

PY = sys.executable
NO_PID = "4194305"  # above the largest pid_max: never a process


def cli(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(r: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("damon-bpf") and says in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def make_record(path: Path, nr_snapshots: int = 5) -> Path:
    """A valid record file (*nr_snapshots* snapshots of one target)."""
    w = RecordWriter(str(path), attrs=Attrs(), rewrite_interval_s=3600.0)
    for i in range(nr_snapshots):
        start = np.array([0x1000, 0x5000], dtype=np.int64)
        end = np.array([0x5000, 0x9000], dtype=np.int64)
        nr = np.array([i % 20, 1], dtype=np.int64)
        t = TargetSnapshot(4242, start, end, nr, np.array([i, i], dtype=np.int64), nr * 10000, nr)
        w(Snapshot(10**9 + i * 10**8, 10**9, 20 * (i + 1), 5000, 100000, 20, (t,)))
    w.close()
    return path


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return make_record(tmp_path / "valid.data")


@pytest.fixture
def sleeper() -> Iterator[int]:
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


# -- 4. input that never ends or eats memory --------------------------------------------------------------------


def test_report_of_dev_zero_is_refused_at_once() -> None:
    t = time.monotonic()
    r = cli("report", "wss", "-i", "/dev/zero", timeout=20)
    one_error_line(r, 2, "cannot read /dev/zero: a character device, not a regular file")
    assert time.monotonic() - t < 15


def test_report_of_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = cli("report", "heatmap", "-i", str(fifo), timeout=20)  # no writer: a blocking open would wait forever
    one_error_line(r, 2, "a FIFO, not a regular file")


def test_report_of_a_directory(tmp_path: Path) -> None:
    one_error_line(cli("report", "info", "-i", str(tmp_path)), 2, "a directory, not a regular file")


def test_import_of_a_fifo_or_a_device(tmp_path: Path) -> None:
    fifo = tmp_path / "perf.fifo"
    os.mkfifo(fifo)
    for src, kind in ((str(fifo), "a FIFO"), ("/dev/zero", "a character device")):
        r = cli("import", src, "-o", str(tmp_path / "out.data"), timeout=30)
        if r.returncode == 3:
            pytest.skip("perf is not installed")
        one_error_line(r, 2, f"{kind}, not a regular file")


def test_report_code_of_a_fifo_sidecar(tmp_path: Path, record: Path) -> None:
    fifo = tmp_path / "side.fifo"
    os.mkfifo(fifo)
    one_error_line(cli("report", "code", "-i", str(record), "--attribution", str(fifo), timeout=30), 2,
                   "a FIFO, not a regular file")


def test_zlib_bomb_is_stopped_at_the_cap(tmp_path: Path) -> None:
    # about 1 MB of zlib that inflates to 1 GiB of (valid) JSON white space
    c = zlib.compressobj(9)
    block = b" " * (1 << 20)
    parts = [c.compress(b"[")] + [c.compress(block) for _ in range(1024)] + [c.flush()]
    bomb = tmp_path / "bomb.data"
    bomb.write_bytes(b"".join(parts))
    assert bomb.stat().st_size < 2 << 20
    code = ("import resource, sys; from damon_bpf.cli import main; rc = main(['report', 'wss', '-i', sys.argv[1]]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    t = time.monotonic()
    r = subprocess.run([PY, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t
    one_error_line(r, 2, "inflates more than 200 times")
    maxrss_mib = int(r.stdout.split()[-1]) / 1024
    assert maxrss_mib < 700, maxrss_mib  # the cap is 200 times the file (~210 MB), not the bomb's 1 GiB
    assert elapsed < 30


def test_many_schemes_are_refused_before_the_start(tmp_path: Path, sleeper: int) -> None:
    f = tmp_path / "many.json"
    f.write_text(json.dumps([{"action": "stat"}] * 200_000))
    t = time.monotonic()
    r = cli("monitor", "--source", "synthetic", "--duration", "2s", "--schemes", str(f), str(sleeper), timeout=30)
    one_error_line(r, 2, "200000 schemes: at most 1000 are taken")
    assert time.monotonic() - t < 20


def test_many_damos_actions_are_refused(sleeper: int) -> None:
    words = ["--damos_action", "stat"] * 1001
    one_error_line(cli("monitor", "--source", "synthetic", "--duration", "1s", str(sleeper), *words), 2,
                   "1001 schemes: at most 1000 are taken")


def test_a_start_up_longer_than_the_duration_ends_the_command(sleeper: int) -> None:
    r = cli("monitor", "--source", "synthetic", "--json", "--duration", "1us", str(sleeper))
    one_error_line(r, 2, "the start-up took longer than the duration")
    assert r.stdout == ""


# -- 5. tracebacks ------------------------------------------------------------------------------------------------


def test_binary_schemes_file(tmp_path: Path, sleeper: int) -> None:
    f = tmp_path / "bin.json"
    f.write_bytes(b"\xff\xfe[\x00\x81")
    one_error_line(cli("monitor", "--source", "synthetic", "--duration", "1s", "--schemes", str(f), str(sleeper)),
                   2, "not UTF-8 text")


@pytest.mark.parametrize("where", ["file", "text"])
def test_deeply_nested_schemes(tmp_path: Path, sleeper: int, where: str) -> None:
    deep = "[" * 50_000 + "]" * 50_000  # one argument may have 128 KiB
    arg = deep
    if where == "file":
        (tmp_path / "deep.json").write_text(deep)
        arg = str(tmp_path / "deep.json")
    one_error_line(cli("monitor", "--source", "synthetic", "--duration", "1s", "--schemes", arg, str(sleeper)), 2,
                   "JSON nested deeper than 64 levels")


@pytest.mark.parametrize("compressed", [False, True])
def test_deeply_nested_record(tmp_path: Path, compressed: bool) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    f = tmp_path / "deep.data"
    f.write_bytes(zlib.compress(deep) if compressed else deep)
    one_error_line(cli("report", "raw", "-i", str(f)), 2, "JSON nested deeper than 64 levels")


def test_output_to_dev_full_is_an_io_error(record: Path) -> None:
    with open("/dev/full", "w") as full:
        r = subprocess.run([PY, "-m", "damon_bpf", "report", "wss", "-i", str(record)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 6, r.stderr
    assert r.stderr.strip() == "damon-bpf: error: writing the output: No space left on device (ENOSPC)", r.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    record = make_record(tmp_path / "big.data", 3000)  # its text is larger than a pipe's buffer
    p = subprocess.Popen([PY, "-m", "damon_bpf", "report", "raw", "-i", str(record)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()  # `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert err == ""


def test_an_unexpected_error_is_one_line_exit_70(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import damon_bpf.cli.features as features

    def boom(args: object) -> int:
        raise ZeroDivisionError("a bug\nwith two lines")

    monkeypatch.setattr(features, "run", boom)
    monkeypatch.delenv("DAMON_BPF_DEBUG", raising=False)
    assert main(["features"]) == 70
    err = capsys.readouterr().err
    assert err == ("damon-bpf: internal error: ZeroDivisionError: a bug (run with DAMON_BPF_DEBUG=1 for the "
                   "traceback)\n")
    monkeypatch.setenv("DAMON_BPF_DEBUG", "1")
    assert main(["features"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("damon-bpf: internal error: ZeroDivisionError: a bug\n")


def test_ctrl_c_is_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import damon_bpf.cli.features as features

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "run", interrupted)
    assert main(["features"]) == 130
    assert capsys.readouterr().err == ""


def test_main_returns_argparse_exits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["monitor", "--no-such-option"]) == 2
    assert main(["report", "wss", "--exclude_samples", "x"]) == 2
    capsys.readouterr()


# -- 8. exit codes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["monitor", "record"])
def test_the_commands_exit_status_is_passed_on(tmp_path: Path, command: str) -> None:
    out = ["-o", str(tmp_path / "r.data")] if command == "record" else ["--json"]
    r = cli(command, "--source", "synthetic", *out, "--", "sh", "-c", "sleep 0.5; exit 7")
    assert r.returncode == 7, r.stderr
    assert "Traceback" not in r.stderr


def test_a_command_killed_by_a_signal_is_128_plus_n() -> None:
    r = cli("monitor", "--source", "synthetic", "--json", "--", "sh", "-c", "sleep 0.5; kill -9 $$")
    assert r.returncode == 128 + 9, r.stderr


def test_a_command_stopped_by_the_duration_is_0() -> None:
    r = cli("monitor", "--source", "synthetic", "--json", "--duration", "0.5s", "--", "sleep", "5")
    assert r.returncode == 0, r.stderr


def test_a_command_that_exits_before_monitoring_says_its_status() -> None:
    r = cli("monitor", "--source", "synthetic", "--json", "--", "sh", "-c", "exit 7")
    # usually too quick to be monitored at all: its status all the same, and a line that says so
    assert r.returncode == 7, r.stderr
    if r.stderr:
        one_error_line(r, 7, "exited with status 7 before monitoring started")
    r = cli("monitor", "--source", "synthetic", "--json", "--", "true")
    assert r.returncode in (0, 5), r.stderr  # a command that succeeded at once: nothing was monitored (5)
    if r.returncode == 5:
        one_error_line(r, 5, "exited with status 0 before monitoring started")


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_a_refused_bind_is_a_permission_error(nobody_can_reach: None) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 81:
            pytest.skip("unprivileged users may bind port 81 here")
    r = cli("export", "--source", "synthetic", "--listen", "127.0.0.1:81", "1", preexec_fn=_as_nobody, cwd="/",
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    one_error_line(r, 4, "cannot listen on 127.0.0.1:81: Permission denied")


@pytest.mark.parametrize("opt, says", [
    (["--every", "0"], "argument --every: must be a positive integer, got 0"),
    (["--every=-1"], "argument --every: must be a positive integer, got -1"),
    (["--rows=-5"], "argument --rows: must be 0 or more, got -5"),
    (["--rate-limit=-1"], "argument --rate-limit: must be 0 or more, got -1"),
    (["--every", "x"], "argument --every: not an integer: 'x'"),
    (["--seed=-1"], "argument --seed: must be 0 or more, got -1"),  # found by tests/cli/test_cli_fuzz.py
])
def test_bad_counts_are_refused(opt: list[str], says: str) -> None:
    one_error_line(cli("monitor", "--source", "synthetic", *opt, NO_PID), 2, says)


def test_monitoring_itself_is_refused() -> None:
    # `exec damon-bpf monitor $$`: the shell's pid becomes damon-bpf's
    r = subprocess.run(["sh", "-c", f'exec "{PY}" -m damon_bpf monitor --source synthetic --duration 1s $$'],
                       capture_output=True, text=True, timeout=60)
    one_error_line(r, 2, "is this damon-bpf process: it does not monitor itself")


def test_exit_codes_are_documented() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 3)[2]
    documented = {int(line.split("|")[1]) for line in table.splitlines()[2:]}
    assert documented == set(EXIT_CODES)


def test_a_deep_or_fifo_journal_beside_a_record(tmp_path: Path, record: Path) -> None:
    from damon_bpf.results.records import JOURNAL_FORMAT, JOURNAL_SUFFIX

    journal = Path(str(record) + JOURNAL_SUFFIX)
    journal.write_text(json.dumps({"format": JOURNAL_FORMAT, "version": 1}) + "\n" + "[" * 100_000 + "\n")
    one_error_line(cli("report", "info", "-i", str(journal)), 2, "JSON nested too deeply")
    r = cli("report", "info", "-i", str(record))  # the record is read; the journal is left alone, with a warning
    assert r.returncode == 0 and "not recovered from the journal" in r.stderr, r.stderr
    journal.unlink()
    os.mkfifo(journal)
    r = cli("report", "info", "-i", str(record), timeout=30)
    assert r.returncode == 0 and "a FIFO, not a regular file" in r.stderr, r.stderr
