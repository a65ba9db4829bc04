"""Every optional extra, missing: one clear line naming the extra to install, no traceback.

Each case runs the real command in a fresh interpreter in which the extra's package cannot be
imported (``sys.modules[name] = None`` makes ``import name`` fail, as on a machine without it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABEL = (
    '{"id": 1, "machine": "a", "kind": "k", "field": "v", "start_ns": 1, "end_ns": 2, '
    '"source": "test"}\n'
)


def run_without(
    blocked: list[str], module: str, args: list[str], stdin: bytes = b""
) -> tuple[int, str]:
    program = (
        "import sys, runpy\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    return result.returncode, result.stderr.decode()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data.lp"
    data.write_text("".join(f"m,id=a v={i % 3} {i * 10**9}\n" for i in range(300)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(LABEL)
    river = tmp_path / "river.yaml"
    river.write_text("group_by: [id]\nmodel: {engine: river}\n")
    config = tmp_path / "c.yaml"
    config.write_text("group_by: [id]\nmodel: {window_size: 10}\n")
    return {
        "data": str(data),
        "labels": str(labels),
        "river": str(river),
        "config": str(config),
        "png": str(tmp_path / "out.png"),
    }


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        (["river"], ["--config", "{river}"], "river"),
        (["river"], ["replay", "{data}", "--config", "{river}"], "river"),
        (["matplotlib"], ["plot", "{data}", "-o", "{png}"], "plot"),
    ],
)
def test_a_command_whose_extra_is_missing_says_which_to_install_and_exits_2(
    blocked: list[str], args: list[str], extra: str, files: dict[str, str]
) -> None:
    code, stderr = run_without(
        blocked, "hst_processor", [arg.format(**files) for arg in args], b"m,id=a v=1 1\n"
    )
    assert code == 2
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("E! ")]
    assert len(errors) == 1, stderr
    assert f"pip install 'hst-processor[{extra}]'" in errors[0]


def test_evaluate_leaves_out_the_baselines_whose_extra_is_missing_and_says_which(
    files: dict[str, str],
) -> None:
    args = ["evaluate", files["data"], "--labels", files["labels"], "--config", files["config"]]
    code, stderr = run_without(["river", "sklearn"], "hst_processor", args)
    assert code == 0 and "Traceback" not in stderr
    assert "baseline 'IsolationForest' needs scikit-learn" in stderr
    assert "pip install 'hst-processor[baselines]'" in stderr
    assert "baseline 'river HST (defaults)' needs river" in stderr
    assert "pip install 'hst-processor[river]'" in stderr


@pytest.mark.parametrize(
    ("blocked", "args", "package"),
    [
        (["paho"], ["--machines", "1", "--no-panel"], "paho-mqtt"),
        (["flask"], ["--stdout", "--panel", "--duration", "1s", "--speed", "0"], "Flask"),
    ],
)
def test_the_simulator_without_its_extra_says_which_to_install(
    blocked: list[str], args: list[str], package: str
) -> None:
    code, stderr = run_without(blocked, "simulator", args)
    assert code == 2 and "Traceback" not in stderr
    assert stderr.count("\n") == 1, stderr
    assert "pip install 'hst-processor[simulator]'" in stderr and package in stderr


def test_check_config_refuses_the_river_engine_without_river(files: dict[str, str]) -> None:
    """It said OK, and the run it checked for then stopped at start."""
    code, stderr = run_without(["river"], "hst_processor", ["check-config", files["river"]])
    assert code == 2 and "Traceback" not in stderr
    assert "pip install 'hst-processor[river]'" in stderr
