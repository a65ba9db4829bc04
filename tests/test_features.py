"""What the trees see: the default context features, derived ones, or the fields in model order."""

from __future__ import annotations

import doctest
from typing import Any

import hst_processor.features
from hst_processor.config import parse_config
from hst_processor.engine import make_engine
from hst_processor.features import FeaturePlan
from hst_processor.fields import LastValues
from hst_processor.series import Series

FIELDS = ("load", "power")


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.features).failed == 0


def series_of(plan: FeaturePlan, inputs: tuple[str, ...] = FIELDS) -> Series:
    features = plan.features_for(inputs)
    context, derived = plan.stages_for(inputs)
    masses = make_engine("hst", features, 2, 3, 10, 1).engine.new_masses()
    return Series(
        key=("m", ()),
        features=features,
        masses=masses,
        fields=LastValues.of(len(inputs)),
        inputs=inputs if features != inputs else features,
        context=context,
        derived=derived,
    )


def test_the_defaults_gather_a_window_then_give_every_gathered_row_at_once() -> None:
    plan = FeaturePlan(parse_config({"model": {"window_size": 20}}))
    series = series_of(plan)
    assert series.features == ("load.deviation", "load.residual", "power.deviation",
                               "power.residual")  # fmt: skip
    assert series.context is not None and series.derived is None
    answers = [plan.rows(series, [float(i % 5), 2.0 * (i % 5) + 1]) for i in range(20)]
    assert all(rows == [] for rows in answers[:19])  # warm-up: the fit gathers them
    assert len(answers[19]) == 20 and all(len(row) == 4 for row in answers[19])
    assert len(plan.rows(series, [1.0, 3.0])) == 1  # then one row per metric


def test_derived_features_wait_for_their_history_and_come_in_model_order() -> None:
    config = parse_config(
        {
            "features": ["load", "power"],
            "derived": [{"name": "a_change", "kind": "change", "field": "power"}],
        }
    )
    plan = FeaturePlan(config)
    series = series_of(plan)
    assert series.features == ("a_change", "load", "power")  # sorted: the derived one first
    assert plan.rows(series, [1.0, 10.0]) == []  # a change needs a previous value
    assert plan.rows(series, [2.0, 13.0]) == [[3.0, 2.0, 13.0]]


def test_model_features_pick_and_order_what_the_trees_see() -> None:
    config = parse_config({"features": ["power", "load"], "model": {"features": ["power"]}})
    plan = FeaturePlan(config)
    series = series_of(plan)
    assert (series.inputs, series.features) == (("load", "power"), ("power",))
    assert plan.rows(series, [1.0, 10.0]) == [[10.0]]


def test_without_context_the_fields_are_the_features_unchanged() -> None:
    plan = FeaturePlan(parse_config({"context_features": False}))
    series = series_of(plan)
    assert series.features is series.inputs
    row: list[Any] = [1.0, 2.0]
    assert plan.rows(series, row) == [[1.0, 2.0]]
