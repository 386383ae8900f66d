"""Bad input: one line on standard error, the documented exit code (2), never argparse's usage block or a
traceback (issue #12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, says", [
    (["monitor", "--sample", "-5ms", "1"], "argument -s/--sample: expected one argument (a value that starts "
                                           "with '-' goes as --option=VALUE)"),
    (["monitor", "--maxr", "0", "1"], "--maxr: the number of regions must be positive (got 0)"),
    (["monitor", "--minr", "-3", "1"], "--minr: the number of regions must be positive (got -3)"),
    (["monitor", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_option_errors_are_one_line(args: list[str], says: str) -> None:
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert "usage:" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content", [b"", b"not a perf file at all\n"])
def test_import_of_a_non_perf_or_empty_file_is_bad_input(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "in.data"
    src.write_bytes(content)
    r = cli("import", str(src), "-o", str(tmp_path / "out.data"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("damon-bpf: error: "), r.stderr
    assert ("no samples" in lines[0]) if not content else ("not a perf.data file" in lines[0])
