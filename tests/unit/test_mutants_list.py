"""The mutation check's list stays applicable: every mutant's text occurs exactly once in the current engine,
and applying it really changes the file (so ``make mutants`` cannot pass by mutating nothing)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("damon_bpf_mutants", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


mutants = _load()


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda mu: mu.name)
def test_mutant_applies_to_the_current_tree(mutant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert mutants.check_applicable(mutant) is None
    dst = tmp_path / mutant.path
    dst.parent.mkdir(parents=True)
    shutil.copy2(ROOT / mutant.path, dst)
    before = dst.read_text()
    mutants.apply(mutant, tmp_path)
    after = dst.read_text()
    assert after != before
    compile(after, str(dst), "exec")  # a mutant is a bug, not a syntax error


def test_mutant_names_are_unique_and_cover_the_audit() -> None:
    names = [mu.name for mu in mutants.MUTANTS]
    assert len(names) == len(set(names))
    # the four bugs the issue #9 audit found the suite missing
    assert {"merge-thres", "attrs-age", "mvsum-full", "quota-throughput"} <= set(names)
