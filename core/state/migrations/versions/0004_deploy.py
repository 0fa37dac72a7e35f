"""deploy: deploy targets and their bindings to certificates

Revision ID: 0004_deploy
Revises: 0003_renewal
Create Date: 2025-01-04 00:00:00

Portable DDL only (SQLite and PostgreSQL). Constraint names follow
core.state.models.NAMING_CONVENTION. ``deploy_targets.secrets`` holds sealed values
(core.secrets.seal) or env:/file: references, never a plain secret.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_deploy"
down_revision: str | Sequence[str] | None = "0003_renewal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deploy_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_deploy_targets"),
        sa.UniqueConstraint("name", name="uq_deploy_targets_name"),
    )
    op.create_table(
        "target_bindings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("last_deployed_serial", sa.String(100), nullable=True),
        _ts("last_deployed_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["deploy_targets.id"],
            name="fk_target_bindings_target_id_deploy_targets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name="fk_target_bindings_certificate_id_certificates",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_target_bindings"),
        sa.UniqueConstraint(
            "target_id", "certificate_id", name="uq_target_bindings_target_id_certificate_id"
        ),
    )
    op.create_index("ix_target_bindings_certificate_id", "target_bindings", ["certificate_id"])


def downgrade() -> None:
    op.drop_index("ix_target_bindings_certificate_id", table_name="target_bindings")
    op.drop_table("target_bindings")
    op.drop_table("deploy_targets")
