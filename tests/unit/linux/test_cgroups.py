"""damon_bpf.linux.cgroups: mount points, a process's cgroup, ``cgroup.procs`` and ``memory.numa_stat`` on fake
contents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError, NotSupportedError, TargetGoneError
from damon_bpf.linux import cgroups


def test_parse_cgroup_mounts() -> None:
    mi = ("25 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755\n"
          "31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory\n"
          "32 25 0:28 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu\n"
          "40 25 0:35 / /sys/fs/cgroup/unified rw,relatime shared:20 - cgroup2 cgroup2 rw\n")
    assert cgroups.parse_cgroup_mounts(mi) == ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory")
    assert cgroups.parse_cgroup_mounts("1 0 0:1 / / rw - ext4 /dev/vda rw\n") == (None, None)


def test_parse_proc_cgroup_and_paths() -> None:
    v1 = "12:pids:/\n4:memory:/process_api/abc\n0::/\n"
    assert cgroups.parse_proc_cgroup(v1) == "/process_api/abc"  # the memory controller's hierarchy
    assert cgroups.parse_proc_cgroup("0::/system.slice/foo.service\n") == "/system.slice/foo.service"
    assert cgroups.parse_proc_cgroup("1:name=systemd:/\n") is None
    assert cgroups.normalize_cgroup_path("a/b/") == "/a/b" == cgroups.normalize_cgroup_path("/a//b")
    assert cgroups.normalize_cgroup_path("/") == "/"


MOUNTINFO = "40 25 0:35 / /sys/fs/cgroup/unified\\040x rw,relatime shared:20 - cgroup2 cgroup2 rw\n"


def test_cgroup2_root(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    with pytest.raises(NotSupportedError, match="cgroup v2"):
        cgroups.cgroup2_root(str(tmp_path))  # no mountinfo
    (tmp_path / "self" / "mountinfo").write_text(MOUNTINFO)
    cgroup2_root = cgroups.cgroup2_root(str(tmp_path))
    assert cgroup2_root == "/sys/fs/cgroup/unified x"
    assert cgroups.cgroup_mounts(str(tmp_path)) == (cgroup2_root, None)


def test_resolve_cgroup_and_procs(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "cgroup.procs").write_text("30\n10\n30\n")
    for path in (str(app), "/app", "app/"):
        assert cgroups.resolve_cgroup(path, str(tmp_path)) == os.path.realpath(app)
    with pytest.raises(InvalidParamsError, match="no such cgroup v2 directory"):
        cgroups.resolve_cgroup("/nope", str(tmp_path))
    with pytest.raises(InvalidParamsError):
        cgroups.resolve_cgroup("../..", str(app))  # outside the mount
    assert cgroups.cgroup_procs(str(app)) == [10, 30]
    assert cgroups.cgroup_procs(str(tmp_path / "removed")) == []


def test_process_cgroup(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("4:memory:/v1/mem\n0::/system.slice/x.service/\n")
    assert cgroups.read_memcg_path(7, str(tmp_path)) == "/v1/mem"  # the memory controller's first
    assert cgroups.cgroup_of(7, str(tmp_path)) == "/system.slice/x.service"  # the v2 line first
    (tmp_path / "7" / "cgroup").write_text("4:memory:/v1/mem\n")
    assert cgroups.cgroup_of(7, str(tmp_path)) == "/v1/mem"
    with pytest.raises(TargetGoneError):
        cgroups.read_memcg_path(8, str(tmp_path))
    assert cgroups.cgroup_of(8, str(tmp_path)) == ""


def test_read_numa_stat(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "memory.numa_stat").write_text("anon N0=4096 N1=0\n")
    assert cgroups.read_numa_stat(str(tmp_path), "/app") == {"anon": {0: 4096, 1: 0}}
    assert cgroups.read_numa_stat(str(tmp_path), "/gone") is None
