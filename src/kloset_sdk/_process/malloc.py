"""glibc's allocator tuned for streaming (:func:`tune_malloc`), as a connector starts."""

from __future__ import annotations

import ctypes
import sys

# glibc mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Bulk buffers (1 MiB chunks, protobuf messages, HTTP bodies) stay below this
# size and come from the heap, where freed memory is reused...
MMAP_THRESHOLD = 32 << 20
# An importer holds pages of a remote listing fetched ahead (a 5000-blob page is a
# few MiB of XML, and its text once decoded): mapped, each goes back to the system
# once read (20 MiB less at the listing's peak), while 1 MiB content chunks stay
# below and come from the heap.
IMPORTER_MMAP_THRESHOLD = 2 << 20
# A store's Puts hold whole blocks of objects (a few MiB each): mapped, they go
# back to the system once sent, which bounds a store's memory (~20 MiB less).
STORE_MMAP_THRESHOLD = 4 << 20
# ...up to this much free memory is kept per arena instead of being unmapped...
TRIM_THRESHOLD = 32 << 20
# ...and the many I/O threads share this many arenas, so that free memory
# is not scattered over one arena per thread.
ARENA_MAX = 2


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc reuse freed bulk buffers instead of mapping fresh pages.

    By default glibc serves allocations above its mmap threshold with fresh
    mappings and gives freed memory back eagerly, so streaming content paid
    a page fault for every 4 KiB of every chunk, protobuf message and HTTP
    buffer (about 200,000 faults per GiB read from Azure), and one arena per
    busy thread scattered free memory. No-op on other C libraries and systems.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = [mallopt(param, value) for param, value in (
        (_M_ARENA_MAX, ARENA_MAX), (_M_MMAP_THRESHOLD, mmap_threshold),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))]
    return all(done)
