"""Test helper: the mappings the loader makes for an ELF file placed at a load bias, as ``/proc/<pid>/maps``
lines (``fs/binfmt_elf.c``: one mapping per ``PT_LOAD`` segment's file pages, and anonymous pages for the rest of
its ``p_memsz``: ``.bss``)."""

from __future__ import annotations

import os

from damon_bpf.linux.elf import PT_LOAD, read_elf

PAGE = 4096


def _down(x: int) -> int:
    return x - x % PAGE


def _up(x: int) -> int:
    return _down(x + PAGE - 1)


def loader_maps(path: str, bias: int) -> list[str]:
    """``/proc/<pid>/maps`` lines of *path* loaded at *bias* (0 for an ``ET_EXEC`` file)."""
    elf = read_elf(path)
    st = os.stat(path)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    lines = []
    for seg in sorted((s for s in elf.segments if s.p_type == PT_LOAD), key=lambda s: s.vaddr):
        start = bias + _down(seg.vaddr)
        file_end = bias + _up(seg.vaddr + seg.filesz)
        perms = seg.perms + "p"
        lines.append(f"{start:x}-{file_end:x} {perms} {_down(seg.offset):08x} {dev} {st.st_ino}        {path}")
        mem_end = bias + _up(seg.vaddr + seg.memsz)
        if mem_end > file_end:
            lines.append(f"{file_end:x}-{mem_end:x} {perms} 00000000 00:00 0 ")
    return lines


def damo_vmas(lines: list[str]) -> list[dict[str, object]]:
    """The same mappings as damo's ``FILE.vmas`` keeps them: start, end and the last word of the line."""
    out = []
    for line in lines:
        f = line.split()
        s, e = (int(x, 16) for x in f[0].split("-"))
        out.append({"start": s, "end": e, "name": f[-1]})
    return out
