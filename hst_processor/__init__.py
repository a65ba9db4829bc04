"""hst-processor: anomaly scores for Telegraf metrics from per-series Half-Space Trees.

The command ``hst-processor`` is a Telegraf ``processors.execd`` plugin; the library behind it
is usable on its own::

    from hst_processor import HalfSpaceTrees   # river's scores, without river

Names are imported on first use, so ``import hst_processor`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "HalfSpaceTrees",
    "HstProcessorError",
    "LineProtocolError",
    "__version__",
    "load_config",
]

_LOCATIONS = {
    "Config": "hst_processor.config",
    "load_config": "hst_processor.config",
    "ConfigError": "hst_processor.errors",
    "HstProcessorError": "hst_processor.errors",
    "LineProtocolError": "hst_processor.errors",
    "HalfSpaceTrees": "hst_processor.halfspacetrees",
}

if TYPE_CHECKING:
    from hst_processor.config import Config, load_config
    from hst_processor.errors import ConfigError, HstProcessorError, LineProtocolError
    from hst_processor.halfspacetrees import HalfSpaceTrees


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'hst_processor' has no attribute {name!r}")
