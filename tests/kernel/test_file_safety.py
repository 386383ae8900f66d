"""Issue #17's reproductions, with an unprivileged user (``nobody``, in a forked child) planting the files: root's
damon-bpf follows no symlink, replaces nobody's files, believes no state that is not root's, and cleans up after
a full disk. Needs root (to become ``nobody``, to chown, to mount a small tmpfs); not bcc.

``fs.protected_symlinks`` is 0 on the development VM, so a symlink planted in a sticky folder (``/tmp``) is
followed by root there too; these tests do not depend on it (each plants the symlink in a folder the planting
user owns, where the protection does not apply anyway, or in a sticky folder, where the files written are ours).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterator

import pytest

from damon_bpf.errors import PermissionDeniedError
from damon_bpf.linux import files, sysctl
from damon_bpf.linux.sysctl import SysctlOverride, restore_stale
from tests.unit.results.test_record_safety import killed

PY = sys.executable
ROOT = str(Path(__file__).resolve().parents[2])


def nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")
    return pw.pw_uid, pw.pw_gid


def as_nobody(fn: Callable[[], None]) -> None:
    """Run *fn* in a child process as the unprivileged user ``nobody``."""
    uid, gid = nobody()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed (its traceback is above)"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def users_dir() -> Iterator[Path]:
    """A folder of ``nobody`` in /tmp (reachable by nobody, unlike pytest's tmp_path)."""
    uid, gid = nobody()
    d = Path(tempfile.mkdtemp(prefix="damon-bpf-test-", dir="/tmp"))
    os.chown(d, uid, gid)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A folder like /tmp: root's, mode 1777."""
    d = Path(tempfile.mkdtemp(prefix="damon-bpf-test-", dir="/tmp"))
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's that nobody may write."""
    p = tmp_path / "victim"
    p.write_bytes(b"root's precious file")
    os.chmod(p, 0o600)
    return p


def plant_killed_recording(tmp_path: Path, users_dir: Path) -> int:
    # x and x.journal of a killed recording, as the user's own copies in the user's folder
    src = tmp_path / "src"
    src.mkdir(mode=0o700)
    n = killed(src / "x")
    uid, gid = nobody()
    for name in ("x", "x.journal"):
        shutil.copy(src / name, users_dir / name)
        os.chown(users_dir / name, uid, gid)
    return n


def test_recovery_follows_no_symlink_planted_by_a_user(tmp_path: Path, users_dir: Path, victim: Path) -> None:
    # item 1: "report info -i .../x" as root: exit 0, "recovered 2 snapshots", and the root-owned file that
    # x.tmp pointed at held zlib data
    n = plant_killed_recording(tmp_path, users_dir)
    as_nobody(lambda: os.symlink(victim, users_dir / "x.tmp"))
    before = (users_dir / "x").read_bytes()
    r = cli("report", "info", "-i", str(users_dir / "x"))
    assert r.returncode == 0, r.stderr
    assert "records: 1, snapshots: 1" in r.stdout, (r.stdout, r.stderr)
    assert f"{n - 1} more snapshots in {users_dir}/x.journal are not recovered unasked ({users_dir}/x.journal: it " \
           f"belongs to user nobody" in r.stderr and f"'damon-bpf record --recover {users_dir}/x' recovers them" \
           in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert victim.read_bytes() == b"root's precious file"
    assert (users_dir / "x").read_bytes() == before and (users_dir / "x").stat().st_uid == nobody()[0]
    assert (users_dir / "x.tmp").is_symlink()
    # "record -o" the same path: no recovery, nothing followed; the user's files move to .old (in the user's own
    # folder the user could have moved them anyway), the new record is root's, 0600
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "-o", str(users_dir / "x"), "--", "sleep", "0.3")
    assert r.returncode == 0, r.stderr
    assert "not recovered unasked" in r.stderr and victim.read_bytes() == b"root's precious file"
    st = os.lstat(users_dir / "x")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert (users_dir / "x.old").read_bytes() == before
    assert not [p for p in os.listdir(users_dir) if p.endswith(".tmp") and p != "x.tmp"]


def test_recovery_in_a_sticky_folder_writes_only_our_files(tmp_path: Path, sticky_dir: Path, victim: Path) -> None:
    # /tmp-like: root's killed recording is completed there (others cannot move or replace root's files in a
    # sticky folder), and a symlink another user planted beside it is not followed
    src = tmp_path / "src"
    src.mkdir(mode=0o700)
    n = killed(src / "x")
    for name in ("x", "x.journal"):
        shutil.copy2(src / name, sticky_dir / name)
    as_nobody(lambda: os.symlink(victim, sticky_dir / "x.tmp"))
    r = cli("report", "info", "-i", str(sticky_dir / "x"))
    assert r.returncode == 0 and f"records: 1, snapshots: {n}" in r.stdout, (r.stdout, r.stderr)
    assert f"recovered {n - 1} snapshots" in r.stderr
    assert victim.read_bytes() == b"root's precious file" and (sticky_dir / "x.tmp").is_symlink()
    st = os.lstat(sticky_dir / "x")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600


