"""Limits on what damon-bpf reads, and the bounded readers that enforce them.

Every input a user names (a record file, a ``--schemes`` file or text, a ``--synthetic-pattern`` file, a perf
recording) is read through these helpers, so that no input can make a command run forever or take all memory:

- only **regular files** are read (:func:`open_regular`): a FIFO, a character device (``/dev/zero``), a socket
  or a directory is refused at once with a one-line reason; the check opens with ``O_NONBLOCK`` and looks at
  the open file (``fstat``), so opening a FIFO never blocks and the file checked is the file read;
- a file is read up to a **size** cap (:func:`read_regular`);
- compressed data (zlib, gzip) is inflated piece by piece up to a **decompressed size** cap and a
  **compression ratio** cap (:func:`inflate`): a decompression bomb stops at the cap, not at the end of memory;
- JSON is checked for **nesting depth** before it is parsed (:class:`JsonDepth`, :func:`json_loads`);
- counts (DAMOS schemes, filters, quota goals) are capped where they are parsed
  (:mod:`damon_bpf.config.schemes`).

A limit hit raises :class:`~damon_bpf.errors.InvalidParamsError` (exit code 2) with one line naming the input and
the limit. Each limit is a constant here, in one place; docs/records.md and docs/schemes.md list them.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import zlib
from typing import Any

import numpy as np

from damon_bpf.errors import InvalidParamsError

__all__ = (
    "MAX_INPUT_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_COMPRESSION_RATIO",
    "RATIO_FREE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_SCHEMES",
    "MAX_SCHEME_FILTERS",
    "MAX_QUOTA_GOALS",
    "MAX_PERF_SCRIPT_BYTES",
    "MAX_MAPPINGS",
    "JsonDepth",
    "check_json_depth",
    "describe_size",
    "file_kind",
    "inflate",
    "json_loads",
    "open_regular",
    "read_regular",
    "require_regular",
)

#: the largest record file (or any other data file) read: 1 GiB as stored, compressed or not
MAX_INPUT_BYTES = 1 << 30
#: the largest configuration input: a ``--schemes`` file or text, a ``--synthetic-pattern`` file (16 MiB)
MAX_CONFIG_BYTES = 16 << 20
#: the most bytes compressed data may inflate to (1 GiB of JSON; parsing it takes several times that in memory)
MAX_DECOMPRESSED_BYTES = 1 << 30
#: past :data:`RATIO_FREE_BYTES`, inflated data may be at most this many times the compressed data: damon-bpf's
#: and damo's records compress 10 to 40 times; zlib's most is about 1030 (a decompression bomb)
MAX_COMPRESSION_RATIO = 200
#: inflated data up to this size is never refused for its ratio (64 MiB)
RATIO_FREE_BYTES = 64 << 20
#: the deepest JSON nesting accepted (records need 7 levels, damo's scheme files about 10)
MAX_JSON_DEPTH = 64
#: the most DAMOS schemes a session takes (``--schemes`` and ``--damos_action`` together)
MAX_SCHEMES = 1000
#: the most filters one DAMOS scheme takes
MAX_SCHEME_FILTERS = 100
#: the most quota goals one DAMOS scheme takes
MAX_QUOTA_GOALS = 100
#: the most ``perf script`` text read from one perf recording (1 GiB, some ten million samples)
MAX_PERF_SCRIPT_BYTES = 1 << 30
#: the most mappings of one process read from a maps file or damo's ``FILE.vmas`` (the kernel's default
#: vm.max_map_count is 65530)
MAX_MAPPINGS = 1 << 20

_CHUNK = 1 << 20


def describe_size(nr_bytes: int) -> str:
    """``1 GiB``, ``16 MiB``, ``512 KiB``, ``100 B``: the limits as the docs say them."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nr_bytes >= size and nr_bytes % size == 0:
            return f"{nr_bytes // size} {unit}"
    return f"{nr_bytes} B"


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words (``a FIFO``, ``a character device``, ...)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _cannot_read(path: str, err: BaseException) -> InvalidParamsError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return InvalidParamsError(f"cannot read {path}: {reason}")


