"""Helpers for kernel tests: a process that touches memory, and region lookups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

TOUCHER = str(Path(__file__).with_name("toucher.py"))


class Toucher:
    """``toucher.py``: maps SIZE MiB (file-backed in DIR, or anonymous), keeps touching the first HOT MiB."""

    def __init__(self, size_mib: int, hot_mib: int, directory: str | None = None, threads: int = 1,
                 churn: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, TOUCHER, str(size_mib), str(hot_mib), directory or "-",
                                      str(threads), "churn" if churn else "-"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        self.addr, self.size = int(line[0]), int(line[1])
        self.hot_end = self.addr + (hot_mib << 20)
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Toucher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))
