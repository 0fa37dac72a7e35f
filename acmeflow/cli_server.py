"""``acmeflow server``: a local Prefect server (API and UI) that every later command uses."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from acmeflow.config.settings import get_settings
from acmeflow.server import ServerError, ServerInfo, server_start, server_status, server_stop

from .output import console, err_console, print_json

app = typer.Typer(
    help="A local Prefect server for this acmeflow home (UI on a loopback port).",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


@app.command("start")
def start(
    port: Annotated[int | None, typer.Option("--port", help="port (default: a free one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the local Prefect server in the background (or show the one already running);
    later acmeflow commands of this home run their flows there."""
    try:
        info = server_start(get_settings().home, port=port)
    except ServerError as exc:
        err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    if as_json:
        print_json({**asdict(info), "ui_url": info.ui_url})
        return
    console.print(f"[green]Prefect server up[/]: UI {info.ui_url}, API {info.url} (pid {info.pid})")
    console.print(_runner_line(info))


def _runner_line(info: ServerInfo) -> str:
    if info.runner_pid:
        return f"runner up (pid {info.runner_pid}): commands hand their flow runs to it"
    return "runner down: commands run their flows themselves (see runner.log in the home)"


@app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Whether the local Prefect server runs, and where. Exits 1 when it does not."""
    info = server_status(get_settings().home)
    if as_json:
        print_json({**asdict(info), "ui_url": info.ui_url} if info else {"running": False})
    elif info:
        console.print(f"up: UI {info.ui_url}, API {info.url} (pid {info.pid})")
        console.print(_runner_line(info))
    else:
        console.print("down (start it with `acmeflow server start`)")
    if info is None:
        raise typer.Exit(code=1)


@app.command("stop")
def stop() -> None:
    """Stop the local Prefect server and its runner this home started (nothing else)."""
    stopped = server_stop(get_settings().home)
    console.print("stopped" if stopped else "was not running")
