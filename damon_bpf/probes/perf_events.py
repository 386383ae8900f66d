"""Perf events that deliver a data address to ``bpf/perf_sample.bpf.c``: parsing, detection, attach and detach.

The perf-event side of the ``perf`` access source, after perf's own event parser (``parse-events.c``,
``pmu.c``) and ``perf mem record``'s event choice (``mem-events.c``).

**Syntax.** A comma-separated list of events (commas inside ``pmu/.../`` belong to that event): software page
faults (``page-faults``, exact, no PMU needed), Intel PEBS ``mem-loads``/``mem-stores`` (``ldlat=N``), ``mem``
(what ``perf mem record`` would use here), ``ibs_op``, ``arm_spe``, ``PMU/TERMS/MODS``, ``rHEX`` and
``TYPE:CONFIG``, with the modifiers ``p``/``pp``/``ppp``, ``P``, ``u`` and ``k``.

**Opening.** Every event is opened per CPU and system-wide (``pid=-1``); the BPF program keeps only samples of
the target tgids (``agg_targets``), which catches every thread of a target, including threads created later.

See docs/ops.md, section "Perf events with data addresses", for the full syntax and its perf counterparts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    NotSupportedError,
    PermissionDeniedError,
    ProbeAttachError,
)
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import (
    PERF_COUNT_SW_PAGE_FAULTS,
    PERF_COUNT_SW_PAGE_FAULTS_MAJ,
    PERF_COUNT_SW_PAGE_FAULTS_MIN,
    PERF_SAMPLE_ADDR,
    PERF_SAMPLE_IP,
    PERF_SAMPLE_TID,
    PERF_TYPE_BREAKPOINT,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    errname,
)
from damon_bpf.linux.sysctl import read_sysctl
from damon_bpf.linux.sysfs import format_list, parse_list, place_pmu_format
from damon_bpf.probes import _bcc

__all__ = (
    "DEFAULT_IBS_PERIOD",
    "DEFAULT_PEBS_PERIOD",
    "DEFAULT_RAW_PERIOD",
    "DEFAULT_SOFTWARE_PERIOD",
    "FN_READ",
    "FN_WRITE",
    "KINDS",
    "PERF_MEM_LDLAT",
    "SAMPLE_TYPE",
    "AttachedEvents",
    "EventSpec",
    "attach",
    "default_events",
    "detach",
    "detect",
    "hardware_sampling_status",
    "parse_event",
)

logger = logging.getLogger(__name__)

# include/uapi/linux/perf_event.h

#: ``sample_type`` of every event: ``PERF_SAMPLE_ADDR`` makes PEBS/IBS fill ``ctx->addr`` (the software page-fault
#: event fills it anyway); IP and TID are cheap and keep the samples meaningful to a perf reader. No DATA_SRC:
#: with it, Sapphire Rapids wants a ``mem-loads-aux`` group leader (ENODATA otherwise).
SAMPLE_TYPE = PERF_SAMPLE_ADDR | PERF_SAMPLE_IP | PERF_SAMPLE_TID

#: BPF programs of ``bpf/perf_sample.bpf.c``.
FN_READ = "on_sample_read"
FN_WRITE = "on_sample_write"

#: Event kinds (:attr:`EventSpec.kind`).
KINDS = ("software", "pebs", "ibs", "spe", "raw")

# Default periods are primes so that sampling does not lock onto loop strides.
#: Software page faults: every fault.
DEFAULT_SOFTWARE_PERIOD = 1
#: Intel PEBS mem-loads/mem-stores: one sample per 10007 qualifying loads/stores.
DEFAULT_PEBS_PERIOD = 10007
#: AMD IBS op: the prime 100003 rounded down to a multiple of 16 (IBS period mode ignores the low 4 bits and
#: rejects them: ``perf_ibs_init()`` in arch/x86/events/amd/ibs.c), i.e. 100000.
DEFAULT_IBS_PERIOD = 100003 & ~0xF
#: Raw events, ARM SPE.
DEFAULT_RAW_PERIOD = 10007
#: perf mem's default load-latency threshold (``perf_mem_events__loads_ldlat``, tools/perf/util/mem-events.c).
PERF_MEM_LDLAT = 30

_IBS_MIN_PERIOD = 0x10  # perf_ibs_op.min_period, arch/x86/events/amd/ibs.c
_IBS_MAXCNT_MASK = 0xFFFF  # IbsOpMaxCnt in config bits 0-15: not together with sample_period (-EINVAL)
_U64 = (1 << 64) - 1

_SOFTWARE_EVENTS = {
    "page-faults": PERF_COUNT_SW_PAGE_FAULTS,
    "faults": PERF_COUNT_SW_PAGE_FAULTS,
    "minor-faults": PERF_COUNT_SW_PAGE_FAULTS_MIN,
    "major-faults": PERF_COUNT_SW_PAGE_FAULTS_MAJ,
}
_CORE_PMUS = ("cpu", "cpu_core", "cpu_atom")  # cpu_core/cpu_atom on hybrid Intel
_CONFIG_WORDS = ("config", "config1", "config2")
_SUPPORTED = (
    "page-faults, faults, minor-faults, major-faults, mem-loads, mem-stores, mem, ibs_op, arm_spe, "
    "PMU/TERMS/[MODS], rHEX, TYPE:CONFIG"
)
_SPE_REASON = (
    "ARM SPE writes its samples to an AUX buffer that perf decodes afterwards; a BPF perf_event program never "
    "sees a single SPE sample (use perf record -e arm_spe// and parse perf script instead)"
)
_FALLBACK = "falling back to software page faults, which only see first touches and refaults, not every access"

_RE_PMU_FORM = re.compile(r"(?P<pmu>[A-Za-z0-9_.-]+)/(?P<terms>[^/]*)/:?(?P<mods>[A-Za-z]*)")
_RE_RAW = re.compile(r"r(?P<config>[0-9a-fA-F]+)(?::(?P<mods>[A-Za-z]*))?")
_RE_NUMERIC = re.compile(r"(?P<type>[0-9]+):(?P<config>0[xX][0-9a-fA-F]+|[0-9]+)(?::(?P<mods>[A-Za-z]*))?")
_RE_NAMED = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?::(?P<mods>[A-Za-z]*))?")
_RE_TERM = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?:=(?P<value>[^=]*))?")


@dataclass(frozen=True)
class EventSpec:
    """One perf event to sample data addresses with, resolved against this machine's sysfs.

    :param name: the event as the user wrote it (``"mem-loads"``, ``"cpu/mem-loads,ldlat=50/P"``, ``"mem"``).
    :param type: ``perf_event_attr.type``: ``PERF_TYPE_*`` or a dynamic PMU type (``<pmu>/type`` in sysfs).
    :param config: ``perf_event_attr.config``.
    :param config1: ``perf_event_attr.config1`` (Intel ``ldlat`` = config1:0-15).
    :param precise_ip: ``perf_event_attr.precise_ip``; with :attr:`precise_max`, the first level tried.
    :param sample_period: one sample every this many events; never a frequency (the density estimator needs it).
    :param is_write: stores (attach :data:`FN_WRITE`); False for loads and for IBS op and page faults.
    :param kind: one of :data:`KINDS`.
    :param sampled: each event stands for about ``sample_period`` accesses; False for exact events (period 1).
    :param exclude_kernel: ``perf_event_attr.exclude_kernel`` (True by default for PMU events).
    :param config2: ``perf_event_attr.config2`` (IBS ``swfilt`` = config2:0).
    :param exclude_user: ``perf_event_attr.exclude_user`` (modifier ``k``).
    :param precise_max: modifier ``P``: try ``precise_ip`` and lower levels down to 1 until the PMU accepts one.
    :param pmu: the sysfs PMU name (``"software"``, ``"cpu"``, ``"cpu_core"``, ``"ibs_op"``...).
    :param cpus: the CPUs the PMU covers (hybrid core PMUs); None for every online CPU.
    :param perf_event: the equivalent ``perf record -e`` argument.
    """

    name: str
    type: int
    config: int
    config1: int
    precise_ip: int
    sample_period: int
    is_write: bool
    kind: str
    sampled: bool
    exclude_kernel: bool
    config2: int = 0
    exclude_user: bool = False
    precise_max: bool = False
    pmu: str = ""
    cpus: tuple[int, ...] | None = None
    perf_event: str = ""

    @property
    def fn_name(self) -> str:
        """The program of ``bpf/perf_sample.bpf.c`` to attach: :data:`FN_WRITE` for stores, else :data:`FN_READ`."""
        return FN_WRITE if self.is_write else FN_READ

    def describe(self) -> str:
        """One line for logs and ``--help`` output, e.g. ``"mem-loads: Intel PEBS loads cpu/mem-loads,ldlat=30/P
        (type 4, config 0x1cd, config1 0x1e, precise_ip 3..1), 1 sample per 10007 events, user only"``."""
        what = {
            "software": "software",
            "pebs": "Intel PEBS",
            "ibs": "AMD IBS op",
            "spe": "ARM SPE",
            "raw": "raw",
        }.get(self.kind, self.kind)
        access = "stores" if self.is_write else ("loads" if self.kind == "pebs" else "")
        head = " ".join(p for p in (what, access, self.perf_event) if p)
        attr = [f"type {self.type}", f"config {self.config:#x}"]
        if self.config1:
            attr.append(f"config1 {self.config1:#x}")
        if self.config2:
            attr.append(f"config2 {self.config2:#x}")
        if self.precise_max and self.precise_ip > 1:
            attr.append(f"precise_ip {self.precise_ip}..1")
        elif self.precise_ip:
            attr.append(f"precise_ip {self.precise_ip}")
        parts = [f"{self.name}: {head} ({', '.join(attr)})"]
        if self.sampled:
            parts.append(f"1 sample per {self.sample_period} events")
        else:
            parts.append("every event (exact)")
        if self.exclude_kernel and not self.exclude_user:
            parts.append("user only")
        elif self.exclude_user and not self.exclude_kernel:
            parts.append("kernel only")
        if self.cpus is not None:
            parts.append(f"CPUs {format_list(self.cpus)}")
        return ", ".join(parts)


