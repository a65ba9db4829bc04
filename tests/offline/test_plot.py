"""``plot``: one pair of panels per machine, fault windows shaded, alerts marked."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from hst_processor.config import load_config
from hst_processor.log import Log
from hst_processor.offline.labels import read_labels
from hst_processor.offline.plot import build_figure
from hst_processor.offline.replay import replay
from tests.offline.test_replay import CONFIG, simulated


def test_the_figure_shows_each_machine_its_faults_and_its_alerts(tmp_path: Path) -> None:
    data, labels_path = simulated(tmp_path, "machine1:bearing:10m:5m", "machine3:stuck:20m:5m")
    config = load_config(CONFIG)
    result = replay(config, data.open(), None, Log(io.StringIO()), keep_records=True)
    labels = read_labels(labels_path)
    figure = build_figure(result, labels, config.features, 0.12, "machineID")
    axes = figure.get_axes()
    assert len([a for a in axes if a.get_ylabel() in ("machine1", "machine2", "machine3")]) == 3
    score_axes = [a for a in axes if a.get_ylabel() == "score"]
    assert len(score_axes) == 3
    # Each machine's fault window shaded on both of its panels: two faults, four spans.
    spans = [p for a in axes for p in a.patches if isinstance(p, Rectangle)]
    assert len(spans) == 4
    markers = {
        line.get_label(): len(line.get_xdata())
        for a in score_axes
        for line in a.get_lines()
        if line.get_label().startswith("alert")
    }
    assert markers == {"alert opened": 1, "alert resolved": 1}
    threshold_lines = [line for a in score_axes for line in a.get_lines()
                       if line.get_label() == "threshold 0.12"]  # fmt: skip
    assert len(threshold_lines) == 3
    only = build_figure(result, labels, config.features, 0.12, "machineID", ["machine3"])
    assert len(only.get_axes()) == 2


def test_the_command_writes_a_png(tmp_path: Path) -> None:
    data, labels = simulated(tmp_path, "machine2:spike:12m")
    script = shutil.which("hst-processor")
    assert script is not None
    image = tmp_path / "out.png"
    result = subprocess.run(
        [script, "--config", str(CONFIG), "plot", str(data), "--labels", str(labels),
         "-o", str(image), "--machines", "machine2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size > 10_000
    empty = tmp_path / "empty.lp"
    empty.write_text("cpu usage=1 1\n")
    refused = subprocess.run(
        [script, "--config", str(CONFIG), "plot", str(empty), "-o", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and "has no metric the config scores" in refused.stderr


def test_without_matplotlib_or_with_no_machine_chosen_the_command_says_why(
    tmp_path: Path,
) -> None:
    """Both ended in a traceback."""
    data, _ = simulated(tmp_path)
    script = shutil.which("hst-processor")
    assert script is not None
    plot = [script, "--config", str(CONFIG), "plot", str(data), "-o", str(tmp_path / "x.png")]
    none_chosen = subprocess.run(
        [*plot, "--machines", "machine9"], capture_output=True, text=True, timeout=120
    )
    assert none_chosen.returncode == 2
    assert none_chosen.stderr.splitlines()[-1] == (
        f"E! plot: --machines machine9 matches no machine in {data} "
        "(it has machine1, machine2, machine3)"
    )
    # A matplotlib that cannot be imported, ahead of the real one on the path.
    hidden = tmp_path / "hidden" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}
    missing = subprocess.run(plot, capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2
    assert missing.stderr == (
        "E! plot needs matplotlib, which is not installed: pip install 'hst-processor[plot]'\n"
    )


def test_a_faults_name_is_dark_and_above_the_panel_where_no_line_covers_it(
    tmp_path: Path,
) -> None:
    data, labels_path = simulated(tmp_path, "machine1:bearing:10m:5m")
    config = load_config(CONFIG)
    result = replay(config, data.open(), None, Log(io.StringIO()), keep_records=True)
    figure = build_figure(result, read_labels(labels_path), (), 0.12, "machineID", ["machine1"])
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # positions are known once drawn
    values_axis = figure.get_axes()[0]
    (name,) = [text for text in values_axis.texts if text.get_text() == "bearing"]
    # Above the axes' top edge: outside the area the fields' lines are drawn in.
    renderer = canvas.get_renderer()
    assert name.get_window_extent(renderer).y0 >= values_axis.get_window_extent(renderer).y1 - 1
    red, green, blue, _ = to_rgba(name.get_color())
    assert 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.3  # dark: readable on any shade
    assert all(name.get_zorder() > line.get_zorder() for line in values_axis.get_lines())
