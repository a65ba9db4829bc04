"""The baseline: the seed's approach, one line at a time through river.

Reads stdin line by line, parses each metric with plain string splitting, scales the four
machine features with the demo's fixed limits, scores and learns with one river
``HalfSpaceTrees`` per machine, appends the score and tag, and prints. No batching, no
vectorisation, no validation beyond what the split needs, and a flush per line as Telegraf's
execd needs: the straightforward version of what a user would write first.

    python benchmarks/naive_processor.py < metrics.lp > /dev/null
"""

from __future__ import annotations

import sys

from river.anomaly import HalfSpaceTrees

LIMITS = {"load": (0.0, 250.0), "power": (0.0, 600.0), "temperature": (0.0, 150.0),
          "vibration": (0.0, 700.0)}  # fmt: skip
THRESHOLD = 0.8


def main() -> None:
    models: dict[str, HalfSpaceTrees] = {}
    write, flush = sys.stdout.write, sys.stdout.flush
    for line in sys.stdin:
        body = line.rstrip("\n")
        series, field_set, *rest = body.split(" ")
        if not series.startswith("machine_data,"):
            write(line)
            continue
        machine = ""
        for tag in series.split(",")[1:]:
            key, _, value = tag.partition("=")
            if key == "machineID":
                machine = value
        point = {}
        for pair in field_set.split(","):
            key, _, value = pair.partition("=")
            if key in LIMITS:
                low, high = LIMITS[key]
                point[key] = (float(value) - low) / (high - low)
        model = models.get(machine)
        if model is None:
            model = models[machine] = HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=42)
        score = model.score_one(point)
        model.learn_one(point)
        tag = "true" if score > THRESHOLD else "false"
        timestamp = f" {rest[0]}" if rest else ""
        write(f"{series},anomaly={tag} {field_set},anomaly_score={score!r}{timestamp}\n")
        flush()  # Telegraf waits for each line: a processor under execd must flush


if __name__ == "__main__":
    main()
