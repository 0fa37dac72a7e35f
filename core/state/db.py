"""Opening the database: engine per URL, Alembic migrations applied on open, sessions.

SQLite (the default, ``<home>/acmeflow.db``) runs with foreign keys on, WAL and a busy
timeout; PostgreSQL works with a ``postgresql+psycopg://`` URL. The migrations live inside
the package (``core/state/migrations``), so they run from an installed wheel too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from acmeflow.config.settings import get_settings
from acmeflow.core.errors import DiskWriteFailed
from acmeflow.core.files import mkdir_private

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key that serialises concurrent migrations ("acmeflow" in ASCII)
_PG_MIGRATION_LOCK = 0x61636D65666C6F77

#: The newest migration in ``migrations/versions``: a database already there is opened without
#: loading Alembic (a CLI command starts faster). tests/test_state.py checks it is Alembic's head.
SCHEMA_HEAD = "0009_database_store"

_engines: dict[str, Engine] = {}
_sessionmakers: dict[Engine, sessionmaker[Session]] = {}
_lock = threading.RLock()  # reentrant: the key check opens sessions while an engine is made


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` built in code (no ini file needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # one shared connection, or every connection would see its own empty database
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def at_schema_head(engine: Engine) -> bool:
    """Whether the database's schema is :data:`SCHEMA_HEAD` (False when it has none yet)."""
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # no alembic_version table yet: a new database
        return False
    return version == SCHEMA_HEAD


def migrate(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` (idempotent; safe across processes)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Batch migrations rebuild tables (copy, DROP, rename). With foreign keys on, the
            # DROP runs ON DELETE actions on child rows (SET NULL / CASCADE): data loss. The
            # pragma only changes outside a transaction, so switch it off before BEGIN.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            # take the write lock first: a second process waits here, then finds head
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, revision)
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
            conn.commit()
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def open_database(url: str | None = None) -> Engine:
    """The engine of ``url`` (default: the settings' database), migrated to the latest schema.

    Engines are cached per URL, so this is cheap to call again.
    """
    if url is None:
        settings = get_settings()
        mkdir_private(settings.home)
        url = settings.resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            try:
                if not at_schema_head(engine):
                    migrate(engine)
                from acmeflow.core.state.keycheck import verify_secret_key  # it uses sessions

                verify_secret_key(engine)  # before this process touches anything
            except BaseException:
                engine.dispose()
                raise
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close and forget every cached engine (tests, forks)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()


def _sessionmaker(engine: Engine) -> sessionmaker[Session]:
    with _lock:
        maker = _sessionmakers.get(engine)
        if maker is None:
            maker = _sessionmakers[engine] = sessionmaker(bind=engine, expire_on_commit=False)
        return maker


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception.

    Objects stay usable after the block (``expire_on_commit=False``).
    """
    session = _sessionmaker(engine or open_database())()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        if _disk_full(exc):
            raise DiskWriteFailed(detail=f"the database: {_first_line(exc)}") from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _first_line(exc: OperationalError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]


def _disk_full(exc: OperationalError) -> bool:
    """Whether the database could not write for lack of space (SQLite, PostgreSQL)."""
    text = _first_line(exc).lower()
    return "disk is full" in text or "no space left" in text or "could not extend" in text
