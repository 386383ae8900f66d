"""DAMOS schemes back to damo's JSON shape (``_damon.Damos.to_kvpairs()``), in damo's human units where a value
was given in them (a percentage, a time), so that ``damo`` reads the configuration a record carries."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

from damon_bpf.config.units import U64_MAX
from damon_bpf.engine.damos import (
    UINT_MAX,
    Scheme,
    format_pct,
)
from damon_bpf.engine.model import Attrs


_BYTE_UNITS = (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
               ("KiB", 1 << 10))
_US_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000))


def _fmt_exact(n: int, units: tuple[tuple[str, int], ...], base: str) -> str:
    # exact: the largest unit that divides n, so the text parses back to n
    if n >= U64_MAX:
        return "max"
    for unit, size in units:
        if n and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} {base}"


def _fmt_bytes(n: int) -> str:
    return _fmt_exact(n, _BYTE_UNITS, "B")


def _fmt_us(us: int) -> str:
    return _fmt_exact(us, _US_UNITS, "us")


def _fmt_ms(ms: int) -> str:
    return "max" if ms >= U64_MAX else _fmt_us(ms * 1000)


def _fmt_nr_accesses(n: int, pct: Fraction | None) -> str:
    # in the unit given: a percentage, or samples
    if pct is not None:
        return format_pct(pct)
    return "max" if n >= UINT_MAX else f"{n} samples"


def _fmt_age(n: int, us: int | None) -> str:
    # in the unit given: a time, or aggregation intervals
    if us is not None:
        return _fmt_us(us)
    return "max" if n >= UINT_MAX else f"{n} aggr_intervals"


def scheme_to_json(s: Scheme, attrs: Attrs) -> dict[str, Any]:
    """*s* in damo's JSON shape with human units (``"30 s"``, ``"5 %"``, ``"128 MiB"``), written so that
    :func:`scheme_from_json` gives the same scheme back. Ages and access rates keep the unit they were given in
    (a time or ``"N aggr_intervals"``, a percentage or ``"N samples"``), so they mean the same after the read
    whatever the intervals; *attrs* is no longer needed for them."""
    p, q, w = s.pattern, s.quota, s.wmarks
    out: dict[str, Any] = {
        "action": s.action.value,
        "target_nid": s.target_nid,
        "access_pattern": {
            "sz_bytes": {"min": _fmt_bytes(p.min_sz_bytes), "max": _fmt_bytes(p.max_sz_bytes)},
            "nr_accesses": {"min": _fmt_nr_accesses(p.min_nr_accesses, p.min_nr_accesses_pct),
                            "max": _fmt_nr_accesses(p.max_nr_accesses, p.max_nr_accesses_pct)},
            "age": {"min": _fmt_age(p.min_age_region, p.min_age_us),
                    "max": _fmt_age(p.max_age_region, p.max_age_us)},
        },
        "apply_interval_us": _fmt_us(s.apply_interval_us),
        "quotas": {
            "time_ms": _fmt_ms(q.ms), "sz_bytes": _fmt_bytes(q.sz), "reset_interval_ms": _fmt_ms(q.reset_interval_ms),
            "goals": [{"metric": g.metric.value, "target_value": g.target_value, "current_value": g.current_value,
                       "nid": g.nid, "memcg_path": g.memcg_path} for g in q.goals],
            "goal_tuner": q.goal_tuner,
            "effective_sz_bytes": _fmt_bytes(q.esz),
            "weights": {"sz_permil": q.weight_sz, "nr_accesses_permil": q.weight_nr_accesses,
                        "age_permil": q.weight_age},
        },
        "watermarks": {"metric": w.metric.value, "interval_us": _fmt_us(w.interval_us), "high_permil": w.high,
                       "mid_permil": w.mid, "low_permil": w.low},
        "filters": [f.to_dict() for f in s.filters],
        "max_nr_snapshots": s.max_nr_snapshots,
    }
    if q.fail_charge_num or q.fail_charge_denom:
        out["quotas"]["fail_charge_num"] = q.fail_charge_num
        out["quotas"]["fail_charge_denom"] = q.fail_charge_denom
    return out


def schemes_to_json(schemes: Sequence[Scheme], attrs: Attrs, *, kdamonds: bool = False) -> Any:
    """*schemes* in damo's JSON shape (see :func:`scheme_to_json`): a list, or with *kdamonds* a full
    ``{"kdamonds": [{"contexts": [{"schemes": [...]}]}]}`` object."""
    lst = [scheme_to_json(s, attrs) for s in schemes]
    if kdamonds:
        return {"kdamonds": [{"contexts": [{"schemes": lst}]}]}
    return lst
