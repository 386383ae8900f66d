"""Data attribution: an address range named by what it is, and the hottest and coldest named objects of a record.

No kernel counterpart: DAMON regions are address ranges. This is the ``damon-bpf report objects`` library.

**Naming.** A process's mappings (``/proc/<pid>/maps``, or damo's ``FILE.vmas`` side file) are cut into
*objects*, each byte in exactly one:

- in an ELF binary (the executable, shared libraries; :mod:`damon_bpf.linux.elf`), the **global variables**
  (``STT_OBJECT`` symbols of ``.symtab``/``.dynsym`` with a size) at their run-time address, the load bias
  added (a PIE or shared library is placed anywhere: the bias is the mapping's start less the address its
  ``PT_LOAD`` segment asks for, from the mapping's file offset); the bytes of a section that no symbol covers
  form one object per section (``.data``, ``.bss``, ``.rodata``, ``.text``...). ``.bss`` lies past the file
  bytes of the writable segment, in the anonymous mapping right after the file-backed one: that mapping is
  claimed for the binary as far as its segment reaches;
- the rest of each mapping is one object named by the mapping: the file and offset of a file mapping,
  ``[heap]``, the main thread's ``[stack]``, a **thread stack** (the mapping holding a thread's stack pointer,
  :func:`damon_bpf.linux.tasks.thread_stack_pointers`; without one, a writable anonymous mapping right above a
  ``---p`` guard mapping, which is how glibc's ``pthread_create`` lays stacks out), a **glibc malloc arena** (a
  64 MiB-aligned writable mapping whose reservation continues as ``---p`` up to 64 MiB), shared anonymous memory
  (``/dev/zero (deleted)``, ``memfd:``, SysV), ``[vdso]``/``[vvar]`` and the other special mappings, address
  space reserved with ``PROT_NONE`` (guard pages, the unused part of an arena: no memory can be behind it, so
  it is never ranked), and any other anonymous mapping ("anonymous mmap").

:meth:`ObjectMap.name_range` names one address range with the objects it covers (and how much of the range
each is); :func:`object_heat` weighs every object by the record's regions: its **access-weighted bytes**,
``sum(overlap bytes x nr_accesses / max_nr_accesses)`` over the regions of a snapshot, averaged over the
snapshots ranked. The hottest objects have the most access-weighted bytes; the coldest the most idle bytes
(``bytes - access-weighted bytes``), older first on ties.

**Mappings of a record** (:func:`mappings_for`): from ``/proc/<pid>/maps`` while the recorded process still
runs (the pid checked against the record: its start time from ``FILE.proc_stats`` when there is one, else not
after the record began), else from ``FILE.vmas`` (damo's ``record --do_record vmas``: a JSON list of
``{"time", "procvmas": [{"pid", "vmas": [{"start", "end", "name"}]}]}``; damo keeps only the last word of each
maps line as the name, so an anonymous mapping is named by its inode, ``"0"``, and the file offsets and
permissions are not there: an ELF image is then placed from its lowest mapping), else a one-line error.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.config.units import format_bytes
from damon_bpf.config.limits import MAX_INPUT_BYTES, MAX_MAPPINGS, open_regular, read_regular
from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.linux.elf import ET_DYN, SHF_TLS, SHT_NOBITS, ElfError, ElfFile, Section, read_elf
from damon_bpf.linux.process import is_running, start_time
from damon_bpf.linux.procmaps import Vma, parse_maps, parse_stat, read_maps, real_vmas
from damon_bpf.linux.tasks import ThreadSp, process_started_ns, thread_stack_pointers
from damon_bpf.results.profile import PROC_STATS_SUFFIX, VMAS_SUFFIX, read_proc_stats, read_vmas

__all__ = (
    "VMAS_SUFFIX",
    "PROC_STATS_SUFFIX",
    "KINDS",
    "MAPPING_KINDS",
    "DataObject",
    "RangePart",
    "ObjectMap",
    "ElfOpener",
    "PathElfOpener",
    "LiveElfOpener",
    "build_object_map",
    "read_vmas_file",
    "read_proc_stats_file",
    "read_maps_file",
    "live_object_map",
    "mappings_for",
    "ObjectHeat",
    "SnapshotRegions",
    "object_heat",
    "rank_objects",
)

log = logging.getLogger(__name__)

#: what an object is: a global variable, the rest of an ELF section, or a mapping of one of the other kinds
KINDS = ("global", "section", "file", "heap", "stack", "thread-stack", "arena", "anon", "shmem", "special",
         "reserved")
MAPPING_KINDS = frozenset(KINDS) - {"global", "section", "reserved"}

_PAGE = 4096
# glibc's HEAP_MAX_SIZE on 64-bit (2 * DEFAULT_MMAP_THRESHOLD_MAX, malloc/arena.c): each non-main arena
# reserves this much, aligned to it, and makes the unused part PROT_NONE
_ARENA_SIZE = 64 << 20


@dataclass(frozen=True, slots=True)
class DataObject:
    """A named part of an address space (see the module docstring).

    :ivar kind: one of :data:`KINDS`
    :ivar name: the symbol (``global``), the section (``section``), or the mapping's name (``[heap]``,
        ``anonymous mmap``, the file's path, ``thread stack``...)
    :ivar addr: its lowest address
    :ivar size: its bytes (a ``section`` object is the section less its symbols: several pieces)
    :ivar path: the ELF binary or mapped file, when there is one
    :ivar offset: the file offset of *addr* (None: no file bytes behind it, as ``.bss`` or anonymous memory)
    :ivar perms: the mapping's permissions (``rw-p``), when known
    :ivar detail: what else identifies it (``tid 1234 (worker)``, ``guard page below``, aliases)
    :ivar nr_pieces: how many address ranges it is made of (a section less its symbols: several)
    """

    kind: str
    name: str
    addr: int
    size: int
    path: str = ""
    section: str = ""
    offset: int | None = None
    perms: str = ""
    detail: str = ""
    nr_pieces: int = 1

    @property
    def module(self) -> str:
        """The file's base name (``libc.so.6``), or ``""``."""
        return os.path.basename(self.path) if self.path else ""

    def where(self) -> str:
        """``[0x7f00-0x7f80)`` for one piece, ``12.0 KiB in 3 pieces from 0x7f00`` for several."""
        if self.nr_pieces == 1:
            return f"[{self.addr:#x}-{self.addr + self.size:#x})"
        return f"{format_bytes(self.size)} in {self.nr_pieces} pieces from {self.addr:#x}"

    def label(self) -> str:
        """One line for reports: ``_PyRuntime (python3.11 .PyRuntime, 162.8 KiB at 0xa5b740)``."""
        if self.kind == "global":
            text = f"{self.name} ({self.module} {self.section}, {format_bytes(self.size)} at {self.addr:#x})"
        elif self.kind == "section":
            text = f"{self.module} {self.name} ({self.where()})"
        elif self.kind == "file":
            off = f" +{self.offset:#x}" if self.offset is not None else ""
            sec = f" {self.section}" if self.section else ""
            text = f"{self.path}{off}{sec} {self.where()} {self.perms}".rstrip()
        else:
            text = f"{self.name} {self.where()} {self.perms}".rstrip()
        return f"{text} {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "addr": self.addr, "size": self.size, "path": self.path,
                "section": self.section, "offset": self.offset, "perms": self.perms, "detail": self.detail,
                "label": self.label()}


