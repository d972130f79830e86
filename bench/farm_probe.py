"""The probe task of bench/farm_load.py: how long a task waited in the queue before a worker ran it.

The bench queues `bench.farm_probe.probe` with the time it queued it and the file to append to;
the cluster's worker imports this module from the project root (manage.py puts it on sys.path).
"""

from __future__ import annotations

import os
import time


def probe(t_enqueued: float, path: str) -> float:
    """Append "<queued at> <seconds waited>" to `path`; return the seconds waited."""
    waited = time.time() - t_enqueued
    line = f"{t_enqueued:.6f} {waited:.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one short write to an O_APPEND file: lines from two workers never mix
    finally:
        os.close(fd)
    return waited
