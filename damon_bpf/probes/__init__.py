"""BPF probes: the only package that imports bcc (lazily, in :mod:`damon_bpf.probes._bcc`).

Counterpart of the kernel's access-check primitives (``mm/damon/ops-common.c``): probes turn BPF maps into plain
Python data for ``damon_bpf.ops``. Importing this package never imports bcc, so ``import damon_bpf.probes`` works
on machines without it; the functions raise :class:`~damon_bpf.errors.MissingDependencyError` instead.
"""

from damon_bpf.probes._bcc import (
    BccBPF,
    KernelHeaders,
    ProgType,
    attach_perf_event,
    attach_raw_tracepoint,
    attach_tracepoint,
    bpf_source_path,
    close_bpf,
    compile_bpf,
    detach_perf_event,
    detach_raw_tracepoint,
    detach_tracepoint,
    find_kernel_headers,
    load_bcc,
    load_program,
    map_clear,
    map_items,
)

__all__ = (
    "BccBPF",
    "KernelHeaders",
    "ProgType",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "attach_tracepoint",
    "bpf_source_path",
    "close_bpf",
    "compile_bpf",
    "detach_perf_event",
    "detach_raw_tracepoint",
    "detach_tracepoint",
    "find_kernel_headers",
    "load_bcc",
    "load_program",
    "map_clear",
    "map_items",
)
