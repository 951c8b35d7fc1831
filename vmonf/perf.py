"""Process-wide speed settings, opt in: the worker, the CLI and the benches switch them on (:func:`tune_process`);
constructing a library object never does. A :class:`~vmonf.train.Trainer` flushes denormals only while it steps.
"""

from __future__ import annotations

import contextlib

import torch

_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks instead of handing them back to the OS after every step.

    A training step allocates and frees the same ~1 MB activations again and again. By default glibc
    returns such blocks to the OS (``munmap``, or trimming the top of the heap) and the next step
    faults the pages back in: with 10 components that cost 10-25 % of every step (``bench/speed.py``
    shows both). This raises the mmap threshold to 32 MB and the trim threshold to 256 MB, for the
    whole process and once; memory then stays at its peak instead of shrinking between steps.
    Returns ``False`` (and changes nothing) where there is no glibc ``mallopt``, e.g. on macOS or Windows.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))
    return _ALLOCATOR_TUNED


_PROCESS_FLUSH = False  # set by tune_process(): denormals flushed for the whole process


def tune_process() -> None:
    """Flush denormal floats to zero for the rest of the process, and keep freed memory (:func:`keep_freed_memory`).

    For the worker, the CLI and the benches. For torch's intra-op threads the flush must come before the
    first parallel operation.
    """
    global _PROCESS_FLUSH
    _PROCESS_FLUSH = bool(torch.set_flush_denormal(True))
    keep_freed_memory()


@contextlib.contextmanager
def flushing_denormals():
    """Flush denormal floats to zero on this thread inside the block, then leave the flag as :func:`tune_process`
    left it. Without the flush, training speed decayed ~2x over a few thousand steps: gradients near zero
    became denormal numbers, which x86 processors compute with slowly."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not _PROCESS_FLUSH:
            torch.set_flush_denormal(False)
