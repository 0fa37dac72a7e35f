"""The database: migrations, every entity's CRUD, catalog errors, DNS mapping, sealed secrets."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.config.vendors import PRESETS, UnknownVendor, get_preset, issuer_matches
from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
    DNSProviderUnavailable,
    InvalidContact,
    InvalidDomainName,
    MissingDNSProvider,
    NoActiveDNSProvider,
    NotFound,
)
from acmeflow.core.state import (
    acme_accounts,
    cas,
    certificates,
    dns_providers,
    history,
    provider_index,
)
from acmeflow.core.state.db import (
    MIGRATIONS_DIR,
    dispose_engines,
    migrate,
    open_database,
    session_scope,
)
from acmeflow.core.state.models import (
    AcmeAccount,
    Base,
    CAVendor,
    Certificate,
    DNSProviderConfig,
    DomainMapping,
    LogEntry,
)

ACCOUNT_KEY = (
    "-----BEGIN PRIVATE KEY-----\nTUlJQWNjb3VudEtleU1hdGVyaWFs\n-----END PRIVATE KEY-----\n"
)
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
TABLES = {"ca_vendors", "acme_accounts", "dns_providers", "domain_mappings", "certificates"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("ACMEFLOW_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, home: Path) -> Engine:
    """The database under test: SQLite in the home (the default) and PostgreSQL by URL."""
    if request.param == "sqlite":
        return open_database()
    return open_database(request.getfixturevalue("postgres_database")())


@pytest.fixture
def sqlite_engine(home: Path) -> Engine:
    """The default SQLite database, for tests that read its file."""
    return open_database()


@pytest.fixture
def s(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def counts(s: Session) -> dict[str, int]:
    models = (CAVendor, AcmeAccount, DNSProviderConfig, DomainMapping, Certificate, LogEntry)
    return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in models}


def add_le(s: Session, name: str = "LE", **kw: object) -> CAVendor:
    return cas.add_ca(s, name=name, vendor="letsencrypt", email="ops@example.com", **kw)  # type: ignore[arg-type]


# --- schema ---------------------------------------------------------------------------------


def test_migrations_create_schema_and_are_idempotent(home: Path) -> None:
    url = f"sqlite:///{home / 'fresh' / 'state.db'}"
    engine = open_database(url)
    assert (home / "fresh" / "state.db").exists()
    names = set(inspect(engine).get_table_names())
    assert TABLES | {"issuance_log", "alembic_version"} <= names
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with session_scope(engine) as s:
        add_le(s)
    # a second open (new process: engine cache dropped) migrates nothing and keeps the data
    dispose_engines()
    engine2 = open_database(url)
    assert engine2 is not engine
    with session_scope(engine2) as s:
        assert [c.name for c in cas.list_cas(s)] == ["LE"]
    assert open_database(url) is engine2  # cached per URL


def test_models_match_the_migrations(engine: Engine) -> None:
    """A model change without its Alembic revision (or the reverse) fails here."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_upgrade_from_first_revision_keeps_data(home: Path) -> None:
    from sqlalchemy import create_engine

    url = f"sqlite:///{home / 'old.db'}"
    home.mkdir(parents=True, exist_ok=True)
    old = create_engine(url)
    migrate(old, "0001_initial")
    with old.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dns_providers (name, type, settings, secrets, active, created_at,"
                " updated_at) VALUES ('A', 'route53', '{}', '{}', 1, :t, :t)"
            ),
            {"t": "2025-01-01 00:00:00.000000"},
        )
        conn.execute(
            text(
                "INSERT INTO certificates (id, store, folder, names, names_key, enrollment,"
                " csr_fields, status, source, created_at, updated_at) VALUES (7, 'certificate',"
                " '/s/a', '[\"a.example.com\"]', 'k', 'manual', '{}', 'active', 'scan', :t, :t)"
            ),
            {"t": "2025-01-01 00:00:00.000000"},
        )
        conn.execute(
            text(
                "INSERT INTO issuance_log (certificate_id, kind, names, status, started_at)"
                " VALUES (7, 'scan', '[]', 'success', :t)"
            ),
            {"t": "2025-01-01 00:00:00.000000"},
        )
    old.dispose()
    engine = open_database(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with session_scope(engine) as s:
        assert dns_providers.get_dns_provider(s, "A").type == "route53"
        assert certificates.get_certificate(s, 7).folder == "/s/a"
        # tables rebuilt by batch migrations must not fire ON DELETE actions on their children
        assert [e.certificate_id for e in history.list_log(s)] == [7]


def test_default_database_lives_in_home(home: Path, sqlite_engine: Engine) -> None:
    assert (home / "acmeflow.db").exists()


def test_timestamps_are_aware_utc(s: Session) -> None:
    ca = add_le(s)
    s.expire_all()
    ca = cas.get_ca(s, "LE")
    assert ca.created_at.tzinfo is not None
    assert ca.created_at.utcoffset() == dt.timedelta(0)


# --- vendors --------------------------------------------------------------------------------


def test_vendor_presets() -> None:
    assert get_preset("letsencrypt").directory_url == (
        "https://acme-v02.api.letsencrypt.org/directory"
    )
    assert get_preset("DigiCert").eab_required
    assert get_preset("custom").directory_url is None
    assert {"letsencrypt", "letsencrypt-staging", "digicert", "zerossl", "google", "sslcom"} <= set(
        PRESETS
    )
    assert issuer_matches(get_preset("letsencrypt").issuer_names, "R11", "Let's Encrypt")
    assert get_preset("google").matches_issuer("WR1", "Google Trust Services")
    assert not get_preset("letsencrypt").matches_issuer("DigiCert Global G2", "DigiCert Inc")
    with pytest.raises(UnknownVendor) as err:
        get_preset("acme-corp")
    assert "letsencrypt" in err.value.detail


# --- CA vendors -------------------------------------------------------------------------------


def test_ca_crud(s: Session) -> None:
    ca = add_le(s)
    assert ca.id is not None
    assert ca.directory_url == PRESETS["letsencrypt"].directory_url
    assert ca.renew_days == 30
    assert "R11" in ca.issuer_names
    dc = cas.add_ca(
        s,
        name="DC",
        vendor="digicert",
        email="pki@example.com",
        eab_kid="kid-1",
        eab_hmac_key="hmac-literal-value",
        renew_days=7,
    )
    assert dc.eab_hmac_key is not None and dc.eab_hmac_key.startswith("enc:")
    assert [c.name for c in cas.list_cas(s)] == ["DC", "LE"]

    cas.update_ca(s, "LE", renew_days=10, email="mailto:New@Example.COM", profile="tlsserver")
    assert cas.get_ca(s, "LE").renew_days == 10
    assert cas.get_ca(s, "LE").email == "New@example.com"
    cas.update_ca(s, "LE", name="Lets Encrypt")
    assert cas.get_ca(s, "Lets Encrypt").profile == "tlsserver"
    cas.add_issuer_names(s, cas.get_ca(s, "Lets Encrypt"), ["R15", "r11"])
    assert cas.get_ca(s, "Lets Encrypt").issuer_names.count("R11") == 1
    assert "R15" in cas.get_ca(s, "Lets Encrypt").issuer_names

    cas.remove_ca(s, "DC")
    assert [c.name for c in cas.list_cas(s)] == ["Lets Encrypt"]


def test_custom_ca_needs_directory_url(s: Session) -> None:
    with pytest.raises(ConfigError) as err:
        cas.add_ca(s, name="Mine", vendor="custom", email="a@example.com")
    assert "directory URL" in str(err.value.detail)
    ca = cas.add_ca(
        s,
        name="Mine",
        vendor="custom",
        email="a@example.com",
        directory_url="https://127.0.0.1:14000/dir",
    )
    assert ca.issuer_names == []


def test_eab_required_vendor_without_eab(s: Session) -> None:
    before = counts(s)
    with pytest.raises(ConfigError) as err:
        cas.add_ca(s, name="Z", vendor="zerossl", email="a@example.com")
    assert "External Account Binding" in str(err.value.detail)
    assert counts(s) == before


def test_duplicate_ca_name(s: Session) -> None:
    add_le(s)
    with pytest.raises(ConfigError) as err:
        add_le(s)
    assert err.value.detail == "a CA vendor named 'LE' already exists"
    assert counts(s)["ca_vendors"] == 1


@pytest.mark.parametrize(
    "email", ["not-an-email", "a b@example.com", "a@example", "@example.com", "a@-x.com", ""]
)
def test_invalid_contact(s: Session, email: str) -> None:
    with pytest.raises(InvalidContact) as err:
        cas.add_ca(s, name="LE", vendor="letsencrypt", email=email)
    assert err.value.message == "Error validating contact(s) :: unable to parse email address"
    assert str(err.value).startswith("Error validating contact(s) :: unable to parse email address")
    assert err.value.detail
    assert counts(s)["ca_vendors"] == 0


def test_update_with_bad_email_changes_nothing(s: Session) -> None:
    add_le(s)
    with pytest.raises(InvalidContact):
        cas.update_ca(s, "LE", email="broken", renew_days=5)
    assert cas.get_ca(s, "LE").renew_days == 30
    assert cas.get_ca(s, "LE").email == "ops@example.com"


@pytest.mark.parametrize("name", ["", "   ", "nope"])
def test_unknown_ca(s: Session, name: str) -> None:
    add_le(s)
    with pytest.raises(CAConfigMissing) as err:
        cas.get_ca(s, name)
    assert err.value.message == "Config CA ID is empty/does not exist."
    if name == "nope":
        assert err.value.detail == "no CA vendor named 'nope'"


def test_inactive_ca_is_missing_and_unknown_vendor(s: Session) -> None:
    add_le(s, active=False)
    with pytest.raises(CAConfigMissing):
        cas.get_ca(s, "LE")
    with pytest.raises(CAConfigMissing) as err:
        cas.add_ca(s, name="X", vendor="acme-corp", email="a@example.com")
    assert "valid vendors" in str(err.value.detail)


def test_remove_ca_with_enrolled_certificates(s: Session) -> None:
    ca = add_le(s)
    cert = certificates.add_certificate(
        s,
        store="certificate",
        folder="/x/a",
        names=["a.example.com"],
        ca_vendor_id=ca.id,
        enrollment="auto",
    )
    with pytest.raises(ConfigError):
        cas.remove_ca(s, "LE")
    assert counts(s)["ca_vendors"] == 1
    cas.remove_ca(s, "LE", force=True)
    s.refresh(cert)
    assert cert.ca_vendor_id is None and cert.enrollment == "manual"


# --- accounts ---------------------------------------------------------------------------------


def test_account_key_is_stored_encrypted(home: Path, sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    with session_scope(engine) as s:
        ca = add_le(s)
        assert acme_accounts.get_account(s, ca) is None
        acme_accounts.save_account(
            s,
            ca,
            account_url="https://acme.example/acct/1",
            key_pem=ACCOUNT_KEY.encode(),
            contact="ops@example.com",
            key_type="ec256",
        )
    with session_scope(engine) as s:
        ca = cas.get_ca(s, "LE")
        account = acme_accounts.get_account(s, ca)
        assert account is not None
        assert account.account_url == "https://acme.example/acct/1"
        assert acme_accounts.account_key_pem(account) == ACCOUNT_KEY.encode()
        # replacing keeps one account per CA
        acme_accounts.save_account(
            s,
            ca,
            account_url="https://acme.example/acct/2",
            key_pem=ACCOUNT_KEY,
            contact=None,
            key_type="ec256",
        )
        assert counts(s)["acme_accounts"] == 1
        # another directory: the stored account no longer applies
        cas.update_ca(s, "LE", directory_url="https://acme.other.example/directory")
        assert acme_accounts.get_account(s, ca) is None
    raw = (home / "acmeflow.db").read_bytes() + _wal_bytes(home / "acmeflow.db")
    assert b"TUlJQWNjb3VudEtleU1hdGVyaWFs" not in raw
    (stored,) = (
        sqlite3.connect(home / "acmeflow.db")
        .execute("SELECT key_pem FROM acme_accounts")
        .fetchone()
    )
    assert stored.startswith("enc:") and "PRIVATE KEY" not in stored


def _wal_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_account_cascades_with_its_ca(s: Session) -> None:
    ca = add_le(s)
    acme_accounts.save_account(
        s,
        ca,
        account_url="https://a.example/1",
        key_pem=ACCOUNT_KEY,
        contact=None,
        key_type="rsa2048",
    )
    cas.remove_ca(s, "LE")
    assert counts(s)["acme_accounts"] == 0


# --- DNS providers ----------------------------------------------------------------------------


def test_dns_provider_crud_and_sealed_secrets(
    home: Path, sqlite_engine: Engine, monkeypatch
) -> None:
    engine = sqlite_engine
    monkeypatch.setenv("CF_API_TOKEN", "token-from-env")
    with session_scope(engine) as s:
        p = dns_providers.add_dns_provider(
            s,
            name="CF",
            type="cloudflare",
            settings={"zone": "example.com"},
            secrets={"token": "env:CF_API_TOKEN", "password": "Literal-P@ssw0rd-xyz"},
        )
        assert p.secrets["token"] == "env:CF_API_TOKEN"  # a reference stays a reference
        assert p.secrets["password"].startswith("enc:")
        assert dns_providers.provider_secrets(p) == {
            "token": "token-from-env",
            "password": "Literal-P@ssw0rd-xyz",
        }
    with session_scope(engine) as s:
        dns_providers.update_dns_provider(
            s, "CF", settings={"ttl": 60}, secrets={"password": None, "key": "new-literal-key"}
        )
        p = dns_providers.get_dns_provider(s, "CF")
        assert p.settings == {"zone": "example.com", "ttl": 60}
        assert set(p.secrets) == {"token", "key"}
        assert [x.name for x in dns_providers.list_dns_providers(s)] == ["CF"]
    raw = (
        sqlite3.connect(home / "acmeflow.db")
        .execute("SELECT secrets FROM dns_providers")
        .fetchone()
    )
    assert "new-literal-key" not in raw[0] and "env:CF_API_TOKEN" in raw[0]
    disk = (home / "acmeflow.db").read_bytes() + _wal_bytes(home / "acmeflow.db")
    assert b"Literal-P@ssw0rd-xyz" not in disk and b"new-literal-key" not in disk
    with session_scope(engine) as s:
        dns_providers.map_domains(s, "CF", ["example.com"])
        dns_providers.remove_dns_provider(s, "CF")
        assert counts(s)["dns_providers"] == 0
        assert counts(s)["domain_mappings"] == 0


def test_eab_hmac_literal_not_on_disk(home: Path, sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    with session_scope(engine) as s:
        cas.add_ca(
            s,
            name="G",
            vendor="google",
            email="a@example.com",
            eab_kid="kid",
            eab_hmac_key="HMAC-literal-do-not-store",
        )
        cas.add_ca(
            s,
            name="Z",
            vendor="zerossl",
            email="a@example.com",
            eab_kid="kid",
            eab_hmac_key="env:ZEROSSL_HMAC",
        )
    disk = (home / "acmeflow.db").read_bytes() + _wal_bytes(home / "acmeflow.db")
    assert b"HMAC-literal-do-not-store" not in disk
    con = sqlite3.connect(home / "acmeflow.db")
    rows = dict(con.execute("SELECT name, eab_hmac_key FROM ca_vendors").fetchall())
    assert rows["Z"] == "env:ZEROSSL_HMAC"
    assert rows["G"].startswith("enc:")


@pytest.mark.parametrize("inactive", [False, True])
def test_unknown_or_inactive_provider(s: Session, inactive: bool) -> None:
    if inactive:
        dns_providers.add_dns_provider(s, name="TestDNS", type="rfc2136", settings={}, secrets={})
        dns_providers.set_dns_provider_active(s, "TestDNS", False)
    with pytest.raises(DNSProviderUnavailable) as err:
        dns_providers.get_dns_provider(s, "TestDNS")
    assert err.value.message == "DNS Provider - TestDNS does not exist or is not active."
    if inactive:
        assert dns_providers.get_dns_provider(s, "TestDNS", include_inactive=True).active is False


def test_duplicate_provider_changes_nothing(s: Session) -> None:
    dns_providers.add_dns_provider(s, name="A", type="route53", settings={}, secrets={})
    before = counts(s)
    with pytest.raises(ConfigError):
        dns_providers.add_dns_provider(s, name="A", type="route53", settings={}, secrets={"k": "v"})
    assert counts(s) == before


def test_domain_mapping_rules(s: Session) -> None:
    dns_providers.add_dns_provider(s, name="A", type="route53", settings={}, secrets={})
    dns_providers.add_dns_provider(s, name="B", type="azure", settings={}, secrets={})
    assert dns_providers.map_domains(s, "A", ["Example.COM.", "*.other.org", "example.com"]) == [
        "example.com",
        "other.org",
    ]
    assert dns_providers.mapped_domains(s, "A") == ["example.com", "other.org"]
    dns_providers.map_domains(s, "A", ["example.com"])  # same provider again: no-op
    before = counts(s)
    with pytest.raises(ConfigError) as err:
        dns_providers.map_domains(s, "B", ["new.net", "example.com"])
    assert "example.com is already mapped to DNS provider 'A'" in str(err.value.detail)
    assert counts(s) == before  # new.net was not mapped either
    with pytest.raises(InvalidDomainName):
        dns_providers.map_domains(s, "B", ["bad_domain..com"])
    with pytest.raises(ConfigError):
        dns_providers.unmap_domains(s, "B", ["example.com"])
    assert dns_providers.unmap_domains(s, "A", ["other.org"]) == ["other.org"]
    assert dns_providers.list_domain_mappings(s) == {"example.com": "A"}


def test_longest_suffix_wildcard_and_label_boundaries(s: Session) -> None:
    dns_providers.add_dns_provider(s, name="Apex", type="route53", settings={}, secrets={})
    dns_providers.add_dns_provider(s, name="Sub", type="azure", settings={}, secrets={})
    dns_providers.map_domains(s, "Apex", ["example.com"])
    dns_providers.map_domains(s, "Sub", ["a.example.com"])
    assert provider_index.provider_for_name(s, "example.com").name == "Apex"
    assert provider_index.provider_for_name(s, "x.y.example.com").name == "Apex"
    assert provider_index.provider_for_name(s, "a.example.com").name == "Sub"
    assert provider_index.provider_for_name(s, "deep.a.example.com").name == "Sub"
    assert provider_index.provider_for_name(s, "*.a.example.com").name == "Sub"
    assert provider_index.provider_for_name(s, "*.example.com").name == "Apex"
    assert provider_index.provider_for_name(s, "WWW.Example.Com.").name == "Apex"
    assert provider_index.provider_for_name(s, "ba.example.com").name == "Apex"
    with pytest.raises(MissingDNSProvider) as err:
        provider_index.provider_for_name(s, "badexample.com")
    assert err.value.message == "Certificate is missing a DNS provider name."
    assert err.value.detail == "no DNS provider is mapped for badexample.com"
    both = provider_index.providers_for_names(s, ["*.a.example.com", "example.com"])
    assert {n: p.name for n, p in both.items()} == {"*.a.example.com": "Sub", "example.com": "Apex"}


def test_unmapped_name_among_several(s: Session) -> None:
    dns_providers.add_dns_provider(s, name="A", type="route53", settings={}, secrets={})
    dns_providers.map_domains(s, "A", ["example.com"])
    with pytest.raises(MissingDNSProvider) as err:
        provider_index.providers_for_names(
            s, ["www.example.com", "shop.example.net", "x.example.org"]
        )
    assert str(err.value).startswith("Certificate is missing a DNS provider name.")
    assert "shop.example.net" in str(err.value.detail)
    assert "x.example.org" in str(err.value.detail)


def test_mapped_provider_disabled(s: Session) -> None:
    dns_providers.add_dns_provider(s, name="A", type="route53", settings={}, secrets={})
    dns_providers.add_dns_provider(s, name="TestDNS", type="rfc2136", settings={}, secrets={})
    dns_providers.map_domains(s, "TestDNS", ["example.com"])
    dns_providers.set_dns_provider_active(s, "TestDNS", False)
    with pytest.raises(DNSProviderUnavailable) as err:
        provider_index.provider_for_name(s, "www.example.com")
    assert err.value.message == "DNS Provider - TestDNS does not exist or is not active."
    with pytest.raises(DNSProviderUnavailable):
        provider_index.providers_for_names(s, ["www.example.com"])


def test_no_active_provider(s: Session) -> None:
    with pytest.raises(NoActiveDNSProvider) as err:
        provider_index.providers_for_names(s, ["www.example.com"])
    assert err.value.message == "Renewal skipped as no active DNS providers are configured."
    dns_providers.add_dns_provider(
        s, name="A", type="route53", settings={}, secrets={}, active=False
    )
    dns_providers.map_domains(s, "A", ["example.com"])
    with pytest.raises(NoActiveDNSProvider):
        provider_index.providers_for_names(s, ["www.example.com"])


# --- certificates -------------------------------------------------------------------------------


def _cert(s: Session, **kw: object) -> Certificate:
    now = dt.datetime.now(dt.UTC)
    fields: dict[str, object] = {
        "store": "certificate",
        "folder": "/store/www",
        "names": ["www.example.com", "example.com"],
        "common_name": "www.example.com",
        "serial": "0a1b",
        "not_before": now - dt.timedelta(days=1),
        "not_after": now + dt.timedelta(days=60),
        "fingerprint_sha256": "ab" * 32,
    }
    fields.update(kw)
    return certificates.add_certificate(s, **fields)


def test_certificate_crud_and_find_identical(s: Session) -> None:
    ca = add_le(s)
    cert = _cert(s, ca_vendor_id=ca.id, enrollment="auto", csr_fields={"organization": "Acme"})
    assert cert.id is not None and cert.status == "active" and cert.source == "acmeflow"
    assert certificates.get_certificate(s, cert.id) is cert
    assert (
        certificates.find_identical(s, ["Example.com", "www.example.com"], ca.id, "certificate")
        is cert
    )
    assert certificates.find_identical(s, ["example.com"], ca.id, "certificate") is None
    assert (
        certificates.find_identical(s, ["example.com", "www.example.com"], ca.id, "zero-touch")
        is None
    )
    assert (
        certificates.find_identical(s, ["example.com", "www.example.com"], None, "certificate")
        is None
    )
    assert [c.id for c in certificates.list_certificates(s, ca="LE")] == [cert.id]
    assert certificates.list_certificates(s, enrollment="manual") == []
    assert certificates.find_by_fingerprint(s, "AB" * 32) == [cert]

    certificates.update_certificate(
        s, cert, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    )
    assert (
        certificates.find_identical(s, ["example.com", "www.example.com"], ca.id, "certificate")
        is None
    )
    certificates.update_certificate(s, cert, status="gone")
    assert certificates.list_certificates(s) == []
    assert certificates.list_certificates(s, status=None) == [cert]
    s.expire_all()
    again = certificates.get_certificate(s, cert.id)
    assert again.csr_fields == {"organization": "Acme"}
    assert again.not_after is not None and again.not_after.tzinfo is not None


def test_certificate_errors_change_nothing(s: Session) -> None:
    _cert(s)
    before = counts(s)
    with pytest.raises(NotFound):
        certificates.get_certificate(s, 999)
    with pytest.raises(ConfigError):
        _cert(s)  # same folder in the same store
    with pytest.raises(ConfigError):
        _cert(s, folder="/store/other", store="somewhere")
    with pytest.raises(ConfigError):
        _cert(s, folder="/store/other", enrollment="sometimes")
    with pytest.raises(ConfigError):
        _cert(s, folder="/store/other", not_after=dt.datetime(2030, 1, 1))  # naive
    assert counts(s) == before
    _cert(s, store="zero-touch")  # same folder, other store: fine


def test_certificates_due(s: Session) -> None:
    ca = add_le(s)
    now = dt.datetime.now(dt.UTC)
    due = _cert(s, folder="/a", ca_vendor_id=ca.id, enrollment="auto", renewal_due_at=now)
    _cert(
        s,
        folder="/b",
        ca_vendor_id=ca.id,
        enrollment="auto",
        renewal_due_at=now + dt.timedelta(days=3),
    )
    _cert(s, folder="/c", ca_vendor_id=ca.id, enrollment="manual", renewal_due_at=now)
    _cert(
        s,
        folder="/d",
        ca_vendor_id=ca.id,
        enrollment="auto",
        renewal_due_at=now,
        next_attempt_at=now + dt.timedelta(hours=1),
    )
    assert certificates.certificates_due(s, now=now + dt.timedelta(seconds=1)) == [due]


# --- log ---------------------------------------------------------------------------------------


def test_log(s: Session) -> None:
    cert = _cert(s)
    first = history.log_start(
        s,
        kind="issue",
        names=["a.example.com"],
        ca_name="LE",
        store="certificate",
        flow_run_id="run-1",
    )
    assert first.status == "running" and first.finished_at is None
    history.log_finish(s, first, status="success", serial="0a", certificate_id=cert.id)
    second = history.log_start(
        s, kind="renew", names=["b.example.com"], ca_name="LE", store=None, certificate_id=cert.id
    )
    history.log_finish(
        s,
        second,
        status="failed",
        message="Certificate is missing a DNS provider name.",
        detail="no DNS provider is mapped for b.example.com",
        root_cause="MissingDNSProvider",
    )
    assert history.get_log_entry(s, second.id) is second
    assert [e.id for e in history.list_log(s)] == [second.id, first.id]
    assert [e.id for e in history.list_log(s, failed_only=True)] == [second.id]
    assert {e.id for e in history.list_log(s, certificate_id=cert.id)} == {first.id, second.id}
    assert history.list_log(s, since=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == []
    assert len(history.list_log(s, limit=1)) == 1
    with pytest.raises(ConfigError):
        history.log_finish(s, first, status="running")
    with pytest.raises(ConfigError):
        history.log_start(s, kind="teleport", names=[], ca_name=None, store=None)
    # deleting the certificate keeps its history
    s.delete(cert)
    s.flush()
    s.expire_all()
    assert history.get_log_entry(s, first.id).certificate_id is None


def test_schema_head_constant_is_alembics_head() -> None:
    """open_database skips Alembic for a database at SCHEMA_HEAD: it must be the real head."""
    from alembic.script import ScriptDirectory

    from acmeflow.core.state.db import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == (
        SCHEMA_HEAD
    )
