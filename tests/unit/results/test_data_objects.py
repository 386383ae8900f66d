"""The data namer (``damon_bpf.results.data_objects``): ELF images placed at their load bias, .bss in the
anonymous mapping after the file, heap/stack/thread stacks/arenas/shared memory, damo's vmas side file, and the
object weights. Real binaries (the interpreter, libc) and this very process are the material."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.elf import ET_DYN, read_elf
from damon_bpf.linux.procmaps import parse_maps, read_maps
from damon_bpf.linux.tasks import ThreadSp, parse_syscall, thread_stack_pointers
from damon_bpf.results.data_objects import (
    DataObject,
    LiveElfOpener,
    ObjectMap,
    PathElfOpener,
    SnapshotRegions,
    build_object_map,
    object_heat,
    rank_objects,
    read_maps_file,
    read_proc_stats_file,
    read_vmas_file,
)
from tests.elf_maps import damo_vmas, loader_maps

INTERPRETER = os.path.realpath(sys.executable)
LIBC = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                         "/lib64/libc.so.6") if os.path.exists(p)), None)
needs_libc = pytest.mark.skipif(LIBC is None, reason="no glibc at the usual paths")
BIAS = 0x7F12_3450_0000


def _objects(omap: ObjectMap, name: str) -> list[DataObject]:
    return [o for o in omap.objects if o.name == name]


@needs_libc
def test_shared_library_globals_at_their_load_bias() -> None:
    assert LIBC is not None
    elf = read_elf(LIBC)
    assert elf.e_type == ET_DYN
    keys = next(y for y in elf.symbols if y.name == "__pthread_keys")  # 16 KiB in libc's .bss
    omap = build_object_map(parse_maps("\n".join(loader_maps(LIBC, BIAS))), open_elf=PathElfOpener())
    [obj] = _objects(omap, "__pthread_keys")
    assert (obj.kind, obj.addr, obj.size, obj.section, obj.offset) == ("global", BIAS + keys.value, keys.size,
                                                                      ".bss", None)
    # the range [keys + 0x100, keys + 0x1100) is 4 KiB of it, named with its offset
    parts = omap.name_range(obj.addr + 0x100, obj.addr + 0x1100)
    assert [(p.obj.name, p.start - p.obj.addr, p.bytes) for p in parts] == [("__pthread_keys", 0x100, 0x1000)]
    assert "__pthread_keys+0x100 of 16.000 KiB (libc.so.6 .bss): 4.000 KiB, 100.0% of the range" == \
        parts[0].describe(0x1000)
    # an initialized global has its file offset
    stdout = next(y for y in elf.symbols if y.name == "_IO_2_1_stdout_")
    [o] = _objects(omap, "_IO_2_1_stdout_")
    data = elf.section(".data")
    assert data is not None and o.offset == data.offset + stdout.value - data.addr
    # every mapped byte is named exactly once
    assert omap.mapped_bytes == sum(int(line.split()[0].split("-")[1], 16) - int(line.split()[0].split("-")[0], 16)
                                    for line in loader_maps(LIBC, BIAS))


@needs_libc
def test_damo_vmas_without_offsets_place_the_image_from_its_lowest_mapping(tmp_path: Path) -> None:
    assert LIBC is not None
    lines = loader_maps(LIBC, BIAS) + ["7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0   [stack]"]
    side = tmp_path / "damon.data.vmas"
    side.write_text(json.dumps([{"time": 1.0, "procvmas": [{"pid": 42, "vmas": damo_vmas(lines)}]}]))
    per_pid = read_vmas_file(str(side))
    [(t, vmas, known)] = per_pid[42]
    assert not known and t == 1.0
    omap = build_object_map(vmas, open_elf=PathElfOpener(), offsets_known=False)
    keys = next(y for y in read_elf(LIBC).symbols if y.name == "__pthread_keys")
    assert [o.addr for o in _objects(omap, "__pthread_keys")] == [BIAS + keys.value]
    assert [o.kind for o in omap.objects if o.name == "[stack]"] == ["stack"]
    # damo names anonymous mappings by their inode: "0" is no file
    assert len([v for v in vmas if not v.pathname]) == 1  # libc's .bss
    assert _objects(omap, "__pthread_keys")[0].perms == ""  # damo keeps no permissions


def test_exec_placed_at_its_link_time_addresses_or_not_at_all() -> None:
    elf = read_elf(INTERPRETER)
    bias = 0 if elf.e_type != ET_DYN else 0x5555_5555_4000
    omap = build_object_map(parse_maps("\n".join(loader_maps(INTERPRETER, bias))), open_elf=PathElfOpener())
    rt = next((y for y in elf.symbols if y.name == "_PyRuntime"), None)
    if rt is not None:
        [obj] = _objects(omap, "_PyRuntime")
        assert obj.addr == bias + rt.value and obj.kind == "global"
    if elf.e_type != ET_DYN:
        # the same executable shown 1 MiB off its addresses cannot be the file: nothing is named from it
        moved = build_object_map(parse_maps("\n".join(loader_maps(INTERPRETER, 1 << 20))), open_elf=PathElfOpener())
        assert not any(o.kind == "global" for o in moved.objects)
        assert any("link-time addresses" in n for n in moved.notes)


def test_a_replaced_binary_is_not_believed(tmp_path: Path) -> None:
    lines = loader_maps(INTERPRETER, 0 if read_elf(INTERPRETER).e_type != ET_DYN else 0x5555_5555_4000)
    wrong = [line.replace(f" {os.stat(INTERPRETER).st_ino} ", " 1 ") for line in lines]
    omap = build_object_map(parse_maps("\n".join(wrong)), open_elf=PathElfOpener())
    assert not any(o.kind == "global" for o in omap.objects)
    assert any("is not the file that was mapped" in n for n in omap.notes)


ANON_MAPS = """\
555555554000-555555575000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000001000 ---p 00000000 00:00 0
7f0000001000-7f0000801000 rw-p 00000000 00:00 0
7f0004000000-7f0004021000 rw-p 00000000 00:00 0
7f0004021000-7f0008000000 ---p 00000000 00:00 0
7f0009000000-7f0009100000 rw-p 00000000 00:00 0
7f0010000000-7f0010100000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)
7f0011000000-7f0011001000 rw-p 00000000 00:00 0                          [anon:my buffer]
7f0012000000-7f0012010000 rw-s 00000000 00:01 77                         /memfd:ring (deleted)
7f0013000000-7f0013800000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def test_anonymous_mappings_named_by_what_they_are() -> None:
    threads = [ThreadSp(101, 0x7FFD_00020000, "main"), ThreadSp(102, 0x7F00_1300_0000 + 0x100, "worker")]
    omap = build_object_map(parse_maps(ANON_MAPS), threads=threads)
    got = {o.addr: (o.kind, o.name, o.detail) for o in omap.objects}
    assert got[0x555555554000][:2] == ("heap", "[heap]")
    assert got[0x7F0000000000][0] == "reserved"  # the guard page
    assert got[0x7F0000001000] == ("thread-stack", "thread stack", "(guard page below; thread not seen)")
    assert got[0x7F0004000000][:2] == ("arena", "malloc arena")
    assert got[0x7F0004021000][0] == "reserved"
    assert got[0x7F0009000000][:2] == ("anon", "anonymous mmap")
    assert got[0x7F0010000000][:2] == ("shmem", "shared anonymous mmap")
    assert got[0x7F0011000000][:2] == ("anon", "anon:my buffer")
    assert got[0x7F0012000000][:2] == ("shmem", "memfd:ring")
    assert got[0x7F0013000000] == ("thread-stack", "thread stack", "tid 102 (worker)")
    assert got[0x7FFD00000000] == ("stack", "[stack]", "main thread: tid 101 (main)")
    assert got[0x7FFD00100000][:2] == ("special", "[vdso]")
    assert 0xFFFFFFFFFF600000 not in got  # the gate area is not part of the mm
    # reserved address space holds no memory: never ranked
    heats = object_heat(omap, [_snap([(0x7F0000000000, 0x7F0014000000, 0)])])
    hot, cold = rank_objects(heats, 50)
    assert not hot and "reserved" not in {h.obj.kind for h in cold}
    assert [h.obj.addr for h in cold[:3]] == [0x7F0000001000, 0x7F0013000000, 0x7F0009000000]


