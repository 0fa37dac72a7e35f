"""renewal: ACME Renewal Information (RFC 9773) window and check times per certificate

Revision ID: 0003_renewal
Revises: 0002_inventory
Create Date: 2025-01-03 00:00:00

Portable DDL only (SQLite via batch mode, PostgreSQL). The backoff columns
(``next_attempt_at``, ``failure_count``, ``last_error``) already exist since 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_renewal"
down_revision: str | Sequence[str] | None = "0002_inventory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS_COLUMNS = ("ari_window_start", "ari_window_end", "ari_checked_at", "ari_retry_after")


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        for name in _TS_COLUMNS:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ari_explanation_url", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("last_attempt_at")
        batch.drop_column("ari_explanation_url")
        for name in reversed(_TS_COLUMNS):
            batch.drop_column(name)
