"""The BPF sources as text, without a kernel: the ctypes mirrors of ``damon_bpf.probes.access`` against the structs
of ``bpf/access_agg_types.h``, and the splicing of ``*.bpf.h`` headers (``damon_bpf.probes._bcc``).

The structs are parsed from the header by a small parser (fixed-width integer fields and arrays of them, the only
kinds the header uses; anything else fails the test so that the parser is taught it), laid out with C rules (a
ctypes structure built from the parse: natural alignment, as BPF and x86-64/arm64 lay these types out) and compared
field by field with the mirrors: name, type, offset, size, in order. tests/kernel/test_bpf_layout.py does the same
against the layout clang computes when bcc compiles the programs.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from damon_bpf.errors import ProbeLoadError
from damon_bpf.probes import _bcc
from damon_bpf.probes import access

_BPF = Path(__file__).resolve().parents[2] / "bpf"
_TYPES = _BPF / "access_agg_types.h"
_MAPS = _BPF / "access_agg_maps.bpf.h"
_C_TYPES: dict[str, type[ctypes._SimpleCData]] = {  # type: ignore[type-arg]
    "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
    "s8": ctypes.c_int8, "s16": ctypes.c_int16, "s32": ctypes.c_int32, "s64": ctypes.c_int64,
}
_FIELD = re.compile(r"(?:const\s+)?(\w+)\s+(\w+)\s*(?:\[\s*(\w+)\s*\])?")

Field = tuple[str, str, "str | None"]  # C type, name, array length (a number or a macro), as written


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", " ", text, flags=re.S))


def parse_structs(text: str) -> dict[str, list[Field]]:
    """``{struct name: [(type, name, array length or None), ...]}`` of every ``struct x { ... };`` in *text*."""
    structs: dict[str, list[Field]] = {}
    for m in re.finditer(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", _strip_comments(text), flags=re.S):
        fields: list[Field] = []
        for decl in m.group(2).split(";"):
            decl = decl.strip()
            if not decl:
                continue
            f = _FIELD.fullmatch(decl)
            assert f is not None, f"struct {m.group(1)}: cannot parse field {decl!r}"
            fields.append((f.group(1), f.group(2), f.group(3)))
        structs[m.group(1)] = fields
    return structs


def parse_enum(text: str, name: str) -> list[str]:
    """The enumerators of ``enum name { ... };`` in *text*, in order (implicit values only, as the header has)."""
    m = re.search(rf"\benum\s+{name}\s*\{{(.*?)\}}\s*;", _strip_comments(text), flags=re.S)
    assert m is not None, f"no enum {name}"
    names = [e.strip() for e in m.group(1).split(",") if e.strip()]
    assert all(re.fullmatch(r"\w+", e) for e in names), f"enum {name}: explicit values are not parsed: {names}"
    return names


def c_layout(fields: list[Field], consts: dict[str, int]) -> type[ctypes.Structure]:
    """A ctypes structure with the C layout of *fields*; array lengths that are names come from *consts*."""
    cfields = []
    for ctype, name, dim in fields:
        assert ctype in _C_TYPES, f"field {name}: type {ctype} is not known to the test's parser"
        t: type = _C_TYPES[ctype]
        if dim is not None:
            n = int(dim, 0) if dim[0].isdigit() else consts.get(dim)
            assert n is not None, f"field {name}: array length {dim} is not known to the test"
            t = t * n
        cfields.append((name, t))
    return type("CLayout", (ctypes.Structure,), {"_fields_": cfields})


def describe(struct: type[ctypes.Structure]) -> list[tuple[str, str, int, int]]:
    """``(name, type, offset, size)`` of each field of *struct*, then ``("sizeof", "", 0, size)``."""
    out = []
    for name, t, *_ in struct._fields_:
        if issubclass(t, ctypes.Array):
            kind = f"{ctypes.sizeof(t._type_)}-byte {t._type_.__name__}[{t._length_}]"
        else:
            kind = f"{ctypes.sizeof(t)}-byte {t.__name__}"
        kind = kind.replace("c_ulong", "c_uint64").replace("c_long", "c_int64")  # ctypes aliases on LP64
        cf = getattr(struct, name)
        out.append((name, kind, cf.offset, cf.size))
    out.append(("sizeof", "", 0, ctypes.sizeof(struct)))
    return out


def header_layouts(text: str, bitmap_words: int) -> dict[str, list[tuple[str, str, int, int]]]:
    consts = {"BITMAP_WORDS": bitmap_words, "AGG_NR_STATS": parse_enum(text, "agg_stat").index("AGG_NR_STATS")}
    return {name: describe(c_layout(fields, consts)) for name, fields in parse_structs(text).items()}


@pytest.mark.parametrize("bitmap_words", [1, 2, 64])
def test_ctypes_mirrors_match_the_header(bitmap_words: int) -> None:
    header = header_layouts(_TYPES.read_text(), bitmap_words)
    mirror = {name: describe(s) for name, s in access._agg_structs(bitmap_words).items()}
    assert sorted(mirror) == sorted(header), "a struct of access_agg_types.h without a mirror, or the reverse"
    for name in header:
        assert mirror[name] == header[name], f"struct {name}"


def test_stat_names_follow_the_enum() -> None:
    enum = parse_enum(_TYPES.read_text(), "agg_stat")
    assert enum[-1] == "AGG_NR_STATS"
    assert len(access.STATS) == len(enum) - 1
    assert enum.index("AGG_COUNTED") == access.STATS.index("counted")


_SCRATCH_HEADER = """
struct agg_span {
	u32 off;		/* first slot */
	u32 nr;
	u64 extra;
};
"""


def test_a_field_on_one_side_only_is_caught() -> None:
    # The parser and the comparison see a field added to the header alone.
    text = _TYPES.read_text()
    changed = re.sub(r"struct agg_span \{.*?\};", _SCRATCH_HEADER.strip(), text, flags=re.S)
    assert changed != text
    assert header_layouts(changed, 1)["agg_span"] != describe(access._AggSpan)
    assert header_layouts(text, 1)["agg_span"] == describe(access._AggSpan)


def test_parser_reads_fields_in_order() -> None:
    fields = parse_structs("struct s {\n\tu32 a; /* x; y */\n\tu64 b[N];\t// z\n};\n")
    assert fields == {"s": [("u32", "a", None), ("u64", "b", "N")]}
    assert describe(c_layout(fields["s"], {"N": 3}))[1:] == [("b", "8-byte c_uint64[3]", 8, 24), ("sizeof", "", 0, 32)]


# -- splicing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["pagefault", "perf_sample"])
def test_aggregation_programs_get_the_map_block_once(program: str) -> None:
    source = _BPF / f"{program}.bpf.c"
    own = source.read_text()
    assert '#include "access_agg_maps.bpf.h"' in own
    assert "BPF_F_TABLE" not in own and "BPF_HASH" not in own, "maps are declared in access_agg_maps.bpf.h"
    spliced = _bcc.bpf_source_text(source)
    assert '#include "access_agg_maps.bpf.h"' not in spliced.text
    assert spliced.text.count("BPF_F_TABLE(\"array\", u32, struct agg_counter, agg_counters,") == 1
    assert '#include "access_agg_types.h"' in spliced.text and '#include "access_agg.h"' in spliced.text
    # every line of the text comes from the line origin() names
    files = {p: p.read_text().splitlines() for p in (source, _MAPS)}
    for nr, line in enumerate(spliced.text.splitlines(), 1):
        path, at = spliced.origin(nr)
        assert files[path][at - 1] == line, (nr, path, at)


def test_splice_is_recursive_and_diagnostics_name_the_real_line(tmp_path: Path) -> None:
    (tmp_path / "a.bpf.h").write_text('one\n#include "b.bpf.h"\nthree\n')
    (tmp_path / "b.bpf.h").write_text("two\n")
    (tmp_path / "p.bpf.c").write_text('#include <x.h>\n  #include "a.bpf.h"  /* spliced */\nlast\n')
    s = _bcc.bpf_source_text(tmp_path / "p.bpf.c")
    assert s.text == "#include <x.h>\none\ntwo\nthree\nlast\n"
    assert [s.origin(i) for i in range(1, 6)] == [
        (tmp_path / "p.bpf.c", 1), (tmp_path / "a.bpf.h", 1), (tmp_path / "b.bpf.h", 1),
        (tmp_path / "a.bpf.h", 3), (tmp_path / "p.bpf.c", 3),
    ]
    assert s.locate("/virtual/main.c:3:5: error: x") == f"{tmp_path / 'b.bpf.h'}:1:5: error: x"
    assert s.locate("In file included from /virtual/main.c") == f"In file included from {tmp_path / 'p.bpf.c'}"


def test_splice_refuses_a_header_that_includes_itself(tmp_path: Path) -> None:
    (tmp_path / "a.bpf.h").write_text('#include "a.bpf.h"\n')
    (tmp_path / "p.bpf.c").write_text('#include "a.bpf.h"\n')
    with pytest.raises(ProbeLoadError, match="includes itself"):
        _bcc.bpf_source_text(tmp_path / "p.bpf.c")
