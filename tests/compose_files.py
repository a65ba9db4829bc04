"""Reading a compose file's bind mounts: which repository file a service sees where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["mounts", "repo_path_at"]

ROOT = Path(__file__).resolve().parent.parent


def mounts(compose: dict[str, Any], service: str) -> dict[str, str]:
    """Container path -> what is mounted there (``./repo/path`` or a volume's name)."""
    table = {}
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        table[target] = source
    return table


def repo_path_at(
    compose: dict[str, Any], service: str, path: str, root: Path = ROOT
) -> Path | None:
    """The repository file or folder that ``service`` sees at ``path`` (through a bind mount
    of it or of a folder above it; None: not a bind mount). ``root`` is where the compose
    file's ``./`` paths start."""
    for target, source in mounts(compose, service).items():
        if source.startswith("./") and (path == target or path.startswith(target + "/")):
            return root / source / Path(path).relative_to(target)
    return None
