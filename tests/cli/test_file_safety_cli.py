"""Output paths the CLI refuses, and the files it writes exactly where asked (issue #17, items 2 and 7).

As the caller; the cases with another user are in tests/kernel/test_file_safety.py.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from damon_bpf.linux import files
from damon_bpf.results.records import RecordWriter
from tests.cli.test_record_report import run
from tests.unit.results.test_records import OFFSET, engine_snapshot


@pytest.fixture
def record(tmp_path: Path) -> Path:
    path = tmp_path / "rec.data"
    with RecordWriter(str(path), time_offset_ns=OFFSET) as w:
        for i in range(25):
            w(engine_snapshot(i))
    return path


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A character device node like /dev/full (1, 7), in the test's own folder."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    p = tmp_path / "full"
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    return p


def test_png_is_written_to_exactly_the_path(record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "report heatmap --png X" said "wrote X" and wrote X.png
    pytest.importorskip("matplotlib")
    for kind in ("heatmap", "wss"):
        out = tmp_path / f"{kind}-picture"
        rc, _, err = run(capsys, "report", kind, "-i", str(record), "--png", str(out), "--exclude_samples", "0") \
            if kind == "wss" else run(capsys, "report", kind, "-i", str(record), "--png", str(out))
        assert rc == 0 and f"wrote {out}" in err, err
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not Path(str(out) + ".png").exists()
        assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_png_to_a_device_or_folder_is_refused(record: Path, tmp_path: Path, device: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # "report heatmap --png /dev/full" made /dev/full.png
    (tmp_path / "pictures").mkdir()
    for target, what in ((device, "a character device"), (tmp_path / "pictures", "a folder")):
        rc, out, err = run(capsys, "report", "heatmap", "-i", str(record), "--png", str(target))
        assert rc == 2 and out == "", err
        assert err == f"damon-bpf: error: refusing to replace {target}: it is {what} (damon-bpf replaces only " \
                      "regular files it could have written)\n"
    assert stat.S_ISCHR(os.lstat(device).st_mode) and not Path(str(device) + ".png").exists()


def test_raw_out_is_written_safely(record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    rc, _, err = run(capsys, "report", "raw", "-i", str(record), "-o", str(tmp_path / "link"))
    assert rc == 2 and "it is a symbolic link" in err and victim.read_text() == "precious"
    os.mkfifo(tmp_path / "fifo")
    rc, _, err = run(capsys, "report", "raw", "-i", str(record), "-o", str(tmp_path / "fifo"))
    assert rc == 2 and "it is a FIFO" in err
    rc, _, err = run(capsys, "report", "raw", "-i", str(record), "--format", "perf-script", "-o",
                     str(tmp_path / "raw.txt"))
    assert rc == 0, err
    text = (tmp_path / "raw.txt").read_text()
    assert text.count("damon:damon_aggregated") == 25 * 8
    assert stat.S_IMODE((tmp_path / "raw.txt").stat().st_mode) == 0o600


def test_outputs_that_are_not_regular_files_are_refused(tmp_path: Path, device: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # "record -o somedir" made somedir.old and a file somedir; "import -o /dev/full" moved the device aside
    folder = tmp_path / "somedir"
    folder.mkdir()
    for argv in (["record", "--source", "synthetic", "-o", str(folder), "--", "true"],
                 ["import", "-o", str(folder), str(tmp_path / "perf.data")],
                 ["import", "-o", str(device), str(tmp_path / "perf.data")]):
        rc, out, err = run(capsys, *argv)
        assert rc == 2 and "refusing to replace" in err and len(err.splitlines()) == 1, (argv, err)
    assert folder.is_dir() and not list(folder.iterdir()) and stat.S_ISCHR(os.lstat(device).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["full", "somedir"]


def test_a_full_disk_is_exit_6(record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", enospc)
    rc, _, err = run(capsys, "report", "raw", "-i", str(record), "-o", str(tmp_path / "raw.txt"))
    assert rc == 6 and err == f"damon-bpf: error: cannot write {tmp_path}/raw.txt: No space left on device\n"
    assert sorted(os.listdir(tmp_path)) == ["rec.data"]
