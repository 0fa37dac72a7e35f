"""initial schema: CA vendors, ACME accounts, DNS providers, domain mappings, certificates,
issuance log

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00

Portable DDL only (SQLite and PostgreSQL). Constraint names follow
core.state.models.NAMING_CONVENTION.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "ca_vendors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("vendor", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("directory_url", sa.String(2000), nullable=False),
        sa.Column("eab_kid", sa.String(500), nullable=True),
        sa.Column("eab_hmac_key", sa.Text(), nullable=True),
        sa.Column("ca_bundle", sa.Text(), nullable=True),
        sa.Column("renew_days", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(100), nullable=True),
        sa.Column("preferred_chain", sa.String(200), nullable=True),
        sa.Column("issuer_names", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ca_vendors"),
        sa.UniqueConstraint("name", name="uq_ca_vendors_name"),
    )
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ca_vendor_id", sa.Integer(), nullable=False),
        sa.Column("directory_url", sa.String(2000), nullable=False),
        sa.Column("account_url", sa.String(2000), nullable=False),
        sa.Column("contact", sa.String(1000), nullable=True),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("key_type", sa.String(40), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["ca_vendor_id"],
            ["ca_vendors.id"],
            name="fk_acme_accounts_ca_vendor_id_ca_vendors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_acme_accounts"),
        sa.UniqueConstraint("ca_vendor_id", name="uq_acme_accounts_ca_vendor_id"),
    )
    op.create_table(
        "dns_providers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(60), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dns_providers"),
        sa.UniqueConstraint("name", name="uq_dns_providers_name"),
    )
    op.create_table(
        "domain_mappings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["dns_providers.id"],
            name="fk_domain_mappings_provider_id_dns_providers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_domain_mappings"),
        sa.UniqueConstraint("domain", name="uq_domain_mappings_domain"),
    )
    op.create_index("ix_domain_mappings_provider_id", "domain_mappings", ["provider_id"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(20), nullable=False),
        sa.Column("folder", sa.String(1000), nullable=False),
        sa.Column("common_name", sa.String(255), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("names_key", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=True),
        sa.Column("issuer", sa.String(1000), nullable=True),
        sa.Column("issuer_common_name", sa.String(255), nullable=True),
        sa.Column("issuer_organization", sa.String(255), nullable=True),
        sa.Column("serial", sa.String(100), nullable=True),
        _ts("not_before", nullable=True),
        _ts("not_after", nullable=True),
        sa.Column("key_type", sa.String(40), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=True),
        sa.Column("ca_vendor_id", sa.Integer(), nullable=True),
        sa.Column("enrollment", sa.String(10), nullable=False),
        sa.Column("csr_fields", sa.JSON(), nullable=False),
        sa.Column("reuse_key", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dns_provider_hint", sa.String(100), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("ari_cert_id", sa.String(500), nullable=True),
        _ts("renewal_due_at", nullable=True),
        _ts("next_attempt_at", nullable=True),
        sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["ca_vendor_id"],
            ["ca_vendors.id"],
            name="fk_certificates_ca_vendor_id_ca_vendors",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("store", "folder", name="uq_certificates_store_folder"),
    )
    op.create_index("ix_certificates_names_key", "certificates", ["names_key"])
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])
    op.create_index("ix_certificates_fingerprint_sha256", "certificates", ["fingerprint_sha256"])
    op.create_index("ix_certificates_ca_vendor_id", "certificates", ["ca_vendor_id"])
    op.create_index("ix_certificates_status", "certificates", ["status"])
    op.create_index("ix_certificates_renewal_due_at", "certificates", ["renewal_due_at"])
    op.create_table(
        "issuance_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("ca_name", sa.String(100), nullable=True),
        sa.Column("store", sa.String(20), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(100), nullable=True),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name="fk_issuance_log_certificate_id_certificates",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_issuance_log"),
    )
    op.create_index("ix_issuance_log_certificate_id", "issuance_log", ["certificate_id"])
    op.create_index("ix_issuance_log_status", "issuance_log", ["status"])
    op.create_index("ix_issuance_log_started_at", "issuance_log", ["started_at"])


def downgrade() -> None:
    op.drop_table("issuance_log")
    op.drop_table("certificates")
    op.drop_table("domain_mappings")
    op.drop_table("dns_providers")
    op.drop_table("acme_accounts")
    op.drop_table("ca_vendors")
