"""A small reader of the kernel's BTF type information: struct sizes and member offsets.

The kernel describes its own types in ``/sys/kernel/btf/vmlinux``, in the format of
``Documentation/bpf/btf.rst`` and ``include/uapi/linux/btf.h``; libbpf's ``btf__parse`` and
``btf__find_by_name_kind`` (``tools/lib/bpf/btf.c``) are the C counterpart of this module. It answers the
questions BPF C code needs answered to read kernel structs without kernel headers — how big is
``struct mm_struct``, at which byte offset is its ``pgd`` — so the programs can be compiled with ``-D`` offset
flags instead.

The type section is walked once, recording where each type's record starts; members are decoded only when a
struct is asked about. Only STRUCT, UNION and TYPEDEF names are indexed. Members of anonymous structs and
unions are found as if they were members of the enclosing struct, as in C (``mm_struct.pgd`` lives in an
anonymous struct in recent kernels). Split (module) BTF, whose type ids continue those of vmlinux, is not
supported.
"""

from __future__ import annotations

import functools
import struct

from damon_bpf.errors import NotSupportedError

__all__ = ("Btf", "vmlinux_btf", "VMLINUX_BTF_PATH", "BTF_MAGIC")

VMLINUX_BTF_PATH = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F
_BTF_VERSION = 1
_HEADER_MIN_BYTES = 24  # struct btf_header up to and including str_len
_TYPE_BYTES = 12  # struct btf_type: name_off, info, size/type

# enum btf_kind (include/uapi/linux/btf.h)
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Bytes that follow struct btf_type for each kind: (fixed bytes, bytes per vlen entry).
_EXTRA_BYTES: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),  # struct btf_array
    KIND_STRUCT: (0, 12),  # struct btf_member
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),  # struct btf_enum
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),  # struct btf_param
    KIND_VAR: (4, 0),  # struct btf_var
    KIND_DATASEC: (0, 12),  # struct btf_var_secinfo
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),  # struct btf_decl_tag
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),  # struct btf_enum64
}
# Kinds whose size/type field is a type id that adds nothing to the size.
_ALIAS_KINDS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG, KIND_VAR})
# Kinds whose size/type field is the size in bytes.
_SIZED_KINDS = frozenset({KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT, KIND_DATASEC})
_COMPOSITE_KINDS = frozenset({KIND_STRUCT, KIND_UNION})
_MAX_CHAIN_DEPTH = 64  # longer typedef/const/array chains or deeper nesting mean a loop in a malformed blob


class _Member:
    """One decoded member: name, type id and position in bits (bitfield_bits 0: not a bitfield)."""

    __slots__ = ("name", "type_id", "offset_bits", "bitfield_bits")

    def __init__(self, name: str, type_id: int, offset_bits: int, bitfield_bits: int) -> None:
        self.name = name
        self.type_id = type_id
        self.offset_bits = offset_bits
        self.bitfield_bits = bitfield_bits


