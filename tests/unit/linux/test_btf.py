"""The BTF reader (``damon_bpf.linux.btf``): synthetic blobs built here, then the running kernel's own BTF."""

from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from damon_bpf.linux import btf as btf_mod
from damon_bpf.linux.btf import Btf, vmlinux_btf
from damon_bpf.errors import DamonBpfError, NotSupportedError

VMLINUX = "/sys/kernel/btf/vmlinux"

# enum btf_kind
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)


# -- a tiny BTF encoder ----------------------------------------------------------------------------------------

@dataclass
class BtfBuilder:
    """Builds a BTF blob type by type; each ``add_*`` returns the new type's id (ids start at 1)."""

    order: str = "<"
    strings: bytearray = field(default_factory=lambda: bytearray(b"\0"))
    types: bytearray = field(default_factory=bytearray)
    next_id: int = 1

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def u32s(self, *values: int) -> bytes:
        return struct.pack(f"{self.order}{len(values)}I", *values)

    def add(self, kind: int, name: str = "", size_or_type: int = 0, vlen: int = 0, kind_flag: bool = False,
            extra: bytes = b"") -> int:
        info = (int(kind_flag) << 31) | (kind << 24) | vlen
        self.types += self.u32s(self.name(name), info, size_or_type) + extra
        self.next_id += 1
        return self.next_id - 1

    def add_int(self, name: str, size_bytes: int, nr_bits: int | None = None, offset_bits: int = 0,
                signed: bool = False) -> int:
        bits = size_bytes * 8 if nr_bits is None else nr_bits
        encoding = (int(signed) << 24) | (offset_bits << 16) | bits
        return self.add(INT, name, size_bytes, extra=self.u32s(encoding))

    def add_composite(self, name: str, size_bytes: int, members: list[tuple[str, int, int, int]],
                      kind_flag: bool = False, union: bool = False) -> int:
        """*members*: ``(name, type id, bit offset, bitfield bits)``; bitfield bits need *kind_flag*."""
        extra = b""
        for member_name, type_id, offset_bits, bitfield_bits in members:
            offset = (bitfield_bits << 24) | offset_bits if kind_flag else offset_bits
            extra += self.u32s(self.name(member_name), type_id, offset)
        return self.add(UNION if union else STRUCT, name, size_bytes, len(members), kind_flag, extra)

    def add_array(self, elem_type: int, index_type: int, nelems: int) -> int:
        return self.add(ARRAY, extra=self.u32s(elem_type, index_type, nelems))

    def build(self, magic: int = 0xEB9F, version: int = 1, hdr_len: int = 24) -> bytes:
        header = struct.pack(f"{self.order}HBBIIIII", magic, version, 0, hdr_len, 0, len(self.types),
                             len(self.types), len(self.strings))
        header += b"\0" * (hdr_len - len(header))
        return header + bytes(self.types) + bytes(self.strings)


def basic_builder(order: str = "<") -> tuple[BtfBuilder, int, int, int]:
    """A builder holding ``int`` (4 bytes), ``long`` (8) and ``char`` (1); returns it and their ids."""
    b = BtfBuilder(order=order)
    int_id = b.add_int("int", 4, signed=True)
    long_id = b.add_int("long", 8, signed=True)
    char_id = b.add_int("char", 1)
    return b, int_id, long_id, char_id


# -- plain structs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_plain_struct_offsets_and_sizes(order: str) -> None:
    b, int_id, long_id, char_id = basic_builder(order)
    ptr_id = b.add(PTR, size_or_type=char_id)
    b.add_composite("point", 24, [("x", int_id, 0, 0), ("y", long_id, 64, 0), ("name", ptr_id, 128, 0)])
    t = Btf(b.build())
    assert t.type_count == 5
    assert t.struct_size("point") == 24
    assert t.struct_size("struct point") == 24
    assert [t.member_offset("point", m) for m in ("x", "y", "name")] == [0, 8, 16]
    assert [t.member_size("point", m) for m in ("x", "y", "name")] == [4, 8, 8]


def test_pointer_size_parameter() -> None:
    b, _int_id, _long_id, char_id = basic_builder()
    ptr_id = b.add(PTR, size_or_type=char_id)
    b.add_composite("s", 8, [("p", ptr_id, 0, 0), ("q", ptr_id, 32, 0)])
    t = Btf(b.build(), pointer_size_bytes=4)
    assert t.member_size("s", "p") == 4
    assert t.member_offset("s", "q") == 4


