"""The lexical pieces of the perf event grammar: event lists, loose terms, modifiers and numbers.

After perf's ``parse-events.l``: a list splits at commas outside ``pmu/.../``; ``ldlat=N`` or ``period=N`` after an
event belongs to it; the modifiers are ``p``/``pp``/``ppp``, ``P``, ``u`` and ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

from damon_bpf.errors import InvalidParamsError

__all__ = (
    "Modifiers",
    "group_terms",
    "parse_int",
    "parse_modifiers",
    "split_events",
    "split_terms",
    "with_modifiers",
)

_U64 = (1 << 64) - 1


def parse_int(text: str, where: str) -> int:
    """*text* as a u64 (decimal, ``0x``...).

    :raises InvalidParamsError: not a number, or out of range; the message starts with *where*.
    """
    try:
        value = int(text, 0)
    except ValueError:
        raise InvalidParamsError(f"{where}: {text!r} is not a number") from None
    if value < 0 or value > _U64:
        raise InvalidParamsError(f"{where}: {text!r} is out of range (0 to 2^64-1)")
    return value


@dataclass
class Modifiers:
    """The modifiers of one event (``:pp``, ``/P``, ``u``, ``k``)."""

    precise: int | None = None  # None: no p modifier
    precise_max: bool = False
    user: bool = False
    kernel: bool = False

    def text(self, precise: int, precise_max: bool) -> str:
        """The modifiers as perf writes them, with the precise level finally chosen."""
        out = "P" if precise_max else "p" * precise
        if self.user:
            out += "u"
        if self.kernel:
            out += "k"
        return out


def parse_modifiers(mods: str | None, item: str) -> Modifiers:
    """Parse the modifiers *mods* of event *item*.

    :raises InvalidParamsError: an unknown modifier, more than 3 ``p``, or ``p`` together with ``P``.
    """
    m = Modifiers()
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


def with_modifiers(perf_event: str, mods: str) -> str:
    """Append *mods* as perf writes them: ``cpu/mem-loads/`` + ``P`` -> ``cpu/mem-loads/P``, ``page-faults`` +
    ``u`` -> ``page-faults:u``."""
    if not mods:
        return perf_event
    return perf_event + mods if perf_event.endswith("/") else f"{perf_event}:{mods}"


def split_events(text: str) -> list[str]:
    """Split an event list at commas outside ``pmu/.../`` (``"cpu/mem-loads,ldlat=30/P,mem-stores"``: 2 items).

    :raises InvalidParamsError: empty, an event group, unbalanced ``/``, an empty event or white space inside one.
    """
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


def group_terms(items: list[str]) -> list[tuple[str, list[str]]]:
    """``(event, loose terms after it)`` per event of *items*.

    :raises InvalidParamsError: a loose term before any event.
    """
    groups: list[tuple[str, list[str]]] = []
    for item in items:
        if _is_loose_term(item):
            if not groups:
                raise InvalidParamsError(f"term {item!r} does not follow an event")
            groups[-1][1].append(item)
        else:
            groups.append((item, []))
    return groups


def split_terms(terms: str) -> list[str]:
    """The terms of ``pmu/TERMS/``, without empty ones."""
    return [t.strip() for t in terms.split(",") if t.strip()]