def test_another_users_file_in_a_shared_folder_is_not_replaced(sticky_dir: Path, tmp_path: Path) -> None:
    # item 2: only what damon-bpf could have written there is replaced or moved to .old
    def plant() -> None:
        (sticky_dir / "out").write_text("nobody's")
        os.symlink("/etc/passwd", sticky_dir / "link")

    as_nobody(plant)
    rec = tmp_path / "rec"
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "-o", str(rec), "--", "sleep", "0.2")
    assert r.returncode == 0, r.stderr
    for out, why in ((sticky_dir / "out", "it belongs to user nobody (uid"), (sticky_dir / "link", "symbolic link")):
        for argv in (["report", "raw", "-i", str(rec), "-o", str(out)],
                     ["record", "--source", "synthetic", "-o", str(out), "--", "true"]):
            r = cli(*argv)
            assert r.returncode == 2 and why in r.stderr and len(r.stderr.splitlines()) == 1, (argv, r.stderr)
    assert (sticky_dir / "out").read_text() == "nobody's" and os.readlink(sticky_dir / "link") == "/etc/passwd"
    assert sorted(os.listdir(sticky_dir)) == ["link", "out"]


def test_a_state_folder_of_another_user_is_not_believed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # item 3: restore_stale wrote any sysctl a file in /run/damon-bpf named (kernel.core_pattern: root for anyone
    # who could write there). Here the sysctls are files (sysctl._path), and no watchdog starts.
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "kernel.numa_balancing").write_text("0\n")
    monkeypatch.setattr(sysctl, "_path", lambda name: proc / name)
    monkeypatch.setattr(sysctl, "start_watchdog", lambda state_dir=None: None)
    uid, gid = nobody()
    state = Path(tempfile.mkdtemp(prefix="damon-bpf-state-", dir="/tmp"))
    try:
        os.chown(state, uid, gid)
        rec = {"name": "kernel.numa_balancing", "value": "1", "original": "3", "holders": [{"pid": 2**22 + 3}]}
        as_nobody(lambda: (state / "sysctl-kernel.numa_balancing.json").write_text(json.dumps(rec)))
        assert restore_stale(state) == [] and (proc / "kernel.numa_balancing").read_text() == "0\n"
        with pytest.raises(PermissionDeniedError, match=f"{state} belongs to user nobody .*not trusted"):
            SysctlOverride("kernel.numa_balancing", "1", state).apply()
        # root's folder, the user's file in it (left from when the folder was 0777): not believed either
        os.chown(state, 0, 0)
        os.chmod(state, 0o777)
        assert files.private_dir(state) == state and stat.S_IMODE(state.stat().st_mode) == 0o700
        assert restore_stale(state) == [] and (proc / "kernel.numa_balancing").read_text() == "0\n"
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_the_state_folder_is_0700_under_umask_0(tmp_path: Path) -> None:
    state = tmp_path / "run" / "damon-bpf"
    code = (f"import os, sys; sys.path.insert(0, {ROOT!r}); os.umask(0); from pathlib import Path; "
            f"from damon_bpf.linux.state import locked\nwith locked('x', Path({str(state)!r})): pass")
    subprocess.run([PY, "-c", code], check=True, cwd=ROOT)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and stat.S_IMODE((state / "x.lock").stat().st_mode) == 0o600


def test_a_full_disk_while_recording(tmp_path: Path) -> None:
    # item 7: exit 1 (undocumented), a 0-byte FILE.tmp and the /run/damon-bpf registration were left behind
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "x"
        p = subprocess.Popen([PY, "-m", "damon_bpf", "record", "--source", "synthetic", "--aggr", "10ms", "-o",
                              str(out), "--", "sleep", "20"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 6, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"damon-bpf: error: cannot write {out}") and "No space left on device" in last, err
        assert f"'damon-bpf record --recover {out}'" in last, err
        assert not [n for n in os.listdir(mnt) if n.endswith(".tmp")], os.listdir(mnt)
        assert not list(Path("/run/damon-bpf").glob(f"record-{p.pid}-*.json"))
        assert (mnt / "x").exists() and (mnt / "x.journal").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
