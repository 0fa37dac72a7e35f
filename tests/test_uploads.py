"""A CSR pasted into the issue form and the reference to its key: checked, then staged; a
refused one stages nothing and never echoes the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmeflow.config.settings import Settings
from acmeflow.core.errors import InvalidCSR, InvalidKey, SecretError
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key
from acmeflow.core.storage import Store, stores_from_settings
from acmeflow.core.uploads import stage_pasted_csr

NAMES = ["form.example.com", "www.form.example.com"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return stores_from_settings(Settings(home=tmp_path))["certificate"]


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, bytes]:
    key = generate_private_key("ec256")
    path = tmp_path / "form-key.pem"
    path.write_bytes(key)
    return path, key


def test_the_key_is_staged_and_the_csr_names_are_ordered(
    store: Store, key_file: tuple[Path, bytes]
) -> None:
    path, key = key_file
    csr = build_csr(key, CSRFields(names=NAMES)).decode()
    request_id, names = stage_pasted_csr(store, csr, f"file:{path}", [])
    assert sorted(names) == sorted(NAMES)
    assert store.staged_requests() == [request_id]
    assert store.read_staging_key(request_id) == key


@pytest.mark.parametrize(
    ("ref", "names", "error", "says"),
    [
        ("literal", [], InvalidKey, "never"),  # the key typed into the form
        ("file", ["other.example.com"], InvalidCSR, "not for the names given"),
        ("file:/nonexistent/key.pem", [], SecretError, "cannot read secret file"),
        ("other", [], InvalidKey, "does not match"),
    ],
)
def test_a_refused_csr_stages_nothing_and_never_echoes_the_key(
    store: Store,
    key_file: tuple[Path, bytes],
    tmp_path: Path,
    ref: str,
    names: list[str],
    error: type[Exception],
    says: str,
) -> None:
    path, key = key_file
    csr = build_csr(key, CSRFields(names=NAMES)).decode()
    other = tmp_path / "other.pem"
    other.write_bytes(generate_private_key("ec256"))
    key_ref = {"literal": key.decode(), "file": f"file:{path}", "other": f"file:{other}"}.get(
        ref, ref
    )
    with pytest.raises(error) as raised:
        stage_pasted_csr(store, csr, key_ref, names)
    assert says in str(raised.value.detail)  # type: ignore[attr-defined]
    assert "PRIVATE KEY" not in str(raised.value.detail)  # type: ignore[attr-defined]
    assert store.staged_requests() == []