def test_union_and_typedef_of_struct_are_found_by_name() -> None:
    b, int_id, long_id, _char_id = basic_builder()
    union_id = b.add_composite("either", 8, [("i", int_id, 0, 0), ("l", long_id, 0, 0)], union=True)
    anon_id = b.add_composite("", 4, [("counter", int_id, 0, 0)])
    b.add(TYPEDEF, "atomic_t", anon_id)
    b.add(TYPEDEF, "either_t", union_id)
    t = Btf(b.build())
    assert t.struct_size("either") == t.struct_size("union either") == 8
    assert t.member_offset("either", "l") == 0
    assert t.struct_size("atomic_t") == 4
    assert t.member_offset("atomic_t", "counter") == 0
    assert t.member_size("either_t", "l") == 8
    with pytest.raises(NotSupportedError):
        t.struct_size("struct either")  # a union, not a struct


# -- anonymous members ----------------------------------------------------------------------------------------

def test_nested_anonymous_struct_and_union_members() -> None:
    b, int_id, long_id, _char_id = basic_builder()
    # struct inner { int p; union { int q; long r; }; };  (size 16)
    inner_union = b.add_composite("", 8, [("q", int_id, 0, 0), ("r", long_id, 0, 0)], union=True)
    inner = b.add_composite("inner", 16, [("p", int_id, 0, 0), ("", inner_union, 64, 0)])
    # struct mm { long first; struct { int c; union { long u; struct { int v; int w; }; }; }; struct inner nest; }
    deepest = b.add_composite("", 8, [("v", int_id, 0, 0), ("w", int_id, 32, 0)])
    mid_union = b.add_composite("", 8, [("u", long_id, 0, 0), ("", deepest, 0, 0)], union=True)
    anon = b.add_composite("", 16, [("c", int_id, 0, 0), ("", mid_union, 64, 0)])
    const_anon = b.add(CONST, size_or_type=anon)  # a qualified anonymous member is searched too
    b.add_composite("mm", 48, [("first", long_id, 0, 0), ("", const_anon, 64, 0), ("nest", inner, 256, 0)])
    t = Btf(b.build())
    assert t.member_offset("mm", "first") == 0
    assert t.member_offset("mm", "c") == 8
    assert t.member_offset("mm", "u") == 16
    assert t.member_offset("mm", "v") == 16
    assert t.member_offset("mm", "w") == 20
    assert t.member_size("mm", "w") == 4
    assert t.member_offset("mm", "nest") == 32
    assert t.member_offset("mm", "nest.p") == 32
    assert t.member_offset("mm", "nest.r") == 40  # a dotted path also looks through anonymous members
    assert t.member_size("mm", "nest") == 16
    assert t.member_size("mm", "nest.r") == 8
    with pytest.raises(NotSupportedError, match=r"BTF has no member zz in struct mm\.nest$"):
        t.member_offset("mm", "nest.zz")
    with pytest.raises(NotSupportedError, match=r"BTF member mm\.nest\.q is not a struct or union: it has no member x"):
        t.member_offset("mm", "nest.q.x")  # q is an int, but the path wants a member of it
    with pytest.raises(NotSupportedError, match="not a struct or union"):
        t.member_offset("mm", "first.x")


def test_direct_member_wins_over_anonymous_one() -> None:
    b, int_id, long_id, _char_id = basic_builder()
    anon = b.add_composite("", 8, [("dup", long_id, 0, 0)])
    b.add_composite("s", 16, [("", anon, 0, 0), ("dup", int_id, 64, 0)])
    t = Btf(b.build())
    assert t.member_offset("s", "dup") == 8


# -- bitfields --------------------------------------------------------------------------------------------------

