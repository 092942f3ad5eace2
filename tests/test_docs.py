"""Documentation tests: a setting, command or linked doc that is not documented fails the suite."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from flows.cli import app
from flows.config import KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_configuration_key_is_in_the_readme_table() -> None:
    missing = [k for k in KEYS if f"| `{k}` |" not in README]
    assert not missing


def test_every_cli_command_is_in_the_readme() -> None:
    group = typer.main.get_group(app)
    names = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            names += [f"refranges {name} {sub}" for sub in cmd.commands]
        else:
            names.append(f"refranges {name}")
    missing = [n for n in names if f"`{n}" not in README]
    assert not missing


def test_the_quick_start_is_two_make_commands_and_ci_runs_the_second() -> None:
    block = README.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec make test")


def test_every_linked_document_exists() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text(encoding="utf-8")):
            if target.startswith("http"):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
