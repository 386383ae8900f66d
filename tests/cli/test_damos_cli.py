"""`damon-bpf monitor` with DAMOS schemes (--damos_*, --schemes, --dry-run), end to end as subprocesses, on the
synthetic source (no BPF needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

PY = sys.executable
MiB = 1 << 20
SIZE_MIB = 32

# A target: 32 MiB of file-backed memory (MAP_SHARED on a disk file, so MADV_PAGEOUT can drop it without swap),
# every page written once; prints "<start> <size>" and sleeps.
TARGET = r"""
import mmap, os, sys, time, ctypes
size = int(sys.argv[2]) << 20
path = os.path.join(sys.argv[1], f"damos-cli-{os.getpid()}")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, size)
os.unlink(path)
m = mmap.mmap(fd, size, mmap.MAP_SHARED)
for off in range(0, size, 4096):
    m[off] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), size, flush=True)
time.sleep(120)
"""


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout)


def _disk_dir() -> str:
    # tmpfs pages are shmem, which MADV_PAGEOUT cannot drop without swap: prefer /var/tmp
    return "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()


@pytest.fixture
def target() -> Iterator[tuple[int, int, int]]:
    """(pid, start, size) of a fresh target process."""
    proc = subprocess.Popen([PY, "-c", TARGET, _disk_dir(), str(SIZE_MIB)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        start, size = map(int, proc.stdout.readline().split())
        yield proc.pid, start, size
    finally:
        proc.kill()
        proc.wait()


def rss_file_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise AssertionError("no RssFile")


def pattern_file(tmp_path: Path, start: int, size: int) -> str:
    # the first quarter of the mapping is hot, the rest is never accessed
    p = tmp_path / "pattern.json"
    p.write_text(json.dumps({"phases": [{"name": "hot", "duration_s": None,
                                         "ranges": [[start, start + size // 4, 0.5]]}]}))
    return str(p)


def snapshots(out: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()]


def test_stat_scheme_counts_in_json(target: tuple[int, int, int], tmp_path: Path) -> None:
    pid, start, size = target
    r = cli("monitor", "--source", "synthetic", "--synthetic-pattern", pattern_file(tmp_path, start, size),
            "--seed", "1", "--json", "--aggr", "50ms", "--duration", "1.5s",
            "--damos_action", "stat", "--damos_access_rate", "0%", "100%",
            "--damos_action", "stat", "--damos_access_rate", "50%", "100%", "--damos_sz_region", "4KiB", "max",
            str(pid))
    assert r.returncode == 0, r.stderr
    snaps = snapshots(r.stdout)
    assert len(snaps) >= 5
    last = snaps[-1]
    assert "dry_run" not in last
    every, hot = last["schemes"]
    assert every["action"] == "stat" and every["active"] is True
    # the bounds keep the unit they were given in (they follow the intervals if these change)
    assert every["access_pattern"]["nr_accesses"] == {"min": "0 %", "max": "100 %"}
    assert every["stats"]["nr_tried"] > 0 and every["stats"]["sz_tried"] > 0
    assert every["stats"]["nr_applied"] == 0 and every["stats"]["sz_applied"] == 0  # stat applies nothing
    assert 0 < hot["stats"]["sz_tried"] < every["stats"]["sz_tried"]
    # cumulative counters never go down
    tried = [s["schemes"][0]["stats"]["nr_tried"] for s in snaps]
    assert tried == sorted(tried)


@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
def test_a_scheme_that_can_never_match_is_noted_once(target: tuple[int, int, int], json_out: bool) -> None:
    pid, _, _ = target
    r = cli("monitor", "--source", "synthetic", *(["--json"] if json_out else []), "--aggr", "50ms",
            "--duration", "0.5s", "--damos_action", "stat", "--damos_age", "5s", "max",
            "--damos_action", "stat", "--damos_age", "100ms", "max", str(pid))
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if "never match" in ln]
    assert notes == ["damon-bpf: note: scheme 0 (stat) can never match: its minimum age 5 s is longer than the "
                     "500 ms run"]


def test_text_view_shows_schemes_and_dry_run(target: tuple[int, int, int]) -> None:
    pid, _, _ = target
    r = cli("monitor", "--source", "synthetic", "--aggr", "50ms", "--duration", "0.5s", "--dry-run",
            "--schemes", '[{"action": "pageout", "access_pattern": {"age": {"min": "100ms", "max": "max"}}}]',
            str(pid))
    assert r.returncode == 0, r.stderr
    blocks = [b for b in r.stdout.split("\n\n") if b.strip()]
    assert blocks and all("DRY RUN" in b.splitlines()[0] for b in blocks)
    lines = blocks[-1].splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("DAMOS"))
    assert "dry run" in lines[head] and "sz_applied" in lines[head] and "qt_ex" in lines[head]
    assert lines[head + 1].startswith("0 pageout")
    assert all(len(ln) <= 80 for ln in lines)


def _pageout_run(pid: int, *extra: str) -> tuple[dict[str, Any], int, int]:
    before = rss_file_kib(pid)
    r = cli("monitor", "--source", "synthetic", "--json", "--aggr", "50ms", "--duration", "2s", *extra,
            "--damos_action", "pageout", "--damos_access_rate", "0%", "0%", "--damos_age", "200ms", "max",
            str(pid))
    assert r.returncode == 0, r.stderr
    return snapshots(r.stdout)[-1], before, rss_file_kib(pid)


def test_dry_run_applies_nothing_but_counts(target: tuple[int, int, int]) -> None:
    pid, _, size = target
    last, before, after = _pageout_run(pid, "--dry-run")
    assert last["dry_run"] is True
    st = last["schemes"][0]["stats"]
    # nothing is accessed (no pattern): every region would be paged out, the 32 MiB mapping included
    assert st["nr_applied"] > 0 and st["sz_applied"] >= size
    assert st["sz_applied"] <= st["sz_tried"]
    assert after >= before - 1024, (before, after)  # the target's file pages are all still mapped


@pytest.mark.skipif(os.geteuid() != 0, reason="process_madvise() on another process needs CAP_SYS_NICE")
def test_without_dry_run_the_same_scheme_pages_out(target: tuple[int, int, int]) -> None:
    # the control of the dry-run test: the same run without --dry-run does drop the pages
    pid, _, _ = target
    last, before, after = _pageout_run(pid)
    assert last["schemes"][0]["stats"]["sz_applied"] > 0
    assert before - after >= SIZE_MIB * 1024 * 3 // 4, (before, after)


@pytest.mark.parametrize("args, text", [
    (["--damos_action", "stat", "--damos_filter", "reject", "bogus"], "--damos_filter (scheme 0): unknown filter "
                                                                      "type 'bogus'"),
    (["--damos_action", "stat", "--damos_filter", "anon"], "--damos_filter (scheme 0): old form"),
    (["--damos_age", "1s", "max", "--damos_action", "stat"], "--damos_age is given before any --damos_action"),
    (["--damos_access_rate", "0%", "0%"], "--damos_access_rate is given before any --damos_action"),
    (["--damos_action", "pageout", "--damos_access_rate", "5%", "1%"], "minimum '5%' is larger than maximum"),
    (["--damos_action", "nap"], "unknown action 'nap'"),
    (["--dry-run"], "--dry-run needs a scheme"),
    (["--schemes", "[{\"action\": 1}]"], "--schemes: JSON text: schemes[0].action: unknown action"),
])
def test_bad_damos_options_are_one_line_exit_2(args: list[str], text: str) -> None:
    r = cli("monitor", "--source", "synthetic", "--duration", "1s", *args, "--", "sleep", "3")
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("damon-bpf: error: ") and text in lines[0], lines[0]


def test_action_the_source_cannot_apply_exits_3() -> None:
    r = cli("monitor", "--source", "synthetic", "--duration", "1s", "--damos_action", "stat",
            "--damos_action", "hugepage", "--", "sleep", "3")
    assert r.returncode == 3, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("damon-bpf: error: ") and "hugepage" in lines[0], lines[0]


def test_watermarks_read_free_memory_and_pause_monitoring() -> None:
    """free_mem_rate comes from /proc/meminfo: with this machine's free memory between low and mid the scheme
    is active; with high below it, every scheme is inactive and monitoring pauses (no snapshots at all)."""
    with open("/proc/meminfo") as f:
        info = {ln.split(":")[0]: int(ln.split()[1]) for ln in f}
    free_permil = info["MemFree"] * 1000 // info["MemTotal"]
    assert 50 < free_permil < 990, "this test needs some free memory and some used memory"
    base = [sys.executable, "-m", "damon_bpf", "monitor", "--source", "synthetic", "--json", "--damos_action", "stat"]
    on = subprocess.run(base + ["--damos_wmarks", "free_mem_rate", "50ms", "1000", "999", str(free_permil // 2),
                                "--", "sleep", "1.5"], capture_output=True, text=True, timeout=60)
    assert on.returncode == 0, on.stderr
    objs = [json.loads(ln) for ln in on.stdout.splitlines()]
    assert objs and objs[-1]["schemes"][0]["stats"]["nr_tried"] > 0
    off = subprocess.run(base + ["--damos_wmarks", "free_mem_rate", "50ms", str(free_permil // 2),
                                 str(free_permil // 3), "0", "--", "sleep", "1.5"],
                         capture_output=True, text=True, timeout=60)
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == ""