@dataclass(frozen=True, slots=True)
class RangePart:
    """What part of a named range an object is: *bytes* of the range, from *start* to *end*."""

    obj: DataObject
    start: int
    end: int

    @property
    def bytes(self) -> int:
        return self.end - self.start

    def describe(self, range_bytes: int) -> str:
        """``_PyRuntime+0x8c0 (python3.11 .PyRuntime): 4.0 KiB, 2.5% of the range``"""
        share = 100.0 * self.bytes / range_bytes if range_bytes else 0.0
        o = self.obj
        if o.kind == "global":
            off = self.start - o.addr
            head = f"{o.name}{f'+{off:#x}' if off else ''} of {format_bytes(o.size)} ({o.module} {o.section})"
        elif o.kind == "file" and o.offset is not None:
            head = f"{o.path} +{o.offset + (self.start - o.addr):#x}{f' {o.section}' if o.section else ''}"
        else:
            head = o.label()
        return f"{head}: {format_bytes(self.bytes)}, {share:.1f}% of the range"


class ObjectMap:
    """The objects of one address space, as sorted non-overlapping intervals (see the module docstring).

    :ivar objects: every object, in address order of its first piece
    :ivar notes: what could not be named, and why (binaries not readable, changed since the recording...)
    :ivar source: where the mappings came from, in words
    """

    def __init__(self, objects: list[DataObject], pieces: list[tuple[int, int, int]], source: str = "",
                 notes: list[str] | None = None) -> None:
        pieces.sort()
        self.objects = objects
        self.starts: npt.NDArray[np.int64] = np.array([p[0] for p in pieces], dtype=np.int64)
        self.ends: npt.NDArray[np.int64] = np.array([p[1] for p in pieces], dtype=np.int64)
        self.index: npt.NDArray[np.int64] = np.array([p[2] for p in pieces], dtype=np.int64)
        self.source = source
        self.notes = list(notes or [])
        if self.starts.size > 1 and bool(np.any(self.starts[1:] < self.ends[:-1])):
            raise AssertionError("object pieces overlap")  # a bug in the partition, never bad input

    def name_range(self, start: int, end: int) -> list[RangePart]:
        """The objects covering ``[start, end)``, in address order (an object of several pieces appears once
        per piece); bytes in no mapping are not listed."""
        i = max(int(np.searchsorted(self.ends, start, side="right")), 0)
        out = []
        while i < self.starts.size and int(self.starts[i]) < end:
            s, e = max(int(self.starts[i]), start), min(int(self.ends[i]), end)
            if e > s:
                out.append(RangePart(self.objects[int(self.index[i])], s, e))
            i += 1
        return out

    def summarize_range(self, start: int, end: int, top: int = 5) -> list[tuple[DataObject, int]]:
        """The objects covering ``[start, end)`` with their bytes in it, most bytes first, at most *top*."""
        acc: dict[DataObject, int] = {}
        for part in self.name_range(start, end):
            acc[part.obj] = acc.get(part.obj, 0) + part.bytes
        ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0].addr))
        return ranked[:max(top, 0)]

    @property
    def mapped_bytes(self) -> int:
        return int((self.ends - self.starts).sum())


