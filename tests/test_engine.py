"""The engine contract: masses, totals, the optional parts found once."""

from __future__ import annotations

import doctest

import pytest

import hst_processor.engine
import hst_processor.forest
import hst_processor.trees
from hst_processor.engine import (
    EngineParts,
    Explaining,
    Persistent,
    engine_persists,
    make_engine,
)
from hst_processor.forest import Forest, isolated_total
from hst_processor.trees import node_count


def test_the_examples_in_the_docstrings_hold() -> None:
    for module in (hst_processor.engine, hst_processor.forest, hst_processor.trees):
        assert doctest.testmod(module).failed == 0


def test_the_built_in_engine_explains_and_persists() -> None:
    parts = make_engine("hst", ("a", "b"), 4, 3, 20, 1)
    assert isinstance(parts.engine, Forest)
    assert parts.explainer is parts.engine and parts.persistence is parts.engine


def test_an_engine_without_the_optional_parts_gets_none() -> None:
    class Bare:
        window_size = 10

    parts = EngineParts.of(Bare())  # type: ignore[arg-type]
    assert parts.explainer is None and parts.persistence is None
    assert not isinstance(Bare(), Explaining) and not isinstance(Bare(), Persistent)


@pytest.mark.parametrize(("n_trees", "height", "window_size"), [(10, 8, 250), (1, 1, 2)])
def test_the_totals_span_from_isolated_to_the_largest(
    n_trees: int, height: int, window_size: int
) -> None:
    engine = make_engine("hst", ("a",), n_trees, height, window_size, 0).engine
    assert engine.isolated_total == isolated_total(n_trees, window_size)
    assert engine.max_total == engine.isolated_total * node_count(height)


def test_the_river_engine_has_the_same_totals_and_no_optional_parts() -> None:
    parts = make_engine("river", ("a", "b"), 10, 8, 250, 1)
    hst = make_engine("hst", ("a", "b"), 10, 8, 250, 1).engine
    assert (parts.engine.max_total, parts.engine.isolated_total) == (
        hst.max_total,
        hst.isolated_total,
    )
    assert parts.explainer is None and parts.persistence is None


def test_whether_an_engine_persists_is_known_from_its_name_and_matches_its_parts() -> None:
    for name in ("hst", "river"):
        parts = make_engine(name, ("a",), 2, 2, 4, 0)
        assert engine_persists(name) == (parts.persistence is not None)
    assert engine_persists("hst") and not engine_persists("river")
