"""One sealing key per state database.

The first process that opens a database stores a token sealed with its key; every later
process (another worker of a pool, the CLI on another machine) must open it, before it touches
anything else. A process with another key would otherwise seal new secrets that no other
worker can read, or fail on the first stored secret half-way through a run.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from acmeflow.core.errors import SecretError
from acmeflow.core.secrets import SecretBox, default_box
from acmeflow.core.state.db import session_scope
from acmeflow.core.state.models import AppSetting

KEY_CHECK_SETTING = "secret_key_check"
_CHECK_TEXT = "acmeflow sealing key check"


def verify_secret_key(engine: Engine, box: SecretBox | None = None) -> None:
    """Raise :class:`SecretError` unless ``box`` (default: the settings' key) opens the
    database's key check; the first caller of a database writes it."""
    box = box or default_box()
    token = _stored_or_written(engine, box)
    if token is None:
        return
    try:
        opened = box.decrypt(token) == _CHECK_TEXT
    except SecretError:
        opened = False
    if not opened:
        raise SecretError(
            detail=f"the sealing key of this process ({box.source}) is not the one the state "
            "database's secrets are sealed with: give every process and worker the same "
            "ACMEFLOW_SECRET_KEY or ACMEFLOW_SECRET_KEY_BLOCK (nothing was changed)"
        )


def _stored_or_written(engine: Engine, box: SecretBox) -> str | None:
    """The stored check token, or ``None`` when this call wrote the first one."""
    try:
        with session_scope(engine) as s:
            row = s.get(AppSetting, KEY_CHECK_SETTING)
            if row is not None:
                return row.value or ""
            s.add(AppSetting(key=KEY_CHECK_SETTING, value=box.encrypt(_CHECK_TEXT)))
        return None
    except IntegrityError:  # a concurrent first writer won the insert: check its token
        with session_scope(engine) as s:
            row = s.get(AppSetting, KEY_CHECK_SETTING)
            return row.value or "" if row is not None else ""
