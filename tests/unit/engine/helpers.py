"""Shared test helpers: a fake clock and a push-report test backend."""

from __future__ import annotations

import random

import numpy as np

from damon_bpf.engine.model import Ctx
from damon_bpf.engine.ops import BaseOperations
from damon_bpf.engine.access_reports import AccessReports, account_reports


class FakeClock:
    def __init__(self, start_ns: int = 10**12) -> None:
        self.now = start_ns

    def clock_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(round(seconds * 1e9))


class RandomReportOps(BaseOperations):
    """Pushes reports: each sampling interval, each (start, end, p) range is accessed with chance p, and then
    gets *per_interval* reports at uniformly random addresses inside it."""

    name = "test-random-reports"

    def __init__(self, hot: list[tuple[int, int, float]], seed: int = 0, batched: bool = True,
                 per_interval: int = 256) -> None:
        self.hot = hot
        self.per_interval = per_interval
        self.batched = batched
        self.rng = np.random.default_rng(seed)

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        if ctx.reports is None:
            ctx.reports = AccessReports()
        sample_ns = ctx.attrs.sample_interval_us * 1000
        for ti, _ in enumerate(ctx.targets):
            for start, end, p in self.hot:
                k = np.nonzero(self.rng.random(nr_samples) < p)[0]
                if k.size == 0:
                    continue
                k = np.repeat(k, self.per_interval)
                addrs = self.rng.integers(start, end, size=k.size, dtype=np.uint64)
                times = ctx.window_start_ns + k * sample_ns + self.rng.integers(0, sample_ns, size=k.size)
                ctx.reports.report(ti, addrs, times)
        return account_reports(ctx, ctx.window_start_ns, nr_samples)


def seeded_rng(seed: int) -> random.Random:
    return random.Random(seed)
