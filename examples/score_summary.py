"""Summarise hst-processor's output on generate_sample.py data: normal versus fault scores.

    python examples/generate_sample.py --minutes 360 --fault-start 200 --fault-minutes 45 \\
        | hst-processor --config hst-processor.yaml \\
        | python examples/score_summary.py --fault-start 200 --fault-minutes 45

Metrics of the faulty machine from the fault's start to one minute after its end count as the
fault (the machine needs that long to come back); the first 15 s of the fault, while load ramps
up through its normal range, count as neither.
"""

from __future__ import annotations

import argparse
import statistics
import sys

START_NS = 1_767_225_600_000_000_000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", default="machine2")
    parser.add_argument("--fault-start", type=float, default=25)
    parser.add_argument("--fault-minutes", type=float, default=5)
    args = parser.parse_args()
    start, end = args.fault_start * 60, (args.fault_start + args.fault_minutes) * 60
    normal: list[float] = []
    fault: list[float] = []
    false_alarms = flagged = first = 0
    first_seen: float | None = None
    for line in sys.stdin:
        if "anomaly_score=" not in line:
            continue
        seconds = (int(line.rsplit(" ", 1)[1]) - START_NS) / 1e9
        score = float(line.split("anomaly_score=")[1].split(" ")[0].split(",")[0])
        anomalous = "anomaly=true" in line
        if f"machineID={args.fault}," in line and start <= seconds < end + 60:
            if seconds >= start + 15 and seconds < end:
                fault.append(score)
                flagged += anomalous
            if anomalous and first_seen is None:
                first_seen = seconds - start
        else:
            normal.append(score)
            false_alarms += anomalous
    first = int(first_seen) if first_seen is not None else -1
    print(
        f"normal: {len(normal)} metrics, median {statistics.median(normal):.3f}, "
        f"p99 {quantile(normal, 0.99):.3f}, p99.9 {quantile(normal, 0.999):.3f}, "
        f"max {max(normal):.3f}, flagged {false_alarms}"
    )
    if fault:
        print(
            f"fault: {len(fault)} metrics, min {min(fault):.3f}, p10 {quantile(fault, 0.1):.3f}, "
            f"flagged {flagged}, first flagged after {first} s"
        )


if __name__ == "__main__":
    main()
