"""``damon-bpf features [--json]``: what this machine supports (damo's ``damo features`` counterpart).

Prints one row per feature of :mod:`damon_bpf.probes.features`: name, yes/no, and the reason (no) or a short detail
(yes), in a table under 80 columns; then one row per access source: whether it can run here, decided by the same
check ``--source`` and ``--source auto`` use (the descriptor's ``check_supported``, :mod:`damon_bpf.ops.sources`),
the feature rows it needs (``source/NAME``), and which source ``auto`` picks (``source/auto``, its detail).
``--json`` prints all rows as a list of ``{name, supported, reason, detail}`` objects.
Needs no root: checks that need privileges say so in their reason. Exits 0 whatever is supported.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from collections.abc import Sequence
from typing import NamedTuple

from damon_bpf.errors import DamonBpfError
from damon_bpf.ops import sources
from damon_bpf.probes import features
from damon_bpf.probes.features import Feature

__all__ = ("add_arguments", "format_table", "SourceRow", "source_rows", "run")

#: Lines of the table are at most this wide.
MAX_WIDTH = 79


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, supported, reason, detail} (features, then sources)")


def _header(feats: Sequence[features.Feature]) -> str:
    uts = os.uname()
    nr_yes = sum(f.supported for f in feats)
    return f"damon-bpf features: Linux {uts.release} {uts.machine} ({nr_yes}/{len(feats)} supported)"


def format_table(feats: Sequence[features.Feature], width: int = MAX_WIDTH) -> list[str]:
    """Render *feats* as table lines no wider than *width*; long text wraps under the text column."""
    name_w = max([len("FEATURE")] + [len(f.name) for f in feats])
    lead = name_w + 2 + 3 + 2
    text_w = max(width - lead, 20)
    lines = [f"{'FEATURE':<{name_w}}  {'OK':<3}  REASON / DETAIL"]
    for f in feats:
        text = f.detail if f.supported else f.reason
        chunks = textwrap.wrap(text, text_w, break_on_hyphens=False) or [""]
        name = f.name if len(f.name) <= name_w else f.name[:name_w]
        lines.append(f"{name:<{name_w}}  {'yes' if f.supported else 'no':<3}  {chunks[0]}".rstrip())
        lines.extend(" " * lead + chunk for chunk in chunks[1:])
    return [line[:width] for line in lines]


class SourceRow(NamedTuple):
    """Whether one access source runs here, as ``--source`` and ``--source auto`` decide it."""

    name: str
    supported: bool
    reason: str
    needs: tuple[str, ...]  # feature rows it needs, every one
    needs_any: tuple[str, ...]  # feature rows of which it needs one

    def as_feature(self) -> Feature:
        """The row as a line of the table: ``source/NAME``, the feature rows it needs as its detail."""
        needs = ", ".join(self.needs)
        if self.needs_any:
            needs += (", " if needs else "") + "one of " + " / ".join(self.needs_any)
        return Feature(f"source/{self.name}", self.supported, self.reason, f"needs {needs}" if needs else "")


def source_rows() -> list[SourceRow]:
    """One row per selectable access source: whether it runs here (its descriptor's ``check_supported``, the
    check ``--source`` and ``--source auto`` make), why not, and the feature rows it needs."""
    rows = []
    for d in sources.SOURCES:
        if not d.selectable:
            continue
        try:
            d.check_supported()
            ok, reason = True, ""
        except DamonBpfError as err:
            ok, reason = False, str(err).split("\n", 1)[0]
        rows.append(SourceRow(d.name, ok, reason, tuple(d.features), tuple(d.features_any)))
    return rows


def run(args: argparse.Namespace) -> int:
    feats = features.check_all()
    rows = source_rows()
    try:
        picked, auto_ok, auto_reason = sources.auto_source().name, True, ""
    except DamonBpfError as err:
        picked, auto_ok, auto_reason = "nothing", False, str(err)
    if args.json:
        out = [f.to_dict() for f in feats] + [r.as_feature().to_dict() for r in rows]
        out.append(Feature("source/auto", auto_ok, auto_reason, picked).to_dict())
        print(json.dumps(out, indent=2))
        return 0
    print(_header(feats))
    for line in format_table(feats):
        print(line)
    print()
    table = format_table([r.as_feature() for r in rows])
    table[0] = table[0].replace("FEATURE", "SOURCE ", 1)
    for line in table:
        print(line)
    print(f"--source auto picks: {picked}" + (f" ({auto_reason})" if auto_reason else ""))
    return 0
