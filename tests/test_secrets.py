"""Secrets: references, the Fernet key file, sealing and errors that never leak values."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from acmeflow.config.settings import Settings, get_settings
from acmeflow.core import secrets
from acmeflow.core.errors import SecretError
from acmeflow.core.secrets import SecretBox, is_prefect_block_ref, resolve_ref, seal, unseal


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACMEFLOW_SECRET_KEY", raising=False)
    monkeypatch.delenv("ACMEFLOW_SECRET_KEY_FILE", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_key_file_is_created_with_mode_0600_and_reused(home: Path) -> None:
    box = SecretBox(Settings())
    token = box.encrypt("hunter2-password")
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "hunter2-password" not in token
    # a new box (another process) reads the same key file and decrypts
    assert SecretBox(Settings()).decrypt(token) == "hunter2-password"
    assert not [p for p in key_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_key_file_readable_by_others_is_refused(home: Path) -> None:
    key_file = home / "secret.key"
    home.mkdir(parents=True)
    key_file.write_text(Fernet.generate_key().decode() + "\n")
    key_file.chmod(0o644)
    with pytest.raises(SecretError) as err:
        SecretBox(Settings()).encrypt("x")
    assert "chmod 600" in str(err.value.detail)


def test_key_from_environment_and_wrong_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("ACMEFLOW_SECRET_KEY", key_a)
    token = SecretBox(Settings()).encrypt("s3cret-value")
    assert not (home / "secret.key").exists()  # env key: no key file is made
    monkeypatch.setenv("ACMEFLOW_SECRET_KEY", key_b)
    with pytest.raises(SecretError) as err:
        SecretBox(Settings()).decrypt(token)
    assert "wrong ACMEFLOW_SECRET_KEY?" in str(err.value)
    assert "s3cret-value" not in str(err.value)


def test_key_rotation_with_several_keys(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox(key=old).encrypt("rotated")
    monkeypatch.setenv("ACMEFLOW_SECRET_KEY", f"{new},{old}")
    assert SecretBox(Settings()).decrypt(token) == "rotated"


def test_malformed_key_is_explained(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACMEFLOW_SECRET_KEY", "not-a-fernet-key")
    with pytest.raises(SecretError) as err:
        SecretBox(Settings()).encrypt("x")
    assert "not a Fernet key" in str(err.value.detail)
    assert "not-a-fernet-key" not in str(err.value)


def test_json_round_trip(home: Path) -> None:
    box = SecretBox(Settings())
    token = box.encrypt_json({"user": "u", "password": "p@ss"})
    assert "p@ss" not in token
    assert box.decrypt_json(token) == {"user": "u", "password": "p@ss"}


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_DNS_TOKEN", "tok-123456")
    assert resolve_ref("env:MY_DNS_TOKEN") == "tok-123456"
    monkeypatch.delenv("MY_DNS_TOKEN")
    with pytest.raises(SecretError) as err:
        resolve_ref("env:MY_DNS_TOKEN")
    assert "MY_DNS_TOKEN" in str(err.value.detail)


def test_file_reference_strips_trailing_newline(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("file-secret-value\n")
    assert resolve_ref(f"file:{f}") == "file-secret-value"
    f.write_text("crlf-value\r\n")
    assert resolve_ref(f"file:{f}") == "crlf-value"


def test_unreadable_file_reference_names_the_ref_not_the_value(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SecretError) as err:
        resolve_ref(f"file:{missing}")
    assert str(missing) in str(err.value.detail)
    if os.geteuid() != 0:  # root reads anything
        f = tmp_path / "locked"
        f.write_text("do-not-show-me")
        f.chmod(0)
        with pytest.raises(SecretError) as err:
            resolve_ref(f"file:{f}")
        assert "do-not-show-me" not in str(err.value)


def test_prefect_block_reference_needs_the_prefect_layer() -> None:
    assert is_prefect_block_ref("prefect-block:route53-secret")
    assert not is_prefect_block_ref("env:X")
    with pytest.raises(SecretError) as err:
        resolve_ref("prefect-block:route53-secret")
    assert "Prefect" in str(err.value.detail)
    # the tasks layer passes a resolver
    assert resolve_ref("prefect-block:b", block_resolver=lambda n: f"value-of-{n}") == "value-of-b"


def test_literal_is_returned_as_is() -> None:
    assert resolve_ref("plain literal") == "plain literal"


def test_seal_keeps_references_and_encrypts_literals(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert seal("env:CF_TOKEN") == "env:CF_TOKEN"
    assert seal("file:/run/secrets/x") == "file:/run/secrets/x"
    assert seal("prefect-block:aws") == "prefect-block:aws"
    sealed = seal("literal-hmac-key")
    assert sealed.startswith("enc:") and "literal-hmac-key" not in sealed
    assert unseal(sealed) == "literal-hmac-key"
    # references are resolved when used, so a rotated value takes effect
    monkeypatch.setenv("CF_TOKEN", "first")
    assert unseal("env:CF_TOKEN") == "first"
    monkeypatch.setenv("CF_TOKEN", "second")
    assert unseal("env:CF_TOKEN") == "second"


def test_unseal_of_reference_needs_no_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_REF", "v")
    assert unseal("env:SOME_REF") == "v"
    assert not (home / "secret.key").exists()


def test_unseal_rejects_unsealed_text(home: Path) -> None:
    with pytest.raises(SecretError):
        unseal("plaintext-that-was-never-sealed")


def test_describe_sealed_never_shows_a_value(home: Path) -> None:
    assert secrets.describe_sealed(seal("top-secret")) == "encrypted"
    assert secrets.describe_sealed("env:X") == "env:X"


def test_key_file_outside_the_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ACMEFLOW_SECRET_KEY_FILE keeps the sealing key apart from the database."""
    key_file = tmp_path / "elsewhere" / "acmeflow.key"
    monkeypatch.setenv("ACMEFLOW_SECRET_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    token = SecretBox(get_settings()).encrypt("hunter2-password")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not (home / "secret.key").exists()
    # the home alone (database, stores) cannot open what was sealed
    monkeypatch.delenv("ACMEFLOW_SECRET_KEY_FILE")
    get_settings.cache_clear()
    with pytest.raises(SecretError):
        SecretBox(get_settings()).decrypt(token)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_home_and_ca_bundles_get_explicit_modes_whatever_the_umask(home: Path, umask: int) -> None:
    from acmeflow.core.accounts import materialize_ca_bundle
    from acmeflow.core.state.db import dispose_engines, open_database

    home.mkdir(mode=0o755)
    home.chmod(0o755)  # an existing home with wide permissions is tightened too
    old = os.umask(umask)
    try:
        open_database()
        bundle = materialize_ca_bundle(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", get_settings()
        )
    finally:
        os.umask(old)
        dispose_engines()
    assert bundle is not None
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(bundle).parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(Path(bundle).stat().st_mode) == 0o644
