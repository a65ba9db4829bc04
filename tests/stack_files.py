"""Reading the stacks' files: compose files (and which repository file a service sees where)
and Telegraf configs, for the tests that check them (demo stack, dashboards, scale-out)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "REFERENCE",
    "SECRET_NAME",
    "assert_secrets_from_the_environment",
    "mounts",
    "parse_telegraf",
    "read_compose",
    "read_telegraf",
    "repo_path_at",
]

ROOT = Path(__file__).resolve().parent.parent
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|WEBHOOK|SECRET", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
"""A whole value that is one ``${VAR}`` reference (with a default or an error, if any)."""


def read_compose(path: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def parse_telegraf(text: str) -> dict[str, Any]:
    """A Telegraf config's TOML (its ``${VAR}`` references already substituted, if any
    would not be valid TOML as they stand)."""
    return tomllib.loads(text)


def read_telegraf(path: Path = ROOT / "telegraf.conf") -> dict[str, Any]:
    return parse_telegraf(path.read_text())


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


def assert_secrets_from_the_environment(compose: dict[str, Any]) -> None:
    """No secret is written into a compose file: every secret-looking variable of a service is
    a ``${VAR}`` reference, and every variable referenced is in ``.env.example``."""
    example = "\n" + (ROOT / ".env.example").read_text()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.match(str(value)), f"{name}.{key} is written inline"
            for variable in re.findall(r"\$\{([A-Z0-9_]+)", str(value)):
                assert f"\n{variable}=" in example, f"{variable} is not in .env.example"