@dataclass
class AttachedEvents:
    """The perf events :func:`attach` opened for one :class:`EventSpec`; pass it to :func:`detach`.

    :param spec: the event.
    :param fn_name: the program attached (:data:`FN_READ` or :data:`FN_WRITE`).
    :param fds: ``{cpu: perf event fd}``.
    :param precise_ip: the ``precise_ip`` the PMU accepted (lower than the spec's with modifier ``P``).
    :param pid: ``-1`` (system-wide per CPU) or the thread followed.
    """

    spec: EventSpec
    fn_name: str
    fds: dict[int, int]
    precise_ip: int
    pid: int = -1
    # private: set by detach(), which is a no-op afterwards (fd numbers are reused once closed).
    _detached: bool = field(default=False, repr=False)

    @property
    def cpus(self) -> tuple[int, ...]:
        """The CPUs with an open event."""
        return tuple(self.fds)

    @property
    def detached(self) -> bool:
        """Whether :func:`detach` closed the events."""
        return self._detached


# ---------------------------------------------------------------------------------------------------------------
# sysfs: /sys/bus/event_source/devices/<pmu>/{type,cpus,events/*,format/*,caps/*}
# ---------------------------------------------------------------------------------------------------------------


class _Pmus:
    # Read-only view of the perf event sources under one sysfs root.

    def __init__(self, sysfs_root: str | os.PathLike[str]) -> None:
        self.devices = Path(sysfs_root, "bus", "event_source", "devices")

    def _read(self, *parts: str) -> str | None:
        try:
            return self.devices.joinpath(*parts).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def has(self, pmu: str) -> bool:
        return (self.devices / pmu / "type").is_file()

    def type(self, pmu: str) -> int:
        text = self._read(pmu, "type")
        try:
            return int(text or "", 0)
        except ValueError:
            raise NotSupportedError(f"{self.devices / pmu / 'type'} is unreadable or not a number") from None

    def names(self) -> list[str]:
        if not self.devices.is_dir():
            return []
        return sorted(p.name for p in self.devices.iterdir() if (p / "type").is_file())

    def core(self) -> list[str]:
        return [p for p in _CORE_PMUS if self.has(p)]

    def spe(self) -> list[str]:
        return [p for p in self.names() if p.startswith("arm_spe")]

    def by_type(self, pmu_type: int) -> str | None:
        for name in self.names():
            with contextlib.suppress(NotSupportedError):
                if self.type(name) == pmu_type:
                    return name
        return None

    def alias(self, pmu: str, event: str) -> str | None:
        # "event=0xcd,umask=0x1,ldlat=3"; None when the PMU has no such event.
        if "/" in event or event.startswith("."):
            return None
        return self._read(pmu, "events", event)

    def format(self, pmu: str, term: str) -> str | None:
        if "/" in term or term.startswith("."):
            return None
        return self._read(pmu, "format", term)

    def formats(self, pmu: str) -> list[str]:
        path = self.devices / pmu / "format"
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def cpus(self, pmu: str) -> tuple[int, ...] | None:
        # Only hybrid core PMUs have "cpus" (cpu_core: "0-15", cpu_atom: "16-23"); the others count everywhere.
        text = self._read(pmu, "cpus")
        if not text:
            return None
        try:
            return parse_list(text)
        except ValueError:
            return None

    def max_precise(self, pmu: str) -> int | None:
        text = self._read(pmu, "caps", "max_precise")  # absent on kernels before 5.x and on non-core PMUs
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def pmu_name(self, pmu: str) -> str:
        return self._read(pmu, "caps", "pmu_name") or ""

    def no_core_reason(self, what: str = "cpu PMU") -> str | None:
        # Same wording as damon_bpf.session.features (pmu/* checks).
        if not self.devices.is_dir():
            return f"no PMU: {self.devices} does not exist (kernel without perf events?)"
        if not self.core():
            return f"no hardware PMU: {self.devices} has no {what} (virtual machine without vPMU?)"
        return None


