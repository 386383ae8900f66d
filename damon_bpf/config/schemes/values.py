"""The values of a DAMOS scheme in damo's words, shared by the command-line and JSON readers: sizes, addresses,
times, per-mille and basis-point figures, access rates and ages (converted with the monitoring
:class:`~damon_bpf.engine.Attrs`), action, quota-goal and watermark names, and the checks a finished scheme must
pass. Every error is an :class:`~damon_bpf.errors.InvalidParamsError` naming the option or field."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable

from damon_bpf.config import limits
from damon_bpf.config.units import U64_MAX, text_to_bytes, text_to_ms, text_to_permil, text_to_us
from damon_bpf.engine.damos import (
    UINT_MAX,
    AccessPattern,
    Action,
    FilterType,
    QuotaGoalMetric,
    Scheme,
    WmarkMetric,
    access_pct_to_nr_accesses,
    age_us_to_aggr_intervals,
)
from damon_bpf.engine.model import Attrs
from damon_bpf.errors import InvalidParamsError


MIGRATE_ACTIONS = frozenset({Action.MIGRATE_HOT, Action.MIGRATE_COLD})
GOAL_TUNERS = ("consist", "temporal")
_ACTIONS = ", ".join(a.value for a in Action)
_FILTER_TYPES = ", ".join(t.value for t in FilterType)
_GOAL_METRICS = ", ".join(m.value for m in QuotaGoalMetric)
_NO_ARG_FILTERS = frozenset({FilterType.ANON, FilterType.YOUNG, FilterType.ACTIVE, FilterType.UNMAPPED})
_NID_METRICS = frozenset({QuotaGoalMetric.NODE_MEM_USED_BP, QuotaGoalMetric.NODE_MEM_FREE_BP,
                          QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP})
_MEMCG_METRICS = frozenset({QuotaGoalMetric.NODE_MEMCG_USED_BP, QuotaGoalMetric.NODE_MEMCG_FREE_BP})
_TIME_METRICS = frozenset({QuotaGoalMetric.SOME_MEM_PSI_US, QuotaGoalMetric.TASK_MEM_STALL_US})


def _err(where: str, err: Exception | str) -> InvalidParamsError:
    return InvalidParamsError(f"{where}: {err}")


def _parsed(parse: Callable[[Any], int], v: Any, where: str, cap: int = U64_MAX) -> int:
    # one damo value through its parser, with the field's name in the error and no negative values
    try:
        n = parse(_scalar(v, where))
    except InvalidParamsError as err:
        raise _err(where, err) from None
    if n < 0:
        raise _err(where, f"must not be negative: {v!r}")
    return min(n, cap)


def _bytes(v: Any, where: str) -> int:
    return _parsed(text_to_bytes, v, where)


def _addr(v: Any, where: str) -> int:
    # an address: hexadecimal (0x7f00...) or any size form
    if isinstance(v, str) and v.strip().lower().startswith("0x"):
        try:
            return int(v.strip().replace(",", ""), 16)
        except ValueError:
            raise _err(where, f"invalid address {v!r}") from None
    return _bytes(v, where)


def _time_us(v: Any, where: str) -> int:
    return _parsed(text_to_us, v, where)


def _time_ms(v: Any, where: str) -> int:
    return _parsed(text_to_ms, v, where)


def _permil(v: Any, where: str) -> int:
    return _parsed(text_to_permil, v, where)


def _bp(v: Any, where: str) -> int:
    # basis points: "40%" is 4000, "4000 bp" and a bare 4000 too
    s = _scalar(v, where)
    if isinstance(s, (int, float)):
        n = int(s)
    else:
        t = s.replace(",", "").strip()
        try:
            if t.endswith("%"):
                n = int(Fraction(t[:-1].strip()) * 100)
            elif t.endswith("bp"):
                n = int(Fraction(t[:-2].strip()))
            else:
                n = int(Fraction(t))
        except (ValueError, ZeroDivisionError):
            raise _err(where, f"invalid ratio {s!r} (e.g. 40%, 4000bp or 4000)") from None
    if n < 0:
        raise _err(where, f"must not be negative: {v!r}")
    return n


def _int(v: Any, where: str, *, minimum: int = 0) -> int:
    s = _scalar(v, where)
    try:
        n = int(s) if isinstance(s, int) else int(str(s).replace(",", "").strip())
    except ValueError:
        raise _err(where, f"not an integer: {s!r}") from None
    if n < minimum:
        raise _err(where, f"must be at least {minimum}: {s!r}")
    return n


def _scalar(v: Any, where: str) -> str | int | float:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _err(where, f"expected a number or a string, not {v!r}")
    return v


def _percent(v: Any, where: str) -> Fraction:
    s = _scalar(v, where)
    if isinstance(s, (int, float)):
        p = Fraction(s)
    else:
        t = s.replace(",", "").strip()
        if t.endswith("%"):
            t = t[:-1].strip()
        try:
            p = Fraction(t)
        except (ValueError, ZeroDivisionError):
            raise _err(where, f"invalid percentage {s!r} (e.g. 5%, 12.5 %)") from None
    if p < 0:
        raise _err(where, f"must not be negative: {s!r}")
    return p


def _unit_count(v: Any, unit: str) -> int | None:
    # "12 samples" / "3 aggr_intervals" -> 12 / 3; None when v is not in that form
    if not isinstance(v, str):
        return None
    parts = v.replace(",", "").split()
    if len(parts) == 2 and parts[1] == unit:
        try:
            return int(parts[0])
        except ValueError:
            return None
    return None


def _raw_bound(v: Any, unit: str, where: str) -> int | None:
    # a bound given in the field's own unit ("N samples", "N aggr_intervals", "min", "max"), or None
    n = _unit_count(v, unit)
    if n is not None:
        if n < 0:
            raise _err(where, f"must not be negative: {v!r}")
        return min(n, UINT_MAX)
    if isinstance(v, str) and v.strip().lower() in ("min", "max"):
        return 0 if v.strip().lower() == "min" else UINT_MAX
    return None


def _nr_bound(v: Any, attrs: Attrs, where: str) -> tuple[int, Fraction | None]:
    # (samples for attrs, the percentage when given as one)
    n = _raw_bound(v, "samples", where)
    if n is not None:
        return n, None
    pct = _percent(v, where)
    return access_pct_to_nr_accesses(pct, attrs), pct


def _age_bound(v: Any, attrs: Attrs, where: str) -> tuple[int, int | None]:
    # (aggregation intervals for attrs, the time in µs when given as one; a time of 2**64-1 µs is damo's max)
    n = _raw_bound(v, "aggr_intervals", where)
    if n is not None:
        return n, None
    us = _time_us(v, where)
    return age_us_to_aggr_intervals(us, attrs), (us if us < U64_MAX else None)


def nr_accesses_from_text(v: Any, attrs: Attrs, where: str = "nr_accesses") -> int:
    """An ``nr_accesses`` bound in sampling intervals: ``"N samples"``, a percentage of ``attrs``'
    ``max_nr_accesses`` (``"5 %"``, ``5``: damo's ``int(percent * max / 100)``), ``min`` or ``max``.

    :raises InvalidParamsError: not one of those forms (the message starts with *where*)
    """
    return _nr_bound(v, attrs, where)[0]


def age_from_text(v: Any, attrs: Attrs, where: str = "age") -> int:
    """An age bound in aggregation intervals: ``"N aggr_intervals"``, a time (µs when bare; damo's
    ``int(us / aggr_us)``), ``min`` or ``max``.

    :raises InvalidParamsError: not one of those forms (the message starts with *where*)
    """
    return _age_bound(v, attrs, where)[0]


def _set_pattern_bounds(p: AccessPattern, kind: str, lo: Any, hi: Any, attrs: Attrs, where: str,
                        sep: str = " ") -> None:
    # one pair of bounds in the kernel's units for attrs, and, for a time or a percentage, in the unit given
    # (AccessPattern.rebase converts those again when the intervals change)
    wlo, whi = f"{where}{sep}min", f"{where}{sep}max"
    if kind == "sz":
        a, b = _bytes(lo, wlo), _bytes(hi, whi)
        p.min_sz_bytes, p.max_sz_bytes = a, b
    elif kind == "nr":
        (a, a_pct), (b, b_pct) = _nr_bound(lo, attrs, wlo), _nr_bound(hi, attrs, whi)
        p.min_nr_accesses, p.max_nr_accesses = a, b
        p.min_nr_accesses_pct, p.max_nr_accesses_pct = a_pct, b_pct
    else:
        (a, a_us), (b, b_us) = _age_bound(lo, attrs, wlo), _age_bound(hi, attrs, whi)
        p.min_age_region, p.max_age_region = a, b
        p.min_age_us, p.max_age_us = a_us, b_us
    if a > b:
        raise _err(where, f"minimum {lo!r} is larger than maximum {hi!r}")


def _action(word: Any, where: str) -> Action:
    try:
        return Action(str(word).strip().lower())
    except ValueError:
        raise _err(where, f"unknown action {word!r} (choose {_ACTIONS})") from None


def _goal_metric(word: Any, where: str) -> QuotaGoalMetric:
    try:
        return QuotaGoalMetric(str(word))
    except ValueError:
        raise _err(where, f"unknown quota goal metric {word!r} (choose {_GOAL_METRICS})") from None


def _goal_value(metric: QuotaGoalMetric, v: Any, where: str) -> int:
    if metric in _TIME_METRICS:
        return _time_us(v, where)
    if metric is QuotaGoalMetric.USER_INPUT:
        return _int(v, where)
    return _bp(v, where)


def _wmark_metric(word: Any, where: str) -> WmarkMetric:
    try:
        return WmarkMetric(str(word))
    except ValueError:
        raise _err(where, f"unknown watermarks metric {word!r} (choose "
                          f"{', '.join(m.value for m in WmarkMetric)})") from None


def _tuner(word: Any, where: str) -> str:
    if word not in GOAL_TUNERS:
        raise _err(where, f"unknown quota goal tuner {word!r} (choose {', '.join(GOAL_TUNERS)})")
    return str(word)


def _check_count(nr: int, limit: int, what: str, where: str) -> None:
    if nr > limit:
        raise _err(where, f"{nr} {what}: at most {limit} are taken per scheme")


def _validate(s: Scheme, where: str) -> Scheme:
    _check_count(len(s.filters), limits.MAX_SCHEME_FILTERS, "filters", where)
    _check_count(len(s.quota.goals), limits.MAX_QUOTA_GOALS, "quota goals", where)
    for f in s.filters:
        if f.type is FilterType.ADDR and f.addr_start >= f.addr_end:
            raise _err(where, f"addr filter: start {f.addr_start:#x} is not below end {f.addr_end:#x}")
        if f.type is FilterType.HUGEPAGE_SIZE and f.sz_min > f.sz_max:
            raise _err(where, "hugepage_size filter: minimum is larger than maximum")
        if f.type is FilterType.MEMCG and not f.memcg_path:
            raise _err(where, "memcg filter: no memcg path")
    try:
        s.validate()
    except InvalidParamsError as err:
        raise _err(where, err) from None
    return s


def _filter_type(word: str) -> FilterType | None:
    try:
        return FilterType(word)
    except ValueError:
        return None


def check_nr_schemes(nr: int) -> None:
    """Refuse more than :data:`~damon_bpf.config.limits.MAX_SCHEMES` schemes.

    :raises InvalidParamsError: too many
    """
    if nr > limits.MAX_SCHEMES:
        raise InvalidParamsError(f"{nr} schemes: at most {limits.MAX_SCHEMES} are taken")