def _snap(regions: list[tuple[int, int, int]], max_nr: float = 20, aggr_us: float = 100_000,
          ages: list[int] | None = None) -> SnapshotRegions:
    a = np.array(regions, dtype=np.int64).reshape(-1, 3)
    age = np.array(ages if ages is not None else [1] * len(regions), dtype=np.int64)
    return SnapshotRegions(a[:, 0], a[:, 1], a[:, 2], age, max_nr, aggr_us)


def test_object_heat_weighs_overlaps() -> None:
    a = DataObject("global", "a", 0, 100)
    b = DataObject("global", "b", 100, 200)
    c = DataObject("section", ".data", 300, 100, nr_pieces=2)
    omap = ObjectMap([a, b, c], [(0, 100, 0), (100, 300, 1), (300, 350, 2), (400, 450, 2)])
    # [0, 200) at half the maximum, [200, 300) never, [300, 500) always; then everything idle
    s1 = _snap([(0, 200, 10), (200, 300, 0), (300, 500, 20)], ages=[3, 7, 1])
    s2 = _snap([(0, 500, 0)], ages=[5])
    heats = {h.obj.name: h for h in object_heat(omap, [s1, s2])}
    assert heats["a"].weighted == pytest.approx(25.0)  # 100 B x 0.5, averaged over 2 snapshots
    assert heats["b"].weighted == pytest.approx(25.0)  # 100 B x 0.5 + 100 B x 0
    assert heats["b"].rate == pytest.approx(0.125)
    assert heats[".data"].weighted == pytest.approx(50.0)  # 100 B of its 2 pieces, always
    assert heats["a"].age_us == pytest.approx(500_000)  # the last snapshot's age, 5 x 100 ms
    hot, cold = rank_objects(list(heats.values()), 2)
    assert [h.obj.name for h in hot] == [".data", "a"]
    assert [h.obj.name for h in cold] == ["b"]  # the others are listed as hot
    _, cold_only = rank_objects(list(heats.values()), 3, exclusive=False)
    assert [h.obj.name for h in cold_only] == ["b", "a", ".data"]
    hot_g, _ = rank_objects(list(heats.values()), 3, kinds=("section",))
    assert [h.obj.name for h in hot_g] == [".data"]


