"""The root command group, whose commands' modules are imported only when they run.

``acmeflow --help`` lists every command from :data:`COMMANDS` without importing any of them,
and ``acmeflow certs list`` imports only ``acmeflow.cli_certs``: SQLAlchemy, the ACME client,
DNS libraries and Prefect load only where a command needs them (issue "A CLI that feels
instant"). ``tests/test_cli_lazy.py`` keeps each short help equal to its command's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click
from typer.core import DEFAULT_MARKUP_MODE, TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``module:attribute``, a Typer app or a command function) and
    the one line ``--help`` shows for it."""

    target: str
    help: str

    def load(self, name: str) -> _click.Command:
        module, attribute = self.target.split(":")
        found: Any = getattr(importlib.import_module(module), attribute)
        if isinstance(found, typer.Typer):
            command: _click.Command = get_group(found)
        else:
            command = get_command_from_info(
                CommandInfo(name=name, callback=found),
                pretty_exceptions_short=True,
                rich_markup_mode=DEFAULT_MARKUP_MODE,
            )
        command.name = name
        return command


COMMANDS: dict[str, LazyCommand] = {
    "issue": LazyCommand(
        "acmeflow.cli_issue:issue",
        "Issue a certificate over ACME DNS-01 (runs the Prefect flow `issue`).",
    ),
    "renew": LazyCommand(
        "acmeflow.cli_renew:renew",
        "Renew enrolled certificates whose renewal is due (runs the Prefect flow `renew`).",
    ),
    "certs": LazyCommand("acmeflow.cli_certs:app", "Certificates in the stores."),
    "logs": LazyCommand(
        "acmeflow.cli_logs:logs",
        "The issuance and renewal log (F8): every request, its outcome and its flow run.",
    ),
    "scan": LazyCommand(
        "acmeflow.cli_scan:scan",
        "Scan both stores (runs the Prefect flow `scan`): counts per CA, duplicates, expiries.",
    ),
    "deploy": LazyCommand(
        "acmeflow.cli_deploy:deploy",
        "Deploy a certificate to every target bound to it, now (runs the Prefect flow `deploy`).",
    ),
    "sweep": LazyCommand(
        "acmeflow.cli_sweep:sweep",
        "Remove stale DNS-01 challenge values left by crashed runs (runs the Prefect flow "
        "`sweep`).",
    ),
    "stores": LazyCommand(
        "acmeflow.cli_stores:app",
        "The two stores' backends (directory, database, s3): where certificates are, migrate.",
    ),
    "ca": LazyCommand("acmeflow.cli_ca:app", "CA vendors: add, edit, list, show, remove."),
    "dns": LazyCommand("acmeflow.cli_dns:app", "DNS providers and domain mapping."),
    "targets": LazyCommand(
        "acmeflow.cli_targets:app", "Deploy targets (NetScaler, files + reload, AWS ACM)."
    ),
    "schedules": LazyCommand(
        "acmeflow.cli_schedules:app",
        "Prefect deployments and schedules: one renew-<ca> per CA vendor, scan and sweep daily.",
    ),
    "serve": LazyCommand(
        "acmeflow.cli_schedules:serve",
        "Serve every acmeflow deployment (renew-<ca>, scan, sweep, issue, renew, deploy) in this "
        "process: no work pool needed. Needs a running Prefect server (PREFECT_API_URL).",
    ),
    "server": LazyCommand(
        "acmeflow.cli_server:app",
        "A local Prefect server for this acmeflow home (UI on a loopback port).",
    ),
    "alerts": LazyCommand(
        "acmeflow.cli_alerts:app",
        "Alerts through a Prefect notification block: renewal failed, certificate expiring, "
        "deploy failed (and, on request, renewal succeeded).",
    ),
    "sandbox": LazyCommand(
        "acmeflow.cli_sandbox:app",
        "Local ACME sandbox: pebble (Let's Encrypt's test CA) validating DNS-01 against BIND.",
    ),
}


class _LoadedOnUse(Mapping[str, _click.Command]):
    """Every command by name; a lazy one is imported on first lookup."""

    def __init__(self, eager: Mapping[str, _click.Command]) -> None:
        self._loaded = dict(eager)

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = COMMANDS[name].load(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._loaded if name not in COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))

    def listed(self, name: str) -> _click.Command:
        """The command if loaded, else a stand-in carrying its short help (for ``--help``)."""
        if name in self._loaded:
            return self._loaded[name]
        return TyperCommand(name, help=COMMANDS[name].help)


class LazyGroup(TyperGroup):
    """A Typer group whose commands come from :data:`COMMANDS`, imported when used."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LoadedOnUse(self.commands)  # type: ignore[assignment]
        self._listing = False

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        commands: _LoadedOnUse = self.commands  # type: ignore[assignment]
        if cmd_name not in commands:
            return None
        return commands.listed(cmd_name) if self._listing else commands[cmd_name]

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
