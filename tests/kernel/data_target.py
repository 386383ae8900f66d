"""A target for the data attribution tests, run by the distribution's python3: reads the interpreter's large
global ``_PyRuntime`` over and over (``zlib.crc32`` of its bytes, no copy) and keeps a 64 MiB private anonymous
mapping, written once, cold. Prints ``<_PyRuntime address> <mapping address> <mapping size>`` and runs until
killed.

Usage: python3 data_target.py SIZE_OF_PYRUNTIME
"""

import ctypes
import mmap
import sys
import zlib

size = int(sys.argv[1])
addr = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
cold_size = 64 << 20
cold = mmap.mmap(-1, cold_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
cold.write(b"\x01" * cold_size)
print(addr, ctypes.addressof(ctypes.c_char.from_buffer(cold)), cold_size, flush=True)
while True:
    zlib.crc32(view)
