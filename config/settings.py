"""Process-wide settings, read from ``ACMEFLOW_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

StoreBackend = Literal["directory", "database", "s3"]


class Settings(BaseSettings):
    """Where acmeflow keeps its state and how hard it works.

    Every field can be set as ``ACMEFLOW_<FIELD>`` (e.g. ``ACMEFLOW_HOME``).
    """

    model_config = SettingsConfigDict(env_prefix="ACMEFLOW_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path("~/.acmeflow").expanduser())
    database_url: str | None = None
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    secret_key_block: str | None = Field(
        default=None,
        description="a Prefect Secret block holding the sealing key (every worker of a pool)",
    )
    certificate_store: Path | None = None
    zero_touch_store: Path | None = None
    store_backend: StoreBackend = Field(
        default="directory",
        description="where new certificates of both stores go: directory (one machine), "
        "database (shared by every worker of a pool) or s3 (object storage)",
    )
    certificate_store_backend: StoreBackend | None = Field(
        default=None, description="the certificate store's backend; default: store_backend"
    )
    zero_touch_store_backend: StoreBackend | None = Field(
        default=None, description="the zero-touch store's backend; default: store_backend"
    )
    s3_bucket: str | None = Field(default=None, description="the bucket of the s3 backend")
    s3_prefix: str = Field(default="acmeflow/", description="key prefix in that bucket")
    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible endpoint (MinIO, Ceph); default: AWS"
    )
    max_workers: int = Field(default=16, ge=1, le=256)
    per_ca_concurrency: int = Field(default=8, ge=1)
    per_dns_provider_concurrency: int = Field(default=8, ge=1)
    pool_dns_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="record writes at once per DNS provider across every worker of a pool "
        "(a Prefect global concurrency limit written by schedules sync); unset: none",
    )
    pool_renew_runs: int | None = Field(
        default=None,
        ge=1,
        description="renew runs at once across every worker of a pool, whatever their "
        "deployment (a Prefect global concurrency limit written by schedules sync); unset: none",
    )
    pool_renew_wait: float = Field(
        default=600.0,
        gt=0,
        description="seconds a renew run waits for one of those slots before it reports its "
        "renewals skipped (the next run renews them)",
    )
    renew_batch_size: int = Field(
        default=100, ge=1, le=1000, description="certificates of one CA renewed as one batch"
    )
    share_pickup_seconds: float = Field(
        default=15.0,
        ge=0,
        description="how long a renew run waits for a worker to start a share it handed out "
        "before it renews that share itself",
    )
    propagation_timeout: float = Field(default=180.0, gt=0)
    propagation_interval: float = Field(default=0.1, gt=0)
    acme_timeout: float = Field(default=300.0, gt=0)
    order_timeout: float | None = Field(
        default=None,
        gt=0,
        description="one deadline per order, every step and retry; default: acme + propagation",
    )
    acme_poll_interval: float = Field(default=0.05, gt=0)
    max_names: int = Field(
        default=100, ge=1, description="names per certificate at a CA without a known limit"
    )
    expiry_warning_days: int = Field(
        default=14,
        ge=0,
        description="an expiring-certificate alert for a manual certificate this close to expiry",
    )
    deploy_retries: int = Field(default=3, ge=0, le=20)
    deploy_retry_delay: float = Field(default=2.0, ge=0, description="first retry delay, s")
    dns_resolvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host[:port] of resolvers for SOA/NS/CNAME lookups; empty = the system's",
    )
    dns_query_port: int = Field(default=53, ge=1, le=65535, description="port of authoritative NS")

    @field_validator("dns_resolvers", mode="before")
    @classmethod
    def _split_resolvers(cls, value: Any) -> Any:
        """``ACMEFLOW_DNS_RESOLVERS`` is a comma-separated list of ``host[:port]``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: ``ACMEFLOW_DATABASE_URL`` or SQLite in the home folder."""
        return self.database_url or f"sqlite:///{self.home / 'acmeflow.db'}"

    @property
    def resolved_secret_key_file(self) -> Path:
        """The Fernet key file used when ``ACMEFLOW_SECRET_KEY`` is not set."""
        return self.secret_key_file or self.home / "secret.key"

    def store_path(self, store: str) -> Path:
        """The folder of the ``certificate`` or ``zero-touch`` store."""
        if store == "certificate":
            return self.certificate_store or self.home / "stores" / "certificate"
        if store == "zero-touch":
            return self.zero_touch_store or self.home / "stores" / "zero-touch"
        raise ValueError(f"unknown store {store!r} (certificate or zero-touch)")

    def store_backend_of(self, store: str) -> StoreBackend:
        """Where new certificates of the ``certificate`` or ``zero-touch`` store go."""
        own = {
            "certificate": self.certificate_store_backend,
            "zero-touch": self.zero_touch_store_backend,
        }
        if store not in own:
            raise ValueError(f"unknown store {store!r} (certificate or zero-touch)")
        return own[store] or self.store_backend


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