class Btf:
    """The types of one BTF blob (the contents of ``/sys/kernel/btf/vmlinux``).

    :param data: the whole blob, header included; its byte order is taken from the magic
    :param pointer_size_bytes: the size of a PTR type (8 on 64-bit kernels)
    :raises NotSupportedError: the blob is not BTF, is of another version, or is truncated or malformed
    """

    def __init__(self, data: bytes, pointer_size_bytes: int = 8) -> None:
        self._data = bytes(data)
        self.pointer_size_bytes = pointer_size_bytes
        self._parse_header()
        self._type_offsets: list[int] = [0]  # index = type id; id 0 is void and has no record
        self._struct_ids: dict[str, list[int]] = {}
        self._typedef_ids: dict[str, list[int]] = {}
        self._members: dict[int, list[_Member]] = {}
        self._walk_types()

    @classmethod
    def load(cls, path: str = VMLINUX_BTF_PATH, pointer_size_bytes: int = 8) -> Btf:
        """Read and parse the BTF blob at *path*.

        :raises NotSupportedError: the file is missing, unreadable or not valid BTF
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise NotSupportedError(f"cannot read BTF from {path}: {err.strerror or err}") from err
        try:
            return cls(data, pointer_size_bytes)
        except NotSupportedError as err:
            raise NotSupportedError(f"{path}: {err}") from err

    # -- parsing -------------------------------------------------------------------------------------------

    def _parse_header(self) -> None:
        data = self._data
        if len(data) < _HEADER_MIN_BYTES:
            raise NotSupportedError(f"BTF blob truncated: {len(data)} bytes, shorter than its header")
        (magic,) = struct.unpack_from("<H", data, 0)
        if magic == BTF_MAGIC:
            self._order = "<"
        elif magic == 0x9FEB:
            self._order = ">"
        else:
            raise NotSupportedError(f"not a BTF blob: bad magic {magic:#06x}")
        version, _flags, hdr_len_bytes, type_off, type_len, str_off, str_len = struct.unpack_from(
            self._order + "BBIIIII", data, 2
        )
        if version != _BTF_VERSION:
            raise NotSupportedError(f"unsupported BTF version {version}")
        if hdr_len_bytes < _HEADER_MIN_BYTES or hdr_len_bytes > len(data):
            raise NotSupportedError(f"malformed BTF header: hdr_len {hdr_len_bytes}, blob {len(data)} bytes")
        self._type_start = hdr_len_bytes + type_off
        self._type_end = self._type_start + type_len
        self._str_start = hdr_len_bytes + str_off
        self._str_end = self._str_start + str_len
        if self._type_end > len(data) or self._str_end > len(data):
            raise NotSupportedError(
                f"BTF blob truncated: sections end at {max(self._type_end, self._str_end)} bytes, "
                f"blob has {len(data)}"
            )
        if type_len % 4:
            raise NotSupportedError(f"malformed BTF: type section length {type_len} is not a multiple of 4")
        if str_len == 0 or data[self._str_start] != 0 or data[self._str_end - 1] != 0:
            raise NotSupportedError("malformed BTF: string section does not start and end with NUL")
        self._type_rec = struct.Struct(self._order + "III")

    def _walk_types(self) -> None:
        data = self._data
        unpack_from = self._type_rec.unpack_from
        offsets = self._type_offsets
        append = offsets.append
        extra_bytes = _EXTRA_BYTES
        struct_ids = self._struct_ids
        typedef_ids = self._typedef_ids
        pos = self._type_start
        end = self._type_end
        while pos < end:
            if pos + _TYPE_BYTES > end:
                raise NotSupportedError(f"malformed BTF: type {len(offsets)} is cut off by the section end")
            name_off, info, _size_or_type = unpack_from(data, pos)
            kind = (info >> 24) & 0x1F
            try:
                fixed_bytes, per_vlen_bytes = extra_bytes[kind]
            except KeyError:
                raise NotSupportedError(f"malformed BTF: type {len(offsets)} has unknown kind {kind}") from None
            append(pos)
            if name_off and (kind == KIND_STRUCT or kind == KIND_UNION or kind == KIND_TYPEDEF):
                index = typedef_ids if kind == KIND_TYPEDEF else struct_ids
                index.setdefault(self._name(name_off), []).append(len(offsets) - 1)
            pos += _TYPE_BYTES + fixed_bytes + (info & 0xFFFF) * per_vlen_bytes
        if pos != end:
            raise NotSupportedError(f"malformed BTF: the last type runs {pos - end} bytes past the type section")

    def _name(self, name_off: int) -> str:
        start = self._str_start + name_off
        if name_off >= self._str_end - self._str_start:
            raise NotSupportedError(f"malformed BTF: name offset {name_off} is outside the string section")
        return self._data[start : self._data.index(b"\0", start)].decode("utf-8", "replace")

    # -- type access ---------------------------------------------------------------------------------------

    @property
    def type_count(self) -> int:
        """How many types the blob has (ids 1 to ``type_count``)."""
        return len(self._type_offsets) - 1

    def _type(self, type_id: int) -> tuple[int, int, int, int, int]:
        """``(kind, vlen, kind_flag, size_or_type, record offset)`` of *type_id*."""
        if not 0 < type_id < len(self._type_offsets):
            raise NotSupportedError(f"malformed BTF: reference to type id {type_id} of {self.type_count}")
        pos = self._type_offsets[type_id]
        _name_off, info, size_or_type = self._type_rec.unpack_from(self._data, pos)
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_or_type, pos

    def _members_of(self, type_id: int) -> list[_Member]:
        cached = self._members.get(type_id)
        if cached is not None:
            return cached
        _kind, vlen, kind_flag, _size, pos = self._type(type_id)
        unpack_from = self._type_rec.unpack_from  # struct btf_member is also three u32
        members = []
        for i in range(vlen):
            name_off, member_type, offset = unpack_from(self._data, pos + _TYPE_BYTES + 12 * i)
            if kind_flag:
                offset_bits, bitfield_bits = offset & 0xFFFFFF, offset >> 24
            else:
                offset_bits, bitfield_bits = offset, 0
            members.append(_Member(self._name(name_off) if name_off else "", member_type, offset_bits, bitfield_bits))
        self._members[type_id] = members
        return members

    def _strip(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag links to the type that carries the size."""
        for _ in range(_MAX_CHAIN_DEPTH):
            if type_id == 0:
                return 0
            kind, _vlen, _flag, size_or_type, _pos = self._type(type_id)
            if kind not in _ALIAS_KINDS:
                return type_id
            type_id = size_or_type
        raise NotSupportedError(f"malformed BTF: type chain through id {type_id} is too long or a loop")

    def _size_of(self, type_id: int, depth: int = 0) -> int:
        if depth > _MAX_CHAIN_DEPTH:
            raise NotSupportedError(f"malformed BTF: array nesting through id {type_id} is too deep or a loop")
        type_id = self._strip(type_id)
        if type_id == 0:
            raise NotSupportedError("BTF type void has no size")
        kind, _vlen, _flag, size_or_type, pos = self._type(type_id)
        if kind in _SIZED_KINDS:
            return size_or_type
        if kind == KIND_PTR:
            return self.pointer_size_bytes
        if kind == KIND_ARRAY:
            elem_type, _index_type, nelems = self._type_rec.unpack_from(self._data, pos + _TYPE_BYTES)
            return int(nelems) * self._size_of(elem_type, depth + 1)
        raise NotSupportedError(f"BTF type {type_id} (kind {kind}) has no size")

    def _int_bits(self, type_id: int) -> tuple[int, int] | None:
        """``(bit offset, bit count)`` of an INT type that is narrower than its size (old-style bitfields)."""
        kind, _vlen, _flag, size_bytes, pos = self._type(type_id)
        if kind != KIND_INT:
            return None
        (encoding,) = struct.unpack_from(self._order + "I", self._data, pos + _TYPE_BYTES)
        offset_bits, nr_bits = (encoding >> 16) & 0xFF, encoding & 0xFF
        if offset_bits == 0 and nr_bits == 8 * size_bytes:
            return None
        return offset_bits, nr_bits

    def _find_struct(self, name: str) -> int:
        """The type id of struct (or union) *name*; ``"struct x"``/``"union x"`` pin the kind, a typedef of one
        counts too. The first definition with a non-zero size wins; else the first definition."""
        wanted = _COMPOSITE_KINDS
        if name.startswith("struct "):
            name, wanted = name[len("struct ") :], frozenset({KIND_STRUCT})
        elif name.startswith("union "):
            name, wanted = name[len("union ") :], frozenset({KIND_UNION})
        candidates = [tid for tid in self._struct_ids.get(name, ()) if self._type(tid)[0] in wanted]
        # Prefer STRUCT over UNION for a bare name, then non-zero size over empty.
        candidates.sort(key=lambda tid: (self._type(tid)[0] != KIND_STRUCT, self._type(tid)[3] == 0))
        if candidates:
            return candidates[0]
        if wanted is _COMPOSITE_KINDS:
            for tid in self._typedef_ids.get(name, ()):
                target = self._strip(tid)
                if target and self._type(target)[0] in _COMPOSITE_KINDS:
                    return target
        raise NotSupportedError(f"BTF has no struct {name}")

    def _find_member(self, type_id: int, name: str, depth: int = 0) -> tuple[int, _Member] | None:
        """``(offset in bits from the start of *type_id*, member)`` of member *name*, searching anonymous struct
        and union members when it is not a direct member."""
        if depth > _MAX_CHAIN_DEPTH:
            raise NotSupportedError(f"malformed BTF: anonymous members nest too deep under type {type_id}")
        members = self._members_of(type_id)
        for member in members:
            if member.name == name:
                return member.offset_bits, member
        for member in members:
            if member.name:
                continue
            inner = self._strip(member.type_id)
            if inner and self._type(inner)[0] in _COMPOSITE_KINDS:
                found = self._find_member(inner, name, depth + 1)
                if found is not None:
                    return member.offset_bits + found[0], found[1]
        return None

    def _resolve(self, struct_name: str, member_path: str) -> tuple[int, int, int]:
        """``(offset in bits, member type id, bitfield bits)`` of *member_path* in *struct_name*."""
        type_id = self._find_struct(struct_name)
        parts = member_path.split(".")
        if not member_path or not all(parts):
            raise NotSupportedError(f"bad BTF member path {member_path!r} in struct {struct_name}")
        offset_bits = 0
        member: _Member | None = None
        where = struct_name
        for i, part in enumerate(parts):
            if i:
                assert member is not None
                type_id = self._strip(member.type_id)
                if not type_id or self._type(type_id)[0] not in _COMPOSITE_KINDS:
                    raise NotSupportedError(f"BTF member {where} is not a struct or union: it has no member {part}")
            found = self._find_member(type_id, part)
            if found is None:
                raise NotSupportedError(f"BTF has no member {part} in struct {where}")
            member_offset_bits, member = found
            offset_bits += member_offset_bits
            where = f"{where}.{part}"
        assert member is not None
        bitfield_bits = member.bitfield_bits
        if not bitfield_bits:
            sized_id = self._strip(member.type_id)
            int_bits = self._int_bits(sized_id) if sized_id else None
            if int_bits is not None:
                offset_bits += int_bits[0]
                bitfield_bits = int_bits[1]
        return offset_bits, member.type_id, bitfield_bits

    # -- public queries ------------------------------------------------------------------------------------

    def struct_size(self, name: str) -> int:
        """``sizeof(struct name)`` in bytes (a union, or a typedef of either, also answers).

        :raises NotSupportedError: the BTF has no such struct
        """
        return self._type(self._find_struct(name))[3]

    def member_offset(self, struct: str, member_path: str) -> int:
        """``offsetof(struct, member_path)`` in bytes.

        Members of anonymous structs and unions are found as direct members; a dotted path (``"a.b"``) steps
        into the named struct or union member ``a``.

        :raises NotSupportedError: no such struct or member, or the member is a bitfield that does not start on
            a byte boundary
        """
        offset_bits, _type_id, bitfield_bits = self._resolve(struct, member_path)
        if offset_bits % 8:
            what = f"a bitfield ({bitfield_bits} bits)" if bitfield_bits else "a member"
            raise NotSupportedError(
                f"BTF member {member_path} of struct {struct} is {what} at bit {offset_bits}, not on a byte boundary"
            )
        return offset_bits // 8

    def member_size(self, struct: str, member_path: str) -> int:
        """``sizeof`` member *member_path* of *struct* in bytes, through typedef/const/volatile chains; a pointer
        is ``pointer_size_bytes``, an array its element count times its element size.

        :raises NotSupportedError: no such struct or member, the member has no size (void, a function), or it is a
            bitfield that is not a whole number of bytes
        """
        _offset_bits, type_id, bitfield_bits = self._resolve(struct, member_path)
        if bitfield_bits:
            if bitfield_bits % 8:
                raise NotSupportedError(
                    f"BTF member {member_path} of struct {struct} is a bitfield of {bitfield_bits} bits"
                )
            return bitfield_bits // 8
        return self._size_of(type_id)


@functools.lru_cache(maxsize=1)
def vmlinux_btf() -> Btf:
    """The running kernel's BTF (``/sys/kernel/btf/vmlinux``), parsed once per process.

    :raises NotSupportedError: the kernel exposes no BTF (``CONFIG_DEBUG_INFO_BTF`` off) or it cannot be read
    """
    return Btf.load(VMLINUX_BTF_PATH)
