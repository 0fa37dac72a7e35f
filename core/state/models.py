"""The database tables (SQLAlchemy 2 declarative). The schema itself is made by Alembic
(``migrations/versions``); a change here needs a new revision there.

Timestamps are timezone-aware UTC. Secret columns hold *sealed* values
(:func:`core.secrets.seal`): ``enc:<token>`` or a reference, never a plain secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from acmeflow.core.errors import ConfigError
from acmeflow.core.names import canonical_name
from acmeflow.core.stores import STORE_KINDS, names_digest

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ENROLLMENTS = ("auto", "manual")
CERT_STATUSES = ("active", "gone")
CERT_SOURCES = ("acmeflow", "scan")
LOG_KINDS = ("issue", "renew", "deploy", "scan")
LOG_STATUSES = ("running", "success", "failed", "skipped")


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always returned as aware UTC (SQLite stores it naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; acmeflow stores aware UTC timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(detail=f"{field} must be one of {', '.join(allowed)} (got {value!r})")
    return value


class Base(DeclarativeBase):
    """Declarative base with constraint naming (stable names for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CAVendor(_Timestamps, Base):
    """A configured ACME certificate authority."""

    __tablename__ = "ca_vendors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    vendor: Mapped[str] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(320))
    directory_url: Mapped[str] = mapped_column(String(2000))
    eab_kid: Mapped[str | None] = mapped_column(String(500))
    eab_hmac_key: Mapped[str | None] = mapped_column(Text)  # sealed
    ca_bundle: Mapped[str | None] = mapped_column(Text)
    renew_days: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str | None] = mapped_column(String(100))
    preferred_chain: Mapped[str | None] = mapped_column(String(200))
    issuer_names: Mapped[list[str]] = mapped_column(MutableList.as_mutable(JSON()), default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # held across every worker by Prefect global concurrency limits (``schedules sync``)
    max_in_flight: Mapped[int | None] = mapped_column(Integer)  # None: no pool-wide cap
    rate_orders: Mapped[int | None] = mapped_column(Integer)  # new orders per rate window
    rate_window_seconds: Mapped[int | None] = mapped_column(Integer)

    account: Mapped[AcmeAccount | None] = relationship(
        back_populates="ca_vendor", cascade="all, delete-orphan", passive_deletes=True
    )
    certificates: Mapped[list[Certificate]] = relationship(
        back_populates="ca_vendor", passive_deletes=True, foreign_keys="Certificate.ca_vendor_id"
    )

    def __repr__(self) -> str:
        return f"CAVendor(id={self.id!r}, name={self.name!r}, vendor={self.vendor!r})"


class AcmeAccount(Base):
    """The ACME account registered at a CA vendor (one per vendor)."""

    __tablename__ = "acme_accounts"
    __table_args__ = (UniqueConstraint("ca_vendor_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ca_vendor_id: Mapped[int] = mapped_column(ForeignKey("ca_vendors.id", ondelete="CASCADE"))
    directory_url: Mapped[str] = mapped_column(String(2000))
    account_url: Mapped[str] = mapped_column(String(2000))
    contact: Mapped[str | None] = mapped_column(String(1000))
    key_pem: Mapped[str] = mapped_column(Text)  # sealed (always encrypted)
    key_type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ca_vendor: Mapped[CAVendor] = relationship(back_populates="account")

    def __repr__(self) -> str:
        return f"AcmeAccount(id={self.id!r}, ca_vendor_id={self.ca_vendor_id!r})"


class DNSProviderConfig(_Timestamps, Base):
    """A configured DNS provider: its type, settings and sealed secrets."""

    __tablename__ = "dns_providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(60))
    settings: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    secrets: Mapped[dict[str, str]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    domains: Mapped[list[DomainMapping]] = relationship(
        back_populates="provider",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DomainMapping.domain",
    )

    def __repr__(self) -> str:
        return f"DNSProviderConfig(id={self.id!r}, name={self.name!r}, type={self.type!r})"


class DomainMapping(Base):
    """A domain (and its subdomains) whose DNS-01 records go to one provider."""

    __tablename__ = "domain_mappings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("dns_providers.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[str] = mapped_column(String(255), unique=True)

    provider: Mapped[DNSProviderConfig] = relationship(back_populates="domains")

    def __repr__(self) -> str:
        return f"DomainMapping(domain={self.domain!r}, provider_id={self.provider_id!r})"


class Certificate(_Timestamps, Base):
    """A certificate in one of the stores (issued by acmeflow or found by the scan)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("store", "folder"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(20))
    # acmeflow's folder of the certificate, or the file path of a scanned certificate
    folder: Mapped[str] = mapped_column(String(1000))
    common_name: Mapped[str | None] = mapped_column(String(255))
    names: Mapped[list[str]] = mapped_column(MutableList.as_mutable(JSON()), default=list)
    # SHA-256 of the canonical name set (core.stores.names_digest): fast identical-set lookups
    names_key: Mapped[str] = mapped_column(String(64), index=True, default=names_digest(()))
    subject: Mapped[str | None] = mapped_column(String(1000))
    issuer: Mapped[str | None] = mapped_column(String(1000))
    issuer_common_name: Mapped[str | None] = mapped_column(String(255))
    issuer_organization: Mapped[str | None] = mapped_column(String(255))
    serial: Mapped[str | None] = mapped_column(String(100))
    not_before: Mapped[datetime | None] = mapped_column()
    not_after: Mapped[datetime | None] = mapped_column(index=True)
    key_type: Mapped[str | None] = mapped_column(String(40))
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    ca_vendor_id: Mapped[int | None] = mapped_column(
        ForeignKey("ca_vendors.id", ondelete="SET NULL"), index=True
    )
    enrollment: Mapped[str] = mapped_column(String(10), default="manual")
    csr_fields: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    reuse_key: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dns_provider_hint: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="active", index=True)
    source: Mapped[str] = mapped_column(String(10), default="acmeflow")
    ari_cert_id: Mapped[str | None] = mapped_column(String(500))
    renewal_due_at: Mapped[datetime | None] = mapped_column(index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    # renewal (0003_renewal): the CA's ARI suggested window and when to ask again
    ari_window_start: Mapped[datetime | None] = mapped_column()
    ari_window_end: Mapped[datetime | None] = mapped_column()
    ari_checked_at: Mapped[datetime | None] = mapped_column()
    ari_retry_after: Mapped[datetime | None] = mapped_column()
    ari_explanation_url: Mapped[str | None] = mapped_column(String(2000))
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    # inventory (0002_inventory): the file the scan read, its stat for skipping unchanged
    # files, when the scan last saw it / found it gone, and the configured CA that issued it
    path: Mapped[str | None] = mapped_column(String(1000))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime | None] = mapped_column()
    gone_at: Mapped[datetime | None] = mapped_column()
    issued_by_ca_id: Mapped[int | None] = mapped_column(
        ForeignKey("ca_vendors.id", ondelete="SET NULL"), index=True
    )

    ca_vendor: Mapped[CAVendor | None] = relationship(
        back_populates="certificates", foreign_keys=[ca_vendor_id]
    )
    issued_by_ca: Mapped[CAVendor | None] = relationship(foreign_keys=[issued_by_ca_id])

    @validates("store")
    def _v_store(self, _key: str, value: str) -> str:
        return _one_of("store", value, STORE_KINDS)

    @validates("enrollment")
    def _v_enrollment(self, _key: str, value: str) -> str:
        return _one_of("enrollment", value, ENROLLMENTS)

    @validates("status")
    def _v_status(self, _key: str, value: str) -> str:
        return _one_of("status", value, CERT_STATUSES)

    @validates("source")
    def _v_source(self, _key: str, value: str) -> str:
        return _one_of("source", value, CERT_SOURCES)

    @validates("names")
    def _v_names(self, _key: str, value: list[str]) -> list[str]:
        names = [canonical_name(n) for n in value if n and n.strip()]
        self.names_key = names_digest(names)
        return names

    def __repr__(self) -> str:
        return f"Certificate(id={self.id!r}, store={self.store!r}, names={self.names!r})"


class AppSetting(Base):
    """A named setting kept in the database (secret values sealed, never plain)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"AppSetting(key={self.key!r})"


class LogEntry(Base):
    """One issuance / renewal / deploy / scan request and its outcome (the history)."""

    __tablename__ = "issuance_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    names: Mapped[list[str]] = mapped_column(JSON(), default=list)
    ca_name: Mapped[str | None] = mapped_column(String(100))
    store: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="running", index=True)
    message: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    root_cause: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column()

    certificate: Mapped[Certificate | None] = relationship()

    @validates("kind")
    def _v_kind(self, _key: str, value: str) -> str:
        return _one_of("kind", value, LOG_KINDS)

    @validates("status")
    def _v_status(self, _key: str, value: str) -> str:
        return _one_of("status", value, LOG_STATUSES)

    def __repr__(self) -> str:
        return f"LogEntry(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


class DeployTargetConfig(_Timestamps, Base):
    """A configured deploy target (F7): its type, settings and sealed secrets."""

    __tablename__ = "deploy_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    settings: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    secrets: Mapped[dict[str, str]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    bindings: Mapped[list[TargetBinding]] = relationship(
        back_populates="target", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"DeployTargetConfig(id={self.id!r}, name={self.name!r}, type={self.type!r})"


class TargetBinding(Base):
    """A certificate bound to a deploy target, with the outcome of its last deployment."""

    __tablename__ = "target_bindings"
    __table_args__ = (UniqueConstraint("target_id", "certificate_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("deploy_targets.id", ondelete="CASCADE"))
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("certificates.id", ondelete="CASCADE"), index=True
    )
    last_deployed_serial: Mapped[str | None] = mapped_column(String(100))
    last_deployed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    target: Mapped[DeployTargetConfig] = relationship(back_populates="bindings")
    certificate: Mapped[Certificate] = relationship()

    def __repr__(self) -> str:
        return (
            f"TargetBinding(target_id={self.target_id!r}, certificate_id={self.certificate_id!r})"
        )


class ChallengeJournalEntry(Base):
    """A DNS-01 TXT value acmeflow presented and has not cleaned up yet (0005).

    Written before the value is presented, deleted after its cleanup succeeded: a row older
    than an order can take is a value left behind by a crash, which the ``sweep`` flow removes.
    """

    __tablename__ = "challenge_journal"
    __table_args__ = (
        Index("ix_challenge_journal_provider_fqdn_value", "provider", "fqdn", "value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(100))  # configured DNS provider name
    fqdn: Mapped[str] = mapped_column(String(255))  # where the value was written (CNAME end)
    value: Mapped[str] = mapped_column(String(255))
    identifier: Mapped[str | None] = mapped_column(String(255))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"ChallengeJournalEntry(id={self.id!r}, provider={self.provider!r})"


class Lease(Base):
    """Who acts on a certificate or a requested name set right now (0006).

    A run takes the lease before it orders anything and checks it again before it writes a
    file; a second run finds it held and skips. An expired lease (its worker crashed) is taken
    over by the next run that asks.
    """

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # certificate:ID, names:HASH
    owner: Mapped[str] = mapped_column(String(200))  # host:pid:thread of the holder
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"Lease(key={self.key!r}, owner={self.owner!r})"


class OrderInFlightRow(Base):
    """An order about to be finalized, and where its key waits (0007).

    Written before ``finalize`` and deleted once the certificate is stored (or the order
    failed): a row left behind is an order a crash interrupted, whose certificate the CA may
    have issued. ``sweep`` (or the next run of the same request) downloads it instead of
    ordering again. ``fields`` is what storing it needs (names, store, folder; no secret).
    """

    __tablename__ = "orders_in_flight"

    ref: Mapped[str] = mapped_column(String(64), primary_key=True)  # the staged key's name
    ca_name: Mapped[str] = mapped_column(String(100))
    order_url: Mapped[str] = mapped_column(String(500))
    key_staged: Mapped[bool] = mapped_column(default=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"OrderInFlightRow(ref={self.ref!r}, order_url={self.order_url!r})"


class StoredVersion(Base):
    """One version of a certificate set held by the ``database`` store backend (0009).

    ``folder`` is the certificate's locator (``database:<store>/<name>``, the ``folder`` of its
    certificate row); one version per folder is ``live``, earlier ones are kept as previous
    versions. The private key is sealed with the settings' Fernet key.
    """

    __tablename__ = "stored_versions"
    __table_args__ = (Index("ix_stored_versions_store_folder", "store", "folder", "live"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(20))
    folder: Mapped[str] = mapped_column(String(1000))
    version: Mapped[str] = mapped_column(String(64))
    live: Mapped[bool] = mapped_column(default=False)
    serial: Mapped[str | None] = mapped_column(String(100))
    cert_sha256: Mapped[str] = mapped_column(String(64))
    cert_pem: Mapped[str] = mapped_column(Text())
    chain_pem: Mapped[str] = mapped_column(Text())
    fullchain_pem: Mapped[str] = mapped_column(Text())
    key_sealed: Mapped[str] = mapped_column(Text())
    set_metadata: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"StoredVersion(folder={self.folder!r}, version={self.version!r})"


class StagedKey(Base):
    """The sealed key of an order in flight, in the ``database`` store backend (0009)."""

    __tablename__ = "staged_keys"

    store: Mapped[str] = mapped_column(String(20), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_sealed: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"StagedKey(store={self.store!r}, request_id={self.request_id!r})"
