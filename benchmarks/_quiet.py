"""Silence what C++ libraries write straight to the process's stdout/stderr (the profiler's USDT
lines, ``gpuGetDeviceCount failed`` on a machine without a GPU, allocator warnings), so that a
benchmark prints only its table."""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced():
    """Redirect file descriptors 1 and 2 to /dev/null for the block (Python's own streams too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
