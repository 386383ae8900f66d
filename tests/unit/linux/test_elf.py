"""The ELF reader (``damon_bpf.linux.elf``) on real binaries, checked against binutils' ``readelf``, and on
malformed files (one-line :class:`ElfError`, never another exception)."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.elf import (
    ET_DYN,
    ET_EXEC,
    PT_LOAD,
    STT_OBJECT,
    STT_TLS,
    ElfError,
    ElfFile,
    is_elf,
    read_elf,
)

INTERPRETER = os.path.realpath(sys.executable)


def _libpython() -> str | None:
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    libdir = sysconfig.get_config_var("LIBDIR")
    if not name or not libdir:
        return None
    path = os.path.join(libdir, name)
    return path if os.path.exists(path) and path.split(".so")[0] != path else None


LIBPYTHON = _libpython()
LIBC = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                         "/lib64/libc.so.6") if os.path.exists(p)), None)
BINARIES = [p for p in (INTERPRETER, LIBPYTHON, LIBC) if p]


def _readelf(*args: str) -> str:
    if shutil.which("readelf") is None:
        pytest.skip("binutils' readelf is not installed (the oracle of these tests)")
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("path", BINARIES)
def test_sections_and_segments_match_readelf(path: str) -> None:
    elf = read_elf(path)
    out = _readelf("-S", path)
    rows = re.findall(r"^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+([0-9a-f]{16})\s+([0-9a-f]+)\s+([0-9a-f]+)", out, re.M)
    want = {int(i): (name, int(addr, 16), int(off, 16), int(size, 16)) for i, name, _, addr, off, size in rows
            if int(i)}
    got = {s.index: (s.name, s.addr, s.offset, s.size) for s in elf.sections if s.index}
    assert got == want
    loads = re.findall(r"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)",
                       _readelf("-l", path), re.M)
    assert [(s.offset, s.vaddr, s.filesz, s.memsz) for s in elf.segments if s.p_type == PT_LOAD] == \
        [tuple(int(x, 16) for x in row) for row in loads]
    assert elf.e_type in (ET_EXEC, ET_DYN)


@pytest.mark.parametrize("path", BINARIES)
def test_data_symbols_match_readelf(path: str) -> None:
    elf = read_elf(path)
    want = set()
    for table in ("--dyn-syms", "-s"):
        for line in _readelf(table, path).splitlines():
            f = line.split()
            if len(f) >= 8 and f[3] in ("OBJECT", "TLS") and f[6] != "UND" and int(f[2], 0) > 0:
                want.add((f[7].split("@")[0], int(f[1], 16), int(f[2], 0), f[3]))
    got = {(y.name, y.value, y.size, "TLS" if y.sym_type == STT_TLS else "OBJECT") for y in elf.symbols}
    assert got == want
    assert want, "the binary has data symbols"
    assert all(y.sym_type in (STT_OBJECT, STT_TLS) for y in elf.symbols)


def test_interpreter_runtime_symbol_and_file() -> None:
    elf = read_elf(INTERPRETER)
    # the interpreter's state: _PyRuntime is a large global of every CPython 3.7+
    rt = [y for y in elf.symbols if y.name == "_PyRuntime"]
    if not rt and LIBPYTHON:
        rt = [y for y in read_elf(LIBPYTHON).symbols if y.name == "_PyRuntime"]
    assert rt and rt[0].size > 10_000
    assert elf.file_size == os.path.getsize(INTERPRETER)
    assert is_elf(Path(INTERPRETER).read_bytes()[:4])


def test_not_elf_and_not_regular(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_text("hello\n")
    with pytest.raises(ElfError, match="not an ELF file"):
        read_elf(str(text))
    with pytest.raises(ElfError, match="not a regular file"):
        read_elf(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ElfError, match="not a regular file"):
        read_elf(str(fifo))  # never blocks on the FIFO
    with pytest.raises(InvalidParamsError, match="cannot read"):
        read_elf(str(tmp_path / "missing"))
    elf32 = bytearray(Path(INTERPRETER).read_bytes()[:64])
    elf32[4] = 1
    (tmp_path / "e32").write_bytes(bytes(elf32))
    with pytest.raises(ElfError, match="not an ELF64 little-endian"):
        read_elf(str(tmp_path / "e32"))


def _small_elf() -> bytes:
    # the smallest binary at hand with every table: a shared library from the interpreter's lib-dynload
    import _ctypes

    libdir = Path(getattr(_ctypes, "__file__", "") or "/nonexistent").parent
    cands = sorted(libdir.glob("*.so"), key=lambda p: p.stat().st_size) if libdir.is_dir() else []
    if not cands:
        pytest.skip("no extension module to fuzz")
    return cands[0].read_bytes()


def test_fuzzed_files_fail_with_one_line(tmp_path: Path) -> None:
    base = _small_elf()
    rng = random.Random(19)
    path = tmp_path / "fuzz.so"
    errors = ok = 0
    for i in range(400):
        data = bytearray(base)
        if i % 4 == 0:
            data = data[: rng.randrange(0, len(data))]  # truncated
        else:
            for _ in range(rng.randrange(1, 16)):
                # mostly the headers and tables, where the offsets and counts are
                pos = rng.randrange(0, 64) if rng.random() < 0.4 else rng.randrange(0, len(data))
                data[pos] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            elf = read_elf(str(path))
        except ElfError as err:
            assert "\n" not in str(err) and str(path) in str(err)
            errors += 1
        else:
            assert isinstance(elf, ElfFile)
            ok += 1
    assert errors > 50 and ok > 50  # both outcomes happened: the fuzzing reached past the header checks


def test_huge_counts_are_refused_not_read(tmp_path: Path) -> None:
    data = bytearray(_small_elf())
    # e_shnum = 0 with e_shoff set: the count is section 0's sh_size; make it enormous
    shoff = int.from_bytes(data[0x28:0x30], "little")
    data[0x3C:0x3E] = (0).to_bytes(2, "little")
    data[shoff + 32:shoff + 40] = (1 << 40).to_bytes(8, "little")
    path = tmp_path / "big.so"
    path.write_bytes(bytes(data))
    with pytest.raises(ElfError, match="outside the file|larger than"):
        read_elf(str(path))
