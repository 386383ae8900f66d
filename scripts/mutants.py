#!/usr/bin/env python3
"""Mutation check of the engine and DAMOS: every listed one-line bug must make the unit suite fail.

Each mutant is applied to a scratch copy of the working tree (the checkout itself is never touched), and the
unit suite runs there, stopping at its first failure. A mutant the suite does not kill is a rule of the kernel
port that no test checks. The list names the kernel function each mutant breaks.

    make mutants                      # all of them
    scripts/mutants.py merge-thres    # the named ones
    scripts/mutants.py --list

Exit status: 0 when every mutant is killed (and the unmutated copy passes), 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what the scratch copy needs to run the unit suite
COPY = ("damon_bpf", "bpf", "tests", "bench", "scripts", "docs", "grafana", ".ci", "pyproject.toml", "README.md",
        "Makefile")
#: the unit suite, engine tests first so that most mutants die within seconds
SUITE = ("tests/unit/engine", "tests/unit")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (original text, its replacement); each original occurs exactly once
    breaks: str  # the kernel rule it breaks


def m(name: str, path: str, breaks: str, *edits: tuple[str, str]) -> Mutant:
    return Mutant(name, path, edits, breaks)


CORE, DAMOS, KDAMOND = "damon_bpf/engine/core.py", "damon_bpf/engine/damos.py", "damon_bpf/engine/kdamond.py"

MUTANTS: tuple[Mutant, ...] = (
    m("merge-thres", KDAMOND, "kdamond_fn(): merge threshold is max_nr_accesses / 10",
      ("merge_regions(ctx, max_nr_accesses // 10,", "merge_regions(ctx, max_nr_accesses // 2,")),
    m("attrs-age", CORE, "damon_update_monitoring_result(): age rescaled by the aggregation intervals",
      ("        ra.age = ra.age * old.aggr_interval_us // new.aggr_interval_us\n", "")),
    m("attrs-last", CORE, "damon_update_monitoring_result() (7.3): last_nr_accesses always rescaled",
      ("        ra.last_nr_accesses = _nr_accesses_for_new_attrs(ra.last_nr_accesses, old, new)\n"
       "        if aggregating:\n",
       "        if aggregating:\n"
       "            ra.last_nr_accesses = _nr_accesses_for_new_attrs(ra.last_nr_accesses, old, new)\n")),
    m("mvsum-full", CORE, "damon_nr_accesses_mvsum(): a whole window left means the last window's count",
      ("    if left_bp == 10000:\n        return last_nr_accesses",
       "    if left_bp == 10000:\n        return nr_accesses")),
    m("mvsum-shortcut", CORE, "damon_nr_accesses_mvsum(): the shortcut only at exactly 10000 bp",
      ("    if left_bp == 10000:", "    if left_bp >= 10000:")),
    m("quota-throughput", DAMOS, "damos_set_effective_quota(): time quota through the measured throughput",
      ("        if q.total_charged_ns:\n", "        if False:\n")),
    m("quota-floor", DAMOS, "damos_set_effective_quota(): esz at least min_region_sz after the time quota",
      ("        esz = max(ctx.min_region_sz, esz)\n", "")),
    m("hist-filters", DAMOS, "damos_adjust_quota() (7.1): the histogram skips core-filtered regions",
      ("                    if not rejected:\n", "                    if True:\n")),
    m("sz-after-split", DAMOS, "damos_apply_scheme(): sz from before the core filter's split",
      ("    region = _region(t, i)\n    t0 = ctx.clock_ns()",
       "    region = _region(t, i)\n    sz = region.end - region.start\n    t0 = ctx.clock_ns()")),
    m("update-min-nr", KDAMOND, "kdamond_fn(): no damon_apply_min_nr_regions() after ops.update()",
      ("            ops.update(ctx)\n", "            ops.update(ctx)\n            self._sz_limit = apply_min_nr_regions(ctx)\n")),
    m("set-regions-check", CORE, "damon_set_regions(): empty ranges are -EINVAL",
      ("        if rg.start >= rg.end:\n", "        if False:\n")),
    m("age-zero-flip", CORE, "damon_merge_regions_of() (6.18): age resets when nr_accesses flips to or from 0",
      ("(np.abs(nr - last) > thres) | ((nr == 0) != (last == 0))", "(np.abs(nr - last) > thres)")),
    m("merge-sz-limit", CORE, "damon_merge_regions_of(): merged size within sz_limit",
      ("(sz[:-1] + sz[1:] <= sz_limit)", "(sz[:-1] + sz[1:] >= 0)"),
      ("                if tot <= sz_limit:\n", "                if True:\n")),
    m("reset-last", CORE, "kdamond_reset_aggregated(): last_nr_accesses = nr_accesses",
      ("        ra.last_nr_accesses = ra.nr_accesses\n", "")),
    m("tune-halving", CORE, "damon_get_intervals_adaptation_bp(): shrinking limited to half per step",
      ("        adaptation_bp = 5000 + adaptation_bp // 2\n", "        adaptation_bp = adaptation_bp\n")),
    m("feed-min-input", CORE, "damon_feed_loop_next_input(): never below the minimum input",
      ("        return max(last_input - compensation, min_input)", "        return last_input - compensation")),
    m("min-nr-align", CORE, "damon_apply_min_nr_regions(): the size limit aligned up to min_region_sz",
      ("    max_region_sz = align_up(region_sz_limit(ctx), ctx.min_region_sz)",
       "    max_region_sz = region_sz_limit(ctx)")),
    m("split-small", CORE, "damon_split_regions_of(): regions of at most 2 * min_region_sz are not split",
      ("        valid = (sz > 2 * mrs) & (sub > 0)  #", "        valid = (sub > 0)  #")),
    m("split-three", CORE, "kdamond_split_regions(): three pieces only when the count did not change",
      ("nr_subs = 3 if (ctx.last_nr_regions == nr and nr < mx // 3) else 2", "nr_subs = 3 if nr < mx // 3 else 2")),
    m("quota-full-rule", DAMOS, "damos_quota_is_full() (7.2): less than min_region_sz left is full",
      ("    return q.charged_sz >= q.esz or q.esz - q.charged_sz < min_region_sz",
       "    return q.charged_sz >= q.esz")),
    m("fail-charge", DAMOS, "damos_charge_quota() (7.2): the failed part charged at the fail-charge ratio",
      ("q.charged_sz += sz_applied + (sz_region - sz_applied) * q.fail_charge_num // q.fail_charge_denom",
       "q.charged_sz += sz_region")),
    m("charge-addr", DAMOS, "damos_apply_scheme() (7.2 fix): resume from r->ar.end",
      ("        q.charge_addr_from = region.end\n", "        q.charge_addr_from = region.end + 1\n")),
    m("age-reset-apply", DAMOS, "damos_apply_scheme(): any action but stat resets the region's age",
      ("    if s.action is not Action.STAT:\n        t.ra.age[i] = 0\n", "")),
    m("default-reject", DAMOS, "damos_set_filters_default_reject(): ops filters make the core layer allow",
      ("core[-1].allow and not ops", "core[-1].allow")),
    m("wmark-mid", DAMOS, "damos_wmark_wait_us(): a deactivated scheme waits until the metric is below mid",
      ("    if not w.activated and w.mid <= metric <= w.high:", "    if not w.activated and w.mid < metric <= w.high:")),
    m("snapshot-last", DAMOS, "damon_do_apply_schemes() (7.0): a snapshot per target's last region",
      ("        if i == len(t.ra) - 1:\n            s.stat.nr_snapshots += 1",
       "        if i == 0:\n            s.stat.nr_snapshots += 1")),
    m("probe-merge", CORE, "damon_merge_two_regions() (7.2): probe_hits[] merged size-weighted",
      ("PH[p] = [(a * szl + b * szr) // tot for a, b in zip(PH[p], PH[i])]",
       "PH[p] = [(a + b) // 2 for a, b in zip(PH[p], PH[i])]")),
    m("probe-reset", CORE, "kdamond_reset_aggregated() (7.3): last_probe_hits = probe_hits",
      ("        ra.last_probe_hits = ra.probe_hits\n", "")),
    m("probe-wsum", DAMOS, "damos_filter_match() (7.2): the probe_hits_wsum range is inclusive",
      ("matched = f.wsum_min <= region_probe_hits_wsum(ctx, t, i) <= f.wsum_max",
       "matched = f.wsum_min <= region_probe_hits_wsum(ctx, t, i) < f.wsum_max")),
)


def check_applicable(mutant: Mutant, root: Path = ROOT) -> str | None:
    """Why *mutant* cannot be applied to the tree at *root* (None: it can)."""
    text = (root / mutant.path).read_text()
    for old, _ in mutant.edits:
        n = text.count(old)
        if n != 1:
            return f"{mutant.name}: the text to mutate occurs {n} times in {mutant.path}: {old.strip()[:60]!r}"
    return None


def apply(mutant: Mutant, root: Path) -> None:
    p = root / mutant.path
    text = p.read_text()
    for old, new in mutant.edits:
        text = text.replace(old, new, 1)
    p.write_text(text)


def copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "results")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)


def run_suite(root: Path, timeout_s: float) -> tuple[bool, str]:
    """Run the unit suite in *root*; (passed, the last lines of its output)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env.pop("DAMON_BPF_REQUIRE_KERNEL", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not kernel",
           "--rootdir", str(root), *SUITE]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:.0f} s (counted as killed)"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode == 0, "\n".join(lines[-3:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per suite run (default 300)")
    args = ap.parse_args(argv)
    by_name = {mu.name: mu for mu in MUTANTS}
    if args.list:
        for mu in MUTANTS:
            print(f"{mu.name:18} {mu.path:28} {mu.breaks}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        print(f"mutants: unknown mutant {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.names] if args.names else list(MUTANTS)
    stale = [why for mu in chosen if (why := check_applicable(mu)) is not None]
    if stale:
        for why in stale:
            print(f"mutants: stale mutant: {why}", file=sys.stderr)
        return 1
    survivors = []
    with tempfile.TemporaryDirectory(prefix="damon-bpf-mutants-") as tmp:
        base = Path(tmp) / "base"
        copy_tree(base)
        where = subprocess.run([sys.executable, "-c", "import damon_bpf; print(damon_bpf.__file__)"], cwd=base,
                               env={**os.environ, "PYTHONPATH": str(base)}, capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(base)):
            found = where.stdout.strip() or where.stderr.strip()
            print(f"mutants: the scratch copy does not import its own damon_bpf ({found})", file=sys.stderr)
            return 1
        t0 = time.monotonic()
        ok, tail = run_suite(base, args.timeout)
        print(f"{'(none)':18} {'passes' if ok else 'FAILS'}  {time.monotonic() - t0:5.1f} s", flush=True)
        if not ok:
            print(f"mutants: the unmutated suite fails; fix that first:\n{tail}", file=sys.stderr)
            return 1
        for mu in chosen:
            work = Path(tmp) / mu.name
            shutil.copytree(base, work)
            apply(mu, work)
            t0 = time.monotonic()
            passed, tail = run_suite(work, args.timeout)
            dt = time.monotonic() - t0
            print(f"{mu.name:18} {'SURVIVED' if passed else 'killed  '} {dt:5.1f} s  {mu.breaks}", flush=True)
            if passed:
                survivors.append(mu)
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} mutants killed")
    for mu in survivors:
        print(f"  survived: {mu.name} ({mu.path}): {mu.breaks}", file=sys.stderr)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
