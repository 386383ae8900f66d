"""Reading ELF64 little-endian files: program headers, section headers and data symbols.

The user-space counterpart of what the kernel's ELF loader reads (``load_elf_binary()`` in
``fs/binfmt_elf.c``: the ``PT_LOAD`` program headers decide where each part of a file is mapped) plus the
section headers and symbol tables a debugger reads (``include/uapi/linux/elf.h`` has the structures:
``Elf64_Ehdr``, ``Elf64_Phdr``, ``Elf64_Shdr``, ``Elf64_Sym``). Only the standard library is used.

Everything is read with bounded ``pread`` calls from a regular file: the headers, then the symbol tables and
their string tables, each checked against the file's size and the limits below before it is read, so a
malformed or hostile file costs at most those limits. Any inconsistency (a table past the end of the file, an
entry size that is not the structure's, a string without its NUL) raises :class:`ElfError`, one line naming the
file; nothing is trusted that was not checked.

Symbols kept are the data ones, ``STT_OBJECT`` and ``STT_TLS`` with a size, from ``.symtab`` (present unless
the file was stripped) and ``.dynsym`` (the exported ones, present in every shared library and PIE).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Iterable

from damon_bpf.errors import InvalidParamsError

__all__ = (
    "ElfError",
    "ET_EXEC",
    "ET_DYN",
    "PT_LOAD",
    "PT_TLS",
    "PF_X",
    "PF_W",
    "PF_R",
    "SHF_WRITE",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_TLS",
    "SHT_NOBITS",
    "STT_OBJECT",
    "STT_TLS",
    "MAX_ELF_SYMBOLS",
    "MAX_ELF_TABLE_BYTES",
    "Segment",
    "Section",
    "Symbol",
    "ElfFile",
    "is_elf",
    "read_elf",
)

# include/uapi/linux/elf.h
ET_EXEC = 2
ET_DYN = 3
PT_LOAD = 1
PT_TLS = 7
PF_X, PF_W, PF_R = 1, 2, 4
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_TLS = 0x400
STT_OBJECT = 1
STT_TLS = 6
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF

_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr, 56 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym, 24 bytes

#: the most symbols read from one table (a debug build of a large C++ library has a few million)
MAX_ELF_SYMBOLS = 4_000_000
#: the most bytes read for one table (a symbol table, a string table, the section headers): 256 MiB
MAX_ELF_TABLE_BYTES = 256 << 20
#: the longest symbol or section name kept (C++ names can be long; past this they are cut)
_MAX_NAME = 4096


class ElfError(InvalidParamsError):
    """The file is not an ELF64 little-endian file, or its headers or tables are malformed."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A program header (``Elf64_Phdr``): a part of the file the loader maps (``PT_LOAD``) or describes."""

    p_type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def perms(self) -> str:
        """``r``/``w``/``x`` as ``/proc/<pid>/maps`` prints them, e.g. ``"rw-"``."""
        return ("r" if self.flags & PF_R else "-") + ("w" if self.flags & PF_W else "-") + \
            ("x" if self.flags & PF_X else "-")


@dataclass(frozen=True, slots=True)
class Section:
    """A section header (``Elf64_Shdr``) with its name."""

    index: int
    name: str
    sh_type: int
    flags: int
    addr: int
    offset: int
    size: int

    @property
    def alloc(self) -> bool:
        """Occupies memory at run time (``SHF_ALLOC``)."""
        return bool(self.flags & SHF_ALLOC)

    @property
    def nobits(self) -> bool:
        """Has no bytes in the file (``SHT_NOBITS``: ``.bss``, ``.tbss``)."""
        return self.sh_type == SHT_NOBITS


@dataclass(frozen=True, slots=True)
class Symbol:
    """A data symbol (``Elf64_Sym`` of type ``STT_OBJECT`` or ``STT_TLS``).

    :ivar value: the link-time address (``STT_TLS``: the offset in the TLS block)
    :ivar shndx: the index of its section (0 when unknown)
    :ivar dynamic: found in ``.dynsym`` (exported) rather than ``.symtab``
    """

    name: str
    value: int
    size: int
    sym_type: int
    bind: int
    shndx: int
    dynamic: bool = False

    @property
    def tls(self) -> bool:
        return self.sym_type == STT_TLS