def open_regular(path: str) -> int:
    """Open *path* for reading, refusing anything but a regular file; returns a blocking file descriptor.

    The file is opened with ``O_NONBLOCK`` (opening a FIFO with no writer then returns at once instead of
    waiting for one) and checked with ``fstat`` on the descriptor itself.

    :raises InvalidParamsError: missing, unreadable, or not a regular file (the message says what it is)
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise _cannot_read(path, err) from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidParamsError(f"cannot read {path}: {file_kind(st.st_mode)}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def require_regular(path: str) -> None:
    """Check that *path* is a regular file that can be opened for reading (for inputs another program reads,
    e.g. ``perf``).

    :raises InvalidParamsError: see :func:`open_regular`
    """
    os.close(open_regular(path))


def read_regular(path: str, limit: int = MAX_INPUT_BYTES, what: str = "input") -> bytes:
    """The whole content of the regular file *path*, at most *limit* bytes.

    :param what: the input's name in the limit's message (``record file``, ``--schemes file``)
    :raises InvalidParamsError: see :func:`open_regular`; larger than *limit*; a read error
    """
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > limit:
            raise InvalidParamsError(f"{path}: larger than the {describe_size(limit)} a {what} may have")
        parts: list[bytes] = []
        nr = 0
        while True:
            b = os.read(fd, min(_CHUNK, limit + 1 - nr))
            if not b:
                break
            parts.append(b)
            nr += len(b)
            if nr > limit:  # it grew while we read it
                raise InvalidParamsError(f"{path}: larger than the {describe_size(limit)} a {what} may have")
    except OSError as err:
        raise _cannot_read(path, err) from err
    finally:
        os.close(fd)
    return b"".join(parts)


# -- JSON depth ----------------------------------------------------------------------------------------------


class JsonDepth:
    """Tracks the nesting depth of JSON text fed to it in pieces and refuses a depth past *limit* as soon as it
    is seen (before the text is parsed, and while a compressed file is still being inflated).

    Strings are skipped (their brackets do not count); escapes are followed across pieces. Text that is not
    valid JSON may be counted loosely: the parser refuses it afterwards anyway.
    """

    def __init__(self, what: str, limit: int = MAX_JSON_DEPTH) -> None:
        self.what = what
        self.limit = limit
        self.depth = 0
        self._in_string = False
        self._tail = b""  # a run of backslashes at the end of the last piece: its pairing goes on in the next

    def feed(self, piece: bytes) -> None:
        """Scan the next piece of the text.

        :raises InvalidParamsError: nested deeper than the limit
        """
        data = self._tail + piece
        body = data.rstrip(b"\\")
        self._tail = data[len(body):]
        # escapes: a backslash pair is one character, then a backslash-quote is not a delimiter; bytes.replace
        # goes left to right as a JSON parser does
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
        for start in range(0, len(body), _CHUNK):
            self._scan(np.frombuffer(body, np.uint8, count=min(_CHUNK, len(body) - start), offset=start))

    def _scan(self, a: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        quotes = a == 0x22
        inside = (np.cumsum(quotes, dtype=np.int64) + int(self._in_string)) & 1
        outside = inside == 0
        delta = (((a == 0x5B) | (a == 0x7B)) & outside).astype(np.int32) \
            - (((a == 0x5D) | (a == 0x7D)) & outside).astype(np.int32)
        if not delta.any():
            self._in_string ^= bool(int(quotes.sum()) & 1)
            return
        depth = self.depth + np.cumsum(delta, dtype=np.int64)
        if int(depth.max()) > self.limit:
            raise InvalidParamsError(f"{self.what}: JSON nested deeper than {self.limit} levels")
        self.depth = int(depth[-1])
        self._in_string ^= bool(int(quotes.sum()) & 1)


def check_json_depth(text: str | bytes, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON *text* nested deeper than *limit* (see :class:`JsonDepth`).

    :raises InvalidParamsError: too deep
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    JsonDepth(what, limit).feed(data)


def json_loads(text: str | bytes, what: str, *, depth_checked: bool = False) -> Any:
    """``json.loads`` with the depth limit (:data:`MAX_JSON_DEPTH`) and every failure as one line.

    :param what: the input's name at the start of the messages (a path, ``JSON text``)
    :param depth_checked: the depth was already checked (by :func:`inflate`)
    :raises InvalidParamsError: too deep, not UTF-8, or not JSON
    """
    if not depth_checked:
        check_json_depth(text, what)
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidParamsError(f"{what}: JSON nested too deeply") from None
    except json.JSONDecodeError as err:
        raise InvalidParamsError(f"{what}: not JSON ({err.msg}, line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError:
        raise InvalidParamsError(f"{what}: not UTF-8 text") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise InvalidParamsError(f"{what}: not JSON ({err})") from None


# -- decompression -------------------------------------------------------------------------------------------


def inflate(data: bytes, what: str, *, gzip: bool = False, json_text: bool = False,
            limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Decompress a zlib stream (or gzip members, with *gzip*), refusing output past *limit* bytes or, past
    :data:`RATIO_FREE_BYTES`, more than :data:`MAX_COMPRESSION_RATIO` times the input.

    :param json_text: the content must be JSON: the first byte that is not white space must open an array or an
        object, and the depth is checked as the data comes (:class:`JsonDepth`)
    :raises InvalidParamsError: corrupt, truncated, a limit hit, or (with *json_text*) not JSON
    """
    kind = "gzip" if gzip else "zlib"
    cap = min(limit, max(RATIO_FREE_BYTES, MAX_COMPRESSION_RATIO * len(data)))
    depth = JsonDepth(what) if json_text else None
    started = not json_text
    out: list[bytes] = []
    nr = 0
    rest = data
    while True:
        d = zlib.decompressobj(31 if gzip else 15)
        pending = rest
        while True:
            try:
                piece = d.decompress(pending, _CHUNK)
            except zlib.error as err:
                raise InvalidParamsError(f"{what}: corrupt {kind} data ({err})") from None
            pending = d.unconsumed_tail
            if piece:
                nr += len(piece)
                if nr > cap:
                    if cap < limit:
                        raise InvalidParamsError(
                            f"{what}: the {kind} data inflates more than {MAX_COMPRESSION_RATIO} times (past "
                            f"{describe_size(RATIO_FREE_BYTES)}): a decompression bomb?")
                    raise InvalidParamsError(f"{what}: the {kind} data inflates past {describe_size(limit)}")
                if not started:
                    head = piece.lstrip(b" \t\r\n")
                    if head:
                        if head[:1] not in (b"[", b"{"):
                            raise InvalidParamsError(f"{what}: the {kind} data is not JSON")
                        started = True
                if depth is not None:
                    depth.feed(piece)
                out.append(piece)
            if d.eof or (not piece and not pending):
                break
        if not d.eof:
            raise InvalidParamsError(f"{what}: corrupt {kind} data (truncated)")
        rest = d.unused_data
        if not (gzip and rest.startswith(b"\x1f\x8b")):  # another gzip member follows
            break
    return b"".join(out)
