"""Records written safely and completed only from trusted files (issue #17, items 1, 2 and 7), as the caller.

The reproductions with another (unprivileged) user are in tests/kernel/test_file_safety.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, IOFailureError
from damon_bpf.linux import files
from damon_bpf.results import records as rmod
from damon_bpf.results.records import RecordWriter, read_records, readers, recover_file, recovery_problem
from tests.unit.results.test_records import OFFSET, engine_snapshot

DEAD = 2**22 + 7  # no such process


def killed(path: Path, n: int = 6, registered: bool = False) -> int:
    """A recording of *n* snapshots whose writer was SIGKILLed after its first rewrite: the record holds one
    snapshot, the journal all of them, its header names a process that is gone; its registration (in
    ``records.journal.RECORDINGS_DIR``) is kept only if *registered*. Returns *n*."""
    w = RecordWriter(str(path), time_offset_ns=OFFSET, rewrite_interval_s=3600)
    for i in range(n):
        w(engine_snapshot(i))
    assert w._journal is not None
    w._journal.close()
    w._journal, w.closed = None, True
    if not registered and w._registration is not None:
        w._registration.unlink()
    j = Path(str(path) + ".journal")
    lines = j.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["pid"] = DEAD
    j.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    return n


def nr_snapshots(path: Path) -> int:
    return sum(len(r.snapshots) for r in readers.read_file(str(path)))


def test_a_killed_recording_is_completed_in_a_private_folder(tmp_path: Path) -> None:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    n = killed(d / "x")
    told: list[int] = []
    assert sum(len(r.snapshots) for r in read_records(str(d / "x"), on_recover=lambda p, k: told.append(k))) == n
    assert told == [n - 1] and nr_snapshots(d / "x") == n
    assert stat.S_IMODE((d / "x").stat().st_mode) == 0o600


def test_no_recovery_in_a_folder_others_may_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # issue #17 item 1: recovery wrote FILE.tmp through a symlink planted beside the record
    d = tmp_path / "shared"
    d.mkdir()
    n = killed(d / "x")
    os.chmod(d, 0o777)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file")
    (d / "x.tmp").symlink_to(victim)
    before = (d / "x").read_bytes()
    with caplog.at_level(logging.WARNING):
        assert sum(len(r.snapshots) for r in read_records(str(d / "x"))) == 1  # the record as it is
    assert f"{n - 1} more snapshots in {d}/x.journal are not recovered unasked ({d}: others may write in it (mode " \
           f"0777)): 'damon-bpf record --recover {d}/x' recovers them" in caplog.text
    assert (d / "x").read_bytes() == before and victim.read_bytes() == b"root's file"
    # asked for, it is done, and safely (no symlink followed)
    out, recs = recover_file(str(d / "x"))
    assert sum(len(r.snapshots) for r in recs) == n and victim.read_bytes() == b"root's file"
    assert nr_snapshots(d / "x") == n and nr_snapshots(d / "x.old") == 1


def test_a_sticky_folder_is_fine_for_our_own_files(tmp_path: Path) -> None:
    d = tmp_path / "tmp"
    d.mkdir()
    n = killed(d / "x")
    os.chmod(d, 0o1777)
    assert recovery_problem(str(d / "x")) is None
    assert sum(len(r.snapshots) for r in read_records(str(d / "x"))) == n and nr_snapshots(d / "x") == n


def test_no_recovery_from_a_journal_others_may_write(tmp_path: Path) -> None:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    killed(d / "x")
    os.chmod(str(d / "x") + ".journal", 0o666)
    assert recovery_problem(str(d / "x")) == f"{d}/x.journal: others may write it (mode 0666)"
    assert sum(len(r.snapshots) for r in read_records(str(d / "x"))) == 1
    os.chmod(str(d / "x") + ".journal", 0o600)
    (d / "x").unlink()
    (d / "x").symlink_to(tmp_path / "elsewhere")
    assert recovery_problem(str(d / "x")) == f"{d}/x: it is a symbolic link"


@pytest.mark.parametrize("kind", ["folder", "symlink", "journal symlink", "old folder"])
def test_the_writer_refuses_what_it_may_not_replace(tmp_path: Path, kind: str) -> None:
    # issue #17 item 2: record -o somedir made somedir.old and a file somedir
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    if kind == "folder":
        out.mkdir()
    elif kind == "symlink":
        out.symlink_to(victim)
    elif kind == "journal symlink":
        out.write_bytes(b"an older record")
        Path(str(out) + ".journal").symlink_to(victim)
    else:
        out.write_bytes(b"an older record")
        Path(str(out) + ".old").mkdir()
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(InvalidParamsError, match="refusing to replace"):
        RecordWriter(str(out), time_offset_ns=OFFSET)
    assert sorted(os.listdir(tmp_path)) == listing and victim.read_bytes() == b"precious"
    if kind in ("journal symlink", "old folder"):
        assert out.read_bytes() == b"an older record"


def test_an_older_record_is_kept_as_old(tmp_path: Path, private_registry: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"an older record")
    with RecordWriter(str(out), time_offset_ns=OFFSET) as w:
        w(engine_snapshot(0))
        assert len(list(private_registry.iterdir())) == 1
        assert stat.S_IMODE(private_registry.stat().st_mode) == 0o700
    assert (tmp_path / "out.old").read_bytes() == b"an older record" and nr_snapshots(out) == 1
    assert not list(private_registry.iterdir())
    assert sorted(os.listdir(tmp_path)) == ["out", "out.old", "run"]


def test_a_full_disk_ends_with_an_io_error_and_cleans_up(tmp_path: Path, private_registry: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # issue #17 item 7: exit 1, a 0-byte FILE.tmp and the /run/damon-bpf registration were left
    out = tmp_path / "out"
    w = RecordWriter(str(out), time_offset_ns=OFFSET, rewrite_interval_s=3600)
    for i in range(3):
        w(engine_snapshot(i))
    assert len(list(private_registry.iterdir())) == 1
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(IOFailureError, match=f"cannot write {out}: No space left on device; {out}.journal keeps "
                                             f"what was recorded: 'damon-bpf record --recover {out}' rebuilds"):
        w.close()
    assert not list(private_registry.iterdir())
    assert sorted(os.listdir(tmp_path)) == ["out", "out.journal", "run"]  # no temporary file
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert nr_snapshots(out) == 1
    _, recs = recover_file(str(out))
    assert sum(len(r.snapshots) for r in recs) == 3


def test_a_full_disk_while_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    w = RecordWriter(str(out), time_offset_ns=OFFSET)

    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    w(engine_snapshot(0))
    monkeypatch.setattr(files.os, "fsync", enospc)
    w._next_rewrite = 0.0  # this snapshot rewrites the record
    with pytest.raises(IOFailureError, match="No space left on device"):
        w(engine_snapshot(1))
    with pytest.raises(IOFailureError):
        w.close()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_only_trusted_registrations_are_completed(tmp_path: Path, private_registry: Path) -> None:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    killed(d / "a", registered=True)
    killed(d / "b", registered=True)
    regs = sorted(private_registry.glob("record-*.json"))
    assert len(regs) == 2
    for reg in regs:
        info = json.loads(reg.read_text())
        info["pid"] = DEAD
        reg.write_text(json.dumps(info))
    os.chmod(regs[0], 0o666)  # a registration others could have written: not believed
    other = json.loads(regs[0].read_text())["path"]
    done = rmod.complete_dead_recordings()
    assert len(done) == 1 and done[0][0] != other and done[0][1] == 5
    assert regs[0].exists() and not regs[1].exists()
    assert nr_snapshots(Path(other)) == 1
