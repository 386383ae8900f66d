"""cgroup file formats, each once: where the hierarchies are mounted (``/proc/self/mountinfo``), which cgroup a
process is in (``/proc/<pid>/cgroup``), a cgroup's processes (``cgroup.procs``) and its per-node memory
(``memory.numa_stat``). See ``Documentation/admin-guide/cgroup-v2.rst`` and ``cgroup-v1/memory.rst``.

Every parser is pure and takes the file's text (the tests feed fake contents); the readers take the mount or
``proc_root`` they read under.
"""

from __future__ import annotations

import os

from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, TargetGoneError

__all__ = (
    "CGROUP_ROOT",
    "parse_cgroup_mounts",
    "cgroup_mounts",
    "cgroup2_root",
    "resolve_cgroup",
    "cgroup_file",
    "cgroup_procs",
    "normalize_cgroup_path",
    "parse_proc_cgroup",
    "read_memcg_path",
    "cgroup_of",
    "parse_numa_stat",
    "read_numa_stat",
)

#: where cgroup v2 is mounted on a unified-hierarchy machine (hybrid ones mount it elsewhere: see
#: :func:`cgroup2_root`)
CGROUP_ROOT = "/sys/fs/cgroup"


# -- mounts ----------------------------------------------------------------------------------------------------

def parse_cgroup_mounts(mountinfo: str) -> tuple[str | None, str | None]:
    """From ``/proc/self/mountinfo``: the cgroup v2 mount point and the cgroup v1 ``memory`` controller mount
    point (None where absent). Fields: ``id parent maj:min root mountpoint opts [optional...] - fstype src sopts``.
    """
    v2 = v1_memory = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or not rf:
            continue
        mnt = lf[4].replace("\\040", " ")
        if rf[0] == "cgroup2" and v2 is None:
            v2 = mnt
        elif rf[0] == "cgroup" and len(rf) >= 3 and "memory" in rf[2].split(",") and v1_memory is None:
            v1_memory = mnt
    return v2, v1_memory


def cgroup_mounts(proc_root: str = "/proc") -> tuple[str | None, str | None]:
    """:func:`parse_cgroup_mounts` of this process's ``mountinfo``; ``(None, None)`` when it cannot be read."""
    try:
        with open(os.path.join(proc_root, "self", "mountinfo")) as f:
            return parse_cgroup_mounts(f.read())
    except OSError:
        return None, None


def cgroup2_root(proc_root: str = "/proc") -> str:
    """The mount point of the cgroup v2 hierarchy (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on a
    hybrid cgroup v1 machine).

    :raises NotSupportedError: cgroup v2 is not mounted
    """
    v2, _ = cgroup_mounts(proc_root)
    if v2 is None:
        raise NotSupportedError("--cgroup: cgroup v2 is not mounted here")
    return v2


# -- cgroup directories ----------------------------------------------------------------------------------------

def resolve_cgroup(path: str, root: str | None = None) -> str:
    """The cgroup v2 directory *path* names: a directory of the cgroup v2 mount (*root*, by default
    :func:`cgroup2_root`), or a path relative to it (``/a/b`` as in ``/proc/PID/cgroup`` is relative too).

    :raises InvalidParamsError: no such cgroup (a directory with ``cgroup.procs``)
    :raises NotSupportedError: cgroup v2 is not mounted
    """
    root = os.path.realpath(root if root is not None else cgroup2_root())

    def inside(p: str) -> bool:
        return p == root or p.startswith(root + os.sep)

    full = os.path.realpath(path)
    if not inside(full) or not os.path.isdir(full):
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
    if not inside(full) or not os.path.isfile(os.path.join(full, "cgroup.procs")):
        raise InvalidParamsError(f"--cgroup: no such cgroup v2 directory: {path} (under {root})")
    return full


def cgroup_file(mount: str, cgroup_path: str, name: str) -> str:
    """The path of file *name* (``memory.pressure``) of cgroup *cgroup_path* (as in ``/proc/<pid>/cgroup``) of
    the hierarchy mounted at *mount*."""
    return os.path.join(mount, cgroup_path.strip("/"), name)


