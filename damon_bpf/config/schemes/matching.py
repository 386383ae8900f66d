"""Schemes that cannot match: :func:`schemes_never_matching` names the schemes of an initialised context that can
match no region in the session (a minimum age longer than the run, an access rate above what an aggregation
interval can have, a minimum above its maximum or above the size monitored)."""

from __future__ import annotations

from damon_bpf.config.schemes.to_json import _fmt_age, _fmt_bytes, _fmt_nr_accesses, _fmt_us
from damon_bpf.config.units import format_bytes
from damon_bpf.engine.damos import (
    Scheme,
)
from damon_bpf.engine.model import Attrs, Ctx


def pattern_never_matches(s: Scheme, attrs: Attrs, *, duration_us: int | None = None,
                          sz_monitored: int = 0) -> list[str]:
    """Why *s*'s access pattern can match no region in a session with *attrs* (after
    :meth:`~damon_bpf.engine.damos.AccessPattern.rebase` for them), each reason a short phrase; empty when it may
    match. Checked: a minimum age given as a time longer than the session's *duration_us*; a minimum access rate
    above the ``max_nr_accesses`` of *attrs*; a minimum above its maximum once converted; a minimum region size
    above the *sz_monitored* bytes all targets span (0: unknown, not checked).
    """
    p = s.pattern
    why: list[str] = []
    if duration_us is not None and p.min_age_us is not None and p.min_age_us > duration_us:
        why.append(f"its minimum age {_fmt_us(p.min_age_us)} is longer than the {_fmt_us(duration_us)} run")
    mx = attrs.max_nr_accesses
    nr_min = _fmt_nr_accesses(p.min_nr_accesses, p.min_nr_accesses_pct)
    if p.min_nr_accesses > mx:
        conv = "" if p.min_nr_accesses_pct is None else f" ({p.min_nr_accesses} samples)"
        why.append(f"its minimum access rate {nr_min}{conv} is above the {mx} samples an aggregation interval "
                   f"has")
    elif p.min_nr_accesses > p.max_nr_accesses:
        why.append(f"its minimum access rate {nr_min} ({p.min_nr_accesses} samples) is above its maximum "
                   f"{_fmt_nr_accesses(p.max_nr_accesses, p.max_nr_accesses_pct)} ({p.max_nr_accesses} samples)")
    if p.min_age_region > p.max_age_region:
        why.append(f"its minimum age {_fmt_age(p.min_age_region, p.min_age_us)} ({p.min_age_region} aggregation "
                   f"intervals) is above its maximum {_fmt_age(p.max_age_region, p.max_age_us)} "
                   f"({p.max_age_region})")
    if p.min_sz_bytes > p.max_sz_bytes:
        why.append(f"its minimum region size {_fmt_bytes(p.min_sz_bytes)} is above its maximum "
                   f"{_fmt_bytes(p.max_sz_bytes)}")
    elif sz_monitored and p.min_sz_bytes > sz_monitored:
        why.append(f"its minimum region size {_fmt_bytes(p.min_sz_bytes)} is larger than the "
                   f"{format_bytes(sz_monitored)} monitored")
    return why


def schemes_never_matching(ctx: Ctx, duration_us: int | None = None) -> list[str]:
    """One line for each scheme of *ctx* whose access pattern can match no region in this session (see
    :func:`pattern_never_matches`; the size monitored is the targets' regions as they are now), e.g.
    ``scheme 0 (pageout) can never match: its minimum age 5 s is longer than the 3 s run``. Call it once the
    context is initialised (``Kdamond.init()``: the regions are set and the bounds converted for ``ctx.attrs``).

    :param duration_us: how long the session runs; None: until stopped
    """
    sz = sum(t.ra.sz_total() for t in ctx.targets)
    out = []
    for i, s in enumerate(ctx.schemes):
        why = pattern_never_matches(s, ctx.attrs, duration_us=duration_us, sz_monitored=sz)
        if why:
            out.append(f"scheme {i} ({s.action.value}) can never match: {'; '.join(why)}")
    return out
