"""The event grammar of the ``perf`` access source: :func:`parse_event`, after perf's own event parser
(``tools/perf/util/parse-events.c``, ``pmu.c``).

**Syntax.** A comma-separated list of events (commas inside ``pmu/.../`` belong to that event): software page
faults (``page-faults``, exact, no PMU needed), Intel PEBS ``mem-loads``/``mem-stores`` (``ldlat=N``), ``mem``
(what ``perf mem record`` would use here), ``ibs_op``, ``arm_spe``, ``PMU/TERMS/MODS``, ``rHEX`` and
``TYPE:CONFIG``, with the modifiers ``p``/``pp``/``ppp``, ``P``, ``u`` and ``k``. Event aliases, format terms and
capabilities come from sysfs (:class:`~damon_bpf.probes.perf_events.pmus.Pmus`); nothing is opened here.

See docs/ops.md, section "Perf events with data addresses", for the full syntax and its perf counterparts.
"""

from __future__ import annotations

import contextlib
import os
import re

from damon_bpf.errors import DamonBpfError, InvalidParamsError, NotSupportedError
from damon_bpf.linux.syscalls import (
    PERF_COUNT_SW_PAGE_FAULTS,
    PERF_COUNT_SW_PAGE_FAULTS_MAJ,
    PERF_COUNT_SW_PAGE_FAULTS_MIN,
    PERF_TYPE_BREAKPOINT,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
)
from damon_bpf.linux.sysfs import place_pmu_format
from damon_bpf.probes.perf_events.lexer import (
    Modifiers,
    group_terms,
    parse_int,
    parse_modifiers,
    split_events,
    split_terms,
    with_modifiers,
)
from damon_bpf.probes.perf_events.pmus import CORE_PMUS, Pmus
from damon_bpf.probes.perf_events.spec import (
    DEFAULT_IBS_PERIOD,
    DEFAULT_PEBS_PERIOD,
    DEFAULT_RAW_PERIOD,
    DEFAULT_SOFTWARE_PERIOD,
    PERF_MEM_LDLAT,
    EventSpec,
)

__all__ = ("parse_event",)

_IBS_MIN_PERIOD = 0x10  # perf_ibs_op.min_period, arch/x86/events/amd/ibs.c
_IBS_MAXCNT_MASK = 0xFFFF  # IbsOpMaxCnt in config bits 0-15: not together with sample_period (-EINVAL)

_SOFTWARE_EVENTS = {
    "page-faults": PERF_COUNT_SW_PAGE_FAULTS,
    "faults": PERF_COUNT_SW_PAGE_FAULTS,
    "minor-faults": PERF_COUNT_SW_PAGE_FAULTS_MIN,
    "major-faults": PERF_COUNT_SW_PAGE_FAULTS_MAJ,
}
_CONFIG_WORDS = ("config", "config1", "config2")
_SUPPORTED = (
    "page-faults, faults, minor-faults, major-faults, mem-loads, mem-stores, mem, ibs_op, arm_spe, "
    "PMU/TERMS/[MODS], rHEX, TYPE:CONFIG"
)

_RE_PMU_FORM = re.compile(r"(?P<pmu>[A-Za-z0-9_.-]+)/(?P<terms>[^/]*)/:?(?P<mods>[A-Za-z]*)")
_RE_RAW = re.compile(r"r(?P<config>[0-9a-fA-F]+)(?::(?P<mods>[A-Za-z]*))?")
_RE_NUMERIC = re.compile(r"(?P<type>[0-9]+):(?P<config>0[xX][0-9a-fA-F]+|[0-9]+)(?::(?P<mods>[A-Za-z]*))?")
_RE_NAMED = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?::(?P<mods>[A-Za-z]*))?")
_RE_TERM = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?:=(?P<value>[^=]*))?")


class _Parser:
    # Turns the events of one list into specs against one sysfs tree (perf's parse_events_add_pmu()).

    def __init__(self, pmus: Pmus, period: int | None) -> None:
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
            out[key] = parse_int(value, f"event {name!r} term {key}")
        return out

    def _spec(
        self,
        *,
        name: str,
        pmu: str,
        pmu_type: int,
        words: dict[str, int],
        kind: str,
        mods: Modifiers,
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
            perf_event=with_modifiers(perf_event, mods.text(precise, precise_max)),
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
                period = parse_int(value, where)
                continue
            if key in _CONFIG_WORDS:
                if value is None:
                    raise InvalidParamsError(f"{where}: needs a value ({key}=N)")
                words[key] = parse_int(value, where)
                continue
            if key == "name":
                continue
            alias = self.pmus.alias(pmu, key) if value is None else None
            if alias is not None:
                if depth > 0:
                    raise NotSupportedError(f"{pmu}/events/{key} refers to another event alias")
                aliases.add(key)
                sub = self._apply_terms(pmu, split_terms(alias), words, aliases, name, depth + 1)
                period = sub if sub is not None else period
                continue
            spec = self.pmus.format(pmu, key)
            if spec is None:
                known = self.pmus.formats(pmu)
                raise NotSupportedError(
                    f"event {name!r}: PMU {pmu} has no event or format term {key!r} "
                    f"(format terms here: {', '.join(known) or 'none'}; events in {self.pmus.devices / pmu / 'events'})"
                )
            place_pmu_format(words, spec, 1 if value is None else parse_int(value, where), where)
        return period

    def _missing_pmu(self, pmu: str, name: str) -> NotSupportedError:
        devices = self.pmus.devices
        if pmu in CORE_PMUS:
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
            if pmu in CORE_PMUS and mem and not self.pmus.core():
                err = NotSupportedError(f"{err}; PEBS {mem[0]} needs an Intel CPU with PEBS")
            raise err
        mods = parse_modifiers(mods_text, name)
        pmu_type = self.pmus.type(pmu)
        words = {w: 0 for w in _CONFIG_WORDS}
        aliases: set[str] = set()
        term_period = self._apply_terms(pmu, terms, words, aliases, name)
        core = pmu in CORE_PMUS
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
        mods = parse_modifiers(mods_text, item)
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
        mods = parse_modifiers(mods_text, full)
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
            return [self.pmu_form(full, m["pmu"], split_terms(m["terms"]) + extra, m["mods"])]
        m = _RE_RAW.fullmatch(item)
        if m is not None:
            config = parse_int("0x" + m["config"], f"event {item!r}")
            return [self.numeric(item, PERF_TYPE_RAW, config, m["mods"], extra)]
        m = _RE_NUMERIC.fullmatch(item)
        if m is not None:
            where = f"event {item!r}"
            pmu_type = parse_int(m["type"], where)
            if pmu_type > 0xFFFFFFFF:
                raise InvalidParamsError(f"{where}: type {pmu_type} does not fit in 32 bits")
            return [self.numeric(item, pmu_type, parse_int(m["config"], where), m["mods"], extra)]
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
    parser = _Parser(Pmus(sysfs_root), period)
    specs: list[EventSpec] = []
    for item, extra in group_terms(split_events(text)):
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