def test_kind_flag_bitfield_offsets() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    uint_id = b.add_int("unsigned int", 4)
    # A large struct so that a bit offset needs more than 16 of the 24 offset bits.
    b.add_composite("flags", 16384, [
        ("a", uint_id, 0, 3),
        ("b", uint_id, 3, 5),
        ("byte", uint_id, 8, 8),  # a bitfield that happens to fill whole byte 1
        ("plain", int_id, 32, 0),  # not a bitfield (bitfield_size 0)
        ("far", uint_id, 8 * 8192, 16),
        ("far_odd", uint_id, 8 * 8192 + 19, 7),
    ], kind_flag=True)
    t = Btf(b.build())
    assert t.member_offset("flags", "plain") == 4
    assert t.member_size("flags", "plain") == 4
    assert t.member_offset("flags", "a") == 0
    assert t.member_offset("flags", "byte") == 1
    assert t.member_size("flags", "byte") == 1
    assert t.member_offset("flags", "far") == 8192
    assert t.member_size("flags", "far") == 2
    with pytest.raises(NotSupportedError, match="bitfield .* not on a byte boundary"):
        t.member_offset("flags", "b")
    with pytest.raises(NotSupportedError, match="bitfield"):
        t.member_offset("flags", "far_odd")
    with pytest.raises(NotSupportedError, match="bitfield of 3 bits"):
        t.member_size("flags", "a")


def test_int_encoded_bitfield_without_kind_flag() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    bits3 = b.add_int("unsigned int", 4, nr_bits=3, offset_bits=0)
    bits5_at_3 = b.add_int("unsigned int", 4, nr_bits=5, offset_bits=3)
    b.add_composite("old", 8, [("a", bits3, 0, 0), ("b", bits5_at_3, 0, 0), ("c", int_id, 32, 0)])
    t = Btf(b.build())
    assert t.member_offset("old", "a") == 0
    assert t.member_offset("old", "c") == 4
    with pytest.raises(NotSupportedError, match="bitfield"):
        t.member_offset("old", "b")
    with pytest.raises(NotSupportedError, match="bitfield"):
        t.member_size("old", "a")


# -- sizes through chains and arrays --------------------------------------------------------------------------

def test_member_size_through_typedef_and_qualifier_chains() -> None:
    b, int_id, long_id, char_id = basic_builder()
    u64 = b.add(TYPEDEF, "u64", long_id)
    const_u64 = b.add(CONST, size_or_type=u64)
    volatile_const_u64 = b.add(VOLATILE, size_or_type=const_u64)
    my_u64 = b.add(TYPEDEF, "my_u64", volatile_const_u64)
    restrict_ptr = b.add(RESTRICT, size_or_type=b.add(PTR, size_or_type=char_id))
    tagged = b.add(TYPE_TAG, "user", size_or_type=b.add(PTR, size_or_type=int_id))
    enum_id = b.add(ENUM, "colour", 4, vlen=2, extra=b.u32s(b.name("RED"), 0, b.name("BLUE"), 1))
    float_id = b.add(FLOAT, "double", 8)
    b.add_composite("s", 48, [
        ("v", my_u64, 0, 0),
        ("p", restrict_ptr, 64, 0),
        ("up", tagged, 128, 0),
        ("e", b.add(CONST, size_or_type=enum_id), 192, 0),
        ("f", float_id, 256, 0),
        ("c", char_id, 320, 0),
    ])
    t = Btf(b.build())
    assert t.member_size("s", "v") == 8
    assert t.member_size("s", "p") == 8
    assert t.member_size("s", "up") == 8
    assert t.member_size("s", "e") == 4
    assert t.member_size("s", "f") == 8
    assert t.member_size("s", "c") == 1
    assert t.member_offset("s", "c") == 40


def test_arrays() -> None:
    b, int_id, long_id, char_id = basic_builder()
    elem = b.add_composite("pair", 16, [("k", long_id, 0, 0), ("v", long_id, 64, 0)])
    comm = b.add_array(char_id, int_id, 16)
    pairs = b.add_array(elem, int_id, 3)
    grid = b.add_array(b.add_array(b.add(TYPEDEF, "s32", int_id), int_id, 4), int_id, 5)  # s32 grid[5][4]
    empty = b.add_array(long_id, int_id, 0)  # a flexible array member
    b.add_composite("t", 16 + 48 + 80, [
        ("comm", comm, 0, 0), ("pairs", pairs, 128, 0), ("grid", grid, 512, 0), ("tail", empty, 1152, 0),
    ])
    t = Btf(b.build())
    assert t.member_size("t", "comm") == 16
    assert t.member_size("t", "pairs") == 48
    assert t.member_size("t", "grid") == 80
    assert t.member_size("t", "tail") == 0
    assert t.member_offset("t", "pairs") == 16
    assert t.member_offset("t", "grid") == 64
    assert t.member_offset("t", "tail") == 144