def _int(text: str, where: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise InvalidParamsError(f"{where}: {text!r} is not a number") from None
    if value < 0 or value > _U64:
        raise InvalidParamsError(f"{where}: {text!r} is out of range (0 to 2^64-1)")
    return value


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Mods:
    precise: int | None = None  # None: no p modifier
    precise_max: bool = False
    user: bool = False
    kernel: bool = False

    def text(self, precise: int, precise_max: bool) -> str:
        out = "P" if precise_max else "p" * precise
        if self.user:
            out += "u"
        if self.kernel:
            out += "k"
        return out


def _parse_mods(mods: str | None, item: str) -> _Mods:
    m = _Mods()
    for ch in mods or "":
        if ch == "p":
            m.precise = (m.precise or 0) + 1
        elif ch == "P":
            m.precise_max = True
        elif ch == "u":
            m.user = True
        elif ch == "k":
            m.kernel = True
        else:
            raise InvalidParamsError(
                f"event {item!r}: unsupported modifier {ch!r} (supported: p, pp, ppp, P, u, k)"
            )
    if m.precise is not None and m.precise > 3:
        raise InvalidParamsError(f"event {item!r}: at most 3 'p' modifiers (precise_ip is 0-3)")
    if m.precise is not None and m.precise_max:
        raise InvalidParamsError(f"event {item!r}: use either p/pp/ppp or P, not both")
    return m


def _with_mods(perf_event: str, mods: str) -> str:
    # "cpu/mem-loads/" + "P" -> "cpu/mem-loads/P"; "page-faults" + "u" -> "page-faults:u"
    if not mods:
        return perf_event
    return perf_event + mods if perf_event.endswith("/") else f"{perf_event}:{mods}"


def _split(text: str) -> list[str]:
    # Split at commas outside pmu/.../ ("cpu/mem-loads,ldlat=30/P,mem-stores" -> 2 items).
    text = text.strip()
    if not text:
        raise InvalidParamsError("empty event list")
    if "{" in text or "}" in text:
        raise InvalidParamsError(f"event groups ({{...}}) are not supported: {text!r}")
    items: list[str] = []
    cur: list[str] = []
    in_pmu = False
    for ch in text:
        if ch == "/":
            in_pmu = not in_pmu
        if ch == "," and not in_pmu:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if in_pmu:
        raise InvalidParamsError(f"unbalanced '/' in event list {text!r} (expected PMU/TERMS/)")
    items.append("".join(cur).strip())
    for item in items:
        if not item:
            raise InvalidParamsError(f"empty event in list {text!r}")
        if any(c.isspace() for c in item):
            raise InvalidParamsError(f"white space inside event {item!r}")
    return items


def _is_loose_term(item: str) -> bool:
    # "ldlat=50" or "period=1000" after an event, outside any pmu/.../ (perf mem's --ldlat as a term).
    return "/" not in item and ":" not in item and "=" in item


def _group(items: list[str]) -> list[tuple[str, list[str]]]:
    groups: list[tuple[str, list[str]]] = []
    for item in items:
        if _is_loose_term(item):
            if not groups:
                raise InvalidParamsError(f"term {item!r} does not follow an event")
            groups[-1][1].append(item)
        else:
            groups.append((item, []))
    return groups


def _split_terms(terms: str) -> list[str]:
    return [t.strip() for t in terms.split(",") if t.strip()]


class _Parser:
    def __init__(self, pmus: _Pmus, period: int | None) -> None:
        self.pmus = pmus
        self.period = period

    # -- shared pieces -----------------------------------------------------------------------------------------

    def _period(self, kind: str, term_period: int | None, name: str) -> int:
        if term_period is not None:
            value = term_period
        elif self.period is not None:
            value = self.period
        else:
            value = {
                "software": DEFAULT_SOFTWARE_PERIOD,
                "pebs": DEFAULT_PEBS_PERIOD,
                "ibs": DEFAULT_IBS_PERIOD,
            }.get(kind, DEFAULT_RAW_PERIOD)
        if value < 1:
            raise InvalidParamsError(f"event {name!r}: sample period must be at least 1, not {value}")
        if value > (1 << 63) - 1:
            raise InvalidParamsError(f"event {name!r}: sample period {value} is too large")
        if kind == "ibs" and (value & 0xF or value < _IBS_MIN_PERIOD):
            fixed = max(_IBS_MIN_PERIOD, value & ~0xF)
            raise InvalidParamsError(
                f"event {name!r}: the IBS op sample period must be a multiple of 16 and at least 16 "
                f"(perf_ibs_init() in arch/x86/events/amd/ibs.c), not {value}; use {fixed}"
            )
        return value

    @staticmethod
    def _loose_terms(terms: list[str], allowed: tuple[str, ...], name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for term in terms:
            key, _, value = term.partition("=")
            if key not in allowed:
                raise InvalidParamsError(
                    f"event {name!r}: term {term!r} is not accepted here (accepted: {', '.join(allowed)})"
                )
            if key in ("freq", "sample_freq"):
                raise InvalidParamsError(_FREQ_MSG.format(name=name))
            out[key] = _int(value, f"event {name!r} term {key}")
        return out

    def _spec(
        self,
        *,
        name: str,
        pmu: str,
        pmu_type: int,
        words: dict[str, int],
        kind: str,
        mods: _Mods,
        term_period: int | None,
        is_write: bool,
        perf_event: str,
        default_precise_max: bool = False,
    ) -> EventSpec:
        if mods.precise_max or (mods.precise is None and default_precise_max):
            max_precise = self.pmus.max_precise(pmu) if pmu else None
            precise, precise_max = (max_precise if max_precise else 3), True
        else:
            precise, precise_max = mods.precise or 0, False
        if mods.user or mods.kernel:
            exclude_kernel, exclude_user = not mods.kernel, not mods.user
        else:
            # PMU events count user mode only by default (the BPF program only wants user addresses, and PEBS
            # kernel samples cost NMIs for nothing); software faults in the kernel on user addresses
            # (copy_from_user) are real accesses, and IBS cannot filter without swfilt.
            exclude_kernel, exclude_user = kind not in ("software", "ibs"), False
        if kind == "ibs" and (exclude_kernel or exclude_user):
            swfilt = self.pmus.format(pmu, "swfilt")
            if swfilt is None:
                raise NotSupportedError(
                    f"event {name!r}: IBS can only exclude user or kernel mode with the swfilt format "
                    f"(config2:0), which this kernel's {pmu} PMU lacks; drop the u/k modifier (the BPF program "
                    "ignores kernel addresses anyway)"
                )
            place_pmu_format(words, swfilt, 1, f"{pmu}/swfilt")
        if kind == "ibs" and words["config"] & _IBS_MAXCNT_MASK:
            raise InvalidParamsError(
                f"event {name!r}: do not set IbsOpMaxCnt (config bits 0-15) together with a sample period "
                "(perf_ibs_init() returns -EINVAL); use period=N"
            )
        period = self._period(kind, term_period, name)
        return EventSpec(
            name=name,
            type=pmu_type,
            config=words["config"],
            config1=words["config1"],
            precise_ip=precise,
            sample_period=period,
            is_write=is_write,
            kind=kind,
            sampled=kind != "software" or period > 1,
            exclude_kernel=exclude_kernel,
            config2=words["config2"],
            exclude_user=exclude_user,
            precise_max=precise_max,
            pmu=pmu,
            cpus=self.pmus.cpus(pmu) if pmu else None,
            perf_event=_with_mods(perf_event, mods.text(precise, precise_max)),
        )

    def _store_words(self, pmu: str) -> dict[str, int] | None:
        # Encoding of <pmu>/events/mem-stores, to recognise the same event written as raw config.
        if self.pmus.alias(pmu, "mem-stores") is None:
            return None
        words = {w: 0 for w in _CONFIG_WORDS}
        with contextlib.suppress(DamonBpfError):
            self._apply_terms(pmu, ["mem-stores"], words, set(), "mem-stores")
            return words
        return None

    def _is_store_config(self, config: int) -> bool:
        for pmu in self.pmus.core():
            words = self._store_words(pmu)
            if words is not None and words["config"] == config:
                return True
        return False

    # -- PMU/TERMS/ -------------------------------------------------------------------------------------------

    def _apply_terms(
        self, pmu: str, terms: list[str], words: dict[str, int], aliases: set[str], name: str, depth: int = 0
    ) -> int | None:
        # Apply terms to words in order (later terms win); return the period term if any.
        period: int | None = None
        for term in terms:
            m = _RE_TERM.fullmatch(term)
            if m is None:
                raise InvalidParamsError(f"event {name!r}: malformed term {term!r} (expected name or name=value)")
            key, value = m["key"], m["value"]
            where = f"event {name!r} term {key}"
            if key in ("freq", "sample_freq"):
                raise InvalidParamsError(_FREQ_MSG.format(name=name))
            if key in ("period", "sample_period"):
                if value is None:
                    raise InvalidParamsError(f"{where}: needs a value (period=N)")
                period = _int(value, where)
                continue
            if key in _CONFIG_WORDS:
                if value is None:
                    raise InvalidParamsError(f"{where}: needs a value ({key}=N)")
                words[key] = _int(value, where)
                continue
            if key == "name":
                continue
            alias = self.pmus.alias(pmu, key) if value is None else None
            if alias is not None:
                if depth > 0:
                    raise NotSupportedError(f"{pmu}/events/{key} refers to another event alias")
                aliases.add(key)
                sub = self._apply_terms(pmu, _split_terms(alias), words, aliases, name, depth + 1)
                period = sub if sub is not None else period
                continue
            spec = self.pmus.format(pmu, key)
            if spec is None:
                known = self.pmus.formats(pmu)
                raise NotSupportedError(
                    f"event {name!r}: PMU {pmu} has no event or format term {key!r} "
                    f"(format terms here: {', '.join(known) or 'none'}; events in {self.pmus.devices / pmu / 'events'})"
                )
            place_pmu_format(words, spec, 1 if value is None else _int(value, where), where)
        return period

    def _missing_pmu(self, pmu: str, name: str) -> NotSupportedError:
        devices = self.pmus.devices
        if pmu in _CORE_PMUS:
            reason = self.pmus.no_core_reason() or f"no {pmu} PMU in {devices} (cores: {', '.join(self.pmus.core())})"
            return NotSupportedError(f"event {name!r}: {reason}")
        if pmu == "ibs_op":
            no_core = self.pmus.no_core_reason("cpu or ibs_op PMU")
            if no_core:
                return NotSupportedError(f"event {name!r}: {no_core}; AMD IBS needs an AMD CPU with IBS: no ibs_op PMU")
            return NotSupportedError(f"event {name!r}: no ibs_op PMU: not an AMD CPU with IBS, or IBS is disabled")
        if pmu.startswith("arm_spe"):
            return NotSupportedError(f"event {name!r}: no {pmu} PMU in {devices} (ARM SPE: arm64 only)")
        return NotSupportedError(
            f"event {name!r}: no PMU named {pmu!r} in {devices} (there: {', '.join(self.pmus.names()) or 'none'})"
        )

    def pmu_form(
        self,
        name: str,
        pmu: str,
        terms: list[str],
        mods_text: str | None,
        *,
        default_precise_max: bool = False,
    ) -> EventSpec:
        if not self.pmus.has(pmu):
            err = self._missing_pmu(pmu, name)
            mem = [t for t in terms if t in ("mem-loads", "mem-stores")]
            if pmu in _CORE_PMUS and mem and not self.pmus.core():
                err = NotSupportedError(f"{err}; PEBS {mem[0]} needs an Intel CPU with PEBS")
            raise err
        mods = _parse_mods(mods_text, name)
        pmu_type = self.pmus.type(pmu)
        words = {w: 0 for w in _CONFIG_WORDS}
        aliases: set[str] = set()
        term_period = self._apply_terms(pmu, terms, words, aliases, name)
        core = pmu in _CORE_PMUS
        intel_mem = core and self.pmus.alias(pmu, "mem-loads") is not None
        if pmu == "ibs_op":
            kind = "ibs"
        elif pmu.startswith("arm_spe"):
            kind = "spe"
        elif pmu_type == PERF_TYPE_SOFTWARE:
            kind = "software"
        elif intel_mem and (aliases & {"mem-loads", "mem-stores"} or mods.precise or mods.precise_max):
            kind = "pebs"
        else:
            kind = "raw"
        store_words = self._store_words(pmu) if core else None
        is_write = "mem-stores" in aliases or (
            store_words is not None and store_words["config"] == words["config"] and "mem-loads" not in aliases
        )
        # Without precise_ip the PMU gives no data address: PEBS memory events default to :P (as perf mem).
        pebs_alias = kind == "pebs" and bool(aliases & {"mem-loads", "mem-stores"})
        return self._spec(
            name=name,
            pmu=pmu,
            pmu_type=pmu_type,
            words=words,
            kind=kind,
            mods=mods,
            term_period=term_period,
            is_write=is_write,
            perf_event=f"{pmu}/{','.join(terms)}/",
            default_precise_max=default_precise_max or pebs_alias,
        )

    # -- names ---------------------------------------------------------------------------------------------------

    def _pebs_pmus(self, event: str, name: str) -> list[str]:
        pmus = [p for p in self.pmus.core() if self.pmus.alias(p, event) is not None]
        if pmus:
            return pmus
        no_core = self.pmus.no_core_reason()
        if no_core:
            raise NotSupportedError(f"event {name!r}: {no_core}; PEBS {event} needs an Intel CPU with PEBS")
        core = self.pmus.core()[0]
        pmu_name = self.pmus.pmu_name(core)
        hint = "; on AMD use ibs_op" if self.pmus.has("ibs_op") else ""
        raise NotSupportedError(
            f"event {name!r}: {core} PMU{f' ({pmu_name})' if pmu_name else ''} has no {event} event: "
            f"not an Intel PMU with PEBS memory sampling{hint}"
        )

    def _pebs(self, event: str, name: str, mods: str | None, extra: list[str]) -> list[EventSpec]:
        specs = []
        for pmu in self._pebs_pmus(event, name):
            terms = [event]
            if event == "mem-loads" and self.pmus.format(pmu, "ldlat") is not None:
                terms.append(f"ldlat={PERF_MEM_LDLAT}")
            terms.extend(extra)
            specs.append(self.pmu_form(name, pmu, terms, mods, default_precise_max=True))
        return specs

    def _mem(self, name: str, mods: str | None, extra: list[str]) -> list[EventSpec]:
        # perf mem record: Intel mem-loads (+ mem-stores) on every core PMU that has them, else AMD ibs_op.
        if any(self.pmus.alias(p, "mem-loads") is not None for p in self.pmus.core()):
            specs = self._pebs("mem-loads", name, mods, extra)
            if any(self.pmus.alias(p, "mem-stores") is not None for p in self.pmus.core()):
                # ldlat=N of "mem,ldlat=N" is for the loads only (perf mem --ldlat)
                specs += self._pebs("mem-stores", name, mods, [t for t in extra if not t.startswith("ldlat=")])
            return specs
        if self.pmus.has("ibs_op"):
            return [self.pmu_form(name, "ibs_op", list(extra), mods)]
        no_core = self.pmus.no_core_reason("cpu or ibs_op PMU")
        if no_core:
            raise NotSupportedError(
                f"event {name!r}: {no_core}; perf mem needs Intel PEBS (mem-loads) or AMD IBS (ibs_op)"
            )
        core = self.pmus.core()[0]
        raise NotSupportedError(
            f"event {name!r}: {core} PMU has no mem-loads event and there is no ibs_op PMU: "
            "perf mem needs Intel PEBS (mem-loads) or AMD IBS (ibs_op)"
        )

    def _software(self, item: str, config: int, mods_text: str | None, extra: list[str], base: str) -> EventSpec:
        mods = _parse_mods(mods_text, item)
        loose = self._loose_terms(extra, ("period",), item)
        return self._spec(
            name=item,
            pmu="",
            pmu_type=PERF_TYPE_SOFTWARE,
            words={"config": config, "config1": 0, "config2": 0},
            kind="software",
            mods=mods,
            term_period=loose.get("period"),
            is_write=False,
            perf_event=base,
        )

    def named(self, item: str, name: str, mods: str | None, extra: list[str]) -> list[EventSpec]:
        full = ",".join([item, *extra])
        if name in _SOFTWARE_EVENTS:
            return [self._software(full, _SOFTWARE_EVENTS[name], mods, extra, name)]
        if name in ("mem-loads", "mem-stores"):
            return self._pebs(name, full, mods, extra)
        if name == "mem":
            return self._mem(full, mods, extra)
        if name == "arm_spe":
            spe = self.pmus.spe()
            if not spe:
                raise self._missing_pmu("arm_spe", full)
            return [self.pmu_form(full, spe[0], list(extra), mods)]
        if self.pmus.has(name) and name not in ("software", "tracepoint", "breakpoint", "kprobe", "uprobe"):
            return [self.pmu_form(full, name, list(extra), mods)]
        if name == "ibs_op" or name.startswith("arm_spe"):
            raise self._missing_pmu(name, full)
        raise NotSupportedError(f"unknown event {name!r} (supported: {_SUPPORTED})")

    # -- rHEX, TYPE:CONFIG -----------------------------------------------------------------------------------

    def numeric(self, item: str, pmu_type: int, config: int, mods_text: str | None, extra: list[str]) -> EventSpec:
        full = ",".join([item, *extra])
        if pmu_type == PERF_TYPE_SOFTWARE:
            return self._software(full, config, mods_text, extra, f"{pmu_type}:{config:#x}")
        if pmu_type in (PERF_TYPE_TRACEPOINT, PERF_TYPE_BREAKPOINT):
            what = "tracepoint" if pmu_type == PERF_TYPE_TRACEPOINT else "breakpoint"
            raise InvalidParamsError(
                f"event {full!r}: type {pmu_type} ({what}) events carry no sampled data address for "
                "a BPF perf_event program"
            )
        if pmu_type in (PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW):
            core = self.pmus.core()
            if not core:
                reason = self.pmus.no_core_reason() or ""
                raise NotSupportedError(f"event {full!r}: {reason}; raw and hardware events need the cpu PMU")
            pmu = core[0]
        else:
            found = self.pmus.by_type(pmu_type)
            if found is None:
                raise NotSupportedError(
                    f"event {full!r}: no PMU has type {pmu_type} in {self.pmus.devices} "
                    f"(there: {', '.join(f'{n}={self.pmus.type(n)}' for n in self.pmus.names()) or 'none'})"
                )
            pmu = found
        mods = _parse_mods(mods_text, full)
        loose = self._loose_terms(extra, ("period",), full)
        if pmu == "ibs_op":
            kind = "ibs"
        elif pmu.startswith("arm_spe"):
            kind = "spe"
        else:
            kind = "raw"
        base = item.split(":")[0] if item.startswith("r") else f"{pmu_type}:{config:#x}"
        return self._spec(
            name=full,
            pmu=pmu,
            pmu_type=pmu_type,
            words={"config": config, "config1": 0, "config2": 0},
            kind=kind,
            mods=mods,
            term_period=loose.get("period"),
            is_write=pmu_type == PERF_TYPE_RAW and self._is_store_config(config),
            perf_event=base,
        )

    # -- one item ----------------------------------------------------------------------------------------------

    def item(self, item: str, extra: list[str]) -> list[EventSpec]:
        m = _RE_PMU_FORM.fullmatch(item)
        if m is not None:
            full = ",".join([item, *extra])
            return [self.pmu_form(full, m["pmu"], _split_terms(m["terms"]) + extra, m["mods"])]
        m = _RE_RAW.fullmatch(item)
        if m is not None:
            return [self.numeric(item, PERF_TYPE_RAW, _int("0x" + m["config"], f"event {item!r}"), m["mods"], extra)]
        m = _RE_NUMERIC.fullmatch(item)
        if m is not None:
            where = f"event {item!r}"
            pmu_type = _int(m["type"], where)
            if pmu_type > 0xFFFFFFFF:
                raise InvalidParamsError(f"{where}: type {pmu_type} does not fit in 32 bits")
            return [self.numeric(item, pmu_type, _int(m["config"], where), m["mods"], extra)]
        m = _RE_NAMED.fullmatch(item)
        if m is not None:
            return self.named(item, m["name"], m["mods"], extra)
        raise InvalidParamsError(
            f"malformed event {item!r}: expected NAME[:MODS], PMU/TERMS/[MODS], rHEX[:MODS] or TYPE:CONFIG[:MODS]"
        )


_FREQ_MSG = (
    "event {name!r}: frequency mode is not supported: the density estimator needs a fixed sample period "
    "(use period=N)"
)


def parse_event(
    text: str, *, period: int | None = None, sysfs_root: str | os.PathLike[str] = "/sys"
) -> list[EventSpec]:
    """Parse a perf-style event list into :class:`EventSpec` objects (see the module docstring for the syntax).

    Reads ``<sysfs_root>/bus/event_source/devices`` (PMU types, event aliases, format bit specs, ``caps``) but
    opens nothing: use :func:`detect` to see whether the kernel accepts an event.

    :param text: e.g. ``"mem-loads,mem-stores"``, ``"cpu/mem-loads,ldlat=50/P"``, ``"ibs_op/cnt_ctl=1/"``,
        ``"page-faults"``, ``"r1cd:pp"``, ``"1:2"``.
    :param period: sample period for every event without a ``period=`` term (default: per kind, see
        ``DEFAULT_*_PERIOD``).
    :return: one spec per event (``mem`` and hybrid core PMUs expand to several).
    :raises InvalidParamsError: malformed syntax, bad modifiers or numbers, a period the PMU cannot take (IBS:
        multiple of 16), frequency mode, or the same event twice.
    :raises NotSupportedError: an unknown event or term, or a PMU this machine does not have (the message says
        why, e.g. "no hardware PMU: ... (virtual machine without vPMU?)").
    """
    if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period < 1):
        raise InvalidParamsError(f"sample period must be a positive integer, not {period!r}")
    parser = _Parser(_Pmus(sysfs_root), period)
    specs: list[EventSpec] = []
    for item, extra in _group(_split(text)):
        specs.extend(parser.item(item, extra))
    _check_duplicates(specs)
    return specs


def _check_duplicates(specs: list[EventSpec]) -> None:
    seen: dict[tuple[int, int, int, int], EventSpec] = {}
    ibs: EventSpec | None = None
    for spec in specs:
        key = (spec.type, spec.config, spec.config1, spec.config2)
        other = seen.get(key)
        if other is not None:
            raise InvalidParamsError(
                f"events {other.name!r} and {spec.name!r} are the same event (type {spec.type}, config "
                f"{spec.config:#x}, config1 {spec.config1:#x}): every access would be counted twice"
            )
        seen[key] = spec
        if spec.kind == "ibs":
            if ibs is not None:
                raise InvalidParamsError(
                    f"events {ibs.name!r} and {spec.name!r}: only one IBS op event can be active per CPU "
                    "(perf_ibs_add() in arch/x86/events/amd/ibs.c returns -ENOSPC)"
                )
            ibs = spec


# ---------------------------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------------------------


def _software_default() -> list[EventSpec]:
    return [
        EventSpec(
            name="page-faults",
            type=PERF_TYPE_SOFTWARE,
            config=PERF_COUNT_SW_PAGE_FAULTS,
            config1=0,
            precise_ip=0,
            sample_period=DEFAULT_SOFTWARE_PERIOD,
            is_write=False,
            kind="software",
            sampled=False,
            exclude_kernel=False,
            perf_event="page-faults",
        )
    ]


def _choose(sysfs_root: str | os.PathLike[str], probe: bool) -> tuple[list[EventSpec], bool, str]:
    pmus = _Pmus(sysfs_root)
    try:
        specs = parse_event("mem", sysfs_root=sysfs_root)
        for spec in specs:
            if spec.kind == "pebs" and pmus.max_precise(spec.pmu) == 0:
                raise NotSupportedError(
                    f"{spec.pmu} PMU reports caps/max_precise=0: no PEBS (virtual machine?)"
                )
            if probe:
                detect(spec)
    except (NotSupportedError, PermissionDeniedError) as err:
        reason = str(err)
        if reason.startswith("event 'mem': "):
            reason = reason[len("event 'mem': ") :]
        spe = pmus.spe()
        if spe:
            reason += f"; {spe[0]} is present, but {_SPE_REASON}"
        return _software_default(), False, f"{reason}: {_FALLBACK}"
    kinds = {s.kind for s in specs}
    label = "Intel PEBS" if "pebs" in kinds else "AMD IBS op"
    events = " + ".join(s.perf_event for s in specs)
    periods = sorted({s.sample_period for s in specs})
    what = "" if probe else " (not test-opened)"
    return (
        specs,
        True,
        f"{label}: {events}, 1 sample per {'/'.join(map(str, periods))} events, with data addresses{what}",
    )


def default_events(sysfs_root: str | os.PathLike[str] = "/sys", *, probe: bool = True) -> list[EventSpec]:
    """The events of ``--source perf`` without ``--event``: hardware data-address sampling when this machine
    has it (Intel PEBS mem-loads + mem-stores, AMD IBS op), else software page faults (exact events).

    ARM SPE is never chosen: its samples go to an AUX buffer that BPF cannot read.

    :param probe: test-open each hardware event (:func:`detect`) and fall back when the kernel refuses it; False
        decides from sysfs alone (for a fake *sysfs_root*).
    """
    return _choose(sysfs_root, probe)[0]


def hardware_sampling_status(
    sysfs_root: str | os.PathLike[str] = "/sys", *, probe: bool = True
) -> tuple[bool, str]:
    """Whether :func:`default_events` samples with hardware, and why (or why not).

    :return: ``(True, "Intel PEBS: cpu/mem-loads,ldlat=30/P + cpu/mem-stores/P, ...")`` or ``(False, "no
        hardware PMU: ... (virtual machine without vPMU?) ...: falling back to software page faults, ...")``.
    """
    _, hardware, reason = _choose(sysfs_root, probe)
    return hardware, reason


# ---------------------------------------------------------------------------------------------------------------
# Opening: detect(), attach(), detach()
# ---------------------------------------------------------------------------------------------------------------

_RETRY_PRECISE = (errno.EINVAL, errno.EOPNOTSUPP)
_ERRNO_REASONS = {
    errno.ENOENT: "the PMU does not know this event or precise mode (virtual machine?)",
    errno.EOPNOTSUPP: "the PMU cannot sample this event precisely (virtual machine?)",
    errno.EINVAL: "the PMU rejected the configuration (config, period or exclude_* bits)",
    errno.ENODATA: "the PMU needs the mem-loads-aux group leader",
    errno.EBUSY: "the PMU is busy (another user holds it)",
    errno.ENOSPC: "the PMU slot is taken (perf mem/c2c running?)",
    errno.ENODEV: "the PMU does not cover this CPU",
}


def _precise_levels(spec: EventSpec) -> list[int]:
    if spec.precise_max and spec.precise_ip > 1:
        return list(range(spec.precise_ip, 0, -1))
    return [spec.precise_ip]


def _fill(attr: Any, spec: EventSpec, precise_ip: int, *, pid: int = -1) -> Any:
    # Works on damon_bpf.linux.syscalls.PerfEventAttr and bcc's Perf.perf_event_attr (same names and layout).
    attr.type = spec.type
    attr.config = spec.config
    attr.config1 = spec.config1
    attr.config2 = spec.config2
    attr.sample_period = spec.sample_period
    attr.freq = 0
    attr.sample_type = SAMPLE_TYPE
    attr.precise_ip = precise_ip
    attr.exclude_kernel = int(spec.exclude_kernel)
    attr.exclude_user = int(spec.exclude_user)
    attr.exclude_hv = int(spec.exclude_kernel or spec.exclude_user)
    # No large PEBS: with wakeup_events=1 every PEBS record goes through the overflow handler, i.e. reaches BPF
    # (intel_pmu_hw_config() in arch/x86/events/intel/core.c).
    attr.wakeup_events = 0 if spec.kind == "software" else 1
    attr.inherit = int(pid > 0)
    return attr


def _paranoid() -> str:
    try:
        return read_sysctl("kernel.perf_event_paranoid")
    except (OSError, NotSupportedError):
        return "unknown"


def _permission_error(spec: EventSpec, detail: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"event {spec.name!r}: perf_event_open denied ({detail}): system-wide sampling needs root or "
        f"CAP_PERFMON (kernel.perf_event_paranoid={_paranoid()}; without them it must be -1 for CPU-wide events)"
    )


def _attr_text(spec: EventSpec, precise_ip: int) -> str:
    text = f"type {spec.type}, config {spec.config:#x}"
    if spec.config1:
        text += f", config1 {spec.config1:#x}"
    if spec.config2:
        text += f", config2 {spec.config2:#x}"
    return text + f", precise_ip {precise_ip}, period {spec.sample_period}"


def _open_error(spec: EventSpec, err_no: int, precise_ip: int, tried: list[int]) -> DamonBpfError:
    name = errname(err_no)
    if err_no in (errno.EACCES, errno.EPERM):
        return _permission_error(spec, name)
    reason = _ERRNO_REASONS.get(err_no, os.strerror(err_no) if err_no else "unknown error")
    levels = f" (tried precise_ip {', '.join(map(str, tried))})" if len(tried) > 1 else ""
    prefix = "not supported by this CPU/kernel: " if err_no in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL) else ""
    return NotSupportedError(
        f"event {spec.name!r}: {prefix}perf_event_open({_attr_text(spec, precise_ip)}) failed with {name}: "
        f"{reason}{levels}"
    )