@dataclass
class ElfFile:
    """The headers and data symbols of one ELF64 little-endian file (see the module docstring).

    :ivar path: the file's name in messages
    :ivar e_type: :data:`ET_EXEC` (placed at its link-time addresses) or :data:`ET_DYN` (shared library, PIE:
        placed anywhere, at a load bias)
    :ivar symbols: the data symbols of ``.symtab`` and ``.dynsym``, one per (name, address, size), sorted by address
    :ivar stripped: there was no ``.symtab`` (only the exported symbols are known)
    """

    path: str
    e_type: int
    e_machine: int
    file_size: int
    segments: list[Segment] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    stripped: bool = True

    @property
    def loads(self) -> list[Segment]:
        """The ``PT_LOAD`` segments, by address."""
        return sorted((s for s in self.segments if s.p_type == PT_LOAD), key=lambda s: s.vaddr)

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def is_elf(head: bytes) -> bool:
    """Whether *head* (the first bytes of a file) starts with the ELF magic."""
    return head[:4] == _MAGIC


class _Reader:
    # bounded positional reads of one open file
    def __init__(self, fd: int, path: str, size: int) -> None:
        self.fd = fd
        self.path = path
        self.size = size

    def read(self, offset: int, nr: int, what: str) -> bytes:
        if nr < 0 or offset < 0 or offset + nr > self.size:
            raise ElfError(f"{self.path}: {what} lies outside the file ({nr} bytes at {offset:#x}, file size "
                           f"{self.size})")
        if nr > MAX_ELF_TABLE_BYTES:
            raise ElfError(f"{self.path}: {what} is larger than {MAX_ELF_TABLE_BYTES >> 20} MiB")
        parts: list[bytes] = []
        got = 0
        while got < nr:
            try:
                b = os.pread(self.fd, nr - got, offset + got)
            except OSError as err:
                raise ElfError(f"{self.path}: cannot read {what}: {err.strerror or err}") from err
            if not b:
                raise ElfError(f"{self.path}: {what} is cut short (the file shrank while it was read)")
            parts.append(b)
            got += len(b)
        return b"".join(parts)


def _cstr(table: bytes, offset: int, path: str, what: str) -> str:
    if offset >= len(table):
        raise ElfError(f"{path}: {what} name offset {offset} is past its string table ({len(table)} bytes)")
    end = table.find(b"\0", offset, offset + _MAX_NAME + 1)
    if end < 0:
        end = table.find(b"\0", offset)
        if end < 0:
            raise ElfError(f"{path}: {what} name at {offset} has no terminating NUL")
        end = offset + _MAX_NAME  # cut, as documented
    return table[offset:end].decode("utf-8", "backslashreplace")


def _table(r: _Reader, offset: int, count: int, entsize: int, struct_: struct.Struct, what: str) -> bytes:
    if count == 0:
        return b""
    if entsize != struct_.size:
        raise ElfError(f"{r.path}: {what} entries are {entsize} bytes, not the {struct_.size} of ELF64")
    return r.read(offset, count * entsize, what)