def cgroup_procs(directory: str) -> list[int]:
    """The processes (TGIDs) in *directory*'s ``cgroup.procs``, sorted; none if the cgroup was removed."""
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            return sorted({int(w) for w in f.read().split()})
    except (OSError, ValueError):
        return []


# -- a process's cgroup ----------------------------------------------------------------------------------------

def normalize_cgroup_path(path: str) -> str:
    """``"a/b/"`` and ``"/a/b"`` name the same cgroup: one leading ``/``, no trailing one (root: ``"/"``)."""
    parts = [p for p in path.strip().split("/") if p]
    return "/" + "/".join(parts)


def parse_proc_cgroup(text: str) -> str | None:
    """The memory cgroup path in ``/proc/<pid>/cgroup`` (``hierarchy-ID:controllers:path`` lines): the line
    whose controllers include ``memory`` (cgroup v1), else the cgroup v2 line ``0::<path>``; None if neither."""
    v2 = None
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        ctrls, sep2, path = rest.partition(":")
        if not sep or not sep2:
            continue
        if "memory" in ctrls.split(","):
            return normalize_cgroup_path(path)
        if hid == "0" and ctrls == "":
            v2 = normalize_cgroup_path(path)
    return v2


def _read_proc_cgroup(pid: int, proc_root: str) -> str:
    # :raises TargetGoneError, PermissionDeniedError:
    try:
        with open(os.path.join(proc_root, str(pid), "cgroup")) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError) as err:
        raise TargetGoneError(pid) from err
    except PermissionError as err:
        raise PermissionDeniedError(f"cannot read /proc/{pid}/cgroup") from err


def read_memcg_path(pid: int, proc_root: str = "/proc") -> str | None:
    """:func:`parse_proc_cgroup` of ``/proc/<pid>/cgroup``.

    :raises TargetGoneError: the process does not exist
    :raises PermissionDeniedError: the file cannot be read
    """
    return parse_proc_cgroup(_read_proc_cgroup(pid, proc_root))


def cgroup_of(pid: int, proc_root: str = "/proc") -> str:
    """Process *pid*'s cgroup v2 path (``"0::/system.slice/x.service"`` gives ``/system.slice/x.service``);
    without a v2 line, the memory controller's (cgroup v1); ``""`` when unknown or the process is gone."""
    try:
        text = _read_proc_cgroup(pid, proc_root)
    except (OSError, TargetGoneError, PermissionDeniedError):
        return ""
    for line in text.splitlines():
        if line.startswith("0::"):
            return normalize_cgroup_path(line[3:])
    return parse_proc_cgroup(text) or ""


# -- memory.numa_stat ------------------------------------------------------------------------------------------

def parse_numa_stat(text: str, page_size: int = 4096) -> dict[str, dict[int, int]]:
    """A memcg's ``memory.numa_stat`` as ``{key: {nid: bytes}}``.

    cgroup v2 lines are ``anon N0=<bytes> N1=<bytes>``; cgroup v1 lines are ``anon=<pages> N0=<pages>`` (and
    ``hierarchical_anon=...``), converted to bytes with *page_size*.
    """
    out: dict[str, dict[int, int]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        head = words[0]
        if "=" in head:  # v1: "key=total N0=..."
            key, mult = head.partition("=")[0], page_size
        else:
            key, mult = head, 1
        per: dict[int, int] = {}
        for w in words[1:]:
            n, sep, v = w.partition("=")
            if sep and n.startswith("N") and n[1:].isdigit():
                per[int(n[1:])] = int(v) * mult
        out[key] = per
    return out


def read_numa_stat(mount: str, cgroup_path: str) -> dict[str, dict[int, int]] | None:
    """:func:`parse_numa_stat` of the ``memory.numa_stat`` of memcg *cgroup_path* in the hierarchy mounted at
    *mount* (v1 files count pages of this machine's page size); None when there is no such memcg."""
    try:
        with open(cgroup_file(mount, cgroup_path, "memory.numa_stat")) as f:
            return parse_numa_stat(f.read(), os.sysconf("SC_PAGE_SIZE"))
    except FileNotFoundError:
        return None
