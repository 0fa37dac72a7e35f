"""challenge journal: every DNS-01 TXT value acmeflow presents, until it is cleaned up

Revision ID: 0005_challenge_journal
Revises: 0004_deploy
Create Date: 2025-01-05 00:00:00

Portable DDL only (SQLite and PostgreSQL). Constraint names follow
core.state.models.NAMING_CONVENTION. A row is written before a value is presented and deleted
after its cleanup succeeded; rows left behind (a crash) are what the ``sweep`` flow removes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_challenge_journal"
down_revision: str | Sequence[str] | None = "0004_deploy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "challenge_journal",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("fqdn", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("identifier", sa.String(255), nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_challenge_journal"),
    )
    op.create_index(
        "ix_challenge_journal_created_at", "challenge_journal", ["created_at"], unique=False
    )
    op.create_index(
        "ix_challenge_journal_provider_fqdn_value",
        "challenge_journal",
        ["provider", "fqdn", "value"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_challenge_journal_provider_fqdn_value", table_name="challenge_journal")
    op.drop_index("ix_challenge_journal_created_at", table_name="challenge_journal")
    op.drop_table("challenge_journal")
