"""Process-wide settings the processor's own processes make: the command's and each scoring
worker's, never a library user's (see :func:`hst_processor.cli.console`).

CPython's cycle collector runs after every 700 new container objects by default. A read is
scored as a batch, so each read's metrics live long enough to be promoted to the older
generations, and full collections then walk every series' state again and again: measured
with 1,000 machines, 7 % of the demo config's time and 9 % of the defaults' (37 full
collections in 600,000 metrics; none at the thresholds below). The processor makes few
reference cycles, so collecting them less often costs next to no memory (the same peak RSS in
that run).
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_garbage_collector"]

GC_THRESHOLDS = (50_000, 10, 10)
"""New objects before a young collection, and young (then middle) collections before the next
generation's: CPython's defaults are (700, 10, 10)."""


def tune_garbage_collector() -> None:
    """Have the cycle collector run less often (call once, at a process's start)."""
    gc.set_threshold(*GC_THRESHOLDS)