# -- lookup rules and errors ----------------------------------------------------------------------------------

def test_unknown_struct_and_member_errors() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    b.add_composite("mm_struct", 8, [("mm_count", int_id, 0, 0)])
    b.add(FWD, "only_declared")
    t = Btf(b.build())
    with pytest.raises(NotSupportedError, match="BTF has no member pgd in struct mm_struct"):
        t.member_offset("mm_struct", "pgd")
    with pytest.raises(NotSupportedError, match="BTF has no member pgd in struct mm_struct"):
        t.member_size("mm_struct", "pgd")
    with pytest.raises(NotSupportedError, match="BTF has no struct nosuch"):
        t.struct_size("nosuch")
    with pytest.raises(NotSupportedError, match="BTF has no struct only_declared"):
        t.struct_size("only_declared")  # a FWD is not a definition
    with pytest.raises(NotSupportedError, match="BTF has no struct nosuch"):
        t.member_offset("nosuch", "x")
    with pytest.raises(NotSupportedError, match="bad BTF member path"):
        t.member_offset("mm_struct", "mm_count.")
    assert issubclass(NotSupportedError, DamonBpfError)


def test_first_non_empty_definition_wins() -> None:
    b, int_id, long_id, _char_id = basic_builder()
    b.add_composite("dup", 0, [])  # an empty definition first
    b.add_composite("dup", 8, [("x", long_id, 0, 0)])
    b.add_composite("dup", 4, [("y", int_id, 0, 0)])
    b.add_composite("empty", 0, [])
    t = Btf(b.build())
    assert t.struct_size("dup") == 8
    assert t.member_offset("dup", "x") == 0
    with pytest.raises(NotSupportedError, match="no member y"):
        t.member_offset("dup", "y")
    assert t.struct_size("empty") == 0  # only an empty definition: that is the answer


def test_every_kind_has_the_right_record_length() -> None:
    """A struct after one record of each kind is still found: every kind's record length is right."""
    b, int_id, long_id, char_id = basic_builder()
    b.add(PTR, size_or_type=int_id)
    b.add_array(int_id, int_id, 2)
    b.add_composite("before", 4, [("x", int_id, 0, 0)])
    b.add_composite("", 8, [("x", int_id, 0, 0), ("y", int_id, 0, 0)], union=True)
    b.add(ENUM, "e", 4, vlen=3, extra=b.u32s(b.name("A"), 0, b.name("B"), 1, b.name("C"), 2))
    b.add(FWD, "fwd")
    b.add(TYPEDEF, "td", int_id)
    b.add(VOLATILE, size_or_type=int_id)
    b.add(CONST, size_or_type=int_id)
    b.add(RESTRICT, size_or_type=int_id)
    proto = b.add(FUNC_PROTO, size_or_type=int_id, vlen=2, extra=b.u32s(b.name("a"), int_id, b.name("b"), long_id))
    b.add(FUNC, "f", proto, vlen=1)
    var = b.add(VAR, "v", int_id, extra=b.u32s(1))
    b.add(DATASEC, ".data", 8, vlen=2, extra=b.u32s(var, 0, 4, var, 4, 4))
    b.add(FLOAT, "float", 4)
    b.add(DECL_TAG, "tag", var, extra=b.u32s(0xFFFFFFFF))
    b.add(TYPE_TAG, "user", int_id)
    b.add(ENUM64, "e64", 8, vlen=2, extra=b.u32s(b.name("X"), 1, 0, b.name("Y"), 0, 1))
    b.add_composite("after", 16, [("a", char_id, 0, 0), ("b", long_id, 64, 0)])
    t = Btf(b.build())
    assert t.type_count == 22
    assert t.struct_size("before") == 4
    assert t.struct_size("after") == 16
    assert t.member_offset("after", "b") == 8


def test_header_length_is_honoured() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    b.add_composite("s", 8, [("x", int_id, 32, 0)])
    t = Btf(b.build(hdr_len=32))
    assert t.member_offset("s", "x") == 4


