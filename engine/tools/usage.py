"""CPU time of this process, for the ``usage`` a tool run reports.

Small and free of engine imports on purpose: the ``python`` tool's child process
(:mod:`engine.tools.pyworker`) imports it, and that process must start quickly.
"""

from __future__ import annotations

import resource


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of the subprocesses it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