def test_name_range_and_summary() -> None:
    a = DataObject("global", "a", 0x1000, 0x100, path="/bin/x", section=".data")
    rest = DataObject("section", ".data", 0x1100, 0xF00, path="/bin/x", section=".data", nr_pieces=1)
    omap = ObjectMap([a, rest], [(0x1000, 0x1100, 0), (0x1100, 0x2000, 1)])
    parts = omap.name_range(0x1080, 0x3000)
    assert [(p.obj.name, p.start, p.end) for p in parts] == [("a", 0x1080, 0x1100), (".data", 0x1100, 0x2000)]
    assert omap.summarize_range(0x0, 0x3000, top=1) == [(rest, 0xF00)]
    assert omap.name_range(0x3000, 0x4000) == []


def test_objects_of_this_process() -> None:
    """This very process: libc's ``__pthread_keys`` (in the anonymous mapping after libc's file, .bss), the
    interpreter's ``_PyRuntime``, and a thread's stack found by its stack pointer."""
    pid = os.getpid()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        readable = os.access(f"/proc/{pid}/task/{t.native_id}/syscall", os.R_OK)
        omap = build_object_map(read_maps(pid), open_elf=LiveElfOpener(pid), threads=thread_stack_pointers(pid))
    finally:
        stop.set()
        t.join()
    rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    [part] = omap.name_range(rt, rt + 1)
    assert (part.obj.name, part.obj.kind, part.obj.addr) == ("_PyRuntime", "global", rt)
    try:
        keys = ctypes.addressof(ctypes.c_char.in_dll(ctypes.CDLL("libc.so.6"), "__pthread_keys"))
    except (OSError, ValueError):
        keys = None
    if keys is not None:
        [part] = omap.name_range(keys, keys + 8)
        assert (part.obj.name, part.obj.section, part.obj.addr) == ("__pthread_keys", ".bss", keys)
    stacks = [o for o in omap.objects if o.kind == "thread-stack" and f"tid {t.native_id}" in o.detail]
    if not readable:
        pytest.skip("cannot read the threads' syscall files here")
    assert len(stacks) == 1


