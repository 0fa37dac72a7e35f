"""CA vendor limits: orders in flight at once and new orders per time window

Revision ID: 0008_ca_limits
Revises: 0007_orders_in_flight
Create Date: 2026-12-04 00:00:00

Portable DDL only (SQLite and PostgreSQL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_ca_limits"
down_revision: str | Sequence[str] | None = "0007_orders_in_flight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("max_in_flight", "rate_orders", "rate_window_seconds")


def upgrade() -> None:
    with op.batch_alter_table("ca_vendors") as batch:
        for column in _COLUMNS:
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ca_vendors") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
