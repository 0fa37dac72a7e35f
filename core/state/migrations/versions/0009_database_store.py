"""database store backend: certificate versions and staged keys in the state database

Revision ID: 0009_database_store
Revises: 0008_ca_limits
Create Date: 2026-12-04 08:00:00

Portable DDL only (SQLite and PostgreSQL). Constraint names follow
core.state.models.NAMING_CONVENTION.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_database_store"
down_revision: str | Sequence[str] | None = "0008_ca_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(20), nullable=False),
        sa.Column("folder", sa.String(1000), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("serial", sa.String(100), nullable=True),
        sa.Column("cert_sha256", sa.String(64), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("fullchain_pem", sa.Text(), nullable=False),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("set_metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stored_versions"),
    )
    op.create_index(
        "ix_stored_versions_store_folder", "stored_versions", ["store", "folder", "live"]
    )
    op.create_table(
        "staged_keys",
        sa.Column("store", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store", "request_id", name="pk_staged_keys"),
    )
    op.create_index("ix_staged_keys_created_at", "staged_keys", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_staged_keys_created_at", table_name="staged_keys")
    op.drop_table("staged_keys")
    op.drop_index("ix_stored_versions_store_folder", table_name="stored_versions")
    op.drop_table("stored_versions")