def _first_cpu(spec: EventSpec) -> int:
    cpus = _target_cpus(spec)
    return cpus[0] if cpus else 0


def detect(spec: EventSpec) -> None:
    """Test-open *spec* (disabled, system-wide on its first CPU) and close it again.

    With modifier ``P`` the levels from ``spec.precise_ip`` down to 1 are tried, as when attaching.

    :raises NotSupportedError: the kernel refuses the event (``ENOENT``/``EOPNOTSUPP``/``EINVAL``: "not supported
        by this CPU/kernel: ..."), or it is ARM SPE, which BPF cannot read.
    :raises PermissionDeniedError: ``EACCES``/``EPERM`` (not root, ``kernel.perf_event_paranoid``).
    """
    if spec.kind == "spe":
        raise NotSupportedError(f"event {spec.name!r}: {_SPE_REASON}")
    cpu = _first_cpu(spec)
    levels = _precise_levels(spec)
    tried: list[int] = []
    for level in levels:
        tried.append(level)
        attr = _fill(syscalls.PerfEventAttr(), spec, level)
        attr.disabled = 1
        try:
            fd = syscalls.perf_event_open(attr, pid=-1, cpu=cpu)
        except OSError as err:
            err_no = err.errno or 0
            if err_no in _RETRY_PRECISE and level != levels[-1]:
                continue
            raise _open_error(spec, err_no, level, tried) from err
        os.close(fd)
        return


