"""Thin wrappers of Linux primitives: each syscall, procfs/sysfs file format and process operation once, with
errno mapped to the project's errors at this edge (psutil's ``_psposix`` is the model). Nothing above this
package calls ``ctypes``, ``os.kill`` on a child or ``signal.signal`` directly."""
