"""The command through its runner, ``cli.main``, in process with real pipes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hst_processor import __version__
from hst_processor.cli import main
from tests.reports import metric_lines

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, str]:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, stdin)
    os.close(in_w)
    stderr = io.StringIO()
    try:
        code = main(argv, stdin_fd=in_r, stdout_fd=out_w, stderr=stderr)
    finally:
        os.close(in_r)
        os.close(out_w)
    with os.fdopen(out_r, "rb") as out:
        return code, out.read(), stderr.getvalue()


def test_run_scores_stdin_to_stdout() -> None:
    code, out, err = run(
        ["--config", str(ROOT / "hst-processor.yaml")],
        b"machine_data,machineID=m1 load=70,power=210,temperature=36,vibration=85 1\n",
    )
    assert code == 0
    assert out == (
        b"machine_data,anomaly=warmup,machineID=m1 "
        b"load=70,power=210,temperature=36,vibration=85 1\n"
    )
    assert err.startswith("I! hst-processor ")
    assert "I! hst-processor: 1 lines in, 1 out" in err


def test_defaults_without_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HST_PROCESSOR_CONFIG", raising=False)
    code, out, err = run([], b"cpu,host=a idle=97.5 1\n")
    assert code == 0
    assert out == b"cpu,anomaly=warmup,host=a idle=97.5 1\n"
    assert "scoring all measurements by all tags" in err


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("scaling: {mode: fixed}\n")
    code, out, err = run(["--config", str(config)], b"m v=1 1\n")
    assert (code, out) == (2, b"")
    assert err == "E! config error: scaling.mode: fixed limits need an explicit features list\n"


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    code, _, err = run(["check-config", str(ROOT / "hst-processor.yaml")])
    assert code == 0 and "OK" in err
    code, _, err = run(["check-config", str(tmp_path / "missing.yaml")])
    assert code == 2 and "cannot read config file" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"hst-processor {__version__}"


def test_a_model_too_big_for_memory_stops_at_start_not_at_the_first_metric(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {n_trees: 1000, height: 20}\n")
    script = shutil.which("hst-processor")
    assert script is not None
    # The console script, in its own process: a model that is built anyway must not hang this one.
    result = subprocess.run(
        [script, "--config", str(config)], input=b"m v=1 1\n", capture_output=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.startswith(b"E! config error: model.height: 1000 trees of height 20")
    assert b"limits.memory_mb" in result.stderr


def test_check_config_refuses_a_yaml_alias_bomb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 7)]
    bomb.write_text("\n".join(lines) + "\n")  # a million values once expanded
    code, _, err = run(["check-config", str(bomb)])
    assert code == 2
    assert (
        err
        == "E! config error: the config expands to more than 100,000 values (a YAML alias bomb?)\n"
    )


@pytest.mark.parametrize(
    "option",
    [
        "model: {n_trees: '${HOOK}'}",
        "alerts: {timeout: '${HOOK}'}",
        "log: {level: 'x${HOOK}x'}",
        "state: {interval: '${HOOK}'}",
        "features: [load]\nderived: [{name: d, kind: '${HOOK}', field: load}]",
        "model: ${HOOK_YAML_MAP}",  # the variable's YAML: its keys are as secret
        "model:\n  features: ${HOOK_YAML_LIST}",
    ],
)
def test_a_config_error_never_quotes_a_value_from_the_environment(
    tmp_path: Path, option: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(option + "\n")
    secret = "https://hooks.slack.com/services/T0SECRET/B0SECRET/XSECRETTOKEN"
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "check-config", str(config)],
        capture_output=True,
        timeout=60,
        env={
            **os.environ,
            "HOOK": secret,
            "HOOK_YAML_MAP": "{T0SECRETKEY: 1}",
            "HOOK_YAML_LIST": "[B0SECRETFEATURE]",
        },
    )
    assert result.returncode == 2
    assert result.stderr.startswith(b"E! config error: ")  # still names the key and the reason
    assert b"SECRET" not in result.stderr and b"hooks.slack.com" not in result.stderr


def test_series_with_huge_keys_are_bounded_by_bytes_through_the_command(tmp_path: Path) -> None:
    """Issue 12, class 12: memory was bounded by the number of series only."""
    config = tmp_path / "c.yaml"
    config.write_text("measurements: [m]\ngroup_by: [host]\nlimits: {memory_mb: 16}\n")
    padding = "x" * 3000  # under limits.max_key_bytes: modelled, but each key is heavy
    lines = [f"m,host=h{i}{padding} v={i % 7} {i}" for i in range(3000)]
    lines += [f"m,host=big{i}{'y' * 10_000} v=1 {i}" for i in range(5)]  # over it: not modelled
    stream = ("\n".join(lines) + "\n").encode()
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "--config", str(config)], input=stream, capture_output=True, timeout=120
    )
    assert result.returncode == 0
    assert len(metric_lines(result.stdout)) == len(lines)
    summary = next(line for line in result.stderr.splitlines() if b"lines in" in line).decode()
    kept = int(summary.split(" series,")[0].rsplit(" ", 1)[1])
    evicted = int(summary.split(" evicted")[0].rsplit(" ", 1)[1])
    assert "5 keys too long" in summary
    assert 0 < kept < 3000 and kept + evicted == 3000  # 16 MiB cannot hold 3,000 series
    assert b"limits.memory_mb" in result.stderr  # and the operator is told why


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"measurements: [m\xff]\n", b"is not UTF-8 text"),
        (b"measurements: " + b"[" * 3000 + b"]" * 3000 + b"\n", b"nested too deeply"),
    ],
)
def test_a_config_that_is_not_text_or_too_deep_is_a_config_error(
    tmp_path: Path, content: bytes, reason: bytes
) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(content)
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run([script, "check-config", str(config)], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(b"E! config error: ") and reason in result.stderr


def test_a_state_file_with_an_engine_that_cannot_keep_one_is_refused_with_a_warning(
    tmp_path: Path,
) -> None:
    config = tmp_path / "river.yaml"
    config.write_text("model:\n  engine: river\n")
    state = tmp_path / "state.msgpack"
    code, out, err = run(["--config", str(config), "--state-file", str(state)], b"m,id=a x=1 1\n")
    assert code == 0 and out.startswith(b"m,anomaly=warmup,id=a x=1 1")
    assert "model.engine: river cannot keep its models in a state file" in err
    assert not state.exists()


@pytest.mark.parametrize("command", ["replay", "evaluate", "plot"])
def test_config_is_accepted_after_the_command_as_before_it(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("measurements: [m]\ngroup_by: [id]\nmodel: {window_size: 10}\n")
    data = tmp_path / "data.lp"
    data.write_text("".join(f"m,id=a v={i % 3} {i * 10**9}\n" for i in range(300)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"id": 1, "machine": "a", "kind": "k", "field": "v", "start_ns": 1, "end_ns": 2, '
        '"source": "test"}\n'
    )
    extra = {
        "replay": ["-o", str(tmp_path / "out.lp")],
        "evaluate": ["--labels", str(labels), "--no-baselines"],
        "plot": ["-o", str(tmp_path / "out.png")],
    }[command]
    errors = io.StringIO()
    after = main([command, str(data), *extra, "--config", str(config)], stderr=errors)
    shown_after = capsys.readouterr().out
    before = main(["--config", str(config), command, str(data), *extra], stderr=io.StringIO())
    assert after == before == 0
    assert shown_after == capsys.readouterr().out  # the same config, the same result


def test_a_config_after_the_command_wins_over_one_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.lp"
    data.write_text("".join(f"m,id=a v={i % 3} {i * 10**9}\n" for i in range(300)))
    configs = []
    for window in (10, 20):
        configs.append(tmp_path / f"w{window}.yaml")
        configs[-1].write_text(f"model: {{window_size: {window}}}\n")
    first, second = (str(path) for path in configs)
    code = main(
        ["--config", first, "replay", str(data), "-o", str(tmp_path / "o.lp"), "--config", second]
    )
    assert code == 0
    # A window of 20 and 100 calibration metrics: 120 in warm-up (a window of 10: 110).
    assert "m,id=a      300      120" in capsys.readouterr().out


def test_a_state_file_with_an_offline_command_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data.lp"
    data.write_text("m v=1 1\n")
    errors = io.StringIO()
    code = main(["--state-file", str(tmp_path / "s"), "replay", str(data)], stderr=errors)
    assert code == 2
    assert "--state-file: applies only when scoring stdin, not to replay" in errors.getvalue()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            "measurements: [machine_data]\ngroup_by: [machineID]\n",
            "scoring machine_data by machineID; fields read: each series' numeric fields; "
            "the trees see each field's deviation and residual, the range view each field "
            "against its first 1000 metrics; engine hst (10 trees, height 8, "
            "window 250); squashed into a fixed box; threshold 0.5",
        ),
        (
            (ROOT / "hst-processor.yaml").read_text(),
            "fields read: load, vibration, power, temperature; the trees see power_residual, "
            "temperature_repeats, temperature_residual, vibration_residual; engine hst (25 trees",
        ),
        (
            "features: [a, b]\ncontext_features: false\n",
            "fields read: a, b; the trees see the fields read; engine hst (10 trees, height 8, "
            "window 250); learned scaling",
        ),
    ],
)
def test_the_start_line_names_the_fields_read_and_what_the_trees_see(
    config: str, words: str, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    code, _, err = run(["--config", str(path)], b"")
    assert code == 0
    assert words in err.splitlines()[0]


def test_a_metric_without_any_feature_field_passes_through_unscored_through_the_command(
    tmp_path: Path,
) -> None:
    """It got a score, the last values' again, and taught them to the model a second time."""
    config = tmp_path / "c.yaml"
    config.write_text("model: {window_size: 10}\ndetection: {calibration: landmarks}\n")
    warm = "".join(f"m,id=a x={i % 7},y={i % 5} {i}\n" for i in range(40))
    status = 'm,id=a state="running" 40\n'
    code, out, err = run(["--config", str(config)], (warm + status).encode())
    assert code == 0
    lines = out.decode().splitlines(True)
    assert "anomaly_score=" in lines[-2]  # the series is warmed up and scores
    assert lines[-1] == status  # the status metric: exactly as it came
    assert "1 without a feature field" in err


def test_a_tool_whose_reader_leaves_ends_quietly(tmp_path: Path) -> None:
    """``hst-processor replay FILE | head -1`` printed a BrokenPipeError traceback, exit 1."""
    data = tmp_path / "data.lp"
    data.write_text("".join(f"m,id=a v={i % 3} {i}\n" for i in range(20_000)))
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        ["bash", "-c", f"'{script}' replay '{data}' | head -1; echo ${{PIPESTATUS[0]}} >&2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.startswith("m,anomaly=warmup,id=a v=0 0")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert result.stderr.splitlines()[-1] == "0"
