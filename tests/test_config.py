"""Configuration: defaults, validation messages that name the key, ${ENV} interpolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hst_processor.config import Config, load_config, parse_config
from hst_processor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def error_of(document: Any, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, environ or {})
    return str(caught.value)


def test_empty_document_gives_the_documented_defaults() -> None:
    config = parse_config({})
    assert config == Config()
    assert (config.model.n_trees, config.model.height, config.model.window_size) == (10, 8, 250)
    assert config.detection.threshold == 0.5
    assert config.group_by is None and config.measurements == () and config.features == ()


def test_shipped_demo_config_is_valid() -> None:
    config = load_config(ROOT / "hst-processor.yaml")
    assert config.measurements == ("machine_data",)
    assert config.group_by == ("machineID",)
    assert set(config.features) == {"load", "vibration", "power", "temperature"}
    assert config.scaling.mode == "fixed"


LOAD_POWER = {"features": ["load", "power"]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"model": {"height": "x"}}, 'model.height: must be an integer from 1 to 20, got "x"'),
        ({"model": {"height": 0}}, "model.height: must be an integer from 1 to 20, got 0"),
        ({"model": {"n_trees": True}}, "model.n_trees: must be an integer from 1 to 1000"),
        ({"model": {"engine": "torch"}}, 'model.engine: must be one of hst, river, got "torch"'),
        ({"model": {"heigth": 3}}, "model.heigth: unknown option"),
        ({"self_metrics": {"interval": -1}}, "self_metrics.interval: must be a number from 0"),
        ({"self_metrics": {"interval": 0.05}}, "self_metrics.interval: must be 0 (off) or at"),
        ({"self_metrics": {"measurement": ""}}, "self_metrics.measurement: must be a non-empty"),
        ({"self_metrics": {"every": 1}}, "self_metrics.every: unknown option"),
        ({"self_metrics": {"measurement": "#hst"}}, "self_metrics.measurement: must not start"),
        ({"detection": {"threshold": 1.5}}, "detection.threshold: must be a number from 0 to 1"),
        ({"scaling": {"mode": "fixed"}}, "scaling.mode: fixed limits need an explicit features"),
        (
            {"features": ["a", "b"], "scaling": {"mode": "fixed", "limits": {"a": [0, 1]}}},
            "scaling.limits: fixed mode needs limits for ['b']",
        ),
        ({"scaling": {"limits": {"a": [5, 1]}}}, "scaling.limits.a: low must be below high"),
        ({"scaling": {"limits": {"a": "0..1"}}}, "scaling.limits.a: must be a list [low, high]"),
        ({"features": "load,power,"}, None),
        ({"features": [1, 2]}, "features: must be a list of non-empty names"),
        ({"group_by": ["a", "a"]}, "group_by: lists a name twice"),
        ({"output": {"tag": ""}}, "output.tag: must be a non-empty string"),
        ({"output": {"tag": 'a"b'}}, "output.tag: must not contain control characters"),
        ({"output": {"raw_score_field": "anomaly_score"}}, "output.raw_score_field: must differ"),
        ({"log": {"level": "loud"}}, "log.level: must be one of error, warn, info, debug"),
        ({"max_series": -1}, "max_series: must be an integer from 1"),
        ({"modle": {}}, "modle: unknown option"),
        (
            {"derived": [{"name": "d", "kind": "change", "field": "load"}]},
            "derived: derived features need an explicit features list",
        ),
        ({**LOAD_POWER, "derived": {"d": 1}}, "derived: must be a list of derived features"),
        (
            {**LOAD_POWER, "derived": [{"name": "d", "kind": "mean", "field": "load"}]},
            "derived[0].kind: must be one of change, deviation",
        ),
        (
            {**LOAD_POWER, "derived": [{"name": "load", "kind": "change", "field": "load"}]},
            "derived[0].name: 'load' is already a feature",
        ),
        (
            {**LOAD_POWER, "derived": [{"name": "d", "kind": "change", "field": "speed"}]},
            "derived[0].field: 'speed' is not one of the features",
        ),
        (
            {**LOAD_POWER, "derived": [{"name": "d", "kind": "residual", "field": "power"}]},
            "derived[0].of: must be a non-empty string",
        ),
        (
            {
                **LOAD_POWER,
                "derived": [{"name": "d", "kind": "residual", "field": "power", "of": "power"}],
            },
            "derived[0].of: must be another of the features",
        ),
        (
            {
                **LOAD_POWER,
                "derived": [{"name": "d", "kind": "change", "field": "load", "of": "power"}],
            },
            "derived[0].of: only ratio and residual take 'of'",
        ),
        (
            {
                **LOAD_POWER,
                "derived": [{"name": "d", "kind": "spread", "field": "load", "window": 1}],
            },
            "derived[0].window: must be an integer from 2",
        ),
        (
            {
                **LOAD_POWER,
                "derived": [
                    {"name": "d", "kind": "ratio", "field": "load", "of": "power", "window": 3}
                ],
            },
            "derived[0].window: only deviation, spread and residual take a window",
        ),
        (
            {**LOAD_POWER, "derived": [{"name": "d", "kind": "change", "field": "load", "fit": 9}]},
            "derived[0].fit: only residual takes 'fit'",
        ),
        (
            {
                **LOAD_POWER,
                "derived": [{"name": "d", "kind": "change", "field": "load", "size": 2}],
            },
            "derived[0].size: unknown option",
        ),
        (
            {**LOAD_POWER, "model": {"features": ["load", "speed"]}},
            "model.features: ['speed'] are neither features nor derived features",
        ),
        (
            {**LOAD_POWER, "model": {"features": ["load", "load"]}},
            "model.features: lists a name twice",
        ),
        (
            {"detection": {"threshold": 0.3, "learn_threshold": 0.4}},
            "detection.learn_threshold: must be a number from 0 to 0.3",
        ),
        (
            {"output": {"feature_field": "anomaly_score"}},
            "output.feature_field: must differ from the score fields",
        ),
        ({"model": []}, "model: must be a mapping of options, got a list"),
        ([1, 2], "the config must be a mapping of options, got a list"),
    ],
)
def test_bad_values_are_named_with_key_and_reason(document: Any, message: str | None) -> None:
    if message is None:
        assert parse_config(document).features == ("load,power,",)
        return
    assert message in error_of(document)


def test_environment_interpolation_types_whole_references() -> None:
    environ = {"HEIGHT": "6", "DB": "plant", "THRESHOLD": "0.7"}
    config = parse_config(
        {
            "model": {"height": "${HEIGHT}", "n_trees": "${TREES:-12}"},
            "detection": {"threshold": "${THRESHOLD}"},
            "measurements": ["${DB}_metrics"],
        },
        environ,
    )
    assert config.model.height == 6
    assert config.model.n_trees == 12
    assert config.detection.threshold == 0.7
    assert config.measurements == ("plant_metrics",)


def test_missing_environment_variable_names_key_and_variable() -> None:
    message = error_of({"model": {"seed": "${HST_SEED}"}})
    assert message == "model.seed: environment variable HST_SEED is not set"


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {height: 3\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML \(line 2"):
        load_config(broken)


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_config(empty) == Config()


def test_a_model_the_memory_cannot_hold_is_refused_naming_the_key_and_the_size() -> None:
    message = error_of({"model": {"n_trees": 1000, "height": 20}})
    assert message.startswith("model.height: 1000 trees of height 20 and a window of 250 need")
    assert "GiB for the trees and one series, more than limits.memory_mb allows (2048 MiB)" in (
        message
    )
    wide = {"features": [f"f{i}" for i in range(100)], "model": {"window_size": 1_000_000}}
    assert error_of(wide).startswith("model.window_size: ")  # 100 fields, a million rows each
    assert parse_config({**wide, "limits": {"memory_mb": 8192}}).limits.memory_mb == 8192


def test_limits_have_documented_defaults_and_ranges() -> None:
    assert (Config().limits.memory_mb, Config().limits.max_key_bytes) == (2048, 4096)
    assert "limits.max_key_bytes: must be an integer from 64" in error_of(
        {"limits": {"max_key_bytes": 0}}
    )
    assert "limits.memroy_mb: unknown option" in error_of({"limits": {"memroy_mb": 1}})


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(7))  # ten million values once expanded
    with pytest.raises(ConfigError) as caught:
        load_config(bomb)
    assert str(caught.value) == (
        "the config expands to more than 100,000 values (a YAML alias bomb?)"
    )


def test_an_alias_inside_itself_is_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("measurements: &loop [*loop]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(loop)
    assert caught.value.key.startswith("measurements[0][0]")
    assert caught.value.reason == "nested deeper than 32 levels (a YAML alias inside itself?)"
    assert "nested deeper" in error_of({"features": "${LOOP}"}, {"LOOP": "&l [*l]"})
