"""The commands the README opens with work in a root shell without sudo (a container's root shell often has
none), and CI runs what the README says it runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_commands(readme: str, n: int) -> list[list[str]]:
    # the first n commands of the README's first shell block, comments dropped
    m = re.search(r"^```sh\n(.*?)^```", readme, re.S | re.M)
    assert m, "README.md has no ```sh block"
    cmds = [shlex.split(line, comments=True) for line in m.group(1).splitlines()]
    return [c for c in cmds if c][:n]


def _make_targets(makefile: str) -> dict[str, str]:
    # target -> its recipe (the tab-indented lines after "target: ...")
    targets: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z][\w-]*):(?!=)[^\n]*\n((?:\t[^\n]*\n)*)", makefile, re.M):
        targets[m.group(1)] = m.group(2)
    return targets


def test_readme_first_commands_need_no_sudo() -> None:
    cmds = _first_commands((ROOT / "README.md").read_text(), 2)
    assert len(cmds) == 2
    targets = _make_targets((ROOT / "Makefile").read_text())
    for cmd in cmds:
        assert "sudo" not in cmd, f"{shlex.join(cmd)}: a root shell without sudo cannot run it"
        assert cmd[0] == "make" and len(cmd) == 2 and cmd[1] in targets, shlex.join(cmd)
        recipe = targets[cmd[1]] + targets.get("setup", "")
        assert not re.search(r"\bsudo\b", recipe), f"make {cmd[1]}'s recipe calls sudo"


def test_ci_runs_the_readme_test_command_lint_and_mutants() -> None:
    run = [shlex.split(line, comments=True) for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    makes = [c[1] for c in run if len(c) == 2 and c[0] == "make"]
    assert makes == ["test", "lint", "mutants"]


def test_every_package_is_shipped() -> None:
    # pyproject.toml lists the packages by hand (bpf/ is mapped into damon_bpf.bpf): a new subpackage left out
    # works from the checkout and is missing from an installed wheel
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "damon_bpf").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
