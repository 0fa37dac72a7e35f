"""acmeflow's state: SQLAlchemy models, the database (migrated by Alembic on open) and the
repository functions the CLI and the Prefect tasks use."""

from acmeflow.core.state.db import dispose_engines, migrate, open_database, session_scope
from acmeflow.core.state.models import (
    AcmeAccount,
    Base,
    CAVendor,
    Certificate,
    DNSProviderConfig,
    DomainMapping,
    LogEntry,
)

__all__ = [
    "AcmeAccount",
    "Base",
    "CAVendor",
    "Certificate",
    "DNSProviderConfig",
    "DomainMapping",
    "LogEntry",
    "dispose_engines",
    "migrate",
    "open_database",
    "session_scope",
]
