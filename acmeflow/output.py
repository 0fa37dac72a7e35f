"""Shared CLI plumbing: console, JSON output, catalog errors, secret references, the database."""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.dnsprovider import ProviderField
from acmeflow.core.state.db import open_database, session_scope

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def fail(exc: errors.AcmeflowError, *, as_json: bool = False) -> NoReturn:
    """Print a catalog error (message, then detail) and exit non-zero."""
    if as_json:
        print(json.dumps(exc.to_dict(), indent=2))
    else:
        err_console.print(f"[bold red]{exc.message}[/]", markup=True, soft_wrap=True)
        if exc.detail:
            err_console.print(exc.detail, markup=False, soft_wrap=True)
    raise typer.Exit(code=1)


def catalog_errors(fn: F) -> F:
    """Turn acmeflow errors raised by a command into the catalog output and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.AcmeflowError as exc:
            fail(exc, as_json=bool(kwargs.get("as_json")))

    return wrapper  # type: ignore[return-value]


@contextmanager
def database() -> Iterator[Session]:
    """A session on the configured database; commits on success, rolls back on any error."""
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        yield s


class _ConsoleLines(logging.Handler):
    """Prints each log record as one console line: ✓ for progress, a mark for problems."""

    def __init__(self, *, counted: bool, problem_mark: str) -> None:
        super().__init__(level=logging.INFO)
        self.counted = counted
        self.problem_mark = problem_mark
        self.done = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.done += 1
        mark = "[green]✓[/]" if record.levelno <= logging.INFO else self.problem_mark
        count = f"[{self.done}] " if self.counted else ""
        console.print(f"{mark} {count}{record.getMessage()}", soft_wrap=True, markup=True)


@contextmanager
def progress_lines(
    *loggers: str, enabled: bool = True, counted: bool = False, problem_mark: str = "[yellow]![/]"
) -> Iterator[None]:
    """While a command runs its flow, print what these loggers report, one line each.

    Off for ``--json`` (the output stays pure JSON); the loggers are restored afterwards.
    """
    if not enabled:
        yield
        return
    handler = _ConsoleLines(counted=counted, problem_mark=problem_mark)
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _level in saved:
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = True


def read_secret_ref(ref: str, what: str) -> str:
    """Accept a secret reference from the command line: ``env:NAME``, ``file:PATH`` or ``-``.

    ``-`` prompts without echo and returns the literal (it will be stored encrypted);
    references are returned as they are and resolved when used.
    """
    if ref == "-":
        if not sys.stdin.isatty():
            value = sys.stdin.readline().rstrip("\n")
        else:
            value = getpass.getpass(f"{what}: ")
        if not value:
            raise errors.SecretError(detail=f"no value given for {what}")
        return value
    if ref.startswith(("env:", "file:", "prefect-block:")):
        return ref
    raise errors.SecretError(
        detail=f"{what}: give a reference (env:NAME, file:PATH, prefect-block:NAME) or '-' to be "
        "prompted; secrets are never taken literally on the command line"
    )


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` options into a dict (a clear error for anything else)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise errors.ConfigError(detail=f"{what} expects KEY=VALUE, got {pair!r}")
        result[key.strip()] = value
    return result


def secret_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--secret KEY=REF`` options: each REF read as :func:`read_secret_ref` reads it."""
    refs = parse_pairs(pairs or [], "--secret")
    return {key: read_secret_ref(ref, key) for key, ref in refs.items()}


def field_rows(fields: Iterable[ProviderField]) -> list[dict[str, Any]]:
    """The fields of a provider or target type, as listed by ``dns providers`` and
    ``targets types``."""
    return [
        {"name": f.name, "kind": f.kind, "required": f.required, "help": f.help} for f in fields
    ]


def jsonable(value: Any) -> Any:
    """Make rows and dataclasses printable as JSON."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    print(json.dumps(jsonable(data), indent=2, sort_keys=False))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


def fmt_time(value: dt.datetime | None) -> str:
    """A timestamp for humans (UTC, minutes)."""
    return value.strftime("%Y-%m-%d %H:%M") if value else ""