def test_parse_syscall() -> None:
    assert parse_syscall("running") is None
    assert parse_syscall("-1 0x7ffd1000 0x401000") == 0x7FFD1000
    assert parse_syscall("0 0x3 0x5649 0x2000 0x1000 0x0 0x0 0x7fffa578e910 0x7fc7fd5162ec") == 0x7FFFA578E910
    assert parse_syscall("garbage here") is None


def test_side_files_and_their_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vmas"
    for content, says in ((b"{}", "not damo's vmas format"), (b'[{"time": 1}]', "no 'procvmas' list"),
                          (b"[[[", "not JSON"),
                          (b'[{"time": 1, "procvmas": [{"pid": 1, "vmas": [{"start": 9, "end": 3, "name": "x"}]}]}]',
                           "is not an address range")):
        bad.write_bytes(content)
        with pytest.raises(InvalidParamsError, match=says):
            read_vmas_file(str(bad))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidParamsError, match="not a regular file"):
        read_maps_file(str(fifo))
    stats = tmp_path / "x.proc_stats"
    fields = "77 (my prog) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 1000 10".split()
    stats.write_text(json.dumps([{"time": 1.0, "proc_stats": [{"fields": fields}, {"fields": None}]}]))
    assert read_proc_stats_file(str(stats)) == {77: 4242}
    maps = tmp_path / "maps"
    maps.write_text(ANON_MAPS)
    vmas, known = read_maps_file(str(maps))
    assert known and len(vmas) == 13
    empty = tmp_path / "empty.vmas"
    empty.write_text("[]")
    assert read_vmas_file(str(empty)) == {}


def _tiny_elf(path: Path, sections: list[tuple[str, int, int, int]], symbols: list[tuple[str, int, int, int]]) -> None:
    """An ELF64 shared object: one PT_LOAD (rw, file 0x2000 bytes at 0, memory 0x4000), *sections* as
    ``(name, sh_type, addr, size)`` (``SHF_ALLOC|SHF_WRITE``, file offset = address) and OBJECT *symbols* as
    ``(name, value, size, section number)`` (1-based into *sections*)."""
    import struct

    names = b"\0" + b"".join(n.encode() + b"\0" for n, *_ in sections) + b".shstrtab\0.strtab\0.symtab\0"
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n, *_ in symbols)
    syms = bytes(24)
    off = 1
    for n, value, size, shndx in symbols:
        syms += struct.pack("<IBBHQQ", off, 0x11, 0, shndx, value, size)  # STB_GLOBAL, STT_OBJECT
        off += len(n) + 1
    body = bytearray(0x2000)
    tables = 0x2000
    blob = names + strtab + syms
    shoff = tables + len(blob)
    shdrs = [bytes(64)]
    pos = 1
    for name, sh_type, addr, size in sections:
        shdrs.append(struct.pack("<IIQQQQIIQQ", pos, sh_type, 3, addr, addr, size, 0, 0, 8, 0))
        pos += len(name) + 1
    n = len(sections)
    shdrs.append(struct.pack("<IIQQQQIIQQ", pos, 3, 0, 0, tables, len(names), 0, 0, 1, 0))
    shdrs.append(struct.pack("<IIQQQQIIQQ", pos + 10, 3, 0, 0, tables + len(names), len(strtab), 0, 0, 1, 0))
    shdrs.append(struct.pack("<IIQQQQIIQQ", pos + 18, 2, 0, 0, tables + len(names) + len(strtab), len(syms),
                             n + 2, 1, 8, 24))
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 3, 62, 1, 0, 64, shoff, 0, 64,
                       56, 1, 64, len(shdrs), n + 1)
    phdr = struct.pack("<IIQQQQQQ", 1, 6, 0, 0, 0, 0x2000, 0x4000, 0x1000)
    body[:64 + 56] = ehdr + phdr
    path.write_bytes(bytes(body) + blob + b"".join(shdrs))


