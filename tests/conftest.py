"""Shared test settings, and a loud stop when the test extra is not installed.

The oracle tests compare our engine with river's ``HalfSpaceTrees``; without river they would
have nothing to compare with. Skipping them would let a plain ``pip install -e .`` report a
green run that checked nothing of the engine's exactness, so the run stops at once instead.
"""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import settings

# CI shares two cores with subprocess-heavy tests: judge properties, not per-example speed.
settings.register_profile("default", deadline=None)
settings.load_profile("default")

# What the tests import from the ``test`` extra (pyproject.toml), by import name.
TEST_EXTRA = ("river", "paho.mqtt", "nats", "flask", "playwright", "matplotlib", "sklearn")


def missing_test_extra() -> list[str]:
    missing = []
    for name in TEST_EXTRA:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def pytest_configure(config: pytest.Config) -> None:
    missing = missing_test_extra()
    if missing:
        names = ", ".join(missing)
        raise pytest.UsageError(
            f"the tests need the test extra: pip install -e '.[test]' (missing: {names})"
        )
