"""``hst-processor plot``: what the detector saw and said, machine by machine, as a picture.

For each machine two panels share the time axis: the fields the model reads, and the
``anomaly_score`` with the threshold. Labelled fault windows are shaded on both, alert openings
and resolutions are marked on the score. Needs matplotlib (``pip install 'hst-processor[plot]'``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hst_processor.alerts import OPEN, RESOLVE
from hst_processor.offline.evaluate import machine_of
from hst_processor.offline.labels import FaultLabel
from hst_processor.offline.replay import Replay
from hst_processor.times import utc_datetime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PALETTE", "build_figure", "fault_colours", "machines_in"]

PALETTE = ("#d62728", "#9467bd", "#1f77b4", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
"""Colours for the labelled kinds, given out in the order of the kinds' names."""


def fault_colours(labels: Sequence[FaultLabel]) -> dict[str, str]:
    """One colour per label kind, whatever the kinds are called."""
    kinds = sorted({label.kind for label in labels})
    return {kind: PALETTE[index % len(PALETTE)] for index, kind in enumerate(kinds)}


def machines_in(result: Replay, machine_tag: str | None) -> set[str]:
    """The machines a replay with ``keep_records`` saw (what ``machines`` may choose from)."""
    return {machine_of(dict(record.series[1]), machine_tag) for record in result.records}


def build_figure(
    result: Replay,
    labels: Sequence[FaultLabel],
    fields: Sequence[str],
    threshold: float,
    machine_tag: str | None,
    machines: Sequence[str] = (),
) -> Figure:
    """The figure for a replay with ``keep_records``; ``machines`` limits it (default: all),
    ``fields`` chooses the fields drawn (empty: every numeric field of each machine)."""
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[float, float | None, dict[str, float]]]] = defaultdict(list)
    colours = fault_colours(labels)
    for record in result.records:
        machine = machine_of(dict(record.series[1]), machine_tag)
        if not machines or machine in machines:
            series[machine].append((record.time_ns / 1e9, record.score, record.fields))
    names = sorted(series)
    figure = Figure(figsize=(12, 3.2 * len(names) + 0.5), layout="constrained")
    axes = figure.subplots(2 * len(names), 1, sharex=True, squeeze=False)[:, 0]
    for index, machine in enumerate(names):
        values_axis, score_axis = axes[2 * index], axes[2 * index + 1]
        rows = series[machine]
        times = [utc_datetime(t) for t, _, _ in rows]
        for field in fields or sorted(rows[0][2]):
            values_axis.plot(
                times, [f.get(field, float("nan")) for _, _, f in rows], lw=0.7, label=field
            )
        values_axis.set_ylabel(machine)
        values_axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        score_axis.plot(
            times,
            [float("nan") if s is None else s for _, s, _ in rows],
            lw=0.7,
            color="black",
            label="anomaly_score",
        )
        score_axis.axhline(
            threshold, color="red", ls="--", lw=0.8, label=f"threshold {threshold:g}"
        )
        score_axis.set_ylim(0, 1)
        score_axis.set_ylabel("score")
        last = rows[-1][0] if rows else 0.0
        for label in labels:
            if label.machine != machine:
                continue
            end = label.end_ns / 1e9 if label.end_ns is not None else last
            colour = colours[label.kind]
            for axis in (values_axis, score_axis):
                axis.axvspan(
                    utc_datetime(label.start_ns / 1e9), utc_datetime(end), color=colour, alpha=0.2
                )
            # The fault's name above the panel, where no line can cover it, in dark text on
            # a box of its window's colour (the colour's own text was pale, and a field's
            # line ran over it).
            values_axis.annotate(
                label.kind,
                (utc_datetime(label.start_ns / 1e9), 1.0),
                xycoords=("data", "axes fraction"),
                va="bottom",
                fontsize="small",
                color="black",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "alpha": 0.35, "lw": 0},
                annotation_clip=False,
                zorder=10,
            )
        for event in result.alerts:
            if machine_of(event.tags, machine_tag) != machine or event.kind not in (OPEN, RESOLVE):
                continue
            opened = event.kind == OPEN
            score_axis.plot(
                [utc_datetime(event.time)],
                [0.95],
                marker="v" if opened else "^",
                color="red" if opened else "green",
                ls="none",
                label="alert opened" if opened else "alert resolved",
            )
        handles, texts = score_axis.get_legend_handles_labels()
        unique = dict(zip(texts, handles, strict=True))
        score_axis.legend(
            unique.values(),
            unique.keys(),
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize="small",
        )
    axes[-1].set_xlabel("time (UTC)")
    return figure
