"""The numpy array types the package annotates with, named once so every module means the same
thing by them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray"]

FloatArray = npt.NDArray[np.float64]
"""Feature values, limits, masses' totals and scores."""

BoolArray = npt.NDArray[np.bool_]
"""Flags, per metric or per metric and field."""
