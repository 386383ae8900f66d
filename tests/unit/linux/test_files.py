"""Safe writes and trusted state (damon_bpf.linux.files, damon_bpf.linux.state; issue #17): what any user can check.

The cases that need another user (a folder or file of someone else) are in tests/kernel/test_file_safety.py.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, IOFailureError, PermissionDeniedError
from damon_bpf.linux import files
from damon_bpf.linux.state import Claim, locked


def _no_temp_left(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def umask0():  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_write_is_0600_whatever_the_umask(tmp_path: Path, umask0: None) -> None:
    p = tmp_path / "out"
    files.atomic_write(str(p), b"one")
    assert p.read_bytes() == b"one" and stat.S_IMODE(p.stat().st_mode) == 0o600
    files.atomic_write(str(p), b"two")
    assert p.read_bytes() == b"two"
    files.atomic_write(str(p), b"three", mode=0o644)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    _no_temp_left(tmp_path)


def test_atomic_write_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for name in ("x", "x.tmp"):  # the target itself, and the fixed temporary name earlier versions used
        (tmp_path / name).symlink_to(victim)
    with pytest.raises(InvalidParamsError, match="refusing to replace .*/x: it is a symbolic link"):
        files.atomic_write(str(tmp_path / "x"), b"zlib data")
    assert victim.read_bytes() == b"precious" and (tmp_path / "x").is_symlink()
    (tmp_path / "x").unlink()
    files.atomic_write(str(tmp_path / "x"), b"data")  # x.tmp is not used: a random name, created exclusively
    assert victim.read_bytes() == b"precious" and (tmp_path / "x").read_bytes() == b"data"
    assert (tmp_path / "x.tmp").is_symlink()


@pytest.mark.parametrize("kind", ["folder", "fifo", "socket"])
def test_only_regular_files_are_replaced(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "thing"
    if kind == "folder":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    else:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()
    words = {"folder": "a folder", "fifo": "a FIFO", "socket": "a socket"}[kind]
    for write in (lambda: files.atomic_write(str(p), b"x"), lambda: files.create_file(str(p)),
                  lambda: files.rename_old(str(p))):
        with pytest.raises(InvalidParamsError, match=f"refusing to replace {p}: it is {words}"):
            write()
    assert os.path.lexists(p) and not stat.S_ISREG(os.lstat(p).st_mode)
    assert not os.path.lexists(str(p) + ".old")
    _no_temp_left(tmp_path)


def test_rename_old_refuses_a_folder_at_the_old_name(tmp_path: Path) -> None:
    p = tmp_path / "rec"
    p.write_bytes(b"new")
    (tmp_path / "rec.old").mkdir()
    with pytest.raises(InvalidParamsError, match="rec.old: it is a folder"):
        files.rename_old(str(p))
    assert p.read_bytes() == b"new"
    (tmp_path / "rec.old").rmdir()
    files.rename_old(str(p))
    assert not p.exists() and (tmp_path / "rec.old").read_bytes() == b"new"


def test_create_file_replaces_a_regular_file_exclusively(tmp_path: Path, umask0: None) -> None:
    p = tmp_path / "journal"
    p.write_text("old")
    fd = files.create_file(str(p), append=True)
    with os.fdopen(fd, "w") as f:
        f.write("new\n")
    assert p.read_text() == "new\n" and stat.S_IMODE(p.stat().st_mode) == 0o600
    p.unlink()
    p.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidParamsError, match="symbolic link"):
        files.create_file(str(p))
    assert not (tmp_path / "elsewhere").exists()


def test_a_full_disk_is_an_io_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "rec"
    p.write_bytes(b"before")

    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", enospc)
    with pytest.raises(IOFailureError, match=f"cannot write {p}: No space left on device"):
        files.atomic_write(str(p), b"after")
    assert p.read_bytes() == b"before"
    _no_temp_left(tmp_path)


def test_write_error_codes(tmp_path: Path) -> None:
    assert isinstance(files.write_error("x", OSError(errno.ENOSPC, "full")), IOFailureError)
    assert isinstance(files.write_error("x", OSError(errno.EIO, "io")), IOFailureError)
    assert isinstance(files.write_error("x", OSError(errno.EACCES, "no")), PermissionDeniedError)
    assert isinstance(files.write_error("x", OSError(errno.ENOENT, "no")), InvalidParamsError)
    with pytest.raises(InvalidParamsError, match="No such file"):
        files.atomic_write(str(tmp_path / "missing" / "x"), b"")


def test_save_figure_writes_exactly_the_path(tmp_path: Path) -> None:
    # matplotlib's savefig("X") writes X.png; the report said "wrote X"
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    try:
        files.save_figure(fig, str(tmp_path / "heat"))
        files.save_figure(fig, str(tmp_path / "heat.svg"))
    finally:
        plt.close(fig)
    assert (tmp_path / "heat").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "heat.svg").read_bytes()[:1000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat", "heat.svg"]


# -- the state folder ------------------------------------------------------------------------------------------


def test_private_dir_is_0700_whatever_the_umask(tmp_path: Path, umask0: None) -> None:
    d = files.private_dir(tmp_path / "run" / "damon-bpf")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_uid == os.geteuid()


def test_private_dir_tightens_a_folder_others_could_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "state"
    d.mkdir()
    os.chmod(d, 0o777)
    assert files.private_dir(d) == d
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert "was writable by others (mode 0777)" in caplog.text


def test_private_dir_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real")
    with pytest.raises(PermissionDeniedError, match="is a symbolic link"):
        files.private_dir(tmp_path / "state")


def test_read_private_refuses_symlinks_and_files_others_may_write(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text("{}")
    os.chmod(good, 0o600)
    assert files.read_private(good) == b"{}"
    (tmp_path / "link.json").symlink_to(good)
    with pytest.raises(OSError):  # ELOOP: O_NOFOLLOW
        files.read_private(tmp_path / "link.json")
    os.chmod(good, 0o666)
    with pytest.raises(PermissionError, match="others may write it"):
        files.read_private(good)


def test_folder_problem(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    assert files.folder_problem(d) is None
    os.chmod(d, 0o777)
    assert files.folder_problem(d) == "others may write in it (mode 0777)"
    os.chmod(d, 0o1777)
    assert files.folder_problem(d) is not None and files.folder_problem(d, sticky_ok=True) is None
    os.chmod(d, 0o775)
    assert files.folder_problem(d, sticky_ok=True) == "its group may write in it (mode 0775)"


def test_locked_makes_its_folder_private(tmp_path: Path, umask0: None) -> None:
    with locked("x", tmp_path / "state") as d:
        assert (d / "x.lock").exists()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def _claim_in_child(name: str, state: Path) -> subprocess.Popen[str]:
    """A child process that takes the claim *name* in *state*, prints whether it got it, and sleeps."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from damon_bpf.linux.state import Claim; c = Claim(sys.argv[3], Path(sys.argv[2])); "
            "print(c.acquire(), flush=True); time.sleep(60)")
    root = str(Path(__file__).resolve().parents[3])
    return subprocess.Popen([sys.executable, "-c", code, root, str(state), name], stdout=subprocess.PIPE, text=True)


