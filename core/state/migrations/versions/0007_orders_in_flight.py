"""orders in flight: an order about to be finalized and where its key waits

Revision ID: 0007_orders_in_flight
Revises: 0006_leases
Create Date: 2026-12-03 00:00:00

Portable DDL only (SQLite and PostgreSQL). Constraint names follow
core.state.models.NAMING_CONVENTION.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_orders_in_flight"
down_revision: str | Sequence[str] | None = "0006_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders_in_flight",
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("ca_name", sa.String(100), nullable=False),
        sa.Column("order_url", sa.String(500), nullable=False),
        sa.Column("key_staged", sa.Boolean(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_orders_in_flight"),
    )
    op.create_index(
        "ix_orders_in_flight_created_at", "orders_in_flight", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_orders_in_flight_created_at", table_name="orders_in_flight")
    op.drop_table("orders_in_flight")
