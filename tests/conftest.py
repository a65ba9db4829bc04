"""Shared test settings."""

from hypothesis import settings

# CI shares two cores with subprocess-heavy tests: judge properties, not per-example speed.
settings.register_profile("default", deadline=None)
settings.load_profile("default")