def _parse(r: _Reader) -> ElfFile:
    head = r.read(0, min(r.size, _EHDR.size), "the ELF header")
    if not is_elf(head):
        raise ElfError(f"{r.path}: not an ELF file")
    if len(head) < _EHDR.size:
        raise ElfError(f"{r.path}: the ELF header is cut short ({len(head)} bytes)")
    (ident, e_type, e_machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize,
     shnum, shstrndx) = _EHDR.unpack(head)
    if ident[4] != _ELFCLASS64 or ident[5] != _ELFDATA2LSB:
        raise ElfError(f"{r.path}: not an ELF64 little-endian file (class {ident[4]}, data {ident[5]})")
    elf = ElfFile(r.path, e_type, e_machine, r.size)

    # section headers first: with more than 0xfeff sections (or program headers), the real counts are in
    # section 0 (the gABI's extended numbering)
    raw_sections: list[tuple[int, ...]] = []
    if shoff:
        if shentsize != _SHDR.size:
            raise ElfError(f"{r.path}: section headers are {shentsize} bytes, not the {_SHDR.size} of ELF64")
        first = _SHDR.unpack(r.read(shoff, _SHDR.size, "section header 0"))
        if shnum == 0:
            shnum = first[5]  # sh_size
        if shstrndx == SHN_XINDEX:
            shstrndx = first[6]  # sh_link
        if phnum == PN_XNUM:
            phnum = first[7]  # sh_info
        data = _table(r, shoff, shnum, shentsize, _SHDR, "the section headers")
        raw_sections = [_SHDR.unpack_from(data, i * _SHDR.size) for i in range(shnum)]
    if phoff or phnum:
        data = _table(r, phoff, phnum, phentsize, _PHDR, "the program headers")
        for i in range(phnum):
            p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = \
                _PHDR.unpack_from(data, i * _PHDR.size)
            if p_type == PT_LOAD and p_filesz > p_memsz:
                raise ElfError(f"{r.path}: program header {i}: p_filesz {p_filesz:#x} > p_memsz {p_memsz:#x}")
            elf.segments.append(Segment(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align))

    names = b""
    if raw_sections:
        if not 0 <= shstrndx < len(raw_sections):
            raise ElfError(f"{r.path}: the section name table index {shstrndx} is not a section")
        s = raw_sections[shstrndx]
        names = r.read(s[4], s[5], "the section name table") if s[1] != SHT_NOBITS else b""
    for i, (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, *_rest) in enumerate(raw_sections):
        name = _cstr(names, sh_name, r.path, f"section {i}") if names else ""
        elf.sections.append(Section(i, name, sh_type, sh_flags, sh_addr, sh_offset, sh_size))

    seen: set[tuple[str, int, int]] = set()
    for i, s in enumerate(raw_sections):
        if s[1] not in (SHT_SYMTAB, SHT_DYNSYM):
            continue
        if s[1] == SHT_SYMTAB:
            elf.stripped = False
        elf.symbols.extend(_symbols(r, i, s, raw_sections, seen))
    elf.symbols.sort(key=lambda y: (y.value, -y.size, y.name))
    return elf


def _symbols(r: _Reader, index: int, s: tuple[int, ...], raw_sections: list[tuple[int, ...]],
             seen: set[tuple[str, int, int]]) -> Iterable[Symbol]:
    _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize = s
    what = f"symbol table (section {index})"
    if entsize != _SYM.size:
        raise ElfError(f"{r.path}: {what} entries are {entsize} bytes, not the {_SYM.size} of ELF64")
    count = size // _SYM.size
    if count > MAX_ELF_SYMBOLS:
        raise ElfError(f"{r.path}: {what} has {count} symbols, more than the {MAX_ELF_SYMBOLS} read")
    if not 0 < link < len(raw_sections):
        raise ElfError(f"{r.path}: {what} links to section {link}, which is not a string table")
    strs_hdr = raw_sections[link]
    data = _table(r, offset, count, entsize, _SYM, what)
    strtab = r.read(strs_hdr[4], strs_hdr[5], f"the string table of {what}")
    dynamic = sh_type == SHT_DYNSYM
    out = []
    for st_name, st_info, _other, st_shndx, st_value, st_size in _SYM.iter_unpack(data):
        sym_type = st_info & 0xF
        if sym_type not in (STT_OBJECT, STT_TLS) or st_size == 0 or st_shndx == SHN_UNDEF:
            continue
        name = _cstr(strtab, st_name, r.path, "symbol")
        key = (name, st_value, st_size)
        if not name or key in seen:
            continue
        seen.add(key)
        shndx = st_shndx if st_shndx < SHN_LORESERVE else 0
        out.append(Symbol(name, st_value, st_size, sym_type, st_info >> 4, shndx, dynamic))
    return out


def read_elf(path: str, fd: int | None = None) -> ElfFile:
    """Read the headers and data symbols of an ELF64 little-endian file.

    :param path: the file (opened without blocking on a FIFO; anything but a regular file is refused)
    :param fd: an open descriptor of the file to read instead of opening *path* (which then only names it in
        messages); it stays open
    :raises ElfError: not a regular file, not ELF64 little-endian, or malformed (one line naming the file)
    :raises InvalidParamsError: the file cannot be opened (ElfError is one)
    """
    own = fd is None
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except (OSError, ValueError) as err:
            raise ElfError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError(f"{path}: not a regular file")
        return _parse(_Reader(fd, path, st.st_size))
    finally:
        if own:
            os.close(fd)
