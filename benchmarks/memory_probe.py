"""Resident memory per series, measured in a fresh process.

    python benchmarks/memory_probe.py hst 10000
    python benchmarks/memory_probe.py river 200

Feeds each series one full window plus a few metrics through the detector (so every series
has a reference window and its derived state), then prints the growth of the resident set
size divided by the number of series, in bytes.
"""

from __future__ import annotations

import gc
import io
import os
import random
import sys

from hst_processor.config import parse_config
from hst_processor.detector import Detector
from hst_processor.lineproto import parse_metric
from hst_processor.log import Log


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    engine, n_series = sys.argv[1], int(sys.argv[2])
    config = parse_config(
        {
            "measurements": ["machine_data"],
            "group_by": ["machineID"],
            "features": ["load", "power", "temperature", "vibration"],
            "max_series": n_series,
            "model": {"engine": engine},
            "scaling": {
                "mode": "fixed",
                "limits": {"load": [0, 250], "power": [0, 600], "temperature": [0, 150],
                           "vibration": [0, 700]},
            },
        }
    )  # fmt: skip
    detector = Detector(config, Log(io.StringIO()))
    if engine == "river":
        import river.anomaly  # noqa: F401  (its import cost is not per series)
    rng = random.Random(1)
    # One metric text per series, parsed once, so the probe measures models, not metrics.
    templates = [
        parse_metric(
            f"machine_data,machineID=m{i} load={rng.uniform(50, 99):.2f},"
            f"power={rng.uniform(200, 220):.2f},temperature={rng.uniform(35, 40):.2f},"
            f"vibration={rng.uniform(80, 90):.2f} 1"
        )
        for i in range(n_series)
    ]
    gc.collect()
    before = rss_bytes()
    for _ in range(config.model.window_size + 5):
        detector.process(templates)
    gc.collect()
    after = rss_bytes()
    assert len(detector.series) == n_series
    print((after - before) / n_series)


if __name__ == "__main__":
    main()
