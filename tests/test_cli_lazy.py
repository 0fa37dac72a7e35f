"""The root group lists commands without importing them, and what it lists is what they say."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.main import get_command

from acmeflow.cli import app
from acmeflow.cli_lazy import COMMANDS


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = COMMANDS[name].load(name)
    assert command.name == name
    assert _first_paragraph(command.help or "") == _first_paragraph(COMMANDS[name].help)


def test_root_help_imports_no_command_module() -> None:
    probe = (
        "import json, sys\n"
        "from acmeflow.cli import main\n"
        "sys.argv = ['acmeflow', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    help_text, modules_json = done.stdout.rsplit("MODULES ", 1)
    for name in COMMANDS:
        assert f" {name} " in help_text
    loaded = [
        m
        for m in json.loads(modules_json)
        if m.startswith(("acmeflow.cli_", "sqlalchemy", "pydantic_settings", "acme."))
        and m != "acmeflow.cli_lazy"
    ]
    assert loaded == []


def test_unknown_command_suggests_the_closest() -> None:
    from tests.support import run_cli

    result = run_cli("isue")
    assert result.exit_code == 2
    assert "Did you mean 'issue'?" in result.output


def test_every_command_resolves_through_the_root_group() -> None:
    group = get_command(app)
    ctx = group.make_context("acmeflow", ["--help"], resilient_parsing=True)
    for name in COMMANDS:
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        assert command is not None and command.name == name
