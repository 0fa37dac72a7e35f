"""inventory: scanned certificate files, their classification, and app settings

Revision ID: 0002_inventory
Revises: 0001_initial
Create Date: 2025-01-02 00:00:00

Portable DDL only (SQLite via batch mode, PostgreSQL). ``path`` is the file the scan read
(``cert.pem`` of an acmeflow folder, or a file placed by hand); ``file_size`` and
``file_mtime_ns`` let a rescan skip unchanged files; ``last_seen_at`` / ``gone_at`` record
when the scan last found the file and when it disappeared; ``issued_by_ca_id`` is the
configured CA vendor whose issuer names match the certificate's issuer (classification,
distinct from ``ca_vendor_id``: the CA the certificate is renewed through).
``app_settings`` holds small named settings (e.g. the PKCS#12 password reference of the
scan, sealed: a reference or an ``enc:`` value, never a plain secret).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_inventory"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("path", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("file_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("file_mtime_ns", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("issued_by_ca_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_certificates_issued_by_ca_id_ca_vendors",
            "ca_vendors",
            ["issued_by_ca_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_certificates_issued_by_ca_id", ["issued_by_ca_id"])
    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_app_settings"),
    )


def downgrade() -> None:
    op.drop_table("app_settings")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index("ix_certificates_issued_by_ca_id")
        batch.drop_constraint("fk_certificates_issued_by_ca_id_ca_vendors", type_="foreignkey")
        batch.drop_column("issued_by_ca_id")
        batch.drop_column("gone_at")
        batch.drop_column("last_seen_at")
        batch.drop_column("file_mtime_ns")
        batch.drop_column("file_size")
        batch.drop_column("path")