def test_a_hostile_binary_still_names_each_byte_once(tmp_path: Path) -> None:
    lib = tmp_path / "libtiny.so"
    # .data and .weird overlap; "cross" runs from .data into .weird; "inner" overlaps "outer"; "tail" is in .bss
    _tiny_elf(lib, [(".data", 1, 0x1000, 0x800), (".weird", 1, 0x1400, 0x1400), (".bss", 8, 0x2000, 0x2000)],
              [("outer", 0x1100, 0x200, 1), ("inner", 0x1180, 0x10, 1), ("cross", 0x17F0, 0x100, 1),
               ("tail", 0x2800, 0x10, 3), ("alias_a", 0x1400, 0x8, 2), ("alias_b", 0x1400, 0x8, 2)])
    elf = read_elf(str(lib))
    assert {y.name for y in elf.symbols} == {"outer", "inner", "cross", "tail", "alias_a", "alias_b"}
    bias = 0x7F00_0000_0000
    ino = os.stat(lib).st_ino
    maps = (f"{bias:x}-{bias + 0x2000:x} rw-p 00000000 00:00 {ino} {lib}\n"
            f"{bias + 0x2000:x}-{bias + 0x4000:x} rw-p 00000000 00:00 0\n")
    omap = build_object_map(parse_maps(maps), open_elf=PathElfOpener())
    assert omap.mapped_bytes == 0x4000  # every byte once (the pieces never overlap: checked when built)
    names = {o.name: o for o in omap.objects}
    assert "inner" not in names  # nested in "outer": left out
    assert (names["outer"].addr, names["cross"].size) == (bias + 0x1100, 0x100)
    assert names["alias_a"].detail == "(also alias_b)"
    assert (names["tail"].section, names["tail"].addr) == (".bss", bias + 0x2800)
    [weird] = [o for o in omap.objects if o.kind == "section" and o.name == ".weird"]
    assert weird.addr == bias + 0x1800 + 0xF0  # what .data, "cross" and the aliases left of it


def test_fuzzed_binaries_never_break_the_namer(tmp_path: Path) -> None:
    import random

    lib = tmp_path / "libtiny.so"
    _tiny_elf(lib, [(".data", 1, 0x1000, 0x800), (".bss", 8, 0x2000, 0x2000)],
              [("a", 0x1100, 0x200, 1), ("b", 0x2800, 0x10, 2)])
    base = lib.read_bytes()
    rng = random.Random(7)
    maps = parse_maps(f"7f0000000000-7f0000002000 rw-p 00000000 00:00 0 {lib}\n"
                      f"7f0000002000-7f0000004000 rw-p 00000000 00:00 0\n")
    named = 0
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 8)):  # the headers and the tables at the end
            pos = rng.randrange(0, 120) if rng.random() < 0.5 else rng.randrange(0x2000, len(data))
            data[pos] = rng.randrange(256)
        lib.write_bytes(bytes(data))
        omap = build_object_map(maps, open_elf=PathElfOpener())
        assert omap.mapped_bytes == 0x4000
        named += any(o.kind == "global" for o in omap.objects)
    assert named > 30  # many mutants still parse, and are named