def _online_cpus() -> tuple[int, ...]:
    try:
        return parse_list(Path("/sys/devices/system/cpu/online").read_text())
    except (OSError, ValueError):
        return tuple(range(os.cpu_count() or 1))


def _target_cpus(spec: EventSpec) -> list[int]:
    online = _online_cpus()
    if spec.cpus is None:
        return list(online)
    return [c for c in online if c in set(spec.cpus)]


def _attach_error(spec: EventSpec, cpu: int, precise_ip: int, err: DamonBpfError, tried: list[int]) -> DamonBpfError:
    err_no = int(getattr(err, "errno", 0) or 0)
    if isinstance(err, PermissionDeniedError) or err_no in (errno.EACCES, errno.EPERM):
        exc: DamonBpfError = _permission_error(spec, f"{errname(err_no) if err_no else 'EPERM'} on CPU {cpu}")
    else:
        reason = _ERRNO_REASONS.get(err_no, "")
        levels = f" (tried precise_ip {', '.join(map(str, tried))})" if len(tried) > 1 else ""
        exc = ProbeAttachError(
            f"event {spec.name!r}: cannot attach {spec.fn_name} to perf event ({_attr_text(spec, precise_ip)}) "
            f"on CPU {cpu}{': ' + reason if reason else ''}{levels}; {err}"
        )
    exc.errno = err_no  # type: ignore[attr-defined]
    return exc