def test_bad_magic() -> None:
    b, _int_id, _long_id, _char_id = basic_builder()
    with pytest.raises(NotSupportedError, match="bad magic 0x1234"):
        Btf(b.build(magic=0x1234))
    with pytest.raises(NotSupportedError, match="magic"):
        Btf(b"\x7fELF" + b"\0" * 60)


def test_bad_version() -> None:
    b, _int_id, _long_id, _char_id = basic_builder()
    with pytest.raises(NotSupportedError, match="version 2"):
        Btf(b.build(version=2))


def test_truncated_blob() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    b.add_composite("s", 8, [("x", int_id, 32, 0)])
    blob = b.build()
    for cut_bytes in (0, 10, 23, 24, 40, len(blob) - 1):
        with pytest.raises(NotSupportedError, match="truncated"):
            Btf(blob[:cut_bytes])


def test_malformed_type_section() -> None:
    b, int_id, _long_id, _char_id = basic_builder()
    b.add(20, "bogus")  # no such kind
    with pytest.raises(NotSupportedError, match="unknown kind 20"):
        Btf(b.build())
    # A struct that claims more members than its record holds runs past the type section.
    b, int_id, _long_id, _char_id = basic_builder()
    b.add(STRUCT, "s", 8, vlen=2, extra=b.u32s(b.name("x"), int_id, 0))
    with pytest.raises(NotSupportedError, match="malformed"):
        Btf(b.build())
    # A member that points at a type id that does not exist.
    b, int_id, _long_id, _char_id = basic_builder()
    b.add_composite("s", 8, [("x", 99, 0, 0)])
    t = Btf(b.build())
    with pytest.raises(NotSupportedError, match="type id 99"):
        t.member_offset("s", "x")
    with pytest.raises(NotSupportedError, match="type id 99"):
        t.member_size("s", "x")


def test_typedef_loop_is_an_error_not_a_hang() -> None:
    b, _int_id, _long_id, _char_id = basic_builder()
    first = b.next_id
    b.add(TYPEDEF, "a", first + 1)
    b.add(TYPEDEF, "b", first)
    b.add_composite("s", 8, [("x", first, 0, 0)])
    t = Btf(b.build())
    with pytest.raises(NotSupportedError, match="loop"):
        t.member_size("s", "x")


def test_load_errors(tmp_path: Path) -> None:
    missing = os.path.join(str(tmp_path), "nope")
    with pytest.raises(NotSupportedError, match="cannot read BTF"):
        Btf.load(missing)
    junk = os.path.join(str(tmp_path), "junk")
    with open(junk, "wb") as f:
        f.write(b"\0" * 100)
    with pytest.raises(NotSupportedError, match="junk: not a BTF blob"):
        Btf.load(junk)
    b, int_id, _long_id, _char_id = basic_builder()
    b.add_composite("s", 8, [("x", int_id, 32, 0)])
    good = os.path.join(str(tmp_path), "good")
    with open(good, "wb") as f:
        f.write(b.build())
    assert Btf.load(good).member_offset("s", "x") == 4


# -- the running kernel ---------------------------------------------------------------------------------------

