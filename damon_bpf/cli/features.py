"""``damon-bpf features [--json]``: what this machine supports (damo's ``damo features`` counterpart).

Prints one row per feature of :mod:`damon_bpf.probes.features`: name, yes/no, and the reason (no) or a short detail
(yes), in a table under 80 columns; ``--json`` prints a list of ``{name, supported, reason, detail}`` objects.
Needs no root: checks that need privileges say so in their reason. Exits 0 whatever is supported.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from collections.abc import Sequence

from damon_bpf.probes import features

__all__ = ("add_arguments", "format_table", "run")

#: Lines of the table are at most this wide.
MAX_WIDTH = 79


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of {name, supported, reason, detail}")


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


def run(args: argparse.Namespace) -> int:
    feats = features.check_all()
    if args.json:
        print(json.dumps([f.to_dict() for f in feats], indent=2))
        return 0
    print(_header(feats))
    for line in format_table(feats):
        print(line)
    return 0