# -- ELF binaries --------------------------------------------------------------------------------------------

#: ``open_elf(vma) -> ElfFile | None``: the ELF binary behind a file mapping, None when it is not one (or not
#: readable: the opener keeps a note for the user)
ElfOpener = Callable[[Vma], "ElfFile | None"]


class _Opener:
    # caches binaries by (path, dev, inode); subclasses say where the bytes come from
    def __init__(self) -> None:
        self.cache: dict[tuple[str, str, int], ElfFile | None] = {}
        self.notes: list[str] = []

    def __call__(self, vma: Vma) -> ElfFile | None:
        key = (vma.path, vma.dev, vma.inode)
        if key not in self.cache:
            try:
                self.cache[key] = self.load(vma)
            except ElfError as err:
                if "not an ELF file" not in str(err):
                    self._note(str(err))
                self.cache[key] = None
            except DamonBpfError as err:
                self._note(str(err))
                self.cache[key] = None
        return self.cache[key]

    def load(self, vma: Vma) -> ElfFile | None:
        raise NotImplementedError

    def _note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)


class PathElfOpener(_Opener):
    """Binaries read from their paths (a record's process has exited). A mapping whose device and inode are
    known (``/proc/<pid>/maps`` text) is read only when the file there still has them: a binary replaced
    since (an upgrade) would name the wrong variables.

    :param root: a folder the paths are relative to (a container's root), default ``/``
    """

    def __init__(self, root: str = "/") -> None:
        super().__init__()
        self.root = root

    def load(self, vma: Vma) -> ElfFile | None:
        if not vma.path.startswith("/") or vma.deleted:
            return None
        path = os.path.join(self.root, vma.path.lstrip("/")) if self.root != "/" else vma.path
        fd = open_regular(path)
        try:
            if vma.inode:
                st = os.fstat(fd)
                dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
                if st.st_ino != vma.inode or (vma.dev != "00:00" and dev != vma.dev.lower()):
                    self._note(f"{vma.path} is not the file that was mapped (inode {st.st_ino} on {dev}, mapped "
                               f"{vma.inode} on {vma.dev}): its variables are not named")
                    return None
            return read_elf(vma.path, fd)
        finally:
            os.close(fd)


class LiveElfOpener(_Opener):
    """Binaries of a running process, read through ``/proc/<pid>/map_files/START-END`` (the very file mapped,
    also when it was deleted or lives in another mount namespace; needs ``CAP_SYS_ADMIN``), else
    ``/proc/<pid>/root/PATH``, else the path."""

    def __init__(self, pid: int, proc_root: str = "/proc") -> None:
        super().__init__()
        self.pid = pid
        self.proc_root = proc_root

    def load(self, vma: Vma) -> ElfFile | None:
        if not vma.pathname.startswith("/"):
            return None
        tries = [os.path.join(self.proc_root, str(self.pid), "map_files", f"{vma.start:x}-{vma.end:x}"),
                 os.path.join(self.proc_root, str(self.pid), "root", vma.path.lstrip("/")), vma.path]
        last: DamonBpfError | None = None
        for path in tries:
            try:
                fd = open_regular(path)
            except InvalidParamsError as err:
                last = err
                continue
            try:
                return read_elf(vma.path, fd)
            finally:
                os.close(fd)
        if last is not None:
            raise last
        return None


@dataclass
class _Image:
    # one ELF file placed in the address space
    elf: ElfFile
    path: str
    bias: int
    vmas: list[Vma] = field(default_factory=list)

    @property
    def span(self) -> tuple[int, int]:
        loads = self.elf.loads
        return (self.bias + min(s.vaddr for s in loads) // _PAGE * _PAGE,
                self.bias + max(s.vaddr + s.memsz for s in loads))


def _bias_candidates(elf: ElfFile, vma: Vma) -> set[int]:
    # the load biases under which *vma* (with its file offset) is part of the image: one per PT_LOAD segment
    # whose mapped pages hold the offset (two segments can share a page: a segment that is not page aligned
    # begins in the page where the one before it ends)
    out = set()
    for seg in elf.loads:
        first = seg.offset - seg.offset % _PAGE
        if first <= vma.offset < seg.offset + max(seg.filesz, 1):
            out.add(vma.start - vma.offset + seg.offset - seg.vaddr)
    return out


def _place_images(vmas: Sequence[Vma], open_elf: ElfOpener, offsets_known: bool,
                  notes: list[str]) -> list[_Image]:
    by_file: dict[tuple[str, str, int], list[Vma]] = {}
    for v in vmas:
        if v.pathname.startswith("/") and not v.shared:
            by_file.setdefault((v.path, v.dev, v.inode), []).append(v)
    images: list[_Image] = []
    for (path, _, _), group in by_file.items():
        elf = open_elf(group[0])
        if elf is None or not elf.loads:
            continue
        if offsets_known:
            placed = _place_by_offsets(elf, path, sorted(group, key=lambda v: v.start))
        else:
            placed = _place_by_order(elf, path, sorted(group, key=lambda v: v.start))
        for im in placed:
            if elf.e_type != ET_DYN and im.bias != 0:  # ET_EXEC sits at its link-time addresses
                msg = (f"{path} is mapped {im.bias:+#x} away from its link-time addresses: not the file that was "
                       f"mapped? its variables are not named")
                if msg not in notes:
                    notes.append(msg)
                continue
            images.append(im)
    return images


