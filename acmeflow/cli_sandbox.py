"""``acmeflow sandbox``: run the local pebble + BIND sandbox for trying acmeflow out."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from acmeflow.config.settings import get_settings
from acmeflow.sandbox import (
    SandboxError,
    SandboxInfo,
    sandbox_answers,
    sandbox_status,
    sandbox_stop,
    sandbox_up,
)

app = typer.Typer(
    help="Local ACME sandbox: pebble (Let's Encrypt's test CA) validating DNS-01 against BIND.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Sandbox folder (default: $ACMEFLOW_HOME/sandbox).",
        file_okay=False,
        resolve_path=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _home(home: Path | None) -> Path:
    return home if home is not None else get_settings().home / "sandbox"


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=1)


def _table(info: SandboxInfo) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("home", str(info.home))
    table.add_row("ACME directory", info.directory_url)
    table.add_row("CA bundle", str(info.ca_bundle))
    table.add_row("management", info.management_url)
    table.add_row("DNS server", info.dns_server)
    table.add_row("zones", ", ".join(z.name for z in info.zones))
    table.add_row("EAB", f"required (kid {info.eab_kid})" if info.eab_required else "no")
    if info.options.get("nonce_reject"):
        table.add_row("nonce reject", f"{info.options['nonce_reject']} %")
    table.add_row("pids", f"pebble {info.pebble_pid}, named {info.named_pid}")
    return table


@app.command()
def up(
    home: HomeOption = None,
    eab: Annotated[bool, typer.Option("--eab", help="Require External Account Binding.")] = False,
    nonce_reject: Annotated[
        int,
        typer.Option("--nonce-reject", min=0, max=100, help="Percent of nonces pebble rejects."),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 30.0,
) -> None:
    """Start the sandbox (or show the one already running with the same options; one whose
    processes run but no longer answer is restarted)."""
    folder = _home(home)
    try:
        already = sandbox_status(folder)
        hung = already is not None and not sandbox_answers(already)
        if hung:
            sandbox_stop(folder)
        info = sandbox_up(folder, eab=eab, nonce_reject=nonce_reject, timeout=timeout, detach=True)
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    state = "started" if already is None else "already running"
    if hung:
        state = "restarted (it was not answering)"
    console.print(f"[bold green]Sandbox {state}[/]")
    console.print(_table(info))
    console.print(f'\nPoint a shell at it: [bold]eval "$(acmeflow sandbox env --home {folder})"[/]')


@app.command()
def down(home: HomeOption = None) -> None:
    """Stop the sandbox processes (only those `up` started)."""
    folder = _home(home)
    try:
        stopped = sandbox_stop(folder)
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    if not stopped:
        console.print(f"No sandbox running in {folder}.")
        return
    what = ", ".join(f"{p.name} (pid {p.pid})" for p in stopped)
    console.print(f"[bold]Stopped[/] {what}.")


@app.command()
def status(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Show whether the sandbox runs and where (secrets masked)."""
    folder = _home(home)
    try:
        info = sandbox_status(folder)
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    answering = info is not None and sandbox_answers(info)
    if as_json:
        payload = {"running": info is not None, "answering": answering, "home": str(folder)}
        if info is not None:
            payload |= info.to_json(include_secrets=False)
        typer.echo(json.dumps(payload, indent=2))
        return
    if info is None:
        console.print(f"No sandbox running in {folder}. Start one with `acmeflow sandbox up`.")
        raise typer.Exit(code=1)
    if not answering:
        console.print(
            "[bold red]Sandbox running but not answering[/]: pebble or BIND did not answer "
            "within 5 s. `acmeflow sandbox up` restarts it."
        )
        console.print(_table(info))
        raise typer.Exit(code=1)
    console.print("[bold green]Sandbox running[/]")
    console.print(_table(info))


@app.command()
def env(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Print the environment a client needs (``export`` lines; includes the sandbox keys)."""
    folder = _home(home)
    try:
        info = sandbox_status(folder)
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    if info is None:
        raise _fail(f"no sandbox running in {folder}; start one with `acmeflow sandbox up`")
    variables = info.env()
    if as_json:
        typer.echo(json.dumps(variables, indent=2, sort_keys=True))
        return
    for name, value in sorted(variables.items()):
        typer.echo(f"export {name}={shlex.quote(value)}")