def attach(bpf: _bcc.BccBPF, spec: EventSpec, pid: int = -1) -> AttachedEvents:
    """Open *spec* on every online CPU it covers and attach :attr:`EventSpec.fn_name` of *bpf* to each event.

    *bpf* is a compiled ``bpf/perf_sample.bpf.c`` (:func:`damon_bpf.probes.compile_bpf`). The events sample with
    a fixed period (never frequency mode), ``sample_type`` = :data:`SAMPLE_TYPE`, and are enabled on return.

    :param pid: ``-1`` (default): system-wide per CPU; the BPF program keeps the target tgids (``agg_targets``),
        which covers every thread of a target, including later ones. A pid > 0 follows that thread and, with
        ``inherit``, the threads and children it creates afterwards (not its existing siblings).
    :return: the open events; close them with :func:`detach`.
    :raises NotSupportedError: ARM SPE, or no online CPU that the event's PMU covers.
    :raises ProbeAttachError: ``perf_event_open`` or attaching the program failed (reason and errno in the
        message; ``errno`` attribute). With modifier ``P``, lower ``precise_ip`` levels were tried first.
    :raises PermissionDeniedError: not root / ``kernel.perf_event_paranoid``.
    :raises InvalidParamsError: *pid* is 0 or below -1.
    """
    if spec.kind == "spe":
        raise NotSupportedError(f"event {spec.name!r}: {_SPE_REASON}")
    if pid == 0 or pid < -1:
        raise InvalidParamsError(f"pid must be -1 (all tasks) or a thread id, not {pid}")
    bcc = _bcc.load_bcc()
    cpus = _target_cpus(spec)
    if not cpus:
        raise NotSupportedError(f"event {spec.name!r}: none of the CPUs of PMU {spec.pmu} is online")
    fn_name = spec.fn_name
    levels = _precise_levels(spec)
    tried: list[int] = []
    fds: dict[int, int] = {}
    try:
        attr: Any = None
        precise = levels[-1]
        for level in levels:
            tried.append(level)
            attr = _fill(bcc.Perf.perf_event_attr(), spec, level, pid=pid)
            try:
                fds.update(_bcc.attach_perf_event_raw(bpf, fn_name, attr, pid=pid, cpu=cpus[0]))
            except (ProbeAttachError, PermissionDeniedError) as err:
                err_no = int(getattr(err, "errno", 0) or 0)
                if isinstance(err, ProbeAttachError) and err_no in _RETRY_PRECISE and level != levels[-1]:
                    logger.debug("%s: precise_ip %d refused (%s)", spec.name, level, errname(err_no))
                    continue
                raise _attach_error(spec, cpus[0], level, err, tried) from err
            precise = level
            break
        for cpu in cpus[1:]:
            try:
                fds.update(_bcc.attach_perf_event_raw(bpf, fn_name, attr, pid=pid, cpu=cpu))
            except (ProbeAttachError, PermissionDeniedError) as err:
                raise _attach_error(spec, cpu, precise, err, [precise]) from err
    except BaseException:
        with contextlib.suppress(DamonBpfError):
            _bcc.detach_perf_event_raw(bpf, fds)
        raise
    logger.debug("%s: %s attached on CPUs %s (precise_ip %d)", spec.name, fn_name, list(fds), precise)
    return AttachedEvents(spec=spec, fn_name=fn_name, fds=fds, precise_ip=precise, pid=pid)


def detach(bpf: _bcc.BccBPF, attached: AttachedEvents) -> None:
    """Close the events of *attached* (a no-op the second time).

    :raises ProbeAttachError: closing an fd failed (the others are closed anyway).
    """
    if attached._detached:
        return
    try:
        _bcc.detach_perf_event_raw(bpf, attached.fds)
    finally:
        attached._detached = True