def _place_by_offsets(elf: ElfFile, path: str, group: list[Vma]) -> list[_Image]:
    # each mapping votes for the biases it fits; the bias most mappings agree on takes them, and so on (a
    # library mapped twice, by two dlopen()s of copies, is two images)
    cands = {id(v): {b for b in _bias_candidates(elf, v) if b % _PAGE == 0} for v in group}
    left = [v for v in group if cands[id(v)]]
    placed: list[_Image] = []
    while left:
        votes: dict[int, int] = {}
        for v in left:
            for b in cands[id(v)]:
                votes[b] = votes.get(b, 0) + 1
        bias = min(votes, key=lambda b: (-votes[b], b))
        placed.append(_Image(elf, path, bias, [v for v in left if bias in cands[id(v)]]))
        left = [v for v in left if bias not in cands[id(v)]]
    return placed


def _place_by_order(elf: ElfFile, path: str, group: list[Vma]) -> list[_Image]:
    # without file offsets (damo's vmas): the lowest mapping of an image is its first PT_LOAD segment's first
    # page; the mappings within that image's span belong to it
    first = elf.loads[0]
    placed: list[_Image] = []
    for v in group:
        home = next((im for im in placed if im.span[0] <= v.start < im.span[1]), None)
        if home is None:
            home = _Image(elf, path, v.start - first.vaddr // _PAGE * _PAGE)
            placed.append(home)
        home.vmas.append(v)
    return placed


def _claims(image: _Image, anon_after: Mapping[int, Vma]) -> list[tuple[int, int, Vma]]:
    # the parts of the address space the image may name: its own mappings and, for .bss, the anonymous
    # mapping that starts where one of them ends (as far as the image's segments reach)
    hi = image.span[1]
    out = []
    for v in image.vmas:
        out.append((v.start, v.end, v))
        nxt = anon_after.get(v.end)
        if nxt is not None and nxt.start < hi:
            out.append((nxt.start, min(nxt.end, hi), nxt))
    return sorted((c for c in out if c[1] > c[0]), key=lambda c: c[0])


def _sections(elf: ElfFile) -> list[Section]:
    # sections with run-time addresses: .tbss has an address but no memory there (it is per thread)
    secs = [s for s in elf.sections if s.alloc and s.size > 0 and not (s.flags & SHF_TLS and s.nobits)]
    if secs:
        return sorted(secs, key=lambda s: s.addr)
    # no section headers (a stripped-down file): the loaded segments stand in for them
    return [Section(i, f"LOAD {seg.perms}", SHT_NOBITS if seg.memsz > seg.filesz else 1, 0, seg.vaddr, seg.offset,
                    seg.memsz) for i, seg in enumerate(elf.loads)]


def _clip(start: int, end: int, claims: Sequence[tuple[int, int, Vma]]) -> list[tuple[int, int, Vma]]:
    out = []
    i = max(bisect.bisect_right([c[0] for c in claims], start) - 1, 0)
    for c0, c1, v in claims[i:]:
        if c0 >= end:
            break
        s, e = max(start, c0), min(end, c1)
        if e > s:
            out.append((s, e, v))
    return out


class _Builder:
    def __init__(self) -> None:
        self.objects: list[DataObject] = []
        self.pieces: list[tuple[int, int, int]] = []
        self.taken: list[tuple[int, int]] = []  # pieces already named, for the mappings' remainders

    def add(self, obj: DataObject, parts: Iterable[tuple[int, int]]) -> None:
        parts = [(s, e) for s, e in parts if e > s]
        if not parts:
            return
        idx = len(self.objects)
        self.objects.append(replace(obj, nr_pieces=len(parts)) if len(parts) != obj.nr_pieces else obj)
        for s, e in parts:
            self.pieces.append((s, e, idx))
            self.taken.append((s, e))


def _file_offset(vma: Vma | None, addr: int, offsets_known: bool) -> int | None:
    if vma is None or not offsets_known or not vma.pathname.startswith("/"):
        return None
    return vma.offset + (addr - vma.start)


def _name_image(b: _Builder, image: _Image, claims: list[tuple[int, int, Vma]], offsets_known: bool) -> None:
    elf = image.elf
    secs = _sections(elf)
    by_index = {s.index: s for s in secs}
    sec_starts = [image.bias + s.addr for s in secs]
    # symbols: sorted by address, larger first; one object per address range (aliases joined), nested or
    # overlapping ones left out (C globals do not overlap; a linker script's may)
    syms = [y for y in elf.symbols if not y.tls]
    with_symbols: set[int] = set()  # sections that have symbols
    taken: list[tuple[int, int]] = []  # the image's pieces so far (never overlapping)
    last_end = -1
    prev: tuple[int, int] | None = None
    groups: list[tuple[int, int, list[str], Section | None]] = []
    for y in syms:
        s, e = image.bias + y.value, image.bias + y.value + y.size
        if prev == (s, e):
            groups[-1][2].append(y.name)
            continue
        if s < last_end:
            continue
        sec = by_index.get(y.shndx)
        if sec is None:
            j = bisect.bisect_right(sec_starts, s) - 1
            sec = secs[j] if j >= 0 and s < sec_starts[j] + secs[j].size else None
        groups.append((s, e, [y.name], sec))
        prev, last_end = (s, e), e
    for s, e, names, sec in groups:
        parts = _clip(s, e, claims)
        if not parts:
            continue
        vma = parts[0][2]
        offset = None
        if sec is not None and not sec.nobits:
            offset = sec.offset + (s - image.bias - sec.addr)
        detail = f"(also {', '.join(names[1:])})" if len(names) > 1 else ""
        b.add(DataObject("global", names[0], s, e - s, image.path, sec.name if sec else "", offset,
                         vma.perms if offsets_known else "", detail), [(p0, p1) for p0, p1, _ in parts])
        taken.extend((p0, p1) for p0, p1, _ in parts)
        if sec is not None:
            with_symbols.add(sec.index)
    # each section gets what no symbol and no section before it took (a hostile file's sections may overlap
    # each other, and a symbol may cross from its section into the next)
    for sec in secs:
        s0 = image.bias + sec.addr
        taken.sort()
        rest = _subtract([(p0, p1) for p0, p1, _ in _clip(s0, s0 + sec.size, claims)], taken)
        if not rest:
            continue
        taken.extend(rest)
        home = next((c[2] for c in claims if c[0] <= rest[0][0] < c[1]), None)
        offset = None if sec.nobits else sec.offset + (rest[0][0] - s0)
        b.add(DataObject("section", sec.name, rest[0][0], sum(e - s for s, e in rest), image.path, sec.name,
                         offset, home.perms if home is not None and offsets_known else "",
                         "outside its symbols" if sec.index in with_symbols else ""), rest)


def _subtract(parts: Sequence[tuple[int, int]], holes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """*parts* less *holes* (both sorted; *holes* non-overlapping)."""
    out = []
    starts = [h[0] for h in holes]
    for s, e in parts:
        cur = s
        i = max(bisect.bisect_right(starts, s) - 1, 0)
        for h0, h1 in holes[i:]:
            if h0 >= e:
                break
            if h1 <= cur:
                continue
            if h0 > cur:
                out.append((cur, min(h0, e)))
            cur = max(cur, h1)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def _anon(v: Vma) -> bool:
    return not v.pathname and v.inode == 0


def _mapping_object(v: Vma, prev: Vma | None, nxt: Vma | None, tids: Sequence[ThreadSp],
                    offsets_known: bool) -> DataObject:
    name = v.pathname
    perms = v.perms if offsets_known else ""
    if tids:
        who = ", ".join(f"tid {t.tid}" + (f" ({t.comm})" if t.comm else "") for t in tids)
        if name == "[stack]" or name.startswith("[stack:"):
            return DataObject("stack", "[stack]", v.start, v.sz, perms=perms, detail=f"main thread: {who}")
        if _anon(v) or name.startswith("[anon:"):
            return DataObject("thread-stack", "thread stack", v.start, v.sz, perms=perms, detail=who)
    if name == "[heap]":
        return DataObject("heap", "[heap]", v.start, v.sz, perms=perms, detail="brk heap (main malloc arena)")
    if name == "[stack]" or name.startswith("[stack:"):
        return DataObject("stack", "[stack]", v.start, v.sz, perms=perms, detail="main thread")
    if _anon(v):
        if offsets_known and v.perms.startswith("---"):
            return DataObject("reserved", "reserved address space (PROT_NONE)", v.start, v.sz, perms=perms)
        if offsets_known and v.perms.startswith("rw"):
            if prev is not None and prev.end == v.start and _anon(prev) and prev.perms.startswith("---"):
                return DataObject("thread-stack", "thread stack", v.start, v.sz, perms=perms,
                                  detail="(guard page below; thread not seen)")
            if (v.start % _ARENA_SIZE == 0 and nxt is not None and nxt.start == v.end and _anon(nxt)
                    and nxt.perms.startswith("---") and nxt.end - v.start == _ARENA_SIZE):
                return DataObject("arena", "malloc arena", v.start, v.sz, perms=perms,
                                  detail="(glibc heap of a thread arena)")
        return DataObject("anon", "anonymous mmap", v.start, v.sz, perms=perms)
    if name.startswith("[anon_shmem:"):
        return DataObject("shmem", name[1:-1], v.start, v.sz, perms=perms)
    if name.startswith("[anon:"):
        return DataObject("anon", name[1:-1], v.start, v.sz, perms=perms)
    if name.startswith("["):
        return DataObject("special", name, v.start, v.sz, perms=perms)
    if v.shared and (v.path in ("/dev/zero", "/SYSV00000000") or v.path.startswith(("/memfd:", "/SYSV"))):
        what = "shared anonymous mmap" if v.path == "/dev/zero" else v.path.lstrip("/")
        return DataObject("shmem", what, v.start, v.sz, perms=perms)
    if name.startswith("/"):
        return DataObject("file", v.path, v.start, v.sz, path=v.path,
                          offset=v.offset if offsets_known else None, perms=perms,
                          detail="(deleted)" if v.deleted else "")
    return DataObject("special", name, v.start, v.sz, perms=perms)


def build_object_map(vmas: Sequence[Vma], *, open_elf: ElfOpener | None = None,
                     threads: Sequence[ThreadSp] = (), offsets_known: bool = True,
                     source: str = "") -> ObjectMap:
    """Cut an address space into named objects (see the module docstring).

    :param vmas: the mappings, sorted by address (:func:`damon_bpf.linux.procmaps.read_maps`)
    :param open_elf: the binary behind a file mapping (:class:`PathElfOpener`, :class:`LiveElfOpener`);
        None names mappings only
    :param threads: the threads' stack pointers (:func:`damon_bpf.linux.tasks.thread_stack_pointers`)
    :param offsets_known: the mappings have file offsets and permissions (``/proc/<pid>/maps``); False for
        damo's ``FILE.vmas`` (each ELF image is then placed from its lowest mapping)
    """
    if len(vmas) > MAX_MAPPINGS:
        raise InvalidParamsError(f"{len(vmas)} mappings: more than the {MAX_MAPPINGS} the namer takes")
    # the gate area ([vsyscall]) is no VMA of the mm: DAMON never monitors it (and it lies past int64)
    vmas = sorted((v for v in real_vmas(vmas) if v.end < 1 << 63), key=lambda v: v.start)
    notes: list[str] = []
    b = _Builder()
    if open_elf is not None:
        anon_after = {v.start: v for v in vmas if _anon(v)}
        for image in _place_images(vmas, open_elf, offsets_known, notes):
            _name_image(b, image, _claims(image, anon_after), offsets_known)
        notes.extend(getattr(open_elf, "notes", []))
    by_vma: dict[int, list[ThreadSp]] = {}
    starts = [v.start for v in vmas]
    for t in threads:
        i = bisect.bisect_right(starts, t.sp) - 1
        if i >= 0 and t.sp < vmas[i].end:
            by_vma.setdefault(i, []).append(t)
    taken = sorted(b.taken)
    for i, v in enumerate(vmas):
        rest = _subtract([(v.start, v.end)], taken)
        if not rest:
            continue
        obj = _mapping_object(v, vmas[i - 1] if i else None, vmas[i + 1] if i + 1 < len(vmas) else None,
                              by_vma.get(i, []), offsets_known)
        if obj.kind == "file" and rest[0][0] != v.start:
            # an ELF mapping's bytes outside its sections (headers, page padding)
            obj = DataObject("file", obj.name, rest[0][0], sum(e - s for s, e in rest), obj.path,
                             "(outside sections)", _file_offset(v, rest[0][0], offsets_known), obj.perms)
        elif rest != [(v.start, v.end)]:
            obj = DataObject(obj.kind, obj.name, rest[0][0], sum(e - s for s, e in rest), obj.path, obj.section,
                             _file_offset(v, rest[0][0], offsets_known), obj.perms, obj.detail)
        b.add(obj, rest)
    order = sorted(range(len(b.objects)), key=lambda k: b.objects[k].addr)
    renum = {old: new for new, old in enumerate(order)}
    objects = [b.objects[k] for k in order]
    pieces = [(s, e, renum[k]) for s, e, k in b.pieces]
    return ObjectMap(objects, pieces, source, notes)


# -- side files ----------------------------------------------------------------------------------------------


def read_vmas_file(path: str, data: bytes | None = None) -> dict[int, list[tuple[float, list[Vma], bool]]]:
    """damo's ``FILE.vmas`` (:func:`damon_bpf.results.profile.read_vmas`; *data*: its bytes, when read already):
    per pid, ``(time, mappings in address order, offsets_known)`` per snapshot in file order. ``offsets_known``
    is False where the mappings have damo's keys only (no permissions or file offsets).

    :raises InvalidParamsError: missing, not a regular file, too large, not JSON or not the format
    """
    out: dict[int, list[tuple[float, list[Vma], bool]]] = {}
    for snap in read_vmas(path, data):
        for pid, vmas in snap.procs.items():
            out.setdefault(pid, []).append((snap.time, sorted(vmas, key=lambda v: v.start),
                                            pid not in snap.without_offsets))
    return out


def read_proc_stats_file(path: str) -> dict[int, int]:
    """From damo's ``FILE.proc_stats`` (:func:`damon_bpf.results.profile.read_proc_stats`), each process's start
    time (field 22 of ``/proc/<pid>/stat``, clock ticks after boot), from its first snapshot that has it. damo
    splits the stat line on white space, so a ``comm`` with spaces is joined back first.

    :raises InvalidParamsError: missing, not a regular file, too large, not JSON or not the format
    """
    out: dict[int, int] = {}
    for snap in read_proc_stats(path):
        for fields in filter(None, snap.stats):
            try:
                st = parse_stat(" ".join(fields))
            except InvalidParamsError:
                continue
            out.setdefault(st.pid, st.starttime)
    return out


def read_maps_file(path: str) -> tuple[list[Vma], bool]:
    """A saved copy of ``/proc/<pid>/maps`` (text), or damo's ``FILE.vmas`` (JSON: its last snapshot of its
    only pid). Returns the mappings and whether they carry file offsets.

    :raises InvalidParamsError: missing, not a regular file, too large, or neither format
    """
    data = read_regular(path, MAX_INPUT_BYTES, "maps file")
    if data.lstrip()[:1] in (b"[", b"{"):
        per_pid = read_vmas_file(path, data)
        snaps = [s for v in per_pid.values() for s in v if s[1]]
        if len(per_pid) != 1 or not snaps:
            raise InvalidParamsError(f"{path}: give a vmas file of one process ({len(per_pid)} pids in it)")
        _, vmas, known = snaps[-1]
        return vmas, known
    try:
        text = data.decode("utf-8", "surrogateescape")
    except UnicodeDecodeError as err:  # pragma: no cover - surrogateescape decodes anything
        raise InvalidParamsError(f"{path}: not text") from err
    vmas = parse_maps(text)
    if not vmas:
        raise InvalidParamsError(f"{path}: no mappings in it")
    if len(vmas) > MAX_MAPPINGS:
        raise InvalidParamsError(f"{path}: more than {MAX_MAPPINGS} mappings")
    return vmas, True


# -- the mappings of a record's process ---------------------------------------------------------------------


def live_object_map(pid: int, source: str = "") -> ObjectMap:
    """The objects of running process *pid*: ``/proc/<pid>/maps``, its threads' stacks and its binaries through
    ``/proc/<pid>/map_files``.

    :raises TargetGoneError: the process does not exist
    :raises PermissionDeniedError: its maps cannot be read
    """
    vmas = read_maps(pid)
    return build_object_map(vmas, open_elf=LiveElfOpener(pid), threads=thread_stack_pointers(pid),
                            source=source or f"/proc/{pid}/maps")


def _same_process(pid: int, record_path: str, record_start_ns: int | None) -> tuple[bool, str]:
    # whether running process *pid* is the one recorded: its start time against FILE.proc_stats, else against
    # the record's first snapshot (damon-bpf's records keep epoch times; damo's perf-based ones do not)
    running = start_time(pid)
    if running is None or not is_running(pid):
        return False, f"process {pid} has exited"
    stats = record_path + PROC_STATS_SUFFIX
    if os.path.exists(stats):
        recorded = read_proc_stats_file(stats).get(pid)
        if recorded is not None:
            if recorded != running:
                return False, f"pid {pid} now names another process (its start time differs from {stats})"
            return True, f"start time checked against {stats}"
    if record_start_ns is not None and record_start_ns > _EPOCH_2001_NS:
        started = process_started_ns(pid)
        if started is not None and started > record_start_ns + _START_SLACK_NS:
            return False, f"pid {pid} now names another process (it started after the recording began)"
        if started is not None:
            return True, "it started before the recording began"
    return True, "not checked: the record keeps no start time"


_EPOCH_2001_NS = 10**18  # record times past this are epoch times (damon-bpf's records)
_START_SLACK_NS = 2 * 10**9  # the start time read from /proc is good to a second (btime)


def mappings_for(record_path: str, pid: int | None, *, record_start_ns: int | None = None,
                 maps_file: str | None = None, live: bool = True) -> ObjectMap:
    """The objects of the process a record's target was, from the first of: *maps_file* (a copy of its
    ``/proc/<pid>/maps`` or damo's vmas file); the live process, when it still runs and is the one recorded
    (:func:`_same_process`); ``FILE.vmas`` beside the record (its last snapshot of that pid).

    :param record_start_ns: the record's first snapshot start time (checks a running pid is the one recorded)
    :param live: read the live process at all
    :raises InvalidParamsError: none of them is there (one line saying what to do)
    """
    if maps_file is not None:
        vmas, known = read_maps_file(maps_file)
        return build_object_map(vmas, open_elf=PathElfOpener(), offsets_known=known, source=maps_file)
    if pid is None:
        raise InvalidParamsError(f"{record_path}: the record does not say which process a target was (physical "
                                 f"addresses, or damo's record without pids): give --maps FILE")
    why = "not read (--no-live)"
    if live:
        same, why = _same_process(pid, record_path, record_start_ns)
        if same:
            try:
                return live_object_map(pid, f"/proc/{pid}/maps (the recorded process, still running; {why})")
            except DamonBpfError as err:  # it exited meanwhile, or cannot be read
                why = str(err)
    side = record_path + VMAS_SUFFIX
    if os.path.exists(side):
        snaps = [s for s in read_vmas_file(side).get(pid, []) if s[1]]
        if snaps:
            t, vmas, known = snaps[-1]
            return build_object_map(vmas, open_elf=PathElfOpener(), offsets_known=known,
                                    source=f"{side} (its last snapshot of pid {pid})")
        raise InvalidParamsError(f"{side} has no mappings of pid {pid}; and the live process: {why}")
    raise InvalidParamsError(f"no mappings for pid {pid} of {record_path}: {why}, and there is no {side} (record "
                             f"with --do_record vmas, or give --maps FILE)")


# -- heat ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRegions:
    """One snapshot of one target, for :func:`object_heat`: sorted, non-overlapping regions.

    :ivar max_nr_accesses: ``aggr / sample`` of the snapshot (the scale of *nr_accesses*)
    :ivar aggr_us: the aggregation interval (the unit of *age*)
    """

    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    nr_accesses: npt.NDArray[np.int64]
    age: npt.NDArray[np.int64]
    max_nr_accesses: float
    aggr_us: float


@dataclass
class ObjectHeat:
    """An object weighed by a record's regions, averaged over the snapshots ranked.

    :ivar monitored: its bytes inside monitored regions
    :ivar weighted: access-weighted bytes: ``sum(overlap x nr_accesses / max_nr_accesses)``
    :ivar age_us: the overlap-weighted mean age of its regions in the last snapshot (0 when no region of it
        covers it then)
    """

    obj: DataObject
    monitored: float
    weighted: float
    age_us: float

    @property
    def rate(self) -> float:
        """Its mean access rate, ``weighted / monitored`` (0..1: the share of sampling intervals with an access)."""
        return self.weighted / self.monitored if self.monitored > 0 else 0.0

    @property
    def idle(self) -> float:
        """Idle bytes: ``monitored - weighted``."""
        return max(self.monitored - self.weighted, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.obj.to_dict(), "monitored_bytes": round(self.monitored, 1),
                "weighted_bytes": round(self.weighted, 1), "idle_bytes": round(self.idle, 1),
                "access_rate": round(self.rate, 4), "age_us": round(self.age_us)}


def _integral(rs: npt.NDArray[np.int64], re_: npt.NDArray[np.int64], vals: npt.NDArray[np.float64],
              xs: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    # the integral from 0 to each x of the step function that is vals[i] on [rs[i], re_[i]) and 0 elsewhere
    if rs.size == 0:
        return np.zeros(xs.size)
    before = np.concatenate([[0.0], np.cumsum((re_ - rs).astype(np.float64) * vals)])
    i = np.searchsorted(rs, xs, side="right") - 1
    ii = np.maximum(i, 0)
    inside = np.minimum(xs, re_[ii]) - rs[ii]
    return np.where(i >= 0, before[ii] + np.maximum(inside, 0).astype(np.float64) * vals[ii], 0.0)


def object_heat(omap: ObjectMap, snapshots: Sequence[SnapshotRegions]) -> list[ObjectHeat]:
    """Every object of *omap* with the bytes of it the regions cover and its access-weighted bytes, averaged
    over *snapshots*, and its age in the last of them (how long it has kept its access rate: see the module
    docstring). Objects no region covers are left out."""
    n = len(omap.objects)
    if not snapshots or n == 0:
        return []
    mon = np.zeros(n)
    wei = np.zeros(n)
    age = np.zeros(n)
    last_mon = np.zeros(n)

    def weigh(rs: npt.NDArray[np.int64], re_: npt.NDArray[np.int64],
              vals: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        part = _integral(rs, re_, vals, omap.ends) - _integral(rs, re_, vals, omap.starts)
        return np.bincount(omap.index, weights=part, minlength=n).astype(np.float64)

    for k, snap in enumerate(snapshots):
        order = np.argsort(snap.start, kind="stable")
        rs, re_ = snap.start[order], snap.end[order]
        rate = np.clip(snap.nr_accesses[order].astype(np.float64) / max(snap.max_nr_accesses, 1e-9), 0.0, 1.0)
        covered = weigh(rs, re_, np.ones(rs.size))
        mon += covered
        wei += weigh(rs, re_, rate)
        if k == len(snapshots) - 1:
            age = weigh(rs, re_, snap.age[order].astype(np.float64) * snap.aggr_us)
            last_mon = covered
    nr = float(len(snapshots))
    return [ObjectHeat(omap.objects[int(i)], float(mon[i] / nr), float(wei[i] / nr),
                       float(age[i] / last_mon[i]) if last_mon[i] > 0 else 0.0)
            for i in np.nonzero(mon > 0)[0]]


def rank_objects(heats: Sequence[ObjectHeat], top: int, kinds: Iterable[str] | None = None,
                 exclusive: bool = True) -> tuple[list[ObjectHeat], list[ObjectHeat]]:
    """The *top* hottest (most access-weighted bytes; accessed at all) and the *top* coldest (most idle bytes,
    then oldest) objects of the *kinds* given (default: all but ``reserved``, which holds no memory). With
    *exclusive*, an object is in one list only."""
    want = set(kinds) if kinds is not None else set(KINDS) - {"reserved"}
    pool = [h for h in heats if h.obj.kind in want]
    hot = sorted((h for h in pool if h.weighted > 0), key=lambda h: (-h.weighted, -h.rate, h.obj.addr))[:top]
    listed = {id(h) for h in hot} if exclusive else set()
    cold = sorted((h for h in pool if id(h) not in listed), key=lambda h: (-h.idle, -h.age_us, h.obj.addr))[:top]
    return hot, cold