def test_claims_are_exclusive_between_processes_and_die_with_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a = Claim("pte-1234", state)
    b = Claim("pte-1234", state)
    assert a.acquire() and not b.acquire() and b.holder == os.getpid()  # one process, two claims: refused too
    a.release()
    assert b.acquire()
    b.release()
    child = _claim_in_child("pte-1234", state)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        c = Claim("pte-1234", state)
        assert not c.acquire() and c.holder == child.pid
        child.kill()  # SIGKILL: the claim goes with the process
        child.wait()
        t0 = time.monotonic()
        while not c.acquire() and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert c.held
        c.release()
    finally:
        child.kill()
        child.wait()


def test_a_claim_removes_its_family_s_stale_files_only(tmp_path: Path) -> None:
    """A claimer killed by SIGKILL leaves its lock file behind; the next claim of the same family removes the
    files nobody holds, and leaves a held one, its own, and other families' alone."""
    state = tmp_path / "state"
    with locked("sysctl", state):
        pass
    for name in ("pte-1", "pte-2", "other-1"):
        (state / f"{name}.lock").write_text("1\n")
        os.chmod(state / f"{name}.lock", 0o600)
    child = _claim_in_child("pte-3", state)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        c = Claim("pte-1234", state)
        assert c.acquire()
        assert sorted(p.name for p in state.iterdir()) == ["other-1.lock", "pte-1234.lock", "pte-3.lock",
                                                           "sysctl.lock"]
        c.release()
        child.kill()  # its file stays (SIGKILL) until the next claim
        child.wait()
        assert (state / "pte-3.lock").exists()
        c = Claim("pte-5", state)
        assert c.acquire()
        c.release()
        assert sorted(p.name for p in state.iterdir()) == ["other-1.lock", "sysctl.lock"]
    finally:
        child.kill()
        child.wait()
