"""Instruction pointers to symbol names with BCC's symbolizer (``bcc.BPF.sym``, ``bcc_symcache``).

Counterpart of bcc's ``BPF.sym()`` (``src/python/bcc/__init__.py``), used by the tools' stack printers. User
addresses resolve through ``/proc/<pid>/maps`` and the ELF symbol tables of the mapped files, so the process must
still be alive (or, for a recycled pid, the answer is wrong; callers check liveness). Kernel addresses (the upper
half) resolve through ``/proc/kallsyms`` (pid -1; kernel addresses read as 0 without root). bcc is imported lazily.
"""

from __future__ import annotations

from typing import Sequence

from damon_bpf.probes._bcc import load_bcc

__all__ = ("symbolize", "KERNEL_ADDR_MIN")

#: Addresses at or above this are kernel addresses (x86-64 and arm64 upper halves).
KERNEL_ADDR_MIN = 1 << 63


def symbolize(pid: int, ips: Sequence[int]) -> list[str]:
    """Names for *ips* of process *pid*, as ``"symbol+0xoffset [module]"`` (bcc's ``show_module`` and
    ``show_offset`` form); ``"[unknown] [module]"`` when the module has no symbol for the address, and ``""``
    when nothing is known about it (no such mapping, the process is gone).

    :raises MissingDependencyError: bcc is not installed
    """
    bcc = load_bcc()
    out: list[str] = []
    for ip in ips:
        ip = int(ip)
        p = -1 if ip >= KERNEL_ADDR_MIN else pid
        try:
            raw = bcc.BPF.sym(ip, p, show_module=True, show_offset=True)
        except Exception:  # bcc raises bare exceptions for unreadable maps; treat as unknown
            raw = b"[unknown]"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        out.append("" if text.strip() == "[unknown]" else text)
    return out
