"""The package's public face: every name of ``damon_bpf.__all__`` resolves to the object of its layer, and
importing a lower layer does not drag the layers above it (or bcc) in."""

from __future__ import annotations

import subprocess
import sys

import damon_bpf


def test_every_public_name_resolves() -> None:
    from damon_bpf.config.schemes import load_schemes
    from damon_bpf.engine.damos import Scheme
    from damon_bpf.results.records import read_records
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    for name in damon_bpf.__all__:
        assert getattr(damon_bpf, name) is not None, name
    assert (damon_bpf.Monitor, damon_bpf.MonitorSpec, damon_bpf.Scheme) == (Monitor, MonitorSpec, Scheme)
    assert (damon_bpf.load_schemes, damon_bpf.read_records) == (load_schemes, read_records)
    assert set(damon_bpf.__all__) <= set(dir(damon_bpf))
    assert issubclass(damon_bpf.TargetGoneError, damon_bpf.DamonBpfError)


def test_lower_layers_import_alone() -> None:
    code = ("import sys, damon_bpf.engine, damon_bpf.linux.syscalls; "
            "bad = [m for m in ('bcc', 'damon_bpf.ops', 'damon_bpf.session', 'damon_bpf.cli') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