REAL_MEMBERS = [
    ("task_struct", "mm"),
    ("task_struct", "files"),
    ("mm_struct", "pgd"),
    ("mm_struct", "mm_users"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("fdtable", "max_fds"),
    ("file", "private_data"),
    ("list_head", "prev"),
]


def _vmlinux_skip_reason() -> str | None:
    if not os.access(VMLINUX, os.R_OK):
        return f"{VMLINUX} is not readable (kernel without CONFIG_DEBUG_INFO_BTF, or not Linux)"
    if platform.machine() != "x86_64":
        return f"the expected offsets are x86-64 facts; this machine is {platform.machine()}"
    return None


_RAW_TYPE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_RAW_MEMBER = re.compile(r"^\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)")
_RAW_FIELD = re.compile(r"(\w+)=(\S+)")


def _bpftool_offsets(members: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Byte offsets of *members* worked out independently from ``bpftool btf dump ... format raw``."""
    raw = subprocess.run(
        ["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    types: dict[int, tuple[str, str, dict[str, str], list[tuple[str, int, int]]]] = {}
    current: list[tuple[str, int, int]] | None = None
    for line in raw.splitlines():
        m = _RAW_TYPE.match(line)
        if m:
            kind, fields = m.group(2), dict(_RAW_FIELD.findall(m.group(4)))
            current = [] if kind in ("STRUCT", "UNION") else None
            types[int(m.group(1))] = (kind, m.group(3), fields, current if current is not None else [])
            continue
        mm = _RAW_MEMBER.match(line)
        if mm and current is not None:
            current.append((mm.group(1), int(mm.group(2)), int(mm.group(3))))

    def strip(type_id: int) -> int:
        while type_id and types[type_id][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            type_id = int(types[type_id][2]["type_id"])
        return type_id

    def find(type_id: int, name: str) -> int | None:
        for member_name, _member_type, bits in types[type_id][3]:
            if member_name == name:
                return bits
        for member_name, member_type, bits in types[type_id][3]:
            inner = strip(member_type)
            if member_name == "(anon)" and inner and types[inner][0] in ("STRUCT", "UNION"):
                found = find(inner, name)
                if found is not None:
                    return bits + found
        return None

    result = {}
    for struct_name, member in members:
        ids = [i for i, t in sorted(types.items()) if t[0] == "STRUCT" and t[1] == struct_name]
        sized = [i for i in ids if int(types[i][2]["size"]) > 0] or ids
        bits = find(sized[0], member)
        assert bits is not None and bits % 8 == 0, (struct_name, member)
        result[(struct_name, member)] = bits // 8
    return result


needs_vmlinux = pytest.mark.skipif(_vmlinux_skip_reason() is not None, reason=_vmlinux_skip_reason() or "")


@pytest.fixture(scope="module")
def real_offsets() -> dict[tuple[str, str], int]:
    t = Btf.load(VMLINUX)
    return {(s, m): t.member_offset(s, m) for s, m in REAL_MEMBERS}


@needs_vmlinux
def test_running_kernel_btf(capsys: pytest.CaptureFixture[str], real_offsets: dict[tuple[str, str], int]) -> None:
    start_s = time.perf_counter()
    t = Btf.load(VMLINUX)
    parse_s = time.perf_counter() - start_s
    offsets = {(s, m): t.member_offset(s, m) for s, m in REAL_MEMBERS}
    with capsys.disabled():
        print(f"\nBTF: parsed {VMLINUX} ({os.path.getsize(VMLINUX)} bytes, {t.type_count} types) "
              f"in {parse_s * 1000:.1f} ms")
        print("BTF offsets: " + ", ".join(f"{s}.{m}={off}" for (s, m), off in offsets.items()))

    assert offsets == real_offsets
    assert t.struct_size("list_head") == 16
    assert t.member_offset("list_head", "prev") == 8
    assert t.member_size("task_struct", "mm") == 8
    mm_size_bytes = t.struct_size("mm_struct")
    assert 0 < t.member_offset("mm_struct", "pgd") < mm_size_bytes
    assert 0 < t.member_offset("mm_struct", "mm_users") < mm_size_bytes
    assert t.member_size("mm_struct", "pgd") == 8
    assert t.member_size("mm_struct", "mm_users") == 4  # atomic_t
    assert t.member_size("file", "private_data") == 8
    assert t.member_size("files_struct", "fdt") == 8
    assert t.member_size("fdtable", "fd") == 8
    assert t.member_size("fdtable", "max_fds") == 4
    for (s, _m), off in offsets.items():
        assert 0 <= off < t.struct_size(s)


@needs_vmlinux
def test_vmlinux_btf_is_cached(real_offsets: dict[tuple[str, str], int]) -> None:
    vmlinux_btf.cache_clear()
    assert vmlinux_btf() is vmlinux_btf()
    assert vmlinux_btf().member_offset("task_struct", "mm") == real_offsets[("task_struct", "mm")]
    assert btf_mod.VMLINUX_BTF_PATH == VMLINUX


@needs_vmlinux
@pytest.mark.skipif(shutil.which("bpftool") is None,
                    reason="bpftool is not on PATH: offsets not cross-checked against its raw dump")
def test_running_kernel_offsets_match_bpftool(real_offsets: dict[tuple[str, str], int]) -> None:
    assert _bpftool_offsets(REAL_MEMBERS) == real_offsets
