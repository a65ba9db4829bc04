"""The explanation stage: the field to blame and an alert's reasons."""

from __future__ import annotations

import doctest
from collections.abc import Sequence

import numpy as np

import hst_processor.explanation
from hst_processor.context import ContextFeatures, context_names
from hst_processor.explanation import Explanation
from hst_processor.forest import FloatArray, Forest
from hst_processor.trees import tree_structure


class Ranked:
    """An engine stand-in that ranks features in a fixed order."""

    def __init__(self, ranking: list[int]) -> None:
        self.ranking = ranking

    def explain(self, masses: object, point: Sequence[float]) -> list[int]:
        return self.ranking

    def normal_box(self, masses: object) -> tuple[FloatArray, FloatArray]:
        return np.array([0.25, 0.0]), np.array([0.75, 1.0])  # b: split nowhere, the whole box


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.explanation).failed == 0


def test_no_blame_without_a_feature_field_an_explainer_or_a_ranking() -> None:
    point = np.array([0.5, 0.5])
    assert Explanation(False, {}).blame(Ranked([0]), None, point, ("a", "b"), None) is None
    assert Explanation(True, {}).blame(None, None, point, ("a", "b"), None) is None
    assert Explanation(True, {}).blame(Ranked([]), None, point, ("a", "b"), None) is None
    assert Explanation(True, {}).blame(Ranked([1]), None, point, ("a", "b"), None) == "b"


def test_a_default_feature_is_blamed_on_its_field() -> None:
    context = ContextFeatures(("load", "power"), fit=10)
    features = context_names(("load", "power"))
    ranking = [features.index(next(f for f in features if f.startswith("power")))]
    blamed = Explanation(True, {}).blame(Ranked(ranking), None, np.zeros(4), features, context)
    assert blamed == "power"


def test_reasons_name_at_most_two_features_in_their_own_units() -> None:
    reasons = Explanation.reasons(
        Ranked([1, 0]), None, np.zeros(2), [5.0, 7.0], ("a", "b"),
        np.array([0.0, 10.0]), np.array([10.0, 30.0]), squashed=False,
    )  # fmt: skip
    assert [(r.name, r.value, r.normal_low, r.normal_high) for r in reasons] == [
        ("b", 7.0, None, None),  # the box's edges are no range: none is shown
        ("a", 5.0, 2.5, 7.5),
    ]
    assert Explanation.reasons(None, None, np.zeros(2), [5.0, 7.0], ("a", "b"),
                               np.zeros(2), np.ones(2), squashed=False) == ()  # fmt: skip


def test_the_forest_explains_an_outlier_by_the_feature_it_stands_out_in() -> None:
    forest = Forest(tree_structure(10, 6, 1, ("a", "b")), window_size=50)
    masses = forest.new_masses()
    rng = np.random.default_rng(3)
    forest.learn_many(masses, rng.uniform(0.4, 0.6, size=(100, 2)))
    point = np.array([0.5, 0.98])
    assert Explanation(True, {}).blame(forest, masses, point, ("a", "b"), None) == "b"
