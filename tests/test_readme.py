"""The README against the code: its option tables against the config dataclasses, and its
quickstart and detection commands run literally in a copy of the repository."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hst_processor.config import Config, parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The option tables: a header, then one row per option: | `section.option` | default | meaning |
OPTION_TABLE = re.compile(
    r"^\| option \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\n)+)", re.MULTILINE
)
OPTION_ROW = re.compile(r"^\| `([a-z_]+(?:\.[a-z_]+)?)` \| (.+?) \| ", re.MULTILINE)


def options(config: Any = None, prefix: str = "") -> dict[str, dataclasses.Field[Any]]:
    """Every option of the config file, by its dotted name, with its dataclass field."""
    found: dict[str, dataclasses.Field[Any]] = {}
    for item in dataclasses.fields(config or Config):
        default = item.default_factory() if callable(item.default_factory) else None
        if dataclasses.is_dataclass(default):
            found.update(options(type(default), f"{item.name}."))
        else:
            found[prefix + item.name] = item
    return found


def effective(config: Config, name: str) -> Any:
    """An option's value in a config, tuples as the YAML lists they are written as."""
    value: Any = config
    for part in name.split("."):
        value = getattr(value, part)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {key: list(limits) for key, limits in value.items()}
    return value


def documented() -> dict[str, str]:
    rows: dict[str, str] = {}
    tables = OPTION_TABLE.findall(README)
    assert len(tables) >= 2  # the configuration's and the alerts'
    for table in tables:
        for name, default in OPTION_ROW.findall(table):
            assert name not in rows, f"{name} is documented twice"
            rows[name] = default
    return rows


def test_every_option_is_documented_once_and_nothing_else_is() -> None:
    assert set(documented()) == set(options())


@pytest.mark.parametrize("name", sorted(options()))
def test_the_documented_default_is_the_codes(name: str) -> None:
    """One default per option: the README's table says what an empty config gets."""
    cell = documented()[name]
    defaults = parse_config({})
    field = options()[name]
    if cell.startswith("unset"):
        # An option whose absence means something of its own: the field has no value, or the
        # value the README gives in brackets is what the config gets.
        given = re.search(r"\(([0-9.]+)\)", cell)
        if given is None:
            assert field.default is None, f"{name}: the README says unset, the code {field.default}"
        else:
            assert effective(defaults, name) == float(given.group(1))
        return
    written = re.match(r"`([^`]*)`", cell)
    assert written is not None, f"{name}: the default {cell!r} is not written as `value`"
    assert effective(defaults, name) == yaml.safe_load(written.group(1)), name


# ---------------------------------------------------------------------------------------------
# The README's commands, followed literally


def sh_blocks(section: str) -> list[str]:
    """The ``sh`` blocks of one ``## `` section of the README."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    body = README[start:end]
    return re.findall(r"```sh\n(.*?)```", body, re.DOTALL)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's files (tracked and new, nothing ignored) as a fresh repository."""
    copy = tmp_path_factory.mktemp("clone") / "hst-processor"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *command], cwd=copy, check=True, capture_output=True)
    return copy


def follow(command: str, checkout: Path) -> subprocess.CompletedProcess[str]:
    """A README command in bash, with this environment's ``python`` and ``hst-processor``
    first on the path (the install step itself is what ``.ci/run`` does)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=checkout,
        env={**os.environ, "PATH": path, "SLACK_WEBHOOK_URL": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_quickstart_prints_what_it_says_and_leaves_the_repository_clean(
    checkout: Path,
) -> None:
    demo, realtime, tests = sh_blocks("Quickstart")
    assert tests.strip() == "bash .ci/run"  # CI runs it; not run again from here
    install = ("python3 -m venv", ". .venv/bin/activate", "pip install")
    steps = [part for part in demo.strip().split(" && ") if not part.startswith(install)]
    result = follow(" && ".join(steps), checkout)
    assert result.returncode == 0, result.stderr
    promised = re.search(r"prints `(\d+ machineID=machine2)`", README)
    assert promised is not None
    assert result.stdout.split() == promised.group(1).split()
    result = follow(realtime, checkout)
    assert result.returncode == 0, result.stderr
    assert (checkout / "out" / "bearing-labels.jsonl").stat().st_size > 0
    assert git_status(checkout) == ""


def test_the_detection_commands_run_and_leave_the_repository_clean(checkout: Path) -> None:
    commands = sh_blocks("Measuring detection: replay, evaluate, plot")[
        0
    ]  # the next: the data sets
    result = follow(commands, checkout)
    assert result.returncode == 0, result.stderr
    for written in ("run.lp", "labels.jsonl", "scored.lp", "run.png"):
        assert (checkout / "out" / written).stat().st_size > 0
    assert re.search(r"^suggested threshold: 0\.\d+", result.stdout, re.MULTILINE)  # the sweep
    # Two faults that every threshold finds: the suggestion says how little it stands on.
    assert "on 2 labelled windows" in result.stdout and "few windows: label more" in result.stdout
    assert git_status(checkout) == ""


def git_status(checkout: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout


def test_the_opening_example_is_what_the_demo_writes(checkout: Path) -> None:
    """The README opens with one metric in and out: both must be the Quickstart demo's own."""
    source, scored = re.findall(r"```text\n(.*?)\n```", README, re.DOTALL)[:2]
    (demo, _, _) = sh_blocks("Quickstart")
    pipeline = next(part for part in demo.split(" && ") if part.startswith("python -m simulator"))
    simulate, process = pipeline.split(" | ")[:2]  # the simulator, then the processor
    (checkout / "out").mkdir(exist_ok=True)
    result = follow(f"{simulate} | tee out/demo-in.lp | {process}", checkout)
    assert result.returncode == 0, result.stderr
    assert source in (checkout / "out" / "demo-in.lp").read_text().splitlines()
    assert scored in result.stdout.splitlines()
